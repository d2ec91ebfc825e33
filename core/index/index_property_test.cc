// Property tests: brute force, KD tree and ball tree return identical neighbours and bit-identical
// distances, and all equal an independent long-double oracle, on data with many ties.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "core/index/neighbor_index.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const Algorithm kAlgorithms[] = {Algorithm::kBrute, Algorithm::kKdTree, Algorithm::kBallTree};

// Integer values in [0, range): many equal distances and duplicate rows.
Matrix IntegerData(size_t n, size_t d, int range, std::mt19937* rng) {
  Matrix m(n, d);
  for (size_t i = 0; i < n * d; ++i) m.data()[i] = static_cast<double>((*rng)() % range);
  // Make some rows exact duplicates of earlier ones.
  for (size_t i = 1; i < n; i += 7) std::copy(m.row(i - 1), m.row(i - 1) + d, m.row(i));
  return m;
}

Matrix GaussianData(size_t n, size_t d, std::mt19937* rng) {
  std::normal_distribution<double> g;
  Matrix m(n, d);
  for (size_t i = 0; i < n * d; ++i) m.data()[i] = g(*rng);
  return m;
}

// The oracle: every distance in long double, then a plain sort by (distance, id).
std::vector<std::pair<long double, int64_t>> Oracle(const Matrix& x, const double* q, double p) {
  std::vector<std::pair<long double, int64_t>> all;
  for (size_t i = 0; i < x.rows(); ++i) {
    long double acc = 0;
    for (size_t j = 0; j < x.cols(); ++j) {
      long double diff = std::fabs(static_cast<long double>(x.at(i, j)) - q[j]);
      if (std::isinf(p)) {
        acc = std::max(acc, diff);
      } else {
        acc += std::pow(diff, static_cast<long double>(p));
      }
    }
    all.push_back({std::isinf(p) ? acc : std::pow(acc, 1.0L / p), static_cast<int64_t>(i)});
  }
  std::sort(all.begin(), all.end());
  return all;
}

struct Case {
  size_t n, d, k;
  double p;
  bool integer;
  int leaf_size;
};

std::string Describe(const Case& c) {
  return absl::StrFormat("n=%d d=%d k=%d p=%g %s leaf=%d", c.n, c.d, c.k, c.p,
                         c.integer ? "integer" : "gaussian", c.leaf_size);
}

void CheckCase(const Case& c, uint32_t seed, ThreadPool* pool) {
  SCOPED_TRACE(Describe(c));
  std::mt19937 rng(seed);
  auto data = std::make_shared<Matrix>(c.integer ? IntegerData(c.n, c.d, 4, &rng)
                                                  : GaussianData(c.n, c.d, &rng));
  // Queries: fresh points plus some training rows themselves (distance 0, duplicates).
  Matrix fresh = c.integer ? IntegerData(12, c.d, 4, &rng) : GaussianData(12, c.d, &rng);
  Matrix queries(fresh.rows() + std::min<size_t>(c.n, 5), c.d);
  std::copy(fresh.data(), fresh.data() + fresh.rows() * c.d, queries.data());
  for (size_t i = fresh.rows(); i < queries.rows(); ++i) {
    std::copy(data->row(i - fresh.rows()), data->row(i - fresh.rows()) + c.d, queries.row(i));
  }

  std::vector<KNeighborsResult> results;
  for (Algorithm a : kAlgorithms) {
    auto index = BuildIndex(data, {}, {a, c.leaf_size, c.p});
    ASSERT_TRUE(index.ok()) << index.status();
    auto r = (*index)->KNeighbors(queries, static_cast<int>(c.k), pool);
    ASSERT_TRUE(r.ok()) << r.status();
    results.push_back(*std::move(r));
  }
  for (size_t a = 1; a < results.size(); ++a) {
    EXPECT_EQ(results[a].indices, results[0].indices) << AlgorithmName(kAlgorithms[a]);
    // Bit-identical distances: compare with ==, not a tolerance.
    EXPECT_EQ(results[a].distances, results[0].distances) << AlgorithmName(kAlgorithms[a]);
  }

  // Exact integer arithmetic for p in {1, 2, 3, inf} on integer data, and continuous data where
  // ties have probability zero, let the oracle's order be compared exactly.
  const bool exact_order = !c.integer || std::isinf(c.p) || c.p == std::floor(c.p);
  for (size_t q = 0; q < queries.rows(); ++q) {
    auto oracle = Oracle(*data, queries.row(q), c.p);
    for (size_t j = 0; j < c.k; ++j) {
      const double got = results[0].distance(q, j);
      const long double want = oracle[j].first;
      ASSERT_NEAR(got, static_cast<double>(want), 1e-12 * (1 + std::fabs(got)))
          << "query " << q << " neighbour " << j;
      if (exact_order) {
        ASSERT_EQ(results[0].index(q, j), oracle[j].second) << "query " << q << " neighbour " << j;
      }
    }
  }
}

