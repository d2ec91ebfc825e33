// WorkerServer end to end, in process: a real server on 127.0.0.1:0, a real channel and the
// generated stubs, a deadline on every call. The oracle is the core: one index over the whole
// data must give exactly (bit for bit) what the worker merges from its shards.
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/matrix.h"
#include "core/datasets/dataset.h"
#include "core/index/neighbor_index.h"
#include "core/model_selection/grid_search.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "knncluster/v1/coordinator.grpc.pb.h"
#include "knncluster/v1/worker.grpc.pb.h"
#include "rpc/content_hash.h"
#include "rpc/grid_convert.h"
#include "worker/shard_files.h"
#include "worker/worker_internal.h"
#include "worker/worker_server.h"

namespace knncluster::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(20);

std::string TempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/worker_test.XXXXXX");
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
}

// Integer-valued data in a small range: many ties and exact duplicate rows.
Matrix RandomIntegers(size_t rows, size_t cols, int max_value, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, max_value);
  Matrix m(rows, cols);
  for (size_t i = 0; i < rows * cols; ++i) m.data()[i] = dist(rng);
  return m;
}

v1::NeighborsParams Params(Algorithm algorithm, double p, int leaf_size = 5) {
  v1::NeighborsParams params;
  switch (algorithm) {
    case Algorithm::kKdTree:
      params.set_algorithm(v1::ALGORITHM_KD_TREE);
      break;
    case Algorithm::kBallTree:
      params.set_algorithm(v1::ALGORITHM_BALL_TREE);
      break;
    case Algorithm::kBrute:
      params.set_algorithm(v1::ALGORITHM_BRUTE);
      break;
    case Algorithm::kAuto:
      params.set_algorithm(v1::ALGORITHM_AUTO);
      break;
  }
  params.set_leaf_size(leaf_size);
  if (std::isinf(p)) {
    params.set_metric(v1::METRIC_CHEBYSHEV);
  } else {
    params.set_p(p);
  }
  return params;
}

void SetMatrix(MatrixView m, v1::Matrix* out) {
  out->set_rows(m.rows());
  out->set_cols(m.cols());
  out->mutable_values()->Assign(m.data(), m.data() + m.rows() * m.cols());
}

class WorkerServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { setenv("GRPC_VERBOSITY", "ERROR", 0); }

  void SetUp() override {
    data_dir_ = TempDir();
    StartServer(data_dir_);
  }
  void TearDown() override {
    stub_.reset();
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(data_dir_, ec);
  }

  void StartServer(const std::string& data_dir, const std::string& coordinator = "") {
    WorkerOptions options;
    options.data_dir = data_dir;
    options.threads = 2;
    options.coordinator_address = coordinator;
    options.membership_rpc_deadline = absl::Milliseconds(500);
    StartServerWith(options);
  }

  // Replaces the server with one started with `options` (on the same data directory).
  void StartServerWith(WorkerOptions options) {
    stub_.reset();
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    if (options.data_dir.empty()) options.data_dir = data_dir_;
    server_ = std::make_unique<WorkerServer>(options);
    ASSERT_TRUE(server_->Start().ok());
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(server_->bound_address(),
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = v1::Worker::NewStub(channel_);
  }

  // Streams a shard: the header, then `rows` in chunks of `chunk_rows`. Empty `ids`: the
  // contiguous range from `first`.
  grpc::Status Load(const std::string& shard_id, MatrixView rows, const std::vector<int64_t>& ids,
                    int64_t first, const v1::NeighborsParams& params,
                    v1::LoadShardResponse* response, size_t chunk_rows = 64) {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto writer = stub_->LoadShard(&context, response);
    v1::LoadShardRequest request;
    v1::ShardHeader* header = request.mutable_header();
    header->set_shard_id(shard_id);
    header->set_rows(rows.rows());
    header->set_cols(rows.cols());
    for (int64_t id : ids) header->add_global_indices(id);
    header->set_first_global_index(first);
    *header->mutable_index_params() = params;
    bool ok = writer->Write(request);
    for (size_t begin = 0; ok && begin < rows.rows(); begin += chunk_rows) {
      v1::LoadShardRequest chunk;
      SetMatrix(rows.Slice(begin, std::min(rows.rows(), begin + chunk_rows)), chunk.mutable_rows());
      ok = writer->Write(chunk);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Search(const std::vector<std::string>& shard_ids, MatrixView queries, uint32_t k,
                      v1::SearchShardsResponse* response, bool compact_indices = false) {
    v1::SearchShardsRequest request;
    for (const std::string& id : shard_ids) request.add_shard_ids(id);
    SetMatrix(queries, request.mutable_queries());
    request.set_k(k);
    request.set_compact_indices(compact_indices);
    grpc::ClientContext context;
    SetDeadline(&context);
    return stub_->SearchShards(&context, request, response);
  }

  // Streams a dataset: the header, `features` in chunks of `chunk_rows`, then `labels` in chunks
  // of `label_chunk`. Empty `hash`: the dataset's content hash.
  grpc::Status PutDataset(MatrixView features, const std::vector<double>& labels,
                          v1::PutDatasetResponse* response, std::string hash = "",
                          size_t chunk_rows = 500, size_t label_chunk = 700,
                          absl::Duration deadline = kDeadline) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    auto writer = stub_->PutDataset(&context, response);
    v1::PutDatasetRequest request;
    v1::PutDatasetHeader* header = request.mutable_header();
    header->set_content_hash(hash.empty() ? rpc::DatasetContentHash(features, labels) : hash);
    header->set_rows(features.rows());
    header->set_cols(features.cols());
    header->set_has_labels(!labels.empty());
    // Once the server has answered (an error, or already_cached), writes fail: stop writing.
    bool ok = writer->Write(request);
    for (size_t begin = 0; ok && begin < features.rows(); begin += chunk_rows) {
      v1::PutDatasetRequest chunk;
      SetMatrix(features.Slice(begin, std::min(features.rows(), begin + chunk_rows)),
                chunk.mutable_rows());
      ok = writer->Write(chunk);
    }
    for (size_t begin = 0; ok && begin < labels.size(); begin += label_chunk) {
      v1::PutDatasetRequest chunk;
      const size_t end = std::min(labels.size(), begin + label_chunk);
      chunk.mutable_labels()->mutable_values()->Assign(labels.begin() + begin,
                                                       labels.begin() + end);
      ok = writer->Write(chunk);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status RunJob(const std::string& hash, const v1::FoldJobSpec& job,
                      v1::RunFoldJobResponse* response, absl::Duration deadline = kDeadline) {
    v1::RunFoldJobRequest request;
    request.set_content_hash(hash);
    *request.mutable_job() = job;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    return stub_->RunFoldJob(&context, request, response);
  }

  grpc::Status SearchSubset(const std::vector<std::string>& shard_ids, MatrixView queries,
                            uint32_t k, const v1::FoldSubset& subset,
                            v1::SearchShardsResponse* response) {
    v1::SearchShardsRequest request;
    for (const std::string& id : shard_ids) request.add_shard_ids(id);
    SetMatrix(queries, request.mutable_queries());
    request.set_k(k);
    *request.mutable_subset() = subset;
    grpc::ClientContext context;
    SetDeadline(&context);
    return stub_->SearchShards(&context, request, response);
  }

  v1::WorkerStatus Status() {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::WorkerStatus status;
    EXPECT_TRUE(stub_->GetWorkerStatus(&context, v1::GetWorkerStatusRequest(), &status).ok());
    return status;
  }

  // Loads rows [0, split) under shard "a" in a shuffled order with explicit global ids, and
  // rows [split, n) under shard "b" as the contiguous range from `split`.
  void LoadTwoShards(const Matrix& data, size_t split, const v1::NeighborsParams& params) {
    std::vector<int64_t> order(split);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(7));
    const Matrix a = Matrix::Gather(data, order);
    v1::LoadShardResponse response;
    grpc::Status status = Load("m/0", a, order, 0, params, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.rows(), split);
    EXPECT_EQ(response.shard_id(), "m/0");
    status = Load("m/1", data.view().Slice(split, data.rows()), {}, static_cast<int64_t>(split),
                  params, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.rows(), data.rows() - split);
  }

  std::string data_dir_;
  std::unique_ptr<WorkerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Worker::Stub> stub_;
};

// ---- Exactness: shards merged == one index over everything --------------------------------------

class ShardedSearchTest : public WorkerServerTest,
                          public ::testing::WithParamInterface<std::tuple<Algorithm, double>> {};

TEST_P(ShardedSearchTest, MergedShardsEqualOneIndexOverAllRows) {
  const auto [algorithm, p] = GetParam();
  const Matrix data = RandomIntegers(500, 3, 4, 11);
  const size_t split = 300;
  const v1::NeighborsParams params = Params(algorithm, p);
  LoadTwoShards(data, split, params);

  // Queries: fresh integer points plus exact copies of training rows (distance 0, duplicates).
  Matrix queries = RandomIntegers(60, 3, 5, 12);
  for (size_t i = 0; i < 20; ++i) std::copy(data.row(i * 13), data.row(i * 13) + 3, queries.row(i));

  IndexOptions options;
  options.algorithm = algorithm;
  options.leaf_size = 5;
  options.p = p;
  auto oracle = BuildIndex(std::make_shared<const Matrix>(data), {}, options);
  ASSERT_TRUE(oracle.ok()) << oracle.status();
  // The core promises the same answer, bit for bit, from every algorithm: brute force is the
  // second oracle.
  options.algorithm = Algorithm::kBrute;
  auto brute = BuildIndex(std::make_shared<const Matrix>(data), {}, options);
  ASSERT_TRUE(brute.ok()) << brute.status();

  // k within a shard, k larger than shard "b" (200 rows), k larger than everything.
  for (uint32_t k : {1u, 7u, 250u, 1000u}) {
    SCOPED_TRACE(absl::StrCat("k=", k));
    v1::SearchShardsResponse response;
    const grpc::Status status = Search({"m/0", "m/1"}, queries, k, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    auto expected = (*oracle)->KNeighborsRdist(queries, static_cast<int>(k), nullptr);
    ASSERT_TRUE(expected.ok());
    const v1::Neighbors& got = response.neighbors();
    EXPECT_EQ(got.num_queries(), queries.rows());
    EXPECT_EQ(got.k(), std::min<size_t>(k, data.rows()));
    ASSERT_EQ(got.k(), expected->k);
    EXPECT_EQ(std::vector<int64_t>(got.indices().begin(), got.indices().end()), expected->indices);
    // Bit-identical reduced distances (== on doubles, no tolerance).
    EXPECT_EQ(std::vector<double>(got.distances().begin(), got.distances().end()),
              expected->distances);
    auto exact = (*brute)->KNeighborsRdist(queries, static_cast<int>(k), nullptr);
    ASSERT_TRUE(exact.ok());
    EXPECT_EQ(std::vector<int64_t>(got.indices().begin(), got.indices().end()), exact->indices);
    EXPECT_EQ(std::vector<double>(got.distances().begin(), got.distances().end()),
              exact->distances);
    // Asked for compact indices (these global ids are far below 2^31): the same answer, its
    // indices in indices32 only. One shard searched straight into the message, and two merged.
    for (const std::vector<std::string>& ids :
         {std::vector<std::string>{"m/0", "m/1"}, std::vector<std::string>{"m/1"}}) {
      v1::SearchShardsResponse wide, compact;
      ASSERT_TRUE(Search(ids, queries, k, &wide).ok());
      ASSERT_TRUE(Search(ids, queries, k, &compact, /*compact_indices=*/true).ok());
      const v1::Neighbors& w = wide.neighbors();
      const v1::Neighbors& c = compact.neighbors();
      EXPECT_EQ(c.indices_size(), 0);
      EXPECT_EQ(std::vector<int64_t>(c.indices32().begin(), c.indices32().end()),
                std::vector<int64_t>(w.indices().begin(), w.indices().end()));
      EXPECT_EQ(std::vector<double>(c.distances().begin(), c.distances().end()),
                std::vector<double>(w.distances().begin(), w.distances().end()));
    }
  }

  // A single shard answers alone with min(k, its rows).
  v1::SearchShardsResponse response;
  ASSERT_TRUE(Search({"m/1"}, queries, 250, &response).ok());
  EXPECT_EQ(response.neighbors().k(), 200u);
}

INSTANTIATE_TEST_SUITE_P(
    AlgorithmsAndMetrics, ShardedSearchTest,
    ::testing::Combine(::testing::Values(Algorithm::kKdTree, Algorithm::kBallTree,
                                         Algorithm::kBrute),
                       ::testing::Values(1.0, 2.0, std::numeric_limits<double>::infinity())),
    [](const auto& info) {
      const double p = std::get<1>(info.param);
      return absl::StrCat(AlgorithmName(std::get<0>(info.param)), "_p",
                          std::isinf(p) ? std::string("inf") : absl::StrCat(p));
    });

TEST_F(WorkerServerTest, LoadResolvesAutoAndReportsStatus) {
  const Matrix data = RandomIntegers(100, 4, 9, 3);
  v1::LoadShardResponse response;
  ASSERT_TRUE(Load("s", data, {}, 1000, Params(Algorithm::kAuto, 2), &response).ok());
  EXPECT_EQ(response.algorithm(), "brute");  // small data: auto is brute force
  EXPECT_GE(response.build_seconds(), 0);

  const v1::WorkerStatus status = Status();
  EXPECT_EQ(status.worker_id(), server_->worker_id());
  EXPECT_EQ(status.cores(), 2u);
  EXPECT_GT(status.rss_bytes(), 0u);
  EXPECT_EQ(status.memory_budget_bytes(), server_->memory_budget_bytes());
  EXPECT_GT(status.memory_budget_bytes(), 0u);
  EXPECT_EQ(status.cached_datasets(), 0u);
  ASSERT_EQ(status.shards_size(), 1);
  EXPECT_EQ(status.shards(0).shard_id(), "s");
  EXPECT_EQ(status.shards(0).rows(), 100u);
  EXPECT_EQ(status.shards(0).cols(), 4u);
  EXPECT_EQ(status.shards(0).algorithm(), "brute");
  EXPECT_GE(status.shards(0).memory_bytes(), 100u * 4 * sizeof(double));

  // Global ids come from first_global_index.
  v1::SearchShardsResponse search;
  ASSERT_TRUE(Search({"s"}, data.view().Slice(5, 6), 1, &search).ok());
  EXPECT_EQ(search.neighbors().distances(0), 0.0);
  EXPECT_GE(search.neighbors().indices(0), 1000);
}

// Compact indices only when every global id of the searched shards fits in 31 bits: a shard whose
// ids end past 2^31 answers in 64 bits although asked for 32, exactly.
TEST_F(WorkerServerTest, CompactIndicesOnlyWhenTheIdsFit) {
  const Matrix data = RandomIntegers(10, 2, 3, 4);
  v1::LoadShardResponse response;
  const int64_t first = (int64_t{1} << 31) - 5;  // ids 2^31 - 5 .. 2^31 + 4
  ASSERT_TRUE(Load("high", data, {}, first, Params(Algorithm::kKdTree, 2), &response).ok());
  ASSERT_TRUE(Load("low", data, {}, 0, Params(Algorithm::kKdTree, 2), &response).ok());
  v1::SearchShardsResponse high, low;
  ASSERT_TRUE(Search({"high"}, data, 10, &high, /*compact_indices=*/true).ok());
  ASSERT_TRUE(Search({"low"}, data, 10, &low, /*compact_indices=*/true).ok());
  EXPECT_EQ(high.neighbors().indices32_size(), 0);
  ASSERT_EQ(high.neighbors().indices_size(), 100);
  EXPECT_EQ(low.neighbors().indices_size(), 0);
  ASSERT_EQ(low.neighbors().indices32_size(), 100);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(high.neighbors().indices(i), first + low.neighbors().indices32(i)) << i;
  }
}

// Queries with a distance bound (the coordinator's routing bound) keep exactly their neighbours
// within it, padded with (+inf, -1): one shard searched into the message, and two merged here.
TEST_F(WorkerServerTest, BoundedQueriesKeepTheirNeighboursWithinTheBound) {
  const Matrix data = RandomIntegers(400, 3, 5, 21);
  const size_t split = 250;
  LoadTwoShards(data, split, Params(Algorithm::kKdTree, 2));
  const Matrix queries = RandomIntegers(40, 3, 6, 22);
  const uint32_t k = 9;
  auto oracle = BuildIndex(std::make_shared<const Matrix>(data), {}, {Algorithm::kBrute, 5, 2});
  ASSERT_TRUE(oracle.ok());
  auto all = (*oracle)->KNeighborsRdist(queries, static_cast<int>(k), nullptr);
  ASSERT_TRUE(all.ok());
  std::vector<int64_t> ids_b(data.rows() - split);  // shard "m/1": its global ids
  std::iota(ids_b.begin(), ids_b.end(), static_cast<int64_t>(split));
  auto rows_b = BuildIndex(std::make_shared<const Matrix>(Matrix::Gather(data, ids_b)), ids_b,
                           {Algorithm::kBrute, 5, 2});
  ASSERT_TRUE(rows_b.ok());
  auto only_b = (*rows_b)->KNeighborsRdist(queries, static_cast<int>(k), nullptr);
  ASSERT_TRUE(only_b.ok());
  // Every third query bounded by its k-th distance over all rows, halved for every sixth.
  std::vector<double> bound(queries.rows(), std::numeric_limits<double>::infinity());
  for (size_t q = 0; q < queries.rows(); q += 3) {
    bound[q] = all->distance(q, k - 1) / (q % 6 == 0 ? 2 : 1);
  }
  for (const std::vector<std::string>& ids :
       {std::vector<std::string>{"m/0", "m/1"}, std::vector<std::string>{"m/1"}}) {
    SCOPED_TRACE(ids.size());
    const KNeighborsResult& full = ids.size() == 2 ? *all : *only_b;
    v1::SearchShardsRequest request;
    for (const std::string& id : ids) request.add_shard_ids(id);
    SetMatrix(queries, request.mutable_queries());
    request.set_k(k);
    request.set_compact_indices(true);
    for (size_t q = 0; q < queries.rows(); q += 3) {
      request.add_bounded_rows(static_cast<uint32_t>(q));
      request.add_rdist_bounds(bound[q]);
    }
    v1::SearchShardsResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = stub_->SearchShards(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    const v1::Neighbors& got = response.neighbors();
    ASSERT_EQ(got.indices32_size(), static_cast<int>(queries.rows() * k));
    size_t padded = 0;
    for (size_t q = 0; q < queries.rows(); ++q) {
      for (size_t j = 0; j < k; ++j) {
        const int i = static_cast<int>(q * k + j);
        if (full.distance(q, j) <= bound[q]) {
          EXPECT_EQ(got.indices32(i), full.index(q, j)) << q << " " << j;
          EXPECT_EQ(got.distances(i), full.distance(q, j)) << q << " " << j;
        } else {
          ++padded;
          EXPECT_EQ(got.indices32(i), -1) << q << " " << j;
          EXPECT_EQ(got.distances(i), std::numeric_limits<double>::infinity()) << q << " " << j;
        }
      }
    }
    EXPECT_GT(padded, 0u);
  }
  // Malformed bounds fail the call alone, naming the field.
  const auto bad = [&](const std::vector<uint32_t>& rows, const std::vector<double>& bounds) {
    v1::SearchShardsRequest request;
    request.add_shard_ids("m/0");
    SetMatrix(queries, request.mutable_queries());
    request.set_k(k);
    for (uint32_t r : rows) request.add_bounded_rows(r);
    for (double b : bounds) request.add_rdist_bounds(b);
    v1::SearchShardsResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    return stub_->SearchShards(&context, request, &response);
  };
  for (const auto& [status, field] : std::vector<std::pair<grpc::Status, std::string>>{
           {bad({1, 2}, {1.0}), "rdist_bounds: expected one value per bounded_rows entry"},
           {bad({3, 3}, {1.0, 1.0}), "bounded_rows[1]"},
           {bad({5, 2}, {1.0, 1.0}), "bounded_rows[1]"},
           {bad({40}, {1.0}), "bounded_rows[0]"},
           {bad({0, 1}, {1.0, -2.0}), "rdist_bounds[1]: must be >= 0"},
           {bad({0}, {std::nan("")}), "rdist_bounds[0]"}}) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_THAT(status.error_message(), HasSubstr(field));
  }
  v1::SearchShardsResponse response;
  EXPECT_TRUE(Search({"m/0"}, queries, k, &response).ok());  // and the worker serves on
}

TEST_F(WorkerServerTest, ReplaceAndDropShard) {
  const Matrix first = RandomIntegers(50, 2, 3, 1);
  const Matrix second = RandomIntegers(80, 2, 3, 2);
  v1::LoadShardResponse response;
  ASSERT_TRUE(Load("s", first, {}, 0, Params(Algorithm::kKdTree, 2), &response).ok());
  ASSERT_TRUE(Load("s", second, {}, 500, Params(Algorithm::kBallTree, 1), &response).ok());
  v1::WorkerStatus status = Status();
  ASSERT_EQ(status.shards_size(), 1);
  EXPECT_EQ(status.shards(0).rows(), 80u);
  EXPECT_EQ(status.shards(0).algorithm(), "ball_tree");
  v1::SearchShardsResponse search;
  ASSERT_TRUE(Search({"s"}, first.view().Slice(0, 1), 100, &search).ok());
  EXPECT_EQ(search.neighbors().k(), 80u);
  EXPECT_GE(
      *std::min_element(search.neighbors().indices().begin(), search.neighbors().indices().end()),
      500);

  for (bool expected : {true, false}) {  // idempotent
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::DropShardRequest request;
    request.set_shard_id("s");
    v1::DropShardResponse drop;
    ASSERT_TRUE(stub_->DropShard(&context, request, &drop).ok());
    EXPECT_EQ(drop.existed(), expected);
  }
  const grpc::Status gone = Search({"s"}, first.view().Slice(0, 1), 1, &search);
  EXPECT_EQ(gone.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Status().shards_size(), 0);
}

// Every shard holds its rows and global ids once, in its index: a tree's reordered copy, or the
// buffer brute force shares. ShardStatus.memory_bytes says so, and it is what counts against the
// memory budget.
TEST_F(WorkerServerTest, ShardMemoryCountsTheRowsOnce) {
  constexpr uint64_t kRows = 2000, kCols = 4;
  const Matrix data = RandomIntegers(kRows, kCols, 9, 8);
  const uint64_t rows_and_ids = kRows * kCols * sizeof(double) + kRows * sizeof(int64_t);
  v1::LoadShardResponse response;
  // p = 1: no float32 filter panels, so only tree nodes differ between the three.
  ASSERT_TRUE(Load("b", data, {}, 0, Params(Algorithm::kBrute, 1), &response).ok());
  ASSERT_TRUE(Load("k", data, {}, 0, Params(Algorithm::kKdTree, 1, 30), &response).ok());
  ASSERT_TRUE(Load("t", data, {}, 0, Params(Algorithm::kBallTree, 1, 30), &response).ok());
  const v1::WorkerStatus status = Status();
  ASSERT_EQ(status.shards_size(), 3);
  EXPECT_EQ(status.shards(0).shard_id(), "b");
  EXPECT_EQ(status.shards(0).memory_bytes(), rows_and_ids);
  for (int s : {1, 2}) {
    SCOPED_TRACE(status.shards(s).shard_id());
    EXPECT_GT(status.shards(s).memory_bytes(), rows_and_ids);  // plus the nodes
    // Not a second copy of the rows: ~134 nodes of ranges and bounds, under 20 KB.
    EXPECT_LT(status.shards(s).memory_bytes(), rows_and_ids + 20000);
  }
}

// ---- Bad requests
// --------------------------------------------------------------------------------

TEST_F(WorkerServerTest, BadRequestsFailAloneAndNameTheField) {
  const Matrix data = RandomIntegers(40, 3, 4, 5);
  const Matrix queries = RandomIntegers(4, 3, 4, 6);
  v1::SearchShardsResponse search;

  // Search before load: NOT_FOUND naming the shard.
  grpc::Status status = Search({"model-x/0"}, queries, 3, &search);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("model-x/0"));

  // Rows before the header.
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::LoadShardResponse response;
    auto writer = stub_->LoadShard(&context, &response);
    v1::LoadShardRequest chunk;
    SetMatrix(data, chunk.mutable_rows());
    writer->Write(chunk);
    writer->WritesDone();
    status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("header"));
  }

  v1::LoadShardResponse response;
  // NaN in the rows of a shard.
  Matrix bad = data;
  bad.at(17, 2) = std::nan("");
  status = Load("s", bad, {}, 0, Params(Algorithm::kKdTree, 2), &response, 10);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("rows"));
  EXPECT_THAT(status.error_message(), HasSubstr("not finite"));

  // Wrong ids count, bad params.
  status = Load("s", data, {1, 2, 3}, 0, Params(Algorithm::kKdTree, 2), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("header.global_indices"));
  v1::NeighborsParams bad_p = Params(Algorithm::kKdTree, 0.5);
  status = Load("s", data, {}, 0, bad_p, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("header.index_params.p"));
  EXPECT_EQ(Status().shards_size(), 0);  // nothing stored by failed loads

  ASSERT_TRUE(Load("s", data, {}, 0, Params(Algorithm::kKdTree, 2), &response).ok());

  // Wrong width, in the contract's words.
  status = Search({"s"}, data.view().Slice(0, 2), 3, &search);
  ASSERT_TRUE(status.ok());
  const Matrix narrow = RandomIntegers(2, 2, 4, 8);
  status = Search({"s"}, narrow, 3, &search);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "queries: expected 3 features, got 2");

  // NaN and Inf in queries.
  for (double v : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    Matrix q = queries;
    q.at(2, 1) = v;
    status = Search({"s"}, q, 3, &search);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("queries.row[2][1]"));
  }

  // k = 0.
  status = Search({"s"}, queries, 0, &search);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("k:"));

  // A known and an unknown shard: NOT_FOUND naming the unknown one.
  status = Search({"s", "t"}, queries, 3, &search);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("\"t\""));

  // A chunk of the wrong width; too few rows; a second header.
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto writer = stub_->LoadShard(&context, &response);
    v1::LoadShardRequest request;
    request.mutable_header()->set_shard_id("w");
    request.mutable_header()->set_rows(4);
    request.mutable_header()->set_cols(3);
    writer->Write(request);
    v1::LoadShardRequest chunk;
    SetMatrix(narrow, chunk.mutable_rows());
    writer->Write(chunk);
    writer->WritesDone();
    status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("expected 3 features"));
  }
  status = Load("w", data, {}, 0, Params(Algorithm::kBrute, 2), &response);
  ASSERT_TRUE(status.ok());
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto writer = stub_->LoadShard(&context, &response);
    v1::LoadShardRequest request;
    request.mutable_header()->set_shard_id("short");
    request.mutable_header()->set_rows(10);
    request.mutable_header()->set_cols(3);
    writer->Write(request);
    v1::LoadShardRequest chunk;
    SetMatrix(data.view().Slice(0, 4), chunk.mutable_rows());
    writer->Write(chunk);
    writer->WritesDone();
    status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("expected 10 rows"));
  }

  // The server still answers good requests, and holds exactly the good shards.
  status = Search({"s", "w"}, queries, 5, &search);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(search.neighbors().k(), 5u);
  const v1::WorkerStatus worker_status = Status();
  ASSERT_EQ(worker_status.shards_size(), 2);
  EXPECT_EQ(worker_status.shards(0).shard_id(), "s");
  EXPECT_EQ(worker_status.shards(1).shard_id(), "w");
}

