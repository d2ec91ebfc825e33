// DatasetCache on its own: the budget, LRU eviction, pins, reservations, the class encoding.
#include "worker/dataset_cache.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster::worker {
namespace {

using ::testing::HasSubstr;

// A labeled dataset of `rows` x 2 (charged rows * 4 * 8 bytes), named by `hash`.
std::shared_ptr<const CachedDataset> Make(const std::string& hash, size_t rows) {
  std::vector<double> labels(rows);
  for (size_t i = 0; i < rows; ++i) labels[i] = static_cast<double>(i % 3);
  return std::make_shared<const CachedDataset>(hash, std::make_shared<const Matrix>(rows, 2),
                                               std::move(labels));
}

// Reserves and inserts; returns the cache's size after the insert.
size_t Put(DatasetCache* cache, const std::shared_ptr<const CachedDataset>& d) {
  absl::StatusOr<DatasetCache::Reservation> r = cache->Reserve(d->charged_bytes());
  EXPECT_TRUE(r.ok()) << r.status();
  return cache->Insert(std::move(*r), d);
}

TEST(DatasetCacheTest, ChargesFeaturesLabelsAndCodes) {
  EXPECT_EQ(*DatasetBytes(10, 3, false), 10u * 3 * 8);
  EXPECT_EQ(*DatasetBytes(10, 3, true), 10u * 5 * 8);
  const absl::StatusOr<uint64_t> huge = DatasetBytes(uint64_t{1} << 40, uint64_t{1} << 30, false);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(huge.status().message()), HasSubstr("header.rows"));
  EXPECT_EQ(Make("a", 10)->charged_bytes(), 320u);
}

TEST(DatasetCacheTest, EvictsLeastRecentlyUsedUnpinnedDatasets) {
  uint64_t shard_bytes = 0;
  DatasetCache cache(1000, [&] { return shard_bytes; });  // room for three 320-byte datasets
  EXPECT_EQ(Put(&cache, Make("a", 10)), 1u);
  EXPECT_EQ(Put(&cache, Make("b", 10)), 2u);
  EXPECT_EQ(Put(&cache, Make("c", 10)), 3u);
  EXPECT_EQ(cache.cached_bytes(), 960u);
  EXPECT_TRUE(cache.Touch("a"));  // b is now the least recently used
  EXPECT_FALSE(cache.Touch("zz"));

  EXPECT_EQ(Put(&cache, Make("d", 10)), 3u);
  EXPECT_EQ(cache.evictions(), 1u);
  EXPECT_FALSE(cache.Touch("b"));
  EXPECT_TRUE(cache.Touch("a"));

  // A pinned dataset is never evicted, even when it is the least recently used.
  absl::StatusOr<DatasetCache::Pin> pin_c = cache.Acquire("c");
  ASSERT_TRUE(pin_c.ok());
  EXPECT_EQ((*pin_c)->content_hash(), "c");
  ASSERT_TRUE(cache.Touch("a"));
  ASSERT_TRUE(cache.Touch("d"));  // order now: c (pinned), a, d
  EXPECT_EQ(Put(&cache, Make("e", 10)), 3u);
  EXPECT_TRUE(cache.Touch("c"));
  EXPECT_FALSE(cache.Touch("a"));

  // Shards count against the budget too: with 700 bytes of shards, only c (pinned) and the new
  // dataset could remain, and they need 640 + 700 > 1000.
  shard_bytes = 700;
  absl::StatusOr<DatasetCache::Reservation> r = cache.Reserve(320);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(r.status().message(),
            "the dataset needs 320 bytes but only 0 of this worker's memory budget of 1000 bytes "
            "can be made free: shards hold 700 bytes, datasets pinned by running jobs 320, "
            "uploads in progress 0");
  EXPECT_EQ(cache.size(), 1u);  // d and e were evicted trying
  // Unpinned, c goes too.
  *pin_c = std::move(*cache.Acquire("c"));  // a second pin replaces the first: still pinned
  EXPECT_FALSE(cache.Reserve(320).ok());
  pin_c = absl::NotFoundError("released");  // the last pin goes
  shard_bytes = 0;
  EXPECT_TRUE(cache.Reserve(1000).ok());
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.cached_bytes(), 0u);
}

TEST(DatasetCacheTest, RefusesWhatCanNeverFitAndCountsReservations) {
  DatasetCache cache(1000, nullptr);
  ASSERT_EQ(Put(&cache, Make("a", 10)), 1u);
  absl::StatusOr<DatasetCache::Reservation> r = cache.Reserve(1001);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(r.status().message(),
            "the dataset needs 1001 bytes, more than this worker's whole memory budget of 1000 "
            "bytes");
  EXPECT_TRUE(cache.Touch("a"));  // nothing was evicted for it

  // Two uploads in progress hold their room until they finish or fail.
  absl::StatusOr<DatasetCache::Reservation> first = cache.Reserve(700);
  ASSERT_TRUE(first.ok());  // evicts a
  EXPECT_FALSE(cache.Touch("a"));
  absl::StatusOr<DatasetCache::Reservation> second = cache.Reserve(600);
  ASSERT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("uploads in progress 700"));
  first = absl::CancelledError("upload failed");  // the room returns
  second = cache.Reserve(600);
  EXPECT_TRUE(second.ok());
}

TEST(DatasetCacheTest, SameHashInsertedTwiceKeepsTheFirst) {
  DatasetCache cache(10000, nullptr);
  auto one = Make("h", 10);
  auto two = Make("h", 10);
  absl::StatusOr<DatasetCache::Reservation> r1 = cache.Reserve(one->charged_bytes());
  absl::StatusOr<DatasetCache::Reservation> r2 = cache.Reserve(two->charged_bytes());
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(cache.Insert(std::move(*r1), one), 1u);
  EXPECT_EQ(cache.Insert(std::move(*r2), two), 1u);
  EXPECT_EQ(cache.cached_bytes(), 320u);
  absl::StatusOr<DatasetCache::Pin> pin = cache.Acquire("h");
  ASSERT_TRUE(pin.ok());
  EXPECT_EQ(&**pin, one.get());
  // Both reservations were consumed: the whole budget less one dataset is free.
  EXPECT_TRUE(cache.Reserve(10000 - 320).ok());

  absl::StatusOr<DatasetCache::Pin> missing = cache.Acquire("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "dataset nope is not cached on this worker");
}

TEST(DatasetCacheTest, ClassesAreEncodedOnceForConcurrentCallers) {
  auto d = std::make_shared<const CachedDataset>("h", std::make_shared<const Matrix>(4, 1),
                                                 std::vector<double>{7, 3, 7, 5});
  std::vector<const EncodedClasses*> seen(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { seen[t] = &*d->Classes(); });
  }
  for (std::thread& t : threads) t.join();
  for (const EncodedClasses* s : seen) EXPECT_EQ(s, seen[0]);
  EXPECT_EQ(seen[0]->classes, (std::vector<double>{3, 5, 7}));
  EXPECT_EQ(seen[0]->codes, (std::vector<double>{2, 0, 2, 1}));

  auto bad = std::make_shared<const CachedDataset>("b", std::make_shared<const Matrix>(2, 1),
                                                   std::vector<double>{0.5, 1});
  EXPECT_EQ(bad->Classes().status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace knncluster::worker