TEST(IndexPropertyTest, AllAlgorithmsAgreeWithEachOtherAndTheOracle) {
  ThreadPool pool(2);
  uint32_t seed = 1;
  for (double p : {1.0, 2.0, 3.0, 1.5, kInf}) {
    for (bool integer : {true, false}) {
      for (const auto& [n, d, k] : std::vector<std::tuple<size_t, size_t, size_t>>{
               {1, 3, 1}, {2, 1, 2}, {50, 1, 7}, {200, 2, 10}, {300, 5, 1}, {257, 8, 20},
               {120, 20, 120}, {600, 3, 30}}) {
        for (int leaf : {1, 3, 30}) {
          CheckCase({n, d, k, p, integer, leaf}, seed++, &pool);
        }
      }
    }
  }
}

TEST(IndexPropertyTest, RadiusNeighborsMatchKNeighborsPrefix) {
  std::mt19937 rng(11);
  auto data = std::make_shared<Matrix>(IntegerData(400, 4, 5, &rng));
  Matrix queries = IntegerData(20, 4, 5, &rng);
  for (double p : {1.0, 2.0, kInf}) {
    std::vector<RadiusResult> results;
    for (Algorithm a : kAlgorithms) {
      auto index = BuildIndex(data, {}, {a, 10, p});
      ASSERT_TRUE(index.ok());
      auto r = (*index)->RadiusNeighbors(queries, 2.0, nullptr);
      ASSERT_TRUE(r.ok()) << r.status();
      auto all = (*index)->KNeighbors(queries, 400, nullptr);
      ASSERT_TRUE(all.ok());
      // The radius answer is the prefix of the full ranking with distance <= 2.
      for (size_t q = 0; q < queries.rows(); ++q) {
        size_t count = 0;
        while (count < 400 && all->distance(q, count) <= 2.0) ++count;
        ASSERT_EQ(r->offsets[q + 1] - r->offsets[q], count) << "p=" << p << " q=" << q;
        for (size_t j = 0; j < count; ++j) {
          EXPECT_EQ(r->indices[r->offsets[q] + j], all->index(q, j));
          EXPECT_EQ(r->distances[r->offsets[q] + j], all->distance(q, j));
        }
      }
      results.push_back(*std::move(r));
    }
    EXPECT_EQ(results[1].indices, results[0].indices);
    EXPECT_EQ(results[2].indices, results[0].indices);
  }
}

TEST(IndexPropertyTest, CustomIdsOrderTies) {
  // Four identical rows with ids given out of order: ties are broken by id, not by position.
  auto data = std::make_shared<Matrix>(4, 2);
  for (Algorithm a : kAlgorithms) {
    auto index = BuildIndex(data, {40, 10, 30, 20}, {a, 1, 2});
    ASSERT_TRUE(index.ok());
    const double q[] = {1, 1};
    auto r = (*index)->KNeighbors(MatrixView(q, 1, 2), 3, nullptr);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->indices, (std::vector<int64_t>{10, 20, 30})) << AlgorithmName(a);
  }
}

// Every algorithm exposes exactly the (row, id) pairs it was built from, in its own order, and an
// index rebuilt from them answers as the original does.
TEST(IndexPropertyTest, StoredRowsAndIdsAreTheInputPairs) {
  std::mt19937 rng(17);
  for (const auto& [n, d, leaf] : std::vector<std::tuple<size_t, size_t, int>>{
           {1, 3, 1}, {2, 1, 1}, {97, 2, 3}, {400, 4, 5}, {257, 9, 30}}) {
    SCOPED_TRACE(absl::StrFormat("n=%d d=%d leaf=%d", n, d, leaf));
    // Integer rows with duplicates, and ids that are neither 0..n-1 nor sorted.
    auto data = std::make_shared<Matrix>(IntegerData(n, d, 4, &rng));
    std::vector<int64_t> ids(n);
    for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int64_t>(1000 + 3 * i);
    std::shuffle(ids.begin(), ids.end(), rng);
    using Pair = std::pair<std::vector<double>, int64_t>;
    std::vector<Pair> want;
    for (size_t i = 0; i < n; ++i) {
      want.push_back({std::vector<double>(data->row(i), data->row(i) + d), ids[i]});
    }
    std::sort(want.begin(), want.end());
    const Matrix queries = IntegerData(10, d, 5, &rng);
    for (Algorithm a : kAlgorithms) {
      SCOPED_TRACE(AlgorithmName(a));
      auto index = BuildIndex(data, ids, {a, leaf, 2});
      ASSERT_TRUE(index.ok()) << index.status();
      const MatrixView rows = (*index)->stored_rows();
      const absl::Span<const int64_t> stored_ids = (*index)->stored_ids();
      ASSERT_EQ(rows.rows(), n);
      ASSERT_EQ(rows.cols(), d);
      ASSERT_EQ(stored_ids.size(), n);
      std::vector<Pair> got;
      bool same_order = true;
      for (size_t i = 0; i < n; ++i) {
        got.push_back({std::vector<double>(rows.row(i), rows.row(i) + d), stored_ids[i]});
        same_order = same_order && stored_ids[i] == ids[i];
      }
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, want);
      if (a == Algorithm::kBrute) {
        // Brute force shares the caller's buffer and keeps its order.
        EXPECT_EQ(rows.data(), data->data());
        EXPECT_TRUE(same_order);
      } else if (n >= 97) {
        // A tree's order is its own, so the multiset comparison above means something.
        EXPECT_FALSE(same_order);
      }
      // Rebuilt from its stored pairs (as a worker's subset indexes are), the same answers.
      auto rebuilt = BuildIndex(std::make_shared<const Matrix>(Matrix::CopyOf(rows)),
                                std::vector<int64_t>(stored_ids.begin(), stored_ids.end()),
                                {Algorithm::kBrute, leaf, 2});
      ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
      const int k = static_cast<int>(std::min<size_t>(n, 7));
      auto r1 = (*index)->KNeighbors(queries, k, nullptr);
      auto r2 = (*rebuilt)->KNeighbors(queries, k, nullptr);
      ASSERT_TRUE(r1.ok() && r2.ok());
      EXPECT_EQ(r2->indices, r1->indices);
      EXPECT_EQ(r2->distances, r1->distances);
    }
  }
}

