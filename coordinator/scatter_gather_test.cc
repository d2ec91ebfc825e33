#include "coordinator/scatter_gather.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/client_context.h>

#include "coordinator/fake_worker_testing.h"
#include "coordinator/sharder.h"
#include "coordinator/worker_pool.h"
#include "core/base/status_macros.h"
#include "core/estimators/params.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rpc/convert.h"

namespace knncluster::coordinator {
namespace {

using ::testing::HasSubstr;
using testing::FakeWorker;

// Data with many ties and duplicates: small integers.
Matrix TiedData(size_t rows, size_t cols, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> d(0, 3);
  Matrix m(rows, cols);
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j) m.at(i, j) = d(gen) * 0.5;
  return m;
}

void Load(const WorkerHandle& w, const std::string& shard_id, const Matrix& all, size_t begin,
          size_t end, const NeighborsParams& params) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::LoadShardResponse resp;
  auto writer = w.stub->LoadShard(&ctx, &resp);
  v1::LoadShardRequest h;
  h.mutable_header()->set_shard_id(shard_id);
  h.mutable_header()->set_rows(end - begin);
  h.mutable_header()->set_cols(all.cols());
  h.mutable_header()->set_first_global_index(static_cast<int64_t>(begin));
  rpc::ToProto(params, h.mutable_header()->mutable_index_params());
  ASSERT_TRUE(writer->Write(h));
  v1::LoadShardRequest rows;
  rpc::ToProto(all.view().Slice(begin, end), rows.mutable_rows());
  ASSERT_TRUE(writer->Write(rows));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
}

// Loads the rows `ids` of `all` (ascending) as a spatial shard listing their global indices.
void LoadIds(const WorkerHandle& w, const std::string& shard_id, const Matrix& all,
             const std::vector<int64_t>& ids, const NeighborsParams& params) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::LoadShardResponse resp;
  auto writer = w.stub->LoadShard(&ctx, &resp);
  v1::LoadShardRequest h;
  h.mutable_header()->set_shard_id(shard_id);
  h.mutable_header()->set_rows(ids.size());
  h.mutable_header()->set_cols(all.cols());
  h.mutable_header()->mutable_global_indices()->Assign(ids.begin(), ids.end());
  rpc::ToProto(params, h.mutable_header()->mutable_index_params());
  ASSERT_TRUE(writer->Write(h));
  v1::LoadShardRequest rows;
  rpc::ToProto(Matrix::Gather(all, ids), rows.mutable_rows());
  ASSERT_TRUE(writer->Write(rows));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
}

class ScatterGatherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkerPoolOptions o;
    pool_ = std::make_unique<WorkerPool>(o);
    for (int i = 0; i < 3; ++i) {
      workers_.push_back(std::make_unique<FakeWorker>());
      ASSERT_TRUE(pool_->Register("w" + std::to_string(i), workers_.back()->address(), 1, 0,
                                  absl::Now())
                      .ok());
    }
    data_ = TiedData(301, 5, 7);
    queries_ = TiedData(57, 5, 8);
  }

  // Four shards over three workers (w0 holds two); with `replicas` 2, shard s also lives on the
  // worker after its owner (w0 -> w1 -> w2 -> w0).
  std::vector<ShardLocation> Place(const NeighborsParams& params, int replicas = 1) {
    const size_t cuts[] = {0, 80, 150, 151, 301};
    const char* owners[] = {"w0", "w1", "w0", "w2"};
    std::vector<ShardLocation> out;
    for (size_t s = 0; s < 4; ++s) {
      const std::string id = "m@" + std::to_string(++generation_) + "/" + std::to_string(s);
      ShardLocation loc;
      loc.shard_id = id;
      for (int r = 0; r < replicas; ++r) {
        const std::string w = "w" + std::to_string((owners[s][1] - '0' + r) % 3);
        Load(*pool_->Get(w), id, data_, cuts[s], cuts[s + 1], params);
        loc.worker_ids.push_back(w);
      }
      loc.first_global_index = static_cast<int64_t>(cuts[s]);
      loc.rows = cuts[s + 1] - cuts[s];
      out.push_back(std::move(loc));
    }
    return out;
  }

  std::unique_ptr<WorkerPool> pool_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
  Matrix data_, queries_;
  int generation_ = 0;
};