// Regression (fuzz_requests): a LoadShard header alone, claiming a billion rows of one column,
// made the worker allocate (and zero) 8 GB of row ids before the first row arrived. Now nothing is
// reserved for more than what actually arrives.
TEST_F(WorkerServerTest, AHeaderAloneClaimingBillionsOfRowsReservesNothing) {
  // A quarter of the machine in ids (8 bytes each), at most a billion rows: under the worker's
  // "fits in physical memory" check, so only the allocation itself could stop it.
  const uint64_t physical = PhysicalMemoryBytes();
  const uint64_t rows = std::min<uint64_t>(1000000000, physical == 0 ? 1000000000 : physical / 32);
  rusage before;
  ASSERT_EQ(getrusage(RUSAGE_SELF, &before), 0);
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::LoadShardResponse response;
  auto writer = stub_->LoadShard(&context, &response);
  v1::LoadShardRequest request;
  request.mutable_header()->set_shard_id("huge");
  request.mutable_header()->set_rows(rows);
  request.mutable_header()->set_cols(1);
  writer->Write(request);
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("expected ", rows, " rows (header.rows), got 0")));
  rusage after;
  ASSERT_EQ(getrusage(RUSAGE_SELF, &after), 0);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 256 * 1024) << "KiB of peak RSS";  // < 256 MiB
  EXPECT_EQ(Status().shards_size(), 0);
}