TEST(IndexPropertyTest, ClearErrors) {
  auto data = std::make_shared<Matrix>(5, 3);
  for (Algorithm a : kAlgorithms) {
    auto index = BuildIndex(data, {}, {a, 30, 2});
    ASSERT_TRUE(index.ok());
    Matrix q(2, 3);
    for (int k : {0, -1, 6}) {
      auto r = (*index)->KNeighbors(q, k, nullptr);
      ASSERT_FALSE(r.ok()) << k;
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(r.status().message().find("n_neighbors"), std::string::npos) << r.status();
    }
    EXPECT_TRUE((*index)->KNeighbors(q, 5, nullptr).ok());  // k == n is fine
    Matrix wrong(1, 4);
    auto r = (*index)->KNeighbors(wrong, 1, nullptr);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "queries: expected 3 features, got 4");
    q.at(1, 2) = std::nan("");
    r = (*index)->KNeighbors(q, 1, nullptr);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("queries.row[1][2]"), std::string::npos) << r.status();
  }
  EXPECT_FALSE(BuildIndex(std::make_shared<Matrix>(0, 3), {}, {}).ok());
  EXPECT_FALSE(BuildIndex(data, {}, {Algorithm::kKdTree, 0, 2}).ok());
  EXPECT_FALSE(BuildIndex(data, {}, {Algorithm::kKdTree, 30, 0.5}).ok());
  EXPECT_FALSE(BuildIndex(data, {1, 2}, {}).ok());
}

TEST(IndexPropertyTest, RdistVariantClampsKToShardSize) {
  auto data = std::make_shared<Matrix>(3, 1, std::vector<double>{0, 1, 2});
  auto index = BuildIndex(data, {7, 8, 9}, {Algorithm::kKdTree, 1, 2});
  ASSERT_TRUE(index.ok());
  const double q[] = {1.9};
  auto r = (*index)->KNeighborsRdist(MatrixView(q, 1, 1), 10, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->k, 3u);
  EXPECT_EQ(r->indices, (std::vector<int64_t>{9, 8, 7}));
}