TEST_F(ScatterGatherTest, EqualsSingleProcessSearchBitForBit) {
  ThreadPool threads(2);
  ScatterGatherOptions so;
  so.max_query_bytes = 7 * 5 * sizeof(double);  // 7 queries per call: many chunks
  ScatterGather sg(pool_.get(), &threads, so);
  for (double p : {1.0, 2.0, 3.0, 1.5, HUGE_VAL}) {
    for (Algorithm a : {Algorithm::kKdTree, Algorithm::kBallTree, Algorithm::kBrute}) {
      NeighborsParams params;
      params.p = p;
      params.algorithm = a;
      params.leaf_size = 3;
      const std::vector<ShardLocation> shards = Place(params);
      auto oracle = BuildIndex(std::make_shared<const Matrix>(data_), {}, params.index_options());
      ASSERT_TRUE(oracle.ok());
      auto metric = Minkowski::Create(p);
      for (int k : {1, 5, 301}) {
        auto want = (*oracle)->KNeighbors(queries_, k, nullptr);
        auto got = sg.Search(shards, queries_, k, *metric, absl::InfiniteFuture());
        ASSERT_TRUE(want.ok() && got.ok()) << got.status();
        EXPECT_EQ(got->k, want->k);
        EXPECT_EQ(got->indices, want->indices) << "p=" << p << " k=" << k;
        EXPECT_EQ(got->distances, want->distances) << "p=" << p << " k=" << k;
      }
    }
  }
}

TEST_F(ScatterGatherTest, OneCallPerWorkerPerBatch) {
  ScatterGather sg(pool_.get(), nullptr, {});
  const std::vector<ShardLocation> shards = Place(NeighborsParams());
  auto got = sg.SearchRdist(shards, queries_, 3, absl::InfiniteFuture());
  ASSERT_TRUE(got.ok());
  for (auto& w : workers_) EXPECT_EQ(w->service().searches(), 1);
}

// A worker answering an index outside its model's rows, or padding (-1) in a row the coordinator
// gave no distance bound, fails the batch INTERNAL, naming it.
TEST_F(ScatterGatherTest, AnIndexOutsideTheModelIsAMalformedAnswer) {
  ScatterGather sg(pool_.get(), nullptr, {});
  const std::vector<ShardLocation> shards = Place(NeighborsParams());
  auto metric = Minkowski::Create(2);
  for (const int64_t bad : {int64_t{301}, int64_t{-2}, int64_t{1} << 40}) {
    workers_[1]->service().SetBadIndex(bad);
    auto got = sg.Search(shards, queries_, 3, *metric, absl::InfiniteFuture());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInternal) << bad;
    EXPECT_THAT(got.status().message(),
                HasSubstr(absl::StrCat("sent a malformed answer: returned global index ", bad,
                                       " outside [0, 301)")));
  }
  workers_[1]->service().SetBadIndex(kNoNeighborId);
  auto got = sg.Search(shards, queries_, 3, *metric, absl::InfiniteFuture());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(got.status().message(),
              HasSubstr(absl::StrCat("returned no neighbour (index -1) in row ",
                                     queries_.rows() - 1, ", which had no distance bound")));
  workers_[1]->service().SetBadIndex(std::nullopt);
  EXPECT_TRUE(sg.Search(shards, queries_, 3, *metric, absl::InfiniteFuture()).ok());
}

TEST_F(ScatterGatherTest, StoppedWorkerFailsTheBatchNamingShardAndWorker) {
  ScatterGatherOptions so;
  so.rpc_deadline = absl::Seconds(5);
  ScatterGather sg(pool_.get(), nullptr, so);
  const std::vector<ShardLocation> shards = Place(NeighborsParams());
  workers_[1]->Stop();
  auto got = sg.SearchRdist(shards, queries_, 3, absl::InfiniteFuture());
  ASSERT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr("shard " + shards[1].shard_id + " is unavailable"));
  EXPECT_THAT(got.status().message(), HasSubstr("worker w1 ("));
  EXPECT_FALSE(pool_->IsAlive("w1"));
  // Now known dead: fails before any call, still naming the shard.
  got = sg.SearchRdist(shards, queries_, 3, absl::InfiniteFuture());
  ASSERT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr(shards[1].shard_id));
  EXPECT_THAT(got.status().message(), HasSubstr("dead"));
}

