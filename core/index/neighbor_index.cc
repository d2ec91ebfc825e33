#include "core/index/neighbor_index.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "core/base/status_macros.h"
#include "core/index/ball_tree.h"
#include "core/index/brute_force.h"
#include "core/index/kd_tree.h"

namespace knncluster {

namespace {
// Queries per ParallelFor task: big enough to amortise scheduling and to let brute force reuse
// each panel of rows across many queries (float_filter.h), small enough that the scratch memory
// of a task stays small whatever the batch size. Smaller batches are split so that every thread
// of the pool gets work (QueryBlock).
constexpr size_t kQueryBlock = 128;
constexpr size_t kMinQueryBlock = 8;

size_t QueryBlock(size_t num_queries, ThreadPool* pool) {
  const size_t threads = pool == nullptr ? 1 : static_cast<size_t>(pool->num_threads());
  // At least two tasks per thread when there are enough queries, for load balance.
  const size_t per_task = (num_queries + 2 * threads - 1) / (2 * threads);
  return std::max(kMinQueryBlock, std::min(kQueryBlock, per_task));
}
// Trees search queries in a spatially coherent order (LocalityOrder) up to this dimension: then
// consecutive queries walk the same nodes and leaves, which stay in cache (uniform3d, 1M rows:
// ~1.35x kd_tree and ~1.6x ball_tree qps at 1 thread, measured with bench/knn_bench). Above it a
// Z-order key has too few bits per dimension to say much, and at 16+ dimensions the search time
// goes to distances.
constexpr size_t kMaxLocalityDim = 8;

// The permutation that sorts the queries by the Z-order (Morton) key of their coordinates, each
// quantised to `bits` bits within the queries' bounding box. Ties keep the caller's order.
std::vector<int64_t> LocalityOrder(MatrixView queries) {
  const size_t n = queries.rows(), d = queries.cols();
  const int bits = static_cast<int>(std::min<size_t>(21, 64 / d));
  std::vector<double> lo(queries.row(0), queries.row(0) + d), scale(d);
  std::vector<double> hi = lo;
  for (size_t i = 1; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) {
      lo[j] = std::min(lo[j], queries.at(i, j));
      hi[j] = std::max(hi[j], queries.at(i, j));
    }
  }
  const double cells = std::ldexp(1.0, bits);
  for (size_t j = 0; j < d; ++j) {
    // Finite spans only (queries are finite, but hi - lo may overflow).
    const double span = hi[j] - lo[j];
    scale[j] = span > 0 && std::isfinite(span) ? (cells - 1) / span : 0;
  }
  std::vector<std::pair<uint64_t, size_t>> keyed(n);
  std::vector<uint64_t> cell(d);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) {
      const double c = (queries.at(i, j) - lo[j]) * scale[j];
      cell[j] = c >= 0 && c < cells ? static_cast<uint64_t>(c) : 0;
    }
    uint64_t key = 0;
    for (int b = bits - 1; b >= 0; --b) {
      for (size_t j = 0; j < d; ++j) key = (key << 1) | ((cell[j] >> b) & 1);
    }
    keyed[i] = {key, i};
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<int64_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<int64_t>(keyed[i].second);
  return order;
}

// Below this many rows brute force beats building and walking a tree.
constexpr size_t kAutoBruteMaxRows = 2048;
// Above this dimension trees cannot prune (scikit-learn's `auto` uses the same cut-off).
constexpr size_t kAutoTreeMaxDim = 15;
}  // namespace

std::string AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kAuto:
      return "auto";
    case Algorithm::kKdTree:
      return "kd_tree";
    case Algorithm::kBallTree:
      return "ball_tree";
    case Algorithm::kBrute:
      return "brute";
  }
  return "unknown";
}

absl::StatusOr<Algorithm> ParseAlgorithm(const std::string& name) {
  for (Algorithm a : {Algorithm::kAuto, Algorithm::kKdTree, Algorithm::kBallTree, Algorithm::kBrute}) {
    if (name == AlgorithmName(a)) return a;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "algorithm: expected one of auto, kd_tree, ball_tree, brute; got \"", name, "\""));
}

Algorithm ResolveAuto(size_t n, size_t dim) {
  if (dim > kAutoTreeMaxDim || n <= kAutoBruteMaxRows) return Algorithm::kBrute;
  return Algorithm::kKdTree;
}