// ---- Health, identity, size, concurrency
// ---------------------------------------------------------

TEST_F(WorkerServerTest, HealthServiceServesTheWorkerService) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const std::string service : {"knncluster.v1.Worker", ""}) {
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = health->Check(&context, request, &response);
    ASSERT_TRUE(status.ok()) << service << ": " << status.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
}

TEST_F(WorkerServerTest, WorkerIdIsStableAcrossRestartsOnTheSameDataDir) {
  const std::string id = server_->worker_id();
  EXPECT_EQ(id.size(), 32u);
  EXPECT_EQ(Status().worker_id(), id);
  const std::string first_address = server_->bound_address();
  stub_.reset();
  server_->Shutdown();
  server_.reset();

  StartServer(data_dir_);  // a new process-lifetime, most likely a new port
  EXPECT_EQ(server_->worker_id(), id);
  EXPECT_EQ(Status().worker_id(), id);

  const std::string other_dir = TempDir();
  WorkerOptions options;
  options.data_dir = other_dir;
  WorkerServer other(options);
  ASSERT_TRUE(other.Start().ok());
  EXPECT_NE(other.worker_id(), id);
  other.Shutdown();
  std::error_code ec;
  std::filesystem::remove_all(other_dir, ec);

  WorkerOptions no_dir;
  WorkerServer without(no_dir);
  const absl::Status status = without.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("data_dir"));
}

TEST_F(WorkerServerTest, ShardLargerThanFourMiBStreams) {
  const Matrix data = RandomIntegers(200000, 8, 1000, 21);  // 12.8 MB of doubles
  v1::LoadShardResponse response;
  const grpc::Status status =
      Load("big", data, {}, 0, Params(Algorithm::kKdTree, 2, 30), &response, 20000);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.rows(), 200000u);
  EXPECT_EQ(response.algorithm(), "kd_tree");

  const Matrix queries = RandomIntegers(200, 8, 1000, 22);
  v1::SearchShardsResponse search;
  ASSERT_TRUE(Search({"big"}, queries, 10, &search).ok());
  IndexOptions options;
  options.algorithm = Algorithm::kBrute;
  auto oracle = BuildIndex(std::make_shared<const Matrix>(data), {}, options);
  ASSERT_TRUE(oracle.ok());
  auto expected = (*oracle)->KNeighborsRdist(queries, 10, nullptr);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(std::vector<int64_t>(search.neighbors().indices().begin(),
                                 search.neighbors().indices().end()),
            expected->indices);
  EXPECT_EQ(std::vector<double>(search.neighbors().distances().begin(),
                                search.neighbors().distances().end()),
            expected->distances);
}