TEST(IndexPropertyTest, TreesAnswerLargeLowDimBatchesInTheCallersOrder) {
  // Trees search a batch in a spatial order of the queries (neighbor_index.cc) and must write
  // every answer back to its caller's row: many queries (several blocks on two threads),
  // duplicates, queries far outside the data, a column that is constant among the queries, and
  // coordinates whose span overflows.
  ThreadPool pool(2);
  std::mt19937 rng(5);
  for (size_t d : {1, 2, 3, 4, 5, 8}) {
    SCOPED_TRACE(absl::StrFormat("d=%d", d));
    auto data = std::make_shared<Matrix>(IntegerData(3000, d, 9, &rng));
    Matrix queries = IntegerData(1500, d, 11, &rng);
    for (size_t q = 0; q < queries.rows(); q += 97) {
      for (size_t j = 0; j < d; ++j) {
        queries.at(q, j) = (q % 2 ? 1.5e308 : -1.5e308) / static_cast<double>(j + 1);
      }
    }
    if (d > 1) {
      for (size_t q = 0; q < queries.rows(); ++q) queries.at(q, d - 1) = 3.0;
    }
    std::vector<KNeighborsResult> results;
    for (Algorithm a : kAlgorithms) {
      auto index = BuildIndex(data, {}, {a, 7, 2});
      ASSERT_TRUE(index.ok()) << index.status();
      auto r = (*index)->KNeighborsRdist(queries, 10, &pool);
      ASSERT_TRUE(r.ok()) << r.status();
      results.push_back(*std::move(r));
    }
    for (size_t a = 1; a < results.size(); ++a) {
      EXPECT_EQ(results[a].indices, results[0].indices) << AlgorithmName(kAlgorithms[a]);
      EXPECT_EQ(results[a].distances, results[0].distances) << AlgorithmName(kAlgorithms[a]);
    }
    // One query alone gets the answer it gets within the batch.
    for (size_t q : {size_t{0}, size_t{1}, size_t{777}, size_t{1499}}) {
      auto index = BuildIndex(data, {}, {Algorithm::kKdTree, 7, 2});
      auto one = (*index)->KNeighborsRdist(queries.view().Slice(q, q + 1), 10, nullptr);
      ASSERT_TRUE(one.ok());
      for (size_t j = 0; j < 10; ++j) {
        EXPECT_EQ(one->index(0, j), results[1].index(q, j)) << "query " << q;
        EXPECT_EQ(one->distance(0, j), results[1].distance(q, j)) << "query " << q;
      }
    }
  }
}

TEST(IndexPropertyTest, AutoResolvesByShape) {
  EXPECT_EQ(ResolveAuto(1000000, 3), Algorithm::kKdTree);
  EXPECT_EQ(ResolveAuto(1000000, 64), Algorithm::kBrute);
  EXPECT_EQ(ResolveAuto(100, 3), Algorithm::kBrute);
}

// The float32 candidate filter (float_filter.h) used by brute force and by tree leaf scans for
// p = 2 must never change an answer: on data built to stress float32 (large offsets that cancel,
// huge and tiny magnitudes, many exact ties and duplicates, queries far outside the data) every
// algorithm still equals the plain exact scan of every row, computed here with the same Rdist.
std::vector<Neighbor> ExactScan(const Matrix& x, const double* q, size_t k) {
  EuclideanMetric m;
  TopK heap(k);
  for (size_t i = 0; i < x.rows(); ++i) heap.Push(m.Rdist(q, x.row(i), x.cols()), static_cast<int64_t>(i));
  return heap.TakeSorted();
}

void CheckAgainstExactScan(const Matrix& data, const Matrix& queries, size_t k, ThreadPool* pool) {
  auto shared = std::make_shared<Matrix>(data);
  for (Algorithm a : kAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    auto index = BuildIndex(shared, {}, {a, 30, 2});
    ASSERT_TRUE(index.ok()) << index.status();
    auto r = (*index)->KNeighborsRdist(queries, static_cast<int>(k), pool);
    ASSERT_TRUE(r.ok()) << r.status();
    for (size_t q = 0; q < queries.rows(); ++q) {
      const std::vector<Neighbor> want = ExactScan(data, queries.row(q), r->k);
      for (size_t j = 0; j < r->k; ++j) {
        ASSERT_EQ(r->index(q, j), want[j].id) << "query " << q << " neighbour " << j;
        ASSERT_EQ(r->distance(q, j), want[j].rdist) << "query " << q << " neighbour " << j;
      }
    }
  }
}

TEST(IndexPropertyTest, FloatFilterKeepsExactAnswersOnStressData) {
  ThreadPool pool(2);
  std::mt19937 rng(2024);
  std::normal_distribution<double> g;
  for (size_t d : {8, 16, 33, 64, 200}) {
    for (double offset : {0.0, 1e4, 1e8, -3e12}) {
      for (double unit : {1.0, 1e-6, 1e-30, 1e30}) {
        SCOPED_TRACE(absl::StrFormat("d=%d offset=%g unit=%g", d, offset, unit));
        const size_t n = 700;
        Matrix data(n, d);
        for (size_t i = 0; i < n; ++i) {
          for (size_t j = 0; j < d; ++j) {
            // Integer grid values: many exactly equal distances; every 5th row a duplicate.
            const double v = (i % 5 == 4) ? data.at(i - 1, j) : std::round(g(rng) * 2);
            data.at(i, j) = offset + v * unit;
          }
        }
        Matrix queries(24, d);
        for (size_t q = 0; q < queries.rows(); ++q) {
          for (size_t j = 0; j < d; ++j) {
            if (q < 8) {
              queries.at(q, j) = data.at(q * 37, j);  // training rows: distance 0, duplicates
            } else if (q < 20) {
              queries.at(q, j) = offset + std::round(g(rng) * 2) * unit + (q % 2) * 0.5 * unit;
            } else {
              queries.at(q, j) = offset + (q - 19) * 1e12 * unit;  // far outside the data
            }
          }
        }
        CheckAgainstExactScan(data, queries, 10, &pool);
      }
    }
  }
}

