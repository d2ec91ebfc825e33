#include "core/base/thread_pool.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

TEST(ThreadPoolTest, RunsEveryIterationExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    std::vector<std::atomic<int>> hits(1000);
    pool.ParallelFor(hits.size(), [&](size_t i) { hits[i].fetch_add(1); });
    for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << i;
  }
}

TEST(ThreadPoolTest, NestedParallelForRunsInline) {
  ThreadPool pool(3);
  std::atomic<int> total{0};
  pool.ParallelFor(8, [&](size_t) {
    pool.ParallelFor(10, [&](size_t j) { total.fetch_add(static_cast<int>(j)); });
  });
  EXPECT_EQ(total.load(), 8 * 45);
}

TEST(ThreadPoolTest, NullPoolRunsInlineInOrder) {
  std::vector<size_t> order;
  ParallelFor(nullptr, 5, [&](size_t i) { order.push_back(i); });
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3, 4}));
}

TEST(ThreadPoolTest, ConcurrentCallersFromOtherThreads) {
  ThreadPool pool(2);
  std::atomic<long> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] { pool.ParallelFor(100, [&](size_t i) { sum.fetch_add(static_cast<long>(i)); }); });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), 4 * 4950);
}

TEST(ThreadPoolTest, ABusyPoolDoesNotStallAnotherCaller) {
  ThreadPool pool(2);  // one thread of its own
  absl::Notification release, blocked;
  std::atomic<int> entered{0};
  // Caller A occupies the pool's only thread (and itself) until released.
  std::thread a([&] {
    pool.ParallelFor(2, [&](size_t) {
      if (entered.fetch_add(1) == 1) blocked.Notify();
      release.WaitForNotification();
    });
  });
  blocked.WaitForNotification();
  // Caller B's helper task queues behind A's; B does all its iterations itself and returns.
  absl::Notification b_done;
  std::atomic<int> sum{0};
  std::thread b([&] {
    pool.ParallelFor(50, [&](size_t i) { sum.fetch_add(static_cast<int>(i)); });
    b_done.Notify();
  });
  EXPECT_TRUE(b_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(sum.load(), 1225);
  release.Notify();
  a.join();
  b.join();
}

}  // namespace
}  // namespace knncluster