absl::Status CheckFinite(MatrixView m, const std::string& what) {
  const double* v = m.data();
  const size_t total = m.rows() * m.cols();
  for (size_t i = 0; i < total; ++i) {
    if (!std::isfinite(v[i])) {
      return absl::InvalidArgumentError(absl::StrFormat("%s.row[%d][%d]: value %g is not finite",
                                                        what, i / m.cols(), i % m.cols(), v[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status NeighborIndex::ValidateQueries(MatrixView queries) const {
  if (queries.cols() != dim_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "queries: expected %d features, got %d", dim_, queries.cols()));
  }
  return CheckFinite(queries, "queries");
}

absl::StatusOr<KNeighborsResult> NeighborIndex::Search(
    MatrixView queries, size_t k, ThreadPool* pool, absl::Span<const double> rdist_bounds) const {
  KNeighborsResult result;
  result.num_queries = queries.rows();
  result.k = k;
  result.distances.resize(queries.rows() * k);
  result.indices.resize(queries.rows() * k);
  KNN_RETURN_IF_ERROR(SearchInto(queries, k, pool, rdist_bounds, result.distances.data(),
                                 result.indices.data()));
  return result;
}

absl::Status NeighborIndex::SearchInto(MatrixView queries, size_t k, ThreadPool* pool,
                                       absl::Span<const double> rdist_bounds, double* distances,
                                       IdsOut indices) const {
  KNN_RETURN_IF_ERROR(ValidateQueries(queries));
  if (!rdist_bounds.empty()) {
    if (rdist_bounds.size() != queries.rows()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "rdist_bounds: expected %d values (one per query), got %d", queries.rows(),
          rdist_bounds.size()));
    }
    for (size_t q = 0; q < rdist_bounds.size(); ++q) {
      if (!(rdist_bounds[q] >= 0)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "rdist_bounds[%d]: must be >= 0 (or +inf), got %g", q, rdist_bounds[q]));
      }
    }
  }
  // Trees: search in LocalityOrder (results are per query, written back in the caller's order).
  std::vector<int64_t> order;
  Matrix reordered;
  MatrixView search_queries = queries;
  std::vector<double> reordered_bounds;
  const double* search_bounds = rdist_bounds.empty() ? nullptr : rdist_bounds.data();
  if (algorithm() != Algorithm::kBrute && dim_ <= kMaxLocalityDim && queries.rows() > 2) {
    order = LocalityOrder(queries);
    reordered = Matrix::Gather(queries, order);
    search_queries = reordered.view();
    if (search_bounds != nullptr) {
      reordered_bounds.resize(order.size());
      for (size_t i = 0; i < order.size(); ++i) reordered_bounds[i] = rdist_bounds[order[i]];
      search_bounds = reordered_bounds.data();
    }
  }
  const size_t block = QueryBlock(queries.rows(), pool);
  const size_t blocks = (queries.rows() + block - 1) / block;
  ParallelFor(pool, blocks, [&](size_t b) {
    const size_t begin = b * block;
    const size_t end = std::min(queries.rows(), begin + block);
    std::vector<Neighbor> out((end - begin) * k);
    SearchBlock(search_queries.Slice(begin, end), k,
                search_bounds == nullptr ? nullptr : search_bounds + begin, out.data());
    for (size_t q = begin; q < end; ++q) {
      const size_t dst = (order.empty() ? q : static_cast<size_t>(order[q])) * k;
      const Neighbor* src = &out[(q - begin) * k];
      for (size_t j = 0; j < k; ++j) {
        distances[dst + j] = src[j].rdist;
        indices.Set(dst + j, src[j].id);
      }
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<KNeighborsResult> NeighborIndex::KNeighbors(MatrixView queries, int k,
                                                           ThreadPool* pool) const {
  if (k < 1 || static_cast<size_t>(k) > size_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "n_neighbors: must be in [1, %d] (the number of training samples), got %d", size_, k));
  }
  KNN_ASSIGN_OR_RETURN(KNeighborsResult result, Search(queries, static_cast<size_t>(k), pool, {}));
  ToTrueDistances(metric_, &result);
  return result;
}

absl::StatusOr<KNeighborsResult> NeighborIndex::KNeighborsRdist(
    MatrixView queries, int k, ThreadPool* pool, absl::Span<const double> rdist_bounds) const {
  if (k < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("n_neighbors: must be >= 1, got %d", k));
  }
  return Search(queries, std::min(static_cast<size_t>(k), size_), pool, rdist_bounds);
}

absl::Status NeighborIndex::KNeighborsRdistInto(MatrixView queries, int k, ThreadPool* pool,
                                                double* distances, IdsOut indices,
                                                absl::Span<const double> rdist_bounds) const {
  if (k < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("n_neighbors: must be >= 1, got %d", k));
  }
  return SearchInto(queries, std::min(static_cast<size_t>(k), size_), pool, rdist_bounds,
                    distances, indices);
}