TEST(IndexPropertyTest, FloatFilterLargeBruteForceMatchesExactScan) {
  // Larger n and d than the oracle test, several query blocks and panel pairs, k up to n.
  ThreadPool pool(2);
  std::mt19937 rng(7);
  for (const auto& [n, d, k] : std::vector<std::tuple<size_t, size_t, size_t>>{
           {5000, 20, 10}, {1437, 64, 10}, {333, 784, 17}, {4100, 3, 50}, {97, 16, 97}}) {
    SCOPED_TRACE(absl::StrFormat("n=%d d=%d k=%d", n, d, k));
    Matrix data = IntegerData(n, d, 3, &rng);
    Matrix queries = IntegerData(300, d, 3, &rng);
    CheckAgainstExactScan(data, queries, k, &pool);
    Matrix gdata = GaussianData(n, d, &rng);
    Matrix gqueries = GaussianData(300, d, &rng);
    CheckAgainstExactScan(gdata, gqueries, k, &pool);
  }
}

}  // namespace
}  // namespace knncluster

namespace knncluster {
namespace {

TEST(MergeKNeighborsTest, ShardsMergedEqualOneSearchOverAllRows) {
  std::mt19937 rng(77);
  const size_t n = 500, d = 3;
  Matrix all(n, d);
  for (size_t i = 0; i < n * d; ++i) all.data()[i] = static_cast<double>(rng() % 4);  // ties
  Matrix queries(40, d);
  for (size_t i = 0; i < queries.rows() * d; ++i) queries.data()[i] = static_cast<double>(rng() % 4);
  ThreadPool pool(2);
  for (double p : {1.0, 2.0, std::numeric_limits<double>::infinity()}) {
    auto whole = BuildIndex(std::make_shared<Matrix>(all), {}, {Algorithm::kKdTree, 5, p});
    ASSERT_TRUE(whole.ok());
    auto want = (*whole)->KNeighborsRdist(queries, 25, &pool);
    ASSERT_TRUE(want.ok());
    // Three shards of interleaved rows, each keeping its global ids.
    std::vector<KNeighborsResult> parts;
    for (size_t s = 0; s < 3; ++s) {
      std::vector<int64_t> ids;
      for (size_t i = s; i < n; i += 3) ids.push_back(static_cast<int64_t>(i));
      auto shard = BuildIndex(std::make_shared<Matrix>(Matrix::Gather(all, ids)), ids,
                              {Algorithm::kBallTree, 5, p});
      ASSERT_TRUE(shard.ok());
      auto part = (*shard)->KNeighborsRdist(queries, 25, &pool);
      ASSERT_TRUE(part.ok());
      parts.push_back(*std::move(part));
    }
    std::vector<const KNeighborsResult*> ptrs = {&parts[0], &parts[1], &parts[2]};
    auto merged = MergeKNeighbors(ptrs, 25, &pool);
    ASSERT_TRUE(merged.ok()) << merged.status();
    EXPECT_EQ(merged->indices, want->indices) << "p=" << p;
    EXPECT_EQ(merged->distances, want->distances) << "p=" << p;  // bit for bit
    EXPECT_FALSE(MergeKNeighbors(ptrs, 10000, &pool).ok());  // fewer rows than k
  }
}

}  // namespace
}  // namespace knncluster