TEST_F(ScatterGatherTest, LostShardIsReported) {
  std::vector<std::string> lost;
  ScatterGatherOptions so;
  so.on_shards_lost = [&](const std::string&, const std::vector<std::string>& ids) { lost = ids; };
  ScatterGather sg(pool_.get(), nullptr, so);
  const std::vector<ShardLocation> shards = Place(NeighborsParams());
  workers_[2]->service().Clear();  // as if it restarted
  auto got = sg.SearchRdist(shards, queries_, 3, absl::InfiniteFuture());
  ASSERT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr(shards[3].shard_id));
  EXPECT_EQ(lost, std::vector<std::string>{shards[3].shard_id});
  EXPECT_TRUE(pool_->IsAlive("w2"));  // NOT_FOUND is the shard's problem, not the worker's
}


Minkowski Euclid() { return *Minkowski::Create(2); }

// The oracle: a single-process index over rows [begin, end) of data (ids = row numbers).
absl::StatusOr<KNeighborsResult> Oracle(const Matrix& data, size_t begin, size_t end,
                                        MatrixView queries, int k) {
  std::vector<int64_t> ids;
  for (size_t i = begin; i < end; ++i) ids.push_back(static_cast<int64_t>(i));
  auto rows = std::make_shared<const Matrix>(Matrix::Gather(data, ids));
  KNN_ASSIGN_OR_RETURN(auto index, BuildIndex(rows, ids, NeighborsParams().index_options()));
  return index->KNeighbors(queries, k, nullptr);  // true distances (p = 2)
}

TEST_F(ScatterGatherTest, ReplicasAnswerExactlyWhenAWorkerStops) {
  ScatterGatherOptions so;
  so.max_query_bytes = 7 * 5 * sizeof(double);  // many chunks
  ScatterGather sg(pool_.get(), nullptr, so);
  const std::vector<ShardLocation> shards = Place(NeighborsParams(), /*replicas=*/2);
  workers_[1]->Stop();  // holds copies of shards 0, 1 and 2
  for (int k : {1, 5, 301}) {
    auto want = Oracle(data_, 0, data_.rows(), queries_, k);
    auto got = sg.Search(shards, queries_, k, Euclid(), absl::InfiniteFuture());
    ASSERT_TRUE(want.ok() && got.ok()) << got.status();
    EXPECT_EQ(got->indices, want->indices) << "k=" << k;
    EXPECT_EQ(got->distances, want->distances) << "k=" << k;
  }
  EXPECT_FALSE(pool_->IsAlive("w1"));
}

TEST_F(ScatterGatherTest, HungWorkerDeclaredDeadIsCancelledAndItsShardsRetried) {
  ScatterGatherOptions so;
  so.liveness_poll = absl::Milliseconds(20);
  ScatterGather sg(pool_.get(), nullptr, so);
  const std::vector<ShardLocation> shards = Place(NeighborsParams(), /*replicas=*/2);
  workers_[2]->service().SetSearchDelay(absl::Seconds(60));  // a partition: calls just hang
  // The liveness loop's verdict, 300 ms into the call.
  std::thread verdict([&] {
    absl::SleepFor(absl::Milliseconds(300));
    pool_->ReportCallFailure("w2", absl::UnavailableError("missed heartbeats"));
  });
  const absl::Time start = absl::Now();
  auto got = sg.Search(shards, queries_, 5, Euclid(), start + absl::Seconds(30));
  verdict.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  auto want = Oracle(data_, 0, data_.rows(), queries_, 5);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(got->indices, want->indices);
  EXPECT_EQ(got->distances, want->distances);
}

TEST_F(ScatterGatherTest, NoLiveCopyFailsNamingTheShardUnlessPartialIsAllowed) {
  ScatterGather sg(pool_.get(), nullptr, {});
  const std::vector<ShardLocation> shards = Place(NeighborsParams());
  workers_[2]->Stop();  // the only copy of shard 3: rows [151, 301)
  auto got = sg.SearchRdist(shards, queries_, 5, absl::InfiniteFuture());
  ASSERT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr("shard " + shards[3].shard_id));
  // Partial: the answer over the other shards, exactly, and the missing shard named. (Twice:
  // the second time the worker is known dead before any call.)
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<std::string> missing;
    got = sg.Search(shards, queries_, 5, Euclid(), absl::InfiniteFuture(), nullptr, &missing);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(missing, std::vector<std::string>{shards[3].shard_id});
    auto want = Oracle(data_, 0, 151, queries_, 5);
    ASSERT_TRUE(want.ok());
    EXPECT_EQ(got->indices, want->indices);
    EXPECT_EQ(got->distances, want->distances);
  }
  // Complete answers list nothing.
  workers_[2] = nullptr;
  std::vector<std::string> missing = {"stale"};
  const std::vector<ShardLocation> three(shards.begin(), shards.begin() + 3);
  got = sg.SearchRdist(three, queries_, 5, absl::InfiniteFuture(), nullptr, &missing);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(missing.empty());
}

