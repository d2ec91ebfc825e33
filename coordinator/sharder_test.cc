#include "coordinator/sharder.h"

#include <algorithm>
#include <cmath>
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

// A halo holds exactly the other parts' rows inside the box grown by the width, ascending.
TEST(SharderTest, HalosHoldTheOtherPartsRowsNearTheBox) {
  Matrix data(20000, 3);
  uint64_t state = 12345;
  for (size_t i = 0; i < data.rows(); ++i) {
    for (size_t j = 0; j < 3; ++j) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      data.at(i, j) = static_cast<double>(state >> 11) / 9007199254740992.0;  // [0, 1)
    }
  }
  std::vector<SpatialPart> parts = PartitionSpatially(data, 3);
  // 20,000 rows in about the unit cube: a cube of side (10 / 20000)^(1/3) = 0.079 holds 10.
  const double halo = HaloWidth(parts, data.rows(), 10);
  EXPECT_NEAR(halo, 2 * std::cbrt(10.0 / 20000), 0.005);
  AddHalos(data, halo, &parts);
  size_t in_halos = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const SpatialPart& p = parts[i];
    EXPECT_TRUE(std::is_sorted(p.halo_ids.begin(), p.halo_ids.end()));
    std::vector<int64_t> expected;
    for (size_t r = 0; r < data.rows(); ++r) {
      if (std::binary_search(p.ids.begin(), p.ids.end(), static_cast<int64_t>(r))) continue;
      bool near = true;
      for (size_t j = 0; j < 3; ++j) {
        near = near && data.at(r, j) >= p.lo[j] - halo && data.at(r, j) <= p.hi[j] + halo;
      }
      if (near) expected.push_back(static_cast<int64_t>(r));
    }
    EXPECT_EQ(p.halo_ids, expected) << "part " << i;
    EXPECT_FALSE(p.halo_ids.empty());
    in_halos += p.halo_ids.size();
  }
  EXPECT_LT(in_halos, data.rows());  // bands along the cuts, not everything
  AddHalos(data, 0, &parts);         // no width: no halos
  for (const SpatialPart& p : parts) EXPECT_TRUE(p.halo_ids.empty());
  // Parts with no volume get no halo width.
  Matrix flat(100, 2);
  for (size_t i = 0; i < flat.rows(); ++i) flat.at(i, 0) = static_cast<double>(i);
  EXPECT_EQ(HaloWidth(PartitionSpatially(flat, 2), flat.rows(), 5), 0.0);
}

}  // namespace
}  // namespace knncluster::coordinator