absl::StatusOr<RadiusResult> NeighborIndex::RadiusNeighbors(MatrixView queries, double radius,
                                                            ThreadPool* pool) const {
  if (!(radius >= 0) || std::isinf(radius)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("radius: must be a finite number >= 0, got %g", radius));
  }
  KNN_RETURN_IF_ERROR(ValidateQueries(queries));
  const double bound = metric_.DistToRdist(radius);
  std::vector<std::vector<Neighbor>> per_query(queries.rows());
  const size_t blocks = (queries.rows() + kQueryBlock - 1) / kQueryBlock;
  ParallelFor(pool, blocks, [&](size_t b) {
    const size_t end = std::min(queries.rows(), (b + 1) * kQueryBlock);
    for (size_t q = b * kQueryBlock; q < end; ++q) {
      RadiusSearchOne(queries.row(q), bound, &per_query[q]);
      SortNeighbors(&per_query[q]);
    }
  });
  RadiusResult result;
  result.offsets.reserve(queries.rows() + 1);
  result.offsets.push_back(0);
  for (auto& list : per_query) {
    for (const Neighbor& n : list) {
      result.distances.push_back(metric_.RdistToDist(n.rdist));
      result.indices.push_back(n.id);
    }
    result.offsets.push_back(result.indices.size());
    std::vector<Neighbor>().swap(list);
  }
  return result;
}

absl::StatusOr<std::unique_ptr<const NeighborIndex>> BuildIndex(
    std::shared_ptr<const Matrix> data, std::vector<int64_t> ids, const IndexOptions& options) {
  if (data == nullptr || data->rows() == 0) {
    return absl::InvalidArgumentError("X: the training data has no rows");
  }
  if (data->cols() == 0) return absl::InvalidArgumentError("X: the training data has no columns");
  if (!ids.empty() && ids.size() != data->rows()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ids: expected %d ids (one per row), got %d", data->rows(), ids.size()));
  }
  if (options.leaf_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("leaf_size: must be >= 1, got %d", options.leaf_size));
  }
  KNN_ASSIGN_OR_RETURN(Minkowski metric, Minkowski::Create(options.p));
  KNN_RETURN_IF_ERROR(CheckFinite(*data, "X"));
  if (ids.empty()) {
    ids.resize(data->rows());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  }
  Algorithm algorithm = options.algorithm;
  if (algorithm == Algorithm::kAuto) algorithm = ResolveAuto(data->rows(), data->cols());
  switch (algorithm) {
    case Algorithm::kKdTree:
      return std::unique_ptr<const NeighborIndex>(
          new KdTree(*data, std::move(ids), metric, options.leaf_size));
    case Algorithm::kBallTree:
      return std::unique_ptr<const NeighborIndex>(
          new BallTree(*data, std::move(ids), metric, options.leaf_size));
    case Algorithm::kBrute:
    case Algorithm::kAuto:
      break;
  }
  return std::unique_ptr<const NeighborIndex>(
      new BruteForceIndex(std::move(data), std::move(ids), metric));
}

NeighborsSink ResultSink(KNeighborsResult* result) {
  return [result](size_t rows, size_t k) -> absl::StatusOr<std::pair<double*, IdsOut>> {
    result->num_queries = rows;
    result->k = k;
    result->distances.resize(rows * k);
    result->indices.resize(rows * k);
    return std::make_pair(result->distances.data(), IdsOut(result->indices.data()));
  };
}

void ToTrueDistances(const Minkowski& metric, KNeighborsResult* result) {
  metric.Visit([&](auto m) {
    for (double& d : result->distances) d = m.RdistToDist(d);
  });
}

namespace {

// One row of neighbours answering a query (sorted by the ordering of top_k.h), viewed in place.
struct AnswerRow {
  const double* distances = nullptr;
  IdsIn indices;
  size_t k = 0;