TEST_F(ScatterGatherTest, EveryCopyDownFailsNamingTheShardAndEachReplica) {
  ScatterGather sg(pool_.get(), nullptr, {});
  const std::vector<ShardLocation> shards = Place(NeighborsParams(), /*replicas=*/2);
  workers_[1]->Stop();
  workers_[2]->Stop();  // shard 1 lives on w1 and w2
  auto got = sg.SearchRdist(shards, queries_, 5, absl::InfiniteFuture());
  ASSERT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr("shard " + shards[1].shard_id + " is unavailable"));
  EXPECT_THAT(got.status().message(), HasSubstr("worker w1 ("));
  EXPECT_THAT(got.status().message(), HasSubstr("worker w2 ("));
}

}  // namespace
}  // namespace knncluster::coordinator

namespace knncluster::coordinator {
namespace {

// Spatial shards with a routing grid: each query goes only to the shards its neighbours can be
// in (most through the grid's one-shard cells, the rest through the per-query bound), and the
// answer equals a single-process search bit for bit.
class RoutedScatterGatherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkerPoolOptions o;
    pool_ = std::make_unique<WorkerPool>(o);
    for (int i = 0; i < 2; ++i) {
      workers_.push_back(std::make_unique<FakeWorker>());
      ASSERT_TRUE(pool_->Register("w" + std::to_string(i), workers_.back()->address(), 1, 0,
                                  absl::Now())
                      .ok());
    }
    // 2,000 rows in the unit square, sorted by x, so that contiguous ranges are regions.
    std::mt19937 gen(11);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<std::pair<double, double>> rows(2000);
    for (auto& r : rows) r = {u(gen), u(gen)};
    std::sort(rows.begin(), rows.end());
    data_ = Matrix(rows.size(), 2);
    for (size_t i = 0; i < rows.size(); ++i) {
      data_.at(i, 0) = rows[i].first;
      data_.at(i, 1) = rows[i].second;
    }
    // Queries inside the grid, on cell edges, and outside it.
    queries_ = Matrix(600, 2);
    for (size_t i = 0; i < 600; ++i) {
      queries_.at(i, 0) = i < 500 ? u(gen) : -0.5 + 2 * u(gen);
      queries_.at(i, 1) = i < 500 ? u(gen) : -0.5 + 2 * u(gen);
    }
    queries_.at(0, 0) = 0.5;  // on cell edges (16 cells per unit)
    queries_.at(0, 1) = 0.25;
  }

  std::vector<ShardLocation> Place(const NeighborsParams& params) {
    const size_t cuts[] = {0, 700, 1300, 2000};
    std::vector<ShardLocation> out;
    for (size_t s = 0; s < 3; ++s) {
      ShardLocation loc;
      loc.shard_id = "r@" + std::to_string(++generation_) + "/" + std::to_string(s);
      const std::string w = s == 1 ? "w1" : "w0";
      Load(*pool_->Get(w), loc.shard_id, data_, cuts[s], cuts[s + 1], params);
      loc.worker_ids = {w};
      loc.first_global_index = static_cast<int64_t>(cuts[s]);
      loc.rows = cuts[s + 1] - cuts[s];
      loc.box_lo = {HUGE_VAL, HUGE_VAL};
      loc.box_hi = {-HUGE_VAL, -HUGE_VAL};
      for (size_t i = cuts[s]; i < cuts[s + 1]; ++i) {
        for (size_t j = 0; j < 2; ++j) {
          loc.box_lo[j] = std::min(loc.box_lo[j], data_.at(i, j));
          loc.box_hi[j] = std::max(loc.box_hi[j], data_.at(i, j));
        }
      }
      out.push_back(std::move(loc));
    }
    return out;
  }

