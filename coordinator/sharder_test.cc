#include "coordinator/sharder.h"

#include <algorithm>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace knncluster::coordinator {
namespace {

TEST(SharderTest, ContiguousBalancedShardsCoverEveryRowOnce) {
  for (uint64_t rows : {1, 2, 3, 7, 100, 1797}) {
    for (size_t workers : {1, 2, 3, 5}) {
      std::vector<std::string> ids;
      for (size_t w = 0; w < workers; ++w) ids.push_back("w" + std::to_string(w));
      auto plan = PlanShards("m", 4, rows, ids);
      ASSERT_TRUE(plan.ok()) << plan.status();
      EXPECT_EQ(plan->size(), std::min<uint64_t>(rows, workers));
      int64_t next = 0;
      uint64_t lo = rows, hi = 0;
      std::set<std::string> shard_ids, used_workers;
      for (const ShardSpec& s : *plan) {
        EXPECT_EQ(s.first_global_index, next);
        EXPECT_GE(s.rows, 1u);
        next += s.rows;
        lo = std::min(lo, s.rows);
        hi = std::max(hi, s.rows);
        shard_ids.insert(s.shard_id);
        used_workers.insert(s.worker_id);
      }
      EXPECT_EQ(static_cast<uint64_t>(next), rows);
      EXPECT_LE(hi - lo, 1u);
      EXPECT_EQ(shard_ids.size(), plan->size());
      EXPECT_EQ(used_workers.size(), plan->size());
    }
  }
}

TEST(SharderTest, IdsNameModelAndGeneration) {
  auto a = PlanShards("digits-model", 1, 10, {"w1", "w2"});
  auto b = PlanShards("digits-model", 2, 10, {"w1", "w2"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)[1].shard_id, "digits-model@1/1");
  EXPECT_NE((*a)[0].shard_id, (*b)[0].shard_id);
  EXPECT_EQ(ShardId("x", 7, 3), "x@7/3");
}

TEST(SharderTest, SeveralShardsPerWorkerRoundRobin) {
  ShardingOptions o;
  o.shards_per_worker = 3;
  auto plan = PlanShards("m", 1, 100, {"a", "b"}, o);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->size(), 6u);
  EXPECT_EQ((*plan)[0].worker_id, "a");
  EXPECT_EQ((*plan)[1].worker_id, "b");
  EXPECT_EQ((*plan)[2].worker_id, "a");
}

TEST(SharderTest, Errors) {
  EXPECT_EQ(PlanShards("m", 1, 10, {}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(PlanShards("m", 1, 0, {"a"}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SharderTest, SpatialPartsCoverEveryRowOnceInTightBoxes) {
  // A 2-D grid of integer points with duplicates: ties on every cut.
  Matrix data(1003, 2);
  for (size_t i = 0; i < data.rows(); ++i) {
    data.at(i, 0) = static_cast<double>((i * 7) % 13);
    data.at(i, 1) = static_cast<double>((i * 3) % 5) * 10;  // the widest dimension first
  }
  for (size_t n : {1, 2, 3, 5}) {
    const std::vector<SpatialPart> parts = PartitionSpatially(data, n);
    ASSERT_EQ(parts.size(), n);
    std::vector<int> seen(data.rows(), 0);
    for (const SpatialPart& part : parts) {
      EXPECT_GE(part.ids.size(), data.rows() / n);
      EXPECT_LE(part.ids.size(), data.rows() / n + 1);
      EXPECT_TRUE(std::is_sorted(part.ids.begin(), part.ids.end()));
      std::vector<double> lo(2, 1e300), hi(2, -1e300);
      for (int64_t id : part.ids) {
        ++seen[static_cast<size_t>(id)];
        for (size_t j = 0; j < 2; ++j) {
          lo[j] = std::min(lo[j], data.at(static_cast<size_t>(id), j));
          hi[j] = std::max(hi[j], data.at(static_cast<size_t>(id), j));
        }
      }
      EXPECT_EQ(part.lo, lo);
      EXPECT_EQ(part.hi, hi);
    }
    for (int count : seen) EXPECT_EQ(count, 1);
  }
  // The first cut of two parts splits the widest dimension (1) at its median.
  const std::vector<SpatialPart> two = PartitionSpatially(data, 2);
  EXPECT_LE(two[0].hi[1], two[1].lo[1]);
  EXPECT_TRUE(PartitionSpatially(data, 0).empty());
  EXPECT_TRUE(PartitionSpatially(data.view().Slice(0, 2), 3).empty());
}

}  // namespace
}  // namespace knncluster::coordinator