namespace knncluster {
namespace {

// Routed merging: each query is answered by the parts it was sent to (row_of maps a query to a
// row of a part's answer); a query sent to every part equals one search over all rows; one sent
// to a single part takes that part's row; to_true converts on the way out.
TEST(MergePartialAnswersTest, RoutedPartsMergeLikeOneSearch) {
  std::mt19937 rng(5);
  const size_t n = 400, d = 2, k = 6;
  Matrix all(n, d);
  for (size_t i = 0; i < n * d; ++i) all.data()[i] = static_cast<double>(rng() % 5);  // ties
  Matrix queries(30, d);
  for (size_t i = 0; i < queries.rows() * d; ++i) queries.data()[i] = static_cast<double>(rng() % 5);
  ThreadPool pool(2);
  auto metric = Minkowski::Create(2);
  auto whole = BuildIndex(std::make_shared<Matrix>(all), {}, {Algorithm::kKdTree, 5, 2});
  ASSERT_TRUE(whole.ok());
  auto want = (*whole)->KNeighbors(queries, static_cast<int>(k), &pool);
  ASSERT_TRUE(want.ok());
  // Two halves of the rows; query q goes to part 0 when q % 3 != 1, to part 1 when q % 3 != 0.
  std::vector<KNeighborsResult> answers(2);
  std::vector<std::vector<int32_t>> row_of(2, std::vector<int32_t>(queries.rows(), -1));
  for (size_t s = 0; s < 2; ++s) {
    std::vector<int64_t> ids;
    for (size_t i = s; i < n; i += 2) ids.push_back(static_cast<int64_t>(i));
    auto shard = BuildIndex(std::make_shared<Matrix>(Matrix::Gather(all, ids)), ids,
                            {Algorithm::kBrute, 5, 2});
    ASSERT_TRUE(shard.ok());
    std::vector<int64_t> sent;
    for (size_t q = 0; q < queries.rows(); ++q) {
      if (q % 3 != (s == 0 ? 1u : 0u)) {
        row_of[s][q] = static_cast<int32_t>(sent.size());
        sent.push_back(static_cast<int64_t>(q));
      }
    }
    auto part = (*shard)->KNeighborsRdist(Matrix::Gather(queries, sent), static_cast<int>(k), &pool);
    ASSERT_TRUE(part.ok());
    answers[s] = *std::move(part);
  }
  std::vector<PartialAnswer> parts;
  for (size_t s = 0; s < 2; ++s) {
    parts.push_back({answers[s].k, answers[s].distances.data(), answers[s].indices.data(),
                     row_of[s]});
  }
  std::vector<double> dist(queries.rows() * k);
  std::vector<int64_t> idx(queries.rows() * k);
  ASSERT_TRUE(MergePartialAnswers(parts, queries.rows(), k, &*metric, &pool, dist.data(),
                                  idx.data())
                  .ok());
  for (size_t q = 0; q < queries.rows(); ++q) {
    for (size_t j = 0; j < k; ++j) {
      if (q % 3 == 2) {  // both parts: the single search's answer, bit for bit
        EXPECT_EQ(idx[q * k + j], want->index(q, j)) << q;
        EXPECT_EQ(dist[q * k + j], want->distance(q, j)) << q;
      } else {  // one part: its row, distances made true
        const size_t s = q % 3 == 0 ? 0 : 1;
        const size_t r = static_cast<size_t>(row_of[s][q]);
        EXPECT_EQ(idx[q * k + j], answers[s].index(r, j)) << q;
        EXPECT_EQ(dist[q * k + j], std::sqrt(answers[s].distance(r, j))) << q;
      }
    }
  }
  // Ids in 32 bits (a compact message's), read and written: the same answer.
  std::vector<int32_t> narrow_in(answers[1].indices.begin(), answers[1].indices.end());
  std::vector<PartialAnswer> mixed = parts;
  mixed[1].indices = IdsIn(narrow_in.data());
  std::vector<double> dist32(queries.rows() * k);
  std::vector<int32_t> idx32(queries.rows() * k);
  ASSERT_TRUE(MergePartialAnswers(mixed, queries.rows(), k, &*metric, &pool, dist32.data(),
                                  idx32.data())
                  .ok());
  EXPECT_EQ(dist32, dist);
  EXPECT_EQ(std::vector<int64_t>(idx32.begin(), idx32.end()), idx);
  // A query no part answers, or one with fewer than k neighbours, is named.
  row_of[0][7] = -1;
  row_of[1][7] = -1;
  parts[0].row_of = row_of[0];
  parts[1].row_of = row_of[1];
  absl::Status st = MergePartialAnswers(parts, queries.rows(), k, nullptr, &pool, dist.data(),
                                        idx.data());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("query 7:"), std::string::npos) << st;
}

TEST(NeighborIndexTest, KNeighborsRdistIntoEqualsKNeighborsRdist) {
  std::mt19937 rng(9);
  Matrix data(300, 3), queries(50, 3);
  for (size_t i = 0; i < data.rows() * 3; ++i) data.data()[i] = static_cast<double>(rng() % 7);
  for (size_t i = 0; i < queries.rows() * 3; ++i) queries.data()[i] = static_cast<double>(rng() % 7);
  ThreadPool pool(2);
  for (Algorithm a : {Algorithm::kKdTree, Algorithm::kBallTree, Algorithm::kBrute}) {
    auto index = BuildIndex(std::make_shared<Matrix>(data), {}, {a, 4, 1.5});
    ASSERT_TRUE(index.ok());
    auto want = (*index)->KNeighborsRdist(queries, 400, &pool);  // k above size: min(k, size)
    ASSERT_TRUE(want.ok());
    std::vector<double> dist(queries.rows() * 300);
    std::vector<int64_t> idx(queries.rows() * 300);
    ASSERT_TRUE((*index)->KNeighborsRdistInto(queries, 400, &pool, dist.data(), idx.data()).ok());
    EXPECT_EQ(dist, want->distances);
    EXPECT_EQ(idx, want->indices);
    std::vector<int32_t> idx32(queries.rows() * 300);  // the compact form: the same ids
    ASSERT_TRUE((*index)->KNeighborsRdistInto(queries, 400, &pool, dist.data(), idx32.data()).ok());
    EXPECT_EQ(std::vector<int64_t>(idx32.begin(), idx32.end()), want->indices);
    EXPECT_FALSE((*index)->KNeighborsRdistInto(queries, 0, &pool, dist.data(), idx.data()).ok());
  }
}

}  // namespace
}  // namespace knncluster