  // As ModelManager::BuildRoutingGrid: 16 x 16 cells over the rows' box, each centre's exact
  // k-th distance from the cluster.
  RoutingGrid Grid(const ScatterGather& sg, const std::vector<ShardLocation>& shards, size_t k,
                   const Minkowski& metric) {
    RoutingGrid g;
    g.k = k;
    g.cells_per_dim = 16;
    g.lo = {0, 0};
    g.width = {1.0 / 16, 1.0 / 16};
    Matrix centers(256, 2);
    for (size_t c = 0; c < 256; ++c) g.Center(c, centers.row(c));
    auto nb = sg.Search(shards, centers, k, metric, absl::InfiniteFuture());
    EXPECT_TRUE(nb.ok()) << nb.status();
    for (size_t c = 0; c < 256; ++c) g.kth_dist.push_back(nb->distance(c, k - 1));
    g.ComputeSoleShards(shards, metric);
    return g;
  }

  std::unique_ptr<WorkerPool> pool_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
  Matrix data_, queries_;
  int generation_ = 0;
};

TEST_F(RoutedScatterGatherTest, RoutedAnswersEqualSingleProcessSearchBitForBit) {
  ThreadPool threads(2);
  ScatterGatherOptions so;
  so.max_query_bytes = 97 * 2 * sizeof(double);  // several chunks
  ScatterGather sg(pool_.get(), &threads, so);
  for (double p : {1.0, 2.0, 3.0, 1.5, HUGE_VAL}) {
    NeighborsParams params;
    params.p = p;
    params.algorithm = Algorithm::kKdTree;
    const std::vector<ShardLocation> shards = Place(params);
    auto metric = Minkowski::Create(p);
    ASSERT_TRUE(metric.ok());
    const RoutingGrid grid = Grid(sg, shards, 8, *metric);
    ASSERT_EQ(grid.sole_shard.size(), 256u);
    ASSERT_EQ(grid.shards.size(), 3u);
    const size_t sole = std::count_if(grid.sole_shard.begin(), grid.sole_shard.end(),
                                      [](uint8_t s) { return s != RoutingGrid::kSeveral; });
    EXPECT_GT(sole, 64u) << "p=" << p;  // both paths are exercised
    EXPECT_LT(sole, 256u) << "p=" << p;
    auto oracle = BuildIndex(std::make_shared<const Matrix>(data_), {}, params.index_options());
    ASSERT_TRUE(oracle.ok());
    int bounded = 0;
    for (const auto& w : workers_) bounded -= w->service().bounded_rows();
    for (int k : {1, 8}) {
      auto want = (*oracle)->KNeighbors(queries_, k, nullptr);
      auto got = sg.Search(shards, queries_, k, *metric, absl::InfiniteFuture(), &grid);
      ASSERT_TRUE(want.ok() && got.ok()) << got.status();
      EXPECT_EQ(got->indices, want->indices) << "p=" << p << " k=" << k;
      EXPECT_EQ(got->distances, want->distances) << "p=" << p << " k=" << k;
    }
    // Queries sent to several shards went with their distance bound (and the workers searched
    // within it), so the equality above covers bounded, padded rows.
    for (const auto& w : workers_) bounded += w->service().bounded_rows();
    EXPECT_GT(bounded, 0) << "p=" << p;
    // The one-shard cells are sound: every neighbour of a query inside such a cell lies in
    // that shard.
    auto want = (*oracle)->KNeighbors(queries_, 8, nullptr);
    for (size_t q = 0; q < 500; ++q) {
      bool inside = false;
      const size_t cell = grid.CellOf(queries_.row(q), &inside);
      ASSERT_TRUE(inside);
      if (grid.sole_shard[cell] == RoutingGrid::kSeveral) continue;
      const ShardLocation& s = shards[grid.sole_shard[cell]];
      for (size_t j = 0; j < 8; ++j) {
        const int64_t id = want->index(q, j);
        EXPECT_TRUE(id >= s.first_global_index &&
                    id < s.first_global_index + static_cast<int64_t>(s.rows))
            << "p=" << p << " query " << q << " neighbour " << id << " outside " << s.shard_id;
      }
    }
  }
}