TEST_F(WorkerServerTest, SearchesRunWhileShardsAreReplaced) {
  const Matrix data = RandomIntegers(400, 3, 6, 31);
  LoadTwoShards(data, 150, Params(Algorithm::kKdTree, 2));
  const Matrix queries = RandomIntegers(30, 3, 6, 32);
  v1::SearchShardsResponse reference;
  ASSERT_TRUE(Search({"m/0", "m/1"}, queries, 9, &reference).ok());

  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> searchers;
  for (int t = 0; t < 3; ++t) {
    searchers.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        v1::SearchShardsResponse response;
        if (!Search({"m/0", "m/1"}, queries, 9, &response).ok()) {
          ++failures;
        } else if (response.SerializeAsString() != reference.SerializeAsString()) {
          ++mismatches;
        }
      }
    });
  }
  // Replace both shards with the same rows (other algorithms) while the searches run.
  for (int i = 0; i < 3; ++i) {
    LoadTwoShards(data, 150, Params(i % 2 == 0 ? Algorithm::kBallTree : Algorithm::kBrute, 2));
  }
  for (std::thread& t : searchers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

// ---- Grid search: PutDataset, RunFoldJob --------------------------------------------------------

// The tutorial grid of core/model_selection/grid_search_test.cc: KD tree, n_neighbors 2..18 step
// 2, p 1, 2, 3; 5 stratified folds.
GridSearchOptions TutorialGrid() {
  GridSearchOptions o;
  o.base.algorithm = Algorithm::kKdTree;
  ParamGrid g;
  for (int k = 2; k < 20; k += 2) g.n_neighbors.push_back(k);
  g.p = {1, 2, 3};
  o.param_grid = {g};
  o.cv = 5;
  return o;
}

// Labels 0..2 for integer-valued data.
std::vector<double> SmallLabels(size_t rows) {
  std::vector<double> y(rows);
  for (size_t i = 0; i < rows; ++i) y[i] = static_cast<double>((i * 7) % 3);
  return y;
}

// A fold job over rows [0, rows) of a small dataset: every fifth row is validation.
v1::FoldJobSpec SmallJob(size_t rows, bool classifier = true) {
  TrainTestIndices fold;
  for (size_t i = 0; i < rows; ++i) (i % 5 == 0 ? fold.test : fold.train).push_back(i);
  NeighborsParams c;
  c.algorithm = Algorithm::kBrute;
  c.n_neighbors = 3;
  FoldJob job;
  job.algorithm = Algorithm::kBrute;
  job.max_neighbors = 3;
  job.candidates = {0};
  v1::FoldJobSpec spec;
  rpc::ToProto(job, fold, std::vector<NeighborsParams>{c}, classifier,
               classifier ? Scoring::kAccuracy : Scoring::kR2, &spec);
  return spec;
}

TEST_F(WorkerServerTest, FoldJobsOnACachedDatasetEqualTheCore) {
  absl::StatusOr<Dataset> digits = LoadDigits();
  ASSERT_TRUE(digits.ok()) << digits.status();
  const GridSearchOptions o = TutorialGrid();
  absl::StatusOr<EncodedClasses> enc = EncodeClasses(digits->targets);
  ASSERT_TRUE(enc.ok());
  absl::StatusOr<std::vector<NeighborsParams>> candidates = ExpandParamGrid(o.param_grid, o.base);
  ASSERT_TRUE(candidates.ok());
  absl::StatusOr<std::vector<TrainTestIndices>> folds = MakeFolds(o, digits->targets);
  ASSERT_TRUE(folds.ok());
  const std::vector<FoldJob> jobs = PlanFoldJobs(*candidates, folds->size());
  ASSERT_EQ(jobs.size(), 15u);

  const std::string hash = rpc::DatasetContentHash(digits->features, digits->targets);
  v1::PutDatasetResponse put;
  grpc::Status status = PutDataset(digits->features, digits->targets, &put);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(put.already_cached());
  EXPECT_EQ(put.cached_datasets(), 1u);

  // The same data again: answered from the header.
  status = PutDataset(digits->features, digits->targets, &put);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(put.already_cached());
  EXPECT_EQ(put.cached_datasets(), 1u);
  EXPECT_EQ(Status().cached_datasets(), 1u);

  for (size_t j : {size_t{0}, size_t{4}, size_t{7}, jobs.size() - 1}) {
    SCOPED_TRACE(absl::StrCat("job ", j));
    const FoldJob& job = jobs[j];
    const TrainTestIndices& fold = (*folds)[job.fold];
    absl::StatusOr<FoldJobResult> expected =
        RunFoldJob(digits->features, enc->codes, true, 10, fold, job, *candidates,
                   Scoring::kAccuracy, nullptr);
    ASSERT_TRUE(expected.ok()) << expected.status();
    v1::FoldJobSpec spec;
    rpc::ToProto(job, fold, *candidates, true, Scoring::kAccuracy, &spec);
    // The order of train does not matter: ties break by the row's dataset index.
    if (j == 4) {
      std::reverse(spec.mutable_fold()->mutable_train()->begin(),
                   spec.mutable_fold()->mutable_train()->end());
    }
    v1::RunFoldJobResponse response;
    status = RunJob(hash, spec, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(std::vector<double>(response.result().scores().begin(),
                                  response.result().scores().end()),
              expected->scores);  // exact doubles
    EXPECT_EQ(response.result().scores_size(), static_cast<int>(job.candidates.size()));
    EXPECT_GT(response.result().fit_seconds(), 0);
    EXPECT_GT(response.result().score_seconds(), 0);
  }

  // A regressor job on the same dataset scores the raw labels.
  const FoldJob& job = jobs[2];
  const TrainTestIndices& fold = (*folds)[job.fold];
  absl::StatusOr<FoldJobResult> expected = RunFoldJob(
      digits->features, digits->targets, false, 0, fold, job, *candidates, Scoring::kR2, nullptr);
  ASSERT_TRUE(expected.ok()) << expected.status();
  v1::FoldJobSpec spec;
  rpc::ToProto(job, fold, *candidates, false, Scoring::kR2, &spec);
  v1::RunFoldJobResponse response;
  status = RunJob(hash, spec, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(std::vector<double>(response.result().scores().begin(),
                                response.result().scores().end()),
            expected->scores);
}

TEST_F(WorkerServerTest, FoldJobOnAnUnknownDatasetIsNotFound) {
  const std::string hash(64, 'a');
  v1::RunFoldJobResponse response;
  const grpc::Status status = RunJob(hash, SmallJob(50), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(),
            absl::StrCat("dataset ", hash, " is not cached on this worker"));
}

TEST_F(WorkerServerTest, BadDatasetsAndJobsFailAloneAndNameTheField) {
  const Matrix data = RandomIntegers(60, 4, 5, 41);
  const std::vector<double> labels = SmallLabels(60);
  const std::string hash = rpc::DatasetContentHash(data, labels);
  v1::PutDatasetResponse put;

  // The header names another dataset.
  const std::string other = rpc::DatasetContentHash(data, {});
  grpc::Status status = PutDataset(data, labels, &put, other);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            absl::StrCat("content_hash: the rows sent hash to ", hash, ", header says ", other));

  // Not a hash at all.
  status = PutDataset(data, labels, &put, "ABC");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "header.content_hash: expected a SHA-256 as 64 lowercase hex digits, got \"ABC\"");

  // A chunk one column short.
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto writer = stub_->PutDataset(&context, &put);
    v1::PutDatasetRequest request;
    request.mutable_header()->set_content_hash(hash);
    request.mutable_header()->set_rows(60);
    request.mutable_header()->set_cols(4);
    request.mutable_header()->set_has_labels(true);
    writer->Write(request);
    v1::PutDatasetRequest chunk;
    SetMatrix(data.view().Slice(0, 30), chunk.mutable_rows());
    writer->Write(chunk);
    SetMatrix(RandomIntegers(30, 3, 5, 42), chunk.mutable_rows());
    writer->Write(chunk);
    writer->WritesDone();
    status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), "rows.cols: expected 4 (header.cols), got 3 (message 2)");
  }

  // One label too many (the last chunk carries it).
  {
    std::vector<double> more = labels;
    more.push_back(1);
    grpc::ClientContext context;
    SetDeadline(&context);
    auto writer = stub_->PutDataset(&context, &put);
    v1::PutDatasetRequest request;
    request.mutable_header()->set_content_hash(hash);
    request.mutable_header()->set_rows(60);
    request.mutable_header()->set_cols(4);
    request.mutable_header()->set_has_labels(true);
    writer->Write(request);
    v1::PutDatasetRequest chunk;
    SetMatrix(data, chunk.mutable_rows());
    writer->Write(chunk);
    v1::PutDatasetRequest label_chunk;
    label_chunk.mutable_labels()->mutable_values()->Assign(more.begin(), more.end());
    writer->Write(label_chunk);
    writer->WritesDone();
    status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(),
              "labels: more labels than header.rows = 60 (0 received before message 2, which has "
              "61)");
  }

  // Too few labels; a NaN feature; a NaN label.
  status = PutDataset(data, std::vector<double>(labels.begin(), labels.begin() + 59), &put, hash);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("labels"));
  Matrix bad = data;
  bad.at(17, 2) = std::nan("");
  status = PutDataset(bad, labels, &put, hash, 10);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "rows.row[17][2]: value nan is not finite");
  std::vector<double> bad_labels = labels;
  bad_labels[8] = std::numeric_limits<double>::infinity();
  status = PutDataset(data, bad_labels, &put, hash);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "labels[8]: value inf is not finite");
  EXPECT_EQ(Status().cached_datasets(), 0u);  // nothing cached by failed uploads

  // Good uploads: labeled, and the same rows without labels (another dataset).
  ASSERT_TRUE(PutDataset(data, labels, &put).ok());
  EXPECT_FALSE(put.already_cached());
  ASSERT_TRUE(PutDataset(data, {}, &put).ok());
  EXPECT_FALSE(put.already_cached());
  EXPECT_EQ(put.cached_datasets(), 2u);

  v1::RunFoldJobResponse response;
  // A fold index out of range, at position 3 of train.
  v1::FoldJobSpec job = SmallJob(60);
  job.mutable_fold()->set_train(3, 5000);
  status = RunJob(hash, job, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "job.fold.train[3]: row index 5000 out of range [0, 60)");
  // A duplicate in test.
  job = SmallJob(60);
  job.mutable_fold()->set_test(1, job.fold().test(0));
  status = RunJob(hash, job, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "job.fold.test[1]: row index 0 appears twice");
  // An invalid spec (validated by rpc::FromProto, field named).
  job = SmallJob(60);
  job.set_max_neighbors(0);
  status = RunJob(hash, job, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "job.max_neighbors: must be >= 1, got 0");
  // More neighbours than the fold trains on.
  job = SmallJob(60);
  job.mutable_fold()->mutable_train()->Truncate(2);
  status = RunJob(hash, job, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "job.max_neighbors: 3 exceeds the 2 training rows of job.fold");
  // A job on the unlabeled dataset.
  const std::string unlabeled = rpc::DatasetContentHash(data, {});
  status = RunJob(unlabeled, SmallJob(60), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("has no labels"));
  // A classifier on labels that are not classes.
  std::vector<double> real(60);
  for (size_t i = 0; i < real.size(); ++i) real[i] = 0.5 * static_cast<double>(i);
  ASSERT_TRUE(PutDataset(data, real, &put).ok());
  status = RunJob(rpc::DatasetContentHash(data, real), SmallJob(60), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("job.classifier: the labels of dataset"));
  // ... but a regressor on them is fine.
  status = RunJob(rpc::DatasetContentHash(data, real), SmallJob(60, false), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();

  // The worker still serves, and its answer is the core's.
  status = RunJob(hash, SmallJob(60), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const rpc::FoldJobWork work = *rpc::FromProto(SmallJob(60), "job");
  absl::StatusOr<EncodedClasses> enc = EncodeClasses(labels);
  ASSERT_TRUE(enc.ok());
  absl::StatusOr<FoldJobResult> expected =
      RunFoldJob(data, enc->codes, true, 3, work.fold, work.job, work.candidates, work.scoring,
                 nullptr);
  ASSERT_TRUE(expected.ok());
  ASSERT_EQ(response.result().scores_size(), 1);
  EXPECT_EQ(response.result().scores(0), expected->scores[0]);
  EXPECT_EQ(Status().cached_datasets(), 3u);
}

TEST_F(WorkerServerTest, DatasetsBeyondTheMemoryBudgetAreRefusedOrEvictOlderOnes) {
  WorkerOptions options;
  options.threads = 2;
  options.memory_budget_bytes = 20000;
  StartServerWith(options);
  EXPECT_EQ(Status().memory_budget_bytes(), 20000u);

  // 300 x 6 features + labels: 300 * 8 * 8 = 19200 bytes charged; 400 rows would be 25600.
  const Matrix too_big = RandomIntegers(400, 6, 9, 51);
  v1::PutDatasetResponse put;
  grpc::Status status = PutDataset(too_big, SmallLabels(400), &put);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(),
            "the dataset needs 25600 bytes, more than this worker's whole memory budget of 20000 "
            "bytes");

  // Two datasets of 9600 bytes fit; a third evicts the least recently used.
  std::vector<Matrix> sets;
  std::vector<std::string> hashes;
  for (uint32_t seed = 0; seed < 3; ++seed) {
    sets.push_back(RandomIntegers(150, 6, 9, 60 + seed));
    hashes.push_back(rpc::DatasetContentHash(sets.back(), SmallLabels(150)));
  }
  ASSERT_TRUE(PutDataset(sets[0], SmallLabels(150), &put).ok());
  ASSERT_TRUE(PutDataset(sets[1], SmallLabels(150), &put).ok());
  EXPECT_EQ(put.cached_datasets(), 2u);
  v1::RunFoldJobResponse response;
  ASSERT_TRUE(RunJob(hashes[0], SmallJob(150), &response).ok());  // 0 is now the most recent
  ASSERT_TRUE(PutDataset(sets[2], SmallLabels(150), &put).ok());
  EXPECT_EQ(put.cached_datasets(), 2u);
  status = RunJob(hashes[1], SmallJob(150), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(RunJob(hashes[0], SmallJob(150), &response).ok());
  EXPECT_TRUE(RunJob(hashes[2], SmallJob(150), &response).ok());

  // Shards count against the same budget: with an 8800-byte shard loaded, a 9600-byte dataset
  // fits only after evicting both cached ones.
  v1::LoadShardResponse load;
  ASSERT_TRUE(
      Load("s", RandomIntegers(100, 10, 3, 70), {}, 0, Params(Algorithm::kBrute, 1), &load).ok());
  ASSERT_TRUE(PutDataset(sets[1], SmallLabels(150), &put).ok());
  EXPECT_EQ(put.cached_datasets(), 1u);
  EXPECT_EQ(Status().cached_datasets(), 1u);
}

TEST_F(WorkerServerTest, JobDelayRunsAndEndsWhenTheCallIsCancelled) {
  WorkerOptions options;
  options.threads = 2;
  options.testing_job_delay = absl::Seconds(2);
  options.shutdown_grace = absl::Seconds(10);
  StartServerWith(options);
  const Matrix data = RandomIntegers(50, 3, 4, 81);
  v1::PutDatasetResponse put;
  ASSERT_TRUE(PutDataset(data, SmallLabels(50), &put).ok());
  const std::string hash = rpc::DatasetContentHash(data, SmallLabels(50));

  absl::Time start = absl::Now();
  v1::RunFoldJobResponse response;
  grpc::Status status = RunJob(hash, SmallJob(50), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_GE(absl::Now() - start, absl::Seconds(2));

  start = absl::Now();
  status = RunJob(hash, SmallJob(50), &response, absl::Milliseconds(200));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  // The handler noticed the cancellation and returned: shutting down (which waits for calls in
  // flight, up to a 10 s grace) does not wait out the rest of the 2 s delay.
  start = absl::Now();
  server_->Shutdown();
  server_->Wait();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

// ---- Grid search: SearchShards over a fold subset -----------------------------------------------

class SubsetSearchTest : public WorkerServerTest,
                         public ::testing::WithParamInterface<std::tuple<Algorithm, double>> {};

TEST_P(SubsetSearchTest, EqualsBruteForceOverTheRowsNotExcluded) {
  const auto [algorithm, p] = GetParam();
  // Integer-valued rows in a small range: many tied distances and duplicate rows.
  const Matrix data = RandomIntegers(450, 3, 4, 91);
  // Shards: m/0 = rows [0, 150) shuffled with explicit ids (a KD tree, p = 2), m/1 = [150, 300)
  // (a ball tree), m/2 = [300, 450) (brute force), whatever the subset's own index params.
  std::vector<int64_t> order(150);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(5));
  v1::LoadShardResponse load;
  ASSERT_TRUE(Load("g/0", Matrix::Gather(data, order), order, 0, Params(Algorithm::kKdTree, 2),
                   &load).ok());
  ASSERT_TRUE(Load("g/1", data.view().Slice(150, 300), {}, 150, Params(Algorithm::kBallTree, 1),
                   &load).ok());
  ASSERT_TRUE(Load("g/2", data.view().Slice(300, 450), {}, 300,
                   Params(Algorithm::kBrute, std::numeric_limits<double>::infinity()), &load)
                  .ok());

  Matrix queries = RandomIntegers(40, 3, 5, 92);
  for (size_t i = 0; i < 20; ++i) {  // copies of rows, excluded ones among them
    std::copy(data.row(i * 22), data.row(i * 22) + 3, queries.row(i));
  }
  // Subset A leaves out every row i with i % 5 == 1; subset B every row with i % 5 == 2 and all
  // of shard g/2 (which then contributes nothing).
  for (int variant = 0; variant < 2; ++variant) {
    SCOPED_TRACE(absl::StrCat("subset ", variant));
    v1::FoldSubset subset;
    subset.set_key(absl::StrCat("search-1/fold-", variant));
    *subset.mutable_index_params() = Params(algorithm, p, 4);
    std::vector<int64_t> kept;
    for (int64_t i = 0; i < 450; ++i) {
      const bool excluded = variant == 0 ? i % 5 == 1 : (i % 5 == 2 || i >= 300);
      if (excluded) {
        subset.add_excluded(i);
      } else {
        kept.push_back(i);
      }
    }
    IndexOptions brute;
    brute.algorithm = Algorithm::kBrute;
    brute.p = p;
    auto oracle =
        BuildIndex(std::make_shared<const Matrix>(Matrix::Gather(data, kept)), kept, brute);
    ASSERT_TRUE(oracle.ok()) << oracle.status();
    // k within one shard, beyond one shard, beyond every kept row; the second and third calls
    // reuse the cached subset indexes (chunks of one job).
    for (uint32_t k : {1u, 9u, 200u, 1000u}) {
      SCOPED_TRACE(absl::StrCat("k=", k));
      v1::SearchShardsResponse response;
      const grpc::Status status = SearchSubset({"g/0", "g/1", "g/2"}, queries, k, subset,
                                               &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      auto expected = (*oracle)->KNeighborsRdist(queries, static_cast<int>(k), nullptr);
      ASSERT_TRUE(expected.ok());
      const v1::Neighbors& got = response.neighbors();
      EXPECT_EQ(got.num_queries(), queries.rows());
      ASSERT_EQ(got.k(), std::min<size_t>(k, kept.size()));
      EXPECT_EQ(std::vector<int64_t>(got.indices().begin(), got.indices().end()),
                expected->indices);
      EXPECT_EQ(std::vector<double>(got.distances().begin(), got.distances().end()),
                expected->distances);
      // One subset index per shard (g/2's empty in subset B), built by the first call only.
      EXPECT_EQ(server_->SubsetIndexBuildsForTesting(), 3u * (variant + 1));
    }
  }
  // Without a subset, the shards' own indexes answer as before (p = 2, 1 and inf cannot merge).
  v1::SearchShardsResponse response;
  const grpc::Status status = Search({"g/0", "g/1"}, queries, 3, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("cannot be merged"));
}

INSTANTIATE_TEST_SUITE_P(
    AlgorithmsAndMetrics, SubsetSearchTest,
    ::testing::Combine(::testing::Values(Algorithm::kKdTree, Algorithm::kBallTree,
                                         Algorithm::kBrute),
                       ::testing::Values(1.0, 2.0, std::numeric_limits<double>::infinity())),
    [](const auto& info) {
      const double p = std::get<1>(info.param);
      return absl::StrCat(AlgorithmName(std::get<0>(info.param)), "_p",
                          std::isinf(p) ? std::string("inf") : absl::StrCat(p));
    });

TEST_F(WorkerServerTest, SubsetSearchIsNeverServedFromAStaleIndex) {
  const Matrix data = RandomIntegers(200, 2, 6, 95);
  const Matrix queries = RandomIntegers(25, 2, 6, 96);
  v1::LoadShardResponse load;
  ASSERT_TRUE(Load("h/0", data, {}, 0, Params(Algorithm::kKdTree, 2), &load).ok());
  auto expect_brute = [&](const Matrix& rows, int64_t first, const v1::FoldSubset& subset,
                          uint32_t k) {
    std::vector<int64_t> positions, ids;
    for (size_t i = 0; i < rows.rows(); ++i) {
      const int64_t id = first + static_cast<int64_t>(i);
      if (std::find(subset.excluded().begin(), subset.excluded().end(), id) ==
          subset.excluded().end()) {
        positions.push_back(static_cast<int64_t>(i));
        ids.push_back(id);
      }
    }
    IndexOptions brute;
    brute.algorithm = Algorithm::kBrute;
    brute.p = 2;
    auto oracle =
        BuildIndex(std::make_shared<const Matrix>(Matrix::Gather(rows, positions)), ids, brute);
    ASSERT_TRUE(oracle.ok());
    auto expected = (*oracle)->KNeighborsRdist(queries, static_cast<int>(k), nullptr);
    ASSERT_TRUE(expected.ok());
    v1::SearchShardsResponse response;
    const grpc::Status status = SearchSubset({"h/0"}, queries, k, subset, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(std::vector<int64_t>(response.neighbors().indices().begin(),
                                   response.neighbors().indices().end()),
              expected->indices);
    EXPECT_EQ(std::vector<double>(response.neighbors().distances().begin(),
                                  response.neighbors().distances().end()),
              expected->distances);
  };
  v1::FoldSubset subset;
  subset.set_key("reused-key");
  *subset.mutable_index_params() = Params(Algorithm::kBallTree, 2, 3);
  for (int64_t i = 0; i < 200; i += 3) subset.add_excluded(i);
  expect_brute(data, 0, subset, 6);
  // The same key with another excluded list: rebuilt, not served from the cache.
  subset.clear_excluded();
  for (int64_t i = 1; i < 200; i += 2) subset.add_excluded(i);
  expect_brute(data, 0, subset, 6);
  // The same key and list, but the shard replaced under the same id: rebuilt from the new rows.
  const Matrix replaced = RandomIntegers(120, 2, 6, 97);
  ASSERT_TRUE(Load("h/0", replaced, {}, 0, Params(Algorithm::kBrute, 2), &load).ok());
  expect_brute(replaced, 0, subset, 6);
  // Every row excluded: no neighbours at all.
  subset.clear_excluded();
  for (int64_t i = 0; i < 120; ++i) subset.add_excluded(i);
  v1::SearchShardsResponse response;
  grpc::Status status = SearchSubset({"h/0"}, queries, 3, subset, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.neighbors().num_queries(), queries.rows());
  EXPECT_EQ(response.neighbors().k(), 0u);
  EXPECT_EQ(response.neighbors().indices_size(), 0);

  // Bad subsets name the field.
  v1::FoldSubset bad = subset;
  bad.clear_key();
  status = SearchSubset({"h/0"}, queries, 3, bad, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("subset.key"));
  bad = subset;
  bad.set_excluded(4, -2);
  status = SearchSubset({"h/0"}, queries, 3, bad, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "subset.excluded[4]: must be >= 0, got -2");
  bad = subset;
  bad.mutable_index_params()->set_p(0.5);
  status = SearchSubset({"h/0"}, queries, 3, bad, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("subset.index_params.p"));
}

// ---- Membership
// ----------------------------------------------------------------------------------

// A stand-in coordinator: records registrations and heartbeats; asks for one re-registration.
class FakeMembership final : public v1::Membership::Service {
 public:
  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override {
    absl::MutexLock lock(&mu_);
    registrations_.push_back(*request);
    response->set_heartbeat_interval_ms(20);
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    absl::MutexLock lock(&mu_);
    heartbeats_.push_back(*request);
    if (heartbeats_.size() == 3) response->set_reregister(true);
    return grpc::Status::OK;
  }
  // Waits until `pred` holds (or 10 s pass).
  bool WaitFor(const std::function<bool(const FakeMembership&)>& pred) {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (absl::Now() < end) {
      {
        absl::MutexLock lock(&mu_);
        if (pred(*this)) return true;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  mutable absl::Mutex mu_;
  std::vector<v1::RegisterRequest> registrations_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::HeartbeatRequest> heartbeats_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<grpc::Server> StartFake(FakeMembership* service, const std::string& address,
                                        int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

TEST_F(WorkerServerTest, RegistersHeartbeatsAndReregisters) {
  FakeMembership fake;
  int port = 0;
  auto coordinator = StartFake(&fake, "127.0.0.1:0", &port);
  ASSERT_NE(coordinator, nullptr);
  server_->Shutdown();
  StartServer(data_dir_, absl::StrCat("127.0.0.1:", port));
  v1::LoadShardResponse response;
  ASSERT_TRUE(
      Load("m/0", RandomIntegers(20, 2, 3, 1), {}, 0, Params(Algorithm::kBrute, 2), &response)
          .ok());

  // Heartbeat 3 answers reregister=true: a second registration follows, then heartbeats go on.
  ASSERT_TRUE(fake.WaitFor([](const FakeMembership& f) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return f.registrations_.size() >= 2 && f.heartbeats_.size() >= 5;
  }));
  server_->Shutdown();  // stops the membership thread
  absl::MutexLock lock(&fake.mu_);
  const v1::RegisterRequest& r = fake.registrations_[0];
  EXPECT_EQ(r.worker_id(), server_->worker_id());
  EXPECT_EQ(r.address(), server_->bound_address());
  EXPECT_EQ(r.cores(), 2u);
  EXPECT_GT(r.memory_bytes(), 0u);
  EXPECT_EQ(r.memory_budget_bytes(), server_->memory_budget_bytes());
  EXPECT_GT(r.memory_budget_bytes(), 0u);
  const v1::HeartbeatRequest& h = fake.heartbeats_.back();
  EXPECT_EQ(h.worker_id(), server_->worker_id());
  ASSERT_EQ(h.shard_ids_size(), 1);
  EXPECT_EQ(h.shard_ids(0), "m/0");
  EXPECT_GT(h.rss_bytes(), 0u);
  // A registration reports the shards held (here: the one loaded before the second one).
  EXPECT_EQ(fake.registrations_[0].shard_ids_size(), 0);
  ASSERT_EQ(fake.registrations_[1].shard_ids_size(), 1);
  EXPECT_EQ(fake.registrations_[1].shard_ids(0), "m/0");
  coordinator->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
}

// ---- Persistence: shards in the data directory ---------------------------------------------------

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

TEST_F(WorkerServerTest, ShardsSurviveARestartAndAnswerBitForBit) {
  const Matrix data = RandomIntegers(600, 5, 6, 17);  // ties and duplicates
  const Matrix queries = RandomIntegers(40, 5, 6, 18);
  LoadTwoShards(data, 250, Params(Algorithm::kKdTree, 2, 7));
  v1::LoadShardResponse loaded;
  ASSERT_TRUE(Load("other/0", data.view().Slice(0, 90), {}, 5000, Params(Algorithm::kBallTree, 1),
                   &loaded)
                  .ok());
  v1::SearchShardsResponse before, before_other;
  ASSERT_TRUE(Search({"m/0", "m/1"}, queries, 9, &before).ok());
  ASSERT_TRUE(Search({"other/0"}, queries, 4, &before_other).ok());
  const v1::WorkerStatus first = Status();
  EXPECT_EQ(first.shard_loads(), 3u);
  EXPECT_EQ(first.shards_restored(), 0u);
  EXPECT_TRUE(std::filesystem::exists(data_dir_ + "/shards/" + ShardFiles::FileName("m/0")));
  EXPECT_EQ(ShardFiles::FileName("m/0"), "m%2F0");
  EXPECT_EQ(ReadAll(data_dir_ + "/FORMAT"), "knncluster-worker 1\n");

  StartServer(data_dir_);  // the same directory: a restarted worker, nothing re-sent
  const v1::WorkerStatus second = Status();
  EXPECT_EQ(second.shard_loads(), 0u);
  EXPECT_EQ(second.shards_restored(), 3u);
  EXPECT_EQ(second.quarantined_files_size(), 0);
  ASSERT_EQ(second.shards_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(second.shards(i).shard_id(), first.shards(i).shard_id());
    EXPECT_EQ(second.shards(i).rows(), first.shards(i).rows());
    EXPECT_EQ(second.shards(i).algorithm(), first.shards(i).algorithm());
    EXPECT_EQ(second.shards(i).memory_bytes(), first.shards(i).memory_bytes());  // budgeted
  }
  v1::SearchShardsResponse after, after_other;
  ASSERT_TRUE(Search({"m/0", "m/1"}, queries, 9, &after).ok());
  ASSERT_TRUE(Search({"other/0"}, queries, 4, &after_other).ok());
  EXPECT_EQ(after.SerializeAsString(), before.SerializeAsString());  // bit for bit
  EXPECT_EQ(after_other.SerializeAsString(), before_other.SerializeAsString());

  // DropShard removes the file too: the next start does not bring it back.
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::DropShardRequest drop;
  drop.set_shard_id("other/0");
  v1::DropShardResponse dropped;
  ASSERT_TRUE(stub_->DropShard(&context, drop, &dropped).ok());
  EXPECT_FALSE(std::filesystem::exists(data_dir_ + "/shards/" + ShardFiles::FileName("other/0")));
  StartServer(data_dir_);
  const v1::WorkerStatus third = Status();
  EXPECT_EQ(third.shards_restored(), 2u);
  ASSERT_EQ(third.shards_size(), 2);
  EXPECT_EQ(third.shards(0).shard_id(), "m/0");
  EXPECT_EQ(third.shards(1).shard_id(), "m/1");
}

// Labels travel with a shard (after its rows), are kept in its file only, and come back with
// the rows and their global ids through ReadShard, chunked, also after a restart.
TEST_F(WorkerServerTest, ReadShardStreamsRowsIdsAndLabelsBackFromTheFile) {
  const Matrix data = RandomIntegers(9000, 40, 6, 21);  // ~2.7 MiB: several ReadShard chunks
  std::vector<int64_t> ids(data.rows());
  std::vector<double> labels(data.rows());
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int64_t>(3 * i + 1);
    labels[i] = static_cast<double>(i % 3);
  }
  const auto load = [&](size_t n_labels) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::LoadShardResponse response;
    auto writer = stub_->LoadShard(&context, &response);
    v1::LoadShardRequest request;
    v1::ShardHeader* header = request.mutable_header();
    header->set_shard_id("m/0");
    header->set_rows(data.rows());
    header->set_cols(data.cols());
    for (int64_t id : ids) header->add_global_indices(id);
    *header->mutable_index_params() = Params(Algorithm::kKdTree, 2);
    header->set_has_labels(true);
    header->add_class_names("x");
    header->add_class_names("y");
    header->add_class_names("z");
    bool ok = writer->Write(request);
    for (size_t begin = 0; ok && begin < data.rows(); begin += 1000) {
      v1::LoadShardRequest chunk;
      SetMatrix(data.view().Slice(begin, std::min(data.rows(), begin + 1000)),
                chunk.mutable_rows());
      ok = writer->Write(chunk);
    }
    for (size_t begin = 0; ok && begin < n_labels; begin += 4000) {
      v1::LoadShardRequest chunk;
      for (size_t i = begin; i < std::min(n_labels, begin + 4000); ++i) {
        chunk.mutable_labels()->add_values(labels[i]);
      }
      ok = writer->Write(chunk);
    }
    writer->WritesDone();
    return writer->Finish();
  };
  const auto read = [&](const std::string& id, std::vector<v1::ReadShardChunk>* chunks) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ReadShardRequest request;
    request.set_shard_id(id);
    auto reader = stub_->ReadShard(&context, request);
    v1::ReadShardChunk chunk;
    while (reader->Read(&chunk)) chunks->push_back(chunk);
    return reader->Finish();
  };
  const grpc::Status short_labels = load(data.rows() - 1);
  EXPECT_EQ(short_labels.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(short_labels.error_message(), HasSubstr("labels: expected 9000 labels"));
  ASSERT_TRUE(load(data.rows()).ok());
  for (int round = 0; round < 2; ++round) {
    std::vector<v1::ReadShardChunk> chunks;
    const grpc::Status st = read("m/0", &chunks);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_GT(chunks.size(), 2u);
    ASSERT_TRUE(chunks[0].has_header());
    EXPECT_TRUE(chunks[0].header().has_labels());
    EXPECT_THAT(std::vector<std::string>(chunks[0].header().class_names().begin(),
                                         chunks[0].header().class_names().end()),
                ElementsAre("x", "y", "z"));
    std::vector<double> values, got_labels;
    std::vector<int64_t> got_ids;
    for (const v1::ReadShardChunk& c : chunks) {
      EXPECT_LT(c.ByteSizeLong(), size_t{4} << 20);
      EXPECT_EQ(c.rows().cols(), data.cols());
      values.insert(values.end(), c.rows().values().begin(), c.rows().values().end());
      got_ids.insert(got_ids.end(), c.global_ids().begin(), c.global_ids().end());
      got_labels.insert(got_labels.end(), c.labels().begin(), c.labels().end());
    }
    EXPECT_EQ(values, data.values());
    EXPECT_EQ(got_ids, ids);
    EXPECT_EQ(got_labels, labels);
    StartServer(data_dir_);  // the second round reads what the restarted worker restored
  }
  std::vector<v1::ReadShardChunk> none;
  EXPECT_EQ(read("m/9", &none).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(WorkerServerTest, ACorruptShardFileIsQuarantinedAndNotHeld) {
  const Matrix data = RandomIntegers(300, 3, 9, 4);
  LoadTwoShards(data, 100, Params(Algorithm::kBrute, 2));
  server_->Shutdown();
  const std::string path = data_dir_ + "/shards/" + ShardFiles::FileName("m/1");
  std::string bytes = ReadAll(path);
  bytes[bytes.size() / 2] ^= 0x01;  // one bit of one row
  WriteAll(path, bytes);
  WriteAll(data_dir_ + "/shards/m%2F0.tmp-1-2-3-4", "a write a crash cut short");

  StartServer(data_dir_);
  const v1::WorkerStatus status = Status();
  EXPECT_EQ(status.shards_restored(), 1u);
  ASSERT_EQ(status.shards_size(), 1);
  EXPECT_EQ(status.shards(0).shard_id(), "m/0");
  ASSERT_EQ(status.quarantined_files_size(), 1);
  EXPECT_THAT(status.quarantined_files(0), HasSubstr(data_dir_ + "/quarantine/m%2F1."));
  EXPECT_THAT(status.quarantined_files(0), HasSubstr("checksum"));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(data_dir_ + "/shards/m%2F0.tmp-1-2-3-4"));
  v1::SearchShardsResponse search;
  EXPECT_EQ(Search({"m/1"}, data.view().Slice(0, 1), 1, &search).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // The coordinator sends it again: held and kept as usual.
  v1::LoadShardResponse response;
  ASSERT_TRUE(Load("m/1", data.view().Slice(100, 300), {}, 100, Params(Algorithm::kBrute, 2),
                   &response)
                  .ok());
  StartServer(data_dir_);
  EXPECT_EQ(Status().shards_restored(), 2u);
  EXPECT_EQ(Status().quarantined_files_size(), 0);
}

TEST_F(WorkerServerTest, ANewerDataDirectoryIsRefusedClearly) {
  server_->Shutdown();
  server_.reset();
  WriteAll(data_dir_ + "/FORMAT", "knncluster-worker 99\n");
  WorkerOptions options;
  options.data_dir = data_dir_;
  WorkerServer server(options);
  const absl::Status status = server.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("data directory format version 99 is newer than this build supports (1)"));
  EXPECT_THAT(std::string(status.message()), HasSubstr(data_dir_));
}

TEST_F(WorkerServerTest, RegistersWithACoordinatorThatStartsLater) {
  // Reserve a port, release it, point the worker at it, and only then start the coordinator.
  FakeMembership fake;
  int port = 0;
  auto placeholder = StartFake(&fake, "127.0.0.1:0", &port);
  ASSERT_NE(placeholder, nullptr);
  placeholder->Shutdown(absl::ToChronoTime(absl::Now()));
  placeholder.reset();

  server_->Shutdown();
  StartServer(data_dir_, absl::StrCat("127.0.0.1:", port));
  absl::SleepFor(absl::Milliseconds(300));  // a few failed attempts
  int same_port = 0;
  auto coordinator = StartFake(&fake, absl::StrCat("127.0.0.1:", port), &same_port);
  ASSERT_NE(coordinator, nullptr);
  ASSERT_EQ(same_port, port);
  EXPECT_TRUE(fake.WaitFor([](const FakeMembership& f) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return !f.registrations_.empty() && !f.heartbeats_.empty();
  }));
  server_->Shutdown();
  coordinator->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
}

}  // namespace
}  // namespace knncluster::worker