namespace knncluster {
namespace {

// A bounded search (rdist_bounds) keeps exactly the unbounded answer's neighbours within each
// query's bound, in order, ties at the bound included, and pads the rest; every algorithm and p,
// with the filter (brute force p = 2) and without, on many ties.
TEST(BoundedSearchTest, KeepsExactlyTheNeighboursWithinTheBoundThenPads) {
  std::mt19937 rng(31);
  const size_t n = 700, d = 3, k = 12;
  Matrix data(n, d), queries(200, d);
  for (size_t i = 0; i < n * d; ++i) data.data()[i] = static_cast<double>(rng() % 6);
  for (size_t i = 0; i < queries.rows() * d; ++i) {
    queries.data()[i] = static_cast<double>(rng() % 8) - 1;
  }
  ThreadPool pool(2);
  for (double p : {1.0, 2.0, 3.0, kInf}) {
    for (Algorithm a : kAlgorithms) {
      SCOPED_TRACE(absl::StrFormat("p=%g %s", p, AlgorithmName(a)));
      auto index = BuildIndex(std::make_shared<Matrix>(data), {}, {a, 8, p});
      ASSERT_TRUE(index.ok());
      auto full = (*index)->KNeighborsRdist(queries, static_cast<int>(k), &pool);
      ASSERT_TRUE(full.ok());
      // Bounds: exactly some neighbour's distance (ties at the bound), between two, 0, +inf.
      std::vector<double> bounds(queries.rows());
      for (size_t q = 0; q < queries.rows(); ++q) {
        switch (q % 5) {
          case 0: bounds[q] = full->distance(q, k - 1); break;
          case 1: bounds[q] = full->distance(q, q % k); break;
          case 2: bounds[q] = (full->distance(q, 2) + full->distance(q, 3)) / 2; break;
          case 3: bounds[q] = 0; break;
          default: bounds[q] = kInf;
        }
      }
      auto got = (*index)->KNeighborsRdist(queries, static_cast<int>(k), &pool, bounds);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->k, k);
      size_t padded = 0;
      for (size_t q = 0; q < queries.rows(); ++q) {
        for (size_t j = 0; j < k; ++j) {
          if (full->distance(q, j) <= bounds[q]) {
            EXPECT_EQ(got->index(q, j), full->index(q, j)) << "query " << q << " j " << j;
            EXPECT_EQ(got->distance(q, j), full->distance(q, j)) << "query " << q << " j " << j;
          } else {
            ++padded;
            EXPECT_EQ(got->index(q, j), kNoNeighborId) << "query " << q << " j " << j;
            EXPECT_EQ(got->distance(q, j), kInf) << "query " << q << " j " << j;
          }
        }
      }
      EXPECT_GT(padded, queries.rows());  // the bounds did cut
      // Into the caller's arrays, ids in 32 bits: the same.
      std::vector<double> dist(queries.rows() * k);
      std::vector<int32_t> idx32(queries.rows() * k);
      ASSERT_TRUE((*index)
                      ->KNeighborsRdistInto(queries, static_cast<int>(k), &pool, dist.data(),
                                            idx32.data(), bounds)
                      .ok());
      EXPECT_EQ(dist, got->distances);
      EXPECT_EQ(std::vector<int64_t>(idx32.begin(), idx32.end()), got->indices);
    }
  }
}

TEST(BoundedSearchTest, BadBoundsAreNamed) {
  Matrix data(20, 2), queries(3, 2);
  for (size_t i = 0; i < 40; ++i) data.data()[i] = static_cast<double>(i % 7);
  auto index = BuildIndex(std::make_shared<Matrix>(data), {}, {Algorithm::kKdTree, 4, 2});
  ASSERT_TRUE(index.ok());
  const std::vector<double> two = {1, 1};
  auto st = (*index)->KNeighborsRdist(queries, 2, nullptr, two).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("rdist_bounds: expected 3 values"), std::string::npos) << st;
  for (double bad : {-1.0, std::nan("")}) {
    const std::vector<double> b = {1, bad, 1};
    st = (*index)->KNeighborsRdist(queries, 2, nullptr, b).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("rdist_bounds[1]"), std::string::npos) << st;
  }
}