TEST_F(RoutedScatterGatherTest, RoutedQueriesGoOnlyToTheirShardsWorkers) {
  ScatterGather sg(pool_.get(), nullptr, {});
  NeighborsParams params;
  const std::vector<ShardLocation> shards = Place(params);
  auto metric = Minkowski::Create(2);
  const RoutingGrid grid = Grid(sg, shards, 4, *metric);
  const int before0 = workers_[0]->service().searches();
  const int before1 = workers_[1]->service().searches();
  // Queries deep inside shard 0's region (x < 0.2) need only w0, which holds it.
  Matrix left(20, 2);
  for (size_t i = 0; i < 20; ++i) {
    left.at(i, 0) = 0.01 * static_cast<double>(i % 15) + 0.02;
    left.at(i, 1) = 0.05 * static_cast<double>(i);
  }
  auto got = sg.Search(shards, left, 4, *metric, absl::InfiniteFuture(), &grid);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(workers_[0]->service().searches(), before0 + 1);
  EXPECT_EQ(workers_[1]->service().searches(), before1);  // w1 holds only the middle shard
}

TEST_F(RoutedScatterGatherTest, AllowPartialSendsNoDistanceBounds) {
  // A bound assumes every shard answers; with allow_partial a shard may be missing, and then the
  // others must give their own k nearest, unbounded.
  ScatterGather sg(pool_.get(), nullptr, {});
  NeighborsParams params;
  const std::vector<ShardLocation> shards = Place(params);
  auto metric = Minkowski::Create(2);
  const RoutingGrid grid = Grid(sg, shards, 4, *metric);
  auto oracle = BuildIndex(std::make_shared<const Matrix>(data_), {}, params.index_options());
  ASSERT_TRUE(oracle.ok());
  const int before = workers_[0]->service().bounded_rows() + workers_[1]->service().bounded_rows();
  std::vector<std::string> missing;
  auto got = sg.Search(shards, queries_, 4, *metric, absl::InfiniteFuture(), &grid, &missing);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(missing.empty());
  EXPECT_EQ(workers_[0]->service().bounded_rows() + workers_[1]->service().bounded_rows(), before);
  auto want = (*oracle)->KNeighbors(queries_, 4, nullptr);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(got->indices, want->indices);
  EXPECT_EQ(got->distances, want->distances);
  // The same search without allow_partial sends bounds.
  ASSERT_TRUE(sg.Search(shards, queries_, 4, *metric, absl::InfiniteFuture(), &grid).ok());
  EXPECT_GT(workers_[0]->service().bounded_rows() + workers_[1]->service().bounded_rows(), before);
}