  // How many of the first `limit` are neighbours (the rest: a bounded search's padding).
  size_t Held(size_t limit) const {
    size_t n = 0;
    while (n < limit && indices[n] != kNoNeighborId) ++n;
    return n;
  }
};

// Buffers MergeRows reuses from one query to the next (one per thread).
struct MergeScratch {
  std::vector<std::vector<Neighbor>> lists;
  std::vector<absl::Span<const Neighbor>> spans;
  std::vector<Neighbor> merged;
};

// One query's merge: its rows from the parts answering it (one row alone is copied) into its
// min(k, neighbours in all) nearest, written to out_distances / out_indices[0, k) (true distances
// with `to_true`, else as given); returns how many were written. REQUIRES: scratch non-null.
size_t MergeRows(absl::Span<const AnswerRow> rows, size_t k, const Minkowski* to_true,
                 double* out_distances, IdsOut out_indices, MergeScratch* scratch) {
  MergeScratch& sc = *scratch;
  struct Identity {
    double RdistToDist(double r) const { return r; }
  };
  auto body = [&](auto metric) -> size_t {
    if (rows.size() == 1) {  // one row alone is copied as it is
      const AnswerRow& row = rows[0];
      const size_t got = row.Held(std::min(k, row.k));
      for (size_t j = 0; j < got; ++j) {
        out_distances[j] = metric.RdistToDist(row.distances[j]);
        out_indices.Set(j, row.indices[j]);
      }
      return got;
    }
    if (sc.lists.size() < rows.size()) sc.lists.resize(rows.size());
    sc.spans.clear();
    for (size_t s = 0; s < rows.size(); ++s) {
      sc.lists[s].resize(rows[s].Held(rows[s].k));
      for (size_t j = 0; j < sc.lists[s].size(); ++j) {
        sc.lists[s][j] = Neighbor{rows[s].distances[j], rows[s].indices[j]};
      }
      sc.spans.push_back(sc.lists[s]);
    }
    sc.merged.resize(k);
    const size_t got = MergeTopK(sc.spans, k, sc.merged.data());
    for (size_t j = 0; j < got; ++j) {
      out_distances[j] = metric.RdistToDist(sc.merged[j].rdist);
      out_indices.Set(j, sc.merged[j].id);
    }
    return got;
  };
  if (rows.empty()) return 0;
  if (to_true == nullptr) return body(Identity{});
  size_t got = 0;
  to_true->Visit([&](auto m) { got = body(m); });
  return got;
}

}  // namespace

absl::Status MergePartialAnswers(absl::Span<const PartialAnswer> parts, size_t num_queries,
                                 size_t k, const Minkowski* to_true, ThreadPool* pool,
                                 double* out_distances, IdsOut out_indices,
                                 ShortRows short_rows) {
  const size_t n = num_queries;
  constexpr size_t kBlock = 256;
  constexpr size_t kNone = ~size_t{0};
  absl::Mutex short_mu;
  size_t first_short = kNone;  // the smallest query left short, and what it got
  size_t first_short_count = 0;
  ParallelFor(pool, (n + kBlock - 1) / kBlock, [&](size_t b) {
    std::vector<AnswerRow> rows;
    rows.reserve(parts.size());
    MergeScratch scratch;
    for (size_t q = b * kBlock; q < std::min(n, (b + 1) * kBlock); ++q) {
      rows.clear();
      for (const PartialAnswer& part : parts) {
        const int64_t row = part.row_of.empty() ? static_cast<int64_t>(q) : part.row_of[q];
        if (row < 0) continue;  // part was not asked about q
        const size_t from = static_cast<size_t>(row) * part.k;
        rows.push_back(AnswerRow{part.distances + from, part.indices + from, part.k});
      }
      const size_t got =
          MergeRows(rows, k, to_true, out_distances + q * k, out_indices + q * k, &scratch);
      if (got < k && short_rows == ShortRows::kPad) {
        for (size_t j = got; j < k; ++j) {
          out_distances[q * k + j] = std::numeric_limits<double>::infinity();
          out_indices.Set(q * k + j, kNoNeighborId);
        }
      } else if (got < k) {
        absl::MutexLock lock(&short_mu);
        if (q < first_short) {
          first_short = q;
          first_short_count = got;
        }
      }
    }
  });
  if (first_short != kNone) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "query %d: the partial answers hold %d distinct neighbours of the %d needed", first_short,
        first_short_count, k));
  }
  return absl::OkStatus();
}

absl::StatusOr<KNeighborsResult> MergeKNeighbors(absl::Span<const KNeighborsResult* const> parts,
                                                 size_t k, ThreadPool* pool) {
  if (parts.empty()) return absl::InvalidArgumentError("parts: nothing to merge");
  const size_t n = parts[0]->num_queries;
  std::vector<PartialAnswer> views;
  for (const KNeighborsResult* p : parts) {
    if (p->num_queries != n || p->distances.size() != n * p->k || p->indices.size() != n * p->k) {
      return absl::InvalidArgumentError("parts: partial answers of different shapes");
    }
    views.push_back(PartialAnswer::Whole(*p));
  }
  KNeighborsResult out;
  out.num_queries = n;
  out.k = k;
  out.distances.resize(n * k);
  out.indices.resize(n * k);
  KNN_RETURN_IF_ERROR(MergePartialAnswers(views, n, k, nullptr, pool, out.distances.data(),
                                          out.indices.data()));
  return out;
}

}  // namespace knncluster