// Shards searched within a bound that is at least each query's k-th distance over all rows (a
// coordinator's routing bound) merge into the single search's answer; a part's padding is not a
// neighbour (a bound below the k-th leaves the merge short: kFail names it, kPad pads).
TEST(BoundedSearchTest, BoundedShardsMergeLikeOneSearch) {
  std::mt19937 rng(8);
  const size_t n = 600, d = 2, k = 7;
  Matrix all(n, d), queries(120, d);
  for (size_t i = 0; i < n * d; ++i) all.data()[i] = static_cast<double>(rng() % 9);
  for (size_t i = 0; i < queries.rows() * d; ++i) queries.data()[i] = static_cast<double>(rng() % 9);
  ThreadPool pool(2);
  auto whole = BuildIndex(std::make_shared<Matrix>(all), {}, {Algorithm::kKdTree, 5, 2});
  ASSERT_TRUE(whole.ok());
  auto want = (*whole)->KNeighborsRdist(queries, static_cast<int>(k), &pool);
  ASSERT_TRUE(want.ok());
  // Spatial shards: x < 4 and x >= 4.
  std::vector<std::vector<int64_t>> ids(2);
  for (size_t i = 0; i < n; ++i) ids[all.at(i, 0) < 4 ? 0 : 1].push_back(static_cast<int64_t>(i));
  // Each shard's bounded answer.
  const auto search_shards = [&](Algorithm a, const std::vector<double>& bounds) {
    std::vector<KNeighborsResult> parts;
    for (size_t s = 0; s < 2; ++s) {
      auto shard = BuildIndex(std::make_shared<Matrix>(Matrix::Gather(all, ids[s])), ids[s],
                              {a, 5, 2});
      EXPECT_TRUE(shard.ok());
      auto part = (*shard)->KNeighborsRdist(queries, static_cast<int>(k), &pool, bounds);
      EXPECT_TRUE(part.ok());
      parts.push_back(*std::move(part));
    }
    return parts;
  };
  for (double slack : {1.0, 1.5}) {  // the k-th distance itself (ties), and above it
    std::vector<double> bounds(queries.rows());
    for (size_t q = 0; q < queries.rows(); ++q) bounds[q] = want->distance(q, k - 1) * slack;
    const std::vector<KNeighborsResult> parts = search_shards(Algorithm::kBallTree, bounds);
    size_t padded = 0;
    for (const KNeighborsResult& p : parts) {
      padded += std::count(p.indices.begin(), p.indices.end(), kNoNeighborId);
    }
    EXPECT_GT(padded, 0u);
    std::vector<PartialAnswer> views = {PartialAnswer::Whole(parts[0]),
                                        PartialAnswer::Whole(parts[1])};
    for (ShortRows mode : {ShortRows::kFail, ShortRows::kPad}) {
      std::vector<double> dist(queries.rows() * k);
      std::vector<int64_t> idx(queries.rows() * k);
      ASSERT_TRUE(MergePartialAnswers(views, queries.rows(), k, nullptr, &pool, dist.data(),
                                      idx.data(), mode)
                      .ok());
      EXPECT_EQ(idx, want->indices) << "slack " << slack;
      EXPECT_EQ(dist, want->distances) << "slack " << slack;
    }
  }
  // A bound below query 5's k-th distance: its merged row is short.
  std::vector<double> bounds(queries.rows(), kInf);
  bounds[5] = want->distance(5, k - 1) / 2;
  const std::vector<KNeighborsResult> parts = search_shards(Algorithm::kBrute, bounds);
  std::vector<PartialAnswer> views = {PartialAnswer::Whole(parts[0]),
                                      PartialAnswer::Whole(parts[1])};
  std::vector<double> dist(queries.rows() * k);
  std::vector<int64_t> idx(queries.rows() * k);
  absl::Status st = MergePartialAnswers(views, queries.rows(), k, nullptr, &pool, dist.data(),
                                        idx.data(), ShortRows::kFail);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("query 5:"), std::string::npos) << st;
  ASSERT_TRUE(MergePartialAnswers(views, queries.rows(), k, nullptr, &pool, dist.data(),
                                  idx.data(), ShortRows::kPad)
                  .ok());
  size_t held = 0;
  while (held < k && idx[5 * k + held] != kNoNeighborId) ++held;
  ASSERT_LT(held, k);
  for (size_t j = 0; j < k; ++j) {
    if (j < held) {
      EXPECT_EQ(idx[5 * k + j], want->index(5, j));
    } else {
      EXPECT_EQ(idx[5 * k + j], kNoNeighborId);
      EXPECT_EQ(dist[5 * k + j], kInf);
    }
  }
  // One part alone answering the short query: its row is copied up to the padding, then short.
  std::vector<int32_t> only0(queries.rows(), -1), none(queries.rows(), -1);
  for (size_t q = 0; q < queries.rows(); ++q) only0[q] = static_cast<int32_t>(q);
  views[0].row_of = only0;
  views[1].row_of = none;
  st = MergePartialAnswers(views, queries.rows(), k, nullptr, &pool, dist.data(), idx.data(),
                           ShortRows::kFail);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace knncluster