// Spatial shards with halos (as ModelManager::Fit cuts them): a query inside a shard's box goes
// to that shard alone, and every answer, routed or fanned out to both shards (which then hold
// some rows twice), equals a single search.
TEST_F(RoutedScatterGatherTest, HaloShardsAnswerAloneAndExactly) {
  ThreadPool threads(2);
  ScatterGather sg(pool_.get(), &threads, {});
  const size_t k = 8;
  // HaloWidth's halos, and halos an eighth as wide, so thin that most queries near the cut have
  // neighbours beyond them and must still go to both shards.
  for (const auto& [p, thin] : std::vector<std::pair<double, double>>{
           {1.0, 1.0}, {2.0, 1.0}, {3.0, 1.0}, {HUGE_VAL, 1.0}, {1.0, 0.125}, {2.0, 0.125}}) {
    NeighborsParams params;
    params.p = p;
    params.algorithm = Algorithm::kKdTree;
    auto metric = Minkowski::Create(p);
    ASSERT_TRUE(metric.ok());
    std::vector<SpatialPart> parts = PartitionSpatially(data_, 2);
    ASSERT_EQ(parts.size(), 2u);
    const double halo = HaloWidth(parts, data_.rows(), k) * thin;
    AddHalos(data_, halo, &parts);
    std::vector<ShardLocation> shards;
    for (size_t s = 0; s < 2; ++s) {
      ShardLocation loc;
      loc.shard_id = "h@" + std::to_string(++generation_) + "/" + std::to_string(s);
      auto ids = std::make_shared<std::vector<int64_t>>();
      std::merge(parts[s].ids.begin(), parts[s].ids.end(), parts[s].halo_ids.begin(),
                 parts[s].halo_ids.end(), std::back_inserter(*ids));
      const std::string w = "w" + std::to_string(s);
      LoadIds(*pool_->Get(w), loc.shard_id, data_, *ids, params);
      loc.worker_ids = {w};
      loc.rows = ids->size();
      loc.global_ids = std::move(ids);
      loc.box_lo = parts[s].lo;
      loc.box_hi = parts[s].hi;
      loc.halo = halo;
      loc.halo_rows = parts[s].halo_ids.size();
      ASSERT_GT(loc.halo_rows, 0u);
      shards.push_back(std::move(loc));
    }
    const RoutingGrid grid = Grid(sg, shards, k, *metric);  // itself a search of both shards
    auto oracle = BuildIndex(std::make_shared<const Matrix>(data_), {}, params.index_options());
    ASSERT_TRUE(oracle.ok());
    // The fixture's queries, and queries outside the rows' box near either end of the cut, whose
    // neighbours lie on both sides of it.
    const size_t cut = parts[0].hi[0] <= parts[1].lo[0] ? 0 : 1;
    const double at = (parts[0].hi[cut] + parts[1].lo[cut]) / 2;
    Matrix queries(queries_.rows() + 40, 2);
    for (size_t i = 0; i < queries.rows(); ++i) {
      if (i < queries_.rows()) {
        for (size_t j = 0; j < 2; ++j) queries.at(i, j) = queries_.at(i, j);
        continue;
      }
      const size_t e = i - queries_.rows();
      queries.at(i, cut) = at + 0.01 * (static_cast<double>(e % 5) - 2);
      queries.at(i, 1 - cut) = e < 20 ? -0.02 - 0.01 * static_cast<double>(e % 4)
                                      : 1.02 + 0.01 * static_cast<double>(e % 4);
    }
    const RoutingGrid* routings[] = {&grid, nullptr};
    for (const RoutingGrid* routing : routings) {
      for (size_t kk : {size_t{1}, k}) {
        auto want = (*oracle)->KNeighbors(queries, static_cast<int>(kk), nullptr);
        auto got = sg.Search(shards, queries, kk, *metric, absl::InfiniteFuture(), routing);
        ASSERT_TRUE(want.ok() && got.ok()) << got.status();
        EXPECT_EQ(got->indices, want->indices) << "p=" << p << " k=" << kk << " x" << thin;
        EXPECT_EQ(got->distances, want->distances) << "p=" << p << " k=" << kk << " x" << thin;
      }
    }
    if (thin != 1.0) continue;
    // The queries inside the grid: each to one worker (no row sent to both, with its bound).
    const int bounded = workers_[0]->service().bounded_rows() +
                        workers_[1]->service().bounded_rows();
    ASSERT_TRUE(sg.Search(shards, queries_.view().Slice(0, 500), k, *metric,
                          absl::InfiniteFuture(), &grid)
                    .ok());
    EXPECT_EQ(workers_[0]->service().bounded_rows() + workers_[1]->service().bounded_rows(),
              bounded)
        << "p=" << p;
    // Without the halos the same queries near the cut go to both workers.
    for (ShardLocation& s : shards) s.halo = 0;
    ASSERT_TRUE(sg.Search(shards, queries_.view().Slice(0, 500), k, *metric,
                          absl::InfiniteFuture(), &grid)
                    .ok());
    EXPECT_GT(workers_[0]->service().bounded_rows() + workers_[1]->service().bounded_rows(),
              bounded)
        << "p=" << p;
  }
}

TEST(RoutingGridTest, CellOfClampsAndSaysWhetherTheQueryIsInside) {
  RoutingGrid g;
  g.cells_per_dim = 4;
  g.lo = {0, 10};
  g.width = {0.25, 1};
  bool inside = false;
  const double a[] = {0.3, 12.5};
  EXPECT_EQ(g.CellOf(a, &inside), 1u * 4 + 2);
  EXPECT_TRUE(inside);
  const double b[] = {-1, 13.999};
  EXPECT_EQ(g.CellOf(b, &inside), 0u * 4 + 3);
  EXPECT_FALSE(inside);
  const double c[] = {1.0, 14.0};  // the far edges: clamped into the last cells
  EXPECT_EQ(g.CellOf(c, &inside), 3u * 4 + 3);
  EXPECT_FALSE(inside);
  const double d[] = {0.0, 10.0};
  EXPECT_EQ(g.CellOf(d, &inside), 0u);
  EXPECT_TRUE(inside);
}

}  // namespace
}  // namespace knncluster::coordinator
