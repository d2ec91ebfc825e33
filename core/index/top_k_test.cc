#include "core/index/top_k.h"

#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace knncluster {
namespace {

TEST(TopKTest, KeepsSmallestAndBreaksTiesById) {
  TopK heap(3);
  EXPECT_EQ(heap.WorstRdist(), std::numeric_limits<double>::infinity());
  heap.Push(2.0, 7);
  heap.Push(1.0, 9);
  heap.Push(2.0, 3);
  EXPECT_EQ(heap.WorstRdist(), 2.0);
  heap.Push(2.0, 5);  // ties with the worst (2.0, 7) and has a smaller id: replaces it
  heap.Push(2.0, 8);  // ties, larger id: rejected
  heap.Push(3.0, 0);  // farther: rejected
  std::vector<Neighbor> got = heap.TakeSorted();
  std::vector<Neighbor> want = {{1.0, 9}, {2.0, 3}, {2.0, 5}};
  EXPECT_EQ(got, want);
  EXPECT_EQ(heap.size(), 0u);
}

TEST(TopKTest, MatchesFullSortOnRandomTies) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = 1 + rng() % 50, k = 1 + rng() % 60;
    std::vector<Neighbor> all;
    TopK heap(k);
    for (size_t i = 0; i < n; ++i) {
      Neighbor nb{static_cast<double>(rng() % 5), static_cast<int64_t>(rng() % 1000)};
      all.push_back(nb);
      heap.Push(nb.rdist, nb.id);
    }
    std::sort(all.begin(), all.end(), NeighborLess);
    all.resize(std::min(k, n));
    EXPECT_EQ(heap.TakeSorted(), all);
  }
}

TEST(TopKTest, SortedAndHeapRepresentationsAgree) {
  // k <= kMaxSortedK keeps a sorted array, larger k a heap: both must keep the same set and
  // report the same worst after every push.
  std::mt19937 rng(3);
  for (size_t k : {size_t{1}, TopK::kMaxSortedK, TopK::kMaxSortedK + 1, size_t{100}}) {
    TopK heap(k);
    std::vector<Neighbor> all;
    for (int i = 0; i < 500; ++i) {
      const Neighbor nb{static_cast<double>(rng() % 7), static_cast<int64_t>(rng() % 300)};
      all.push_back(nb);
      heap.Push(nb.rdist, nb.id);
      std::vector<Neighbor> sorted = all;
      std::sort(sorted.begin(), sorted.end(), NeighborLess);
      const double want_worst = sorted.size() >= k ? sorted[k - 1].rdist
                                                   : std::numeric_limits<double>::infinity();
      ASSERT_EQ(heap.WorstRdist(), want_worst) << "k=" << k << " push " << i;
    }
    std::sort(all.begin(), all.end(), NeighborLess);
    all.resize(k);
    EXPECT_EQ(heap.TakeSorted(), all) << "k=" << k;
    // Taking empties the heap, and it is reusable.
    EXPECT_EQ(heap.size(), 0u);
    EXPECT_EQ(heap.WorstRdist(), std::numeric_limits<double>::infinity());
    heap.Push(1.0, 1);
    EXPECT_EQ(heap.TakeSorted(), (std::vector<Neighbor>{{1.0, 1}}));
  }
}

TEST(MergeTopKTest, EqualsTopKOfTheUnion) {
  std::mt19937 rng(2);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t parts = 1 + rng() % 5, k = 1 + rng() % 20;
    std::vector<std::vector<Neighbor>> lists(parts);
    std::vector<Neighbor> all;
    int64_t next_id = 0;
    for (auto& list : lists) {
      const size_t len = rng() % 25;
      for (size_t i = 0; i < len; ++i) {
        list.push_back({static_cast<double>(rng() % 4), next_id++});
      }
      std::sort(list.begin(), list.end(), NeighborLess);
      if (list.size() > k) list.resize(k);
      all.insert(all.end(), list.begin(), list.end());
    }
    std::sort(all.begin(), all.end(), NeighborLess);
    if (all.size() > k) all.resize(k);
    std::vector<absl::Span<const Neighbor>> spans(lists.begin(), lists.end());
    EXPECT_EQ(MergeTopK(spans, k), all);
  }
}

TEST(MergeTopKTest, KeepsAReplicatedRowOnce) {
  std::vector<Neighbor> a = {{1, 4}, {2, 6}}, b = {{1, 4}, {3, 1}};
  std::vector<absl::Span<const Neighbor>> spans = {a, b};
  std::vector<Neighbor> want = {{1, 4}, {2, 6}, {3, 1}};
  EXPECT_EQ(MergeTopK(spans, 5), want);
}

}  // namespace
}  // namespace knncluster

namespace knncluster {
namespace {

TEST(TopKTest, ABoundRefusesFartherCandidatesKeepsTiesAndPads) {
  TopK heap(4);
  heap.Clear(2.0);
  EXPECT_EQ(heap.WorstRdist(), 2.0);
  heap.Push(3.0, 1);  // beyond the bound
  heap.Push(2.0, 9);  // at the bound: kept
  heap.Push(0.5, 4);
  EXPECT_EQ(heap.size(), 2u);
  EXPECT_EQ(heap.WorstRdist(), 2.0);  // not full: still the bound
  Neighbor out[4];
  heap.TakeSortedPadded(out);
  EXPECT_EQ(out[0], (Neighbor{0.5, 4}));
  EXPECT_EQ(out[1], (Neighbor{2.0, 9}));
  const Neighbor pad{std::numeric_limits<double>::infinity(), kNoNeighborId};
  EXPECT_EQ(out[2], pad);
  EXPECT_EQ(out[3], pad);
  // Taking clears the bound too; the heap representation (k > kMaxSortedK) bounds alike.
  EXPECT_EQ(heap.WorstRdist(), std::numeric_limits<double>::infinity());
  TopK big(TopK::kMaxSortedK + 3);
  big.Clear(1.0);
  for (int i = 0; i < 100; ++i) big.Push(static_cast<double>(i % 4) / 2, i);  // 0, .5, 1, 1.5
  EXPECT_EQ(big.size(), big.k());  // 75 within the bound, the smallest k kept
  std::vector<Neighbor> all = big.TakeSorted();
  for (const Neighbor& nb : all) EXPECT_LE(nb.rdist, 1.0);
  big.Clear(0.25);
  for (int i = 0; i < 100; ++i) big.Push(static_cast<double>(i % 4) / 2, i);
  EXPECT_EQ(big.size(), 25u);  // only the zeros
}

}  // namespace
}  // namespace knncluster
