// NeighborIndex: the one runtime interface over the three exact search algorithms (brute force,
// KD tree, ball tree), like faiss's Index. Build one with BuildIndex(); query it with KNeighbors
// or RadiusNeighbors.
//
// Ownership: an index shares its training data (shared_ptr<const Matrix>) or owns a reordered
// copy; it never borrows a caller's buffer beyond a call.
// Thread safety: a built index is immutable, so any number of threads may query it at once
// without locks. Queries run on the ThreadPool the caller passes (null: the calling thread).
//
// Results follow the ordering contract of top_k.h: ascending (distance, id), where the id of
// row i is ids[i] as given to BuildIndex (by default i, the training index). Every algorithm
// returns the same neighbours and bit-identical distances.
#ifndef KNNCLUSTER_CORE_INDEX_NEIGHBOR_INDEX_H_
#define KNNCLUSTER_CORE_INDEX_NEIGHBOR_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/matrix.h"
#include "core/base/thread_pool.h"
#include "core/index/metric.h"
#include "core/index/top_k.h"

namespace knncluster {

enum class Algorithm { kAuto, kKdTree, kBallTree, kBrute };

// "auto", "kd_tree", "ball_tree", "brute" (scikit-learn's names).
std::string AlgorithmName(Algorithm a);
absl::StatusOr<Algorithm> ParseAlgorithm(const std::string& name);

struct IndexOptions {
  Algorithm algorithm = Algorithm::kAuto;
  // Maximum points in a tree leaf (scikit-learn's leaf_size). Must be >= 1.
  int leaf_size = 30;
  // Minkowski order, >= 1 or +inf.
  double p = 2;
};

// The algorithm `auto` resolves to for data of this shape: brute force when the dimension is
// high (> 15, where trees cannot prune, as scikit-learn decides) or the data is small; a KD tree
// otherwise.
Algorithm ResolveAuto(size_t n, size_t dim);

// k nearest neighbours of each query: row-major num_queries x k.
struct KNeighborsResult {
  size_t num_queries = 0;
  size_t k = 0;
  std::vector<double> distances;  // true distances, or reduced ones from KNeighborsRdist
  std::vector<int64_t> indices;   // ids

  double distance(size_t q, size_t j) const { return distances[q * k + j]; }
  int64_t index(size_t q, size_t j) const { return indices[q * k + j]; }
};

// Where ids (training indices) are written: 64-bit values, or 32-bit ones when the writer's
// caller knows every id is below 2^31 (a message's compact form: a quarter of an answer's bytes
// less). Exactly one pointer is set.
class IdsOut {
 public:
  IdsOut(int64_t* wide) : wide_(wide) {}  // NOLINT: implicit, an int64_t array is the usual
  IdsOut(int32_t* narrow) : narrow_(narrow), is_narrow_(true) {}  // NOLINT
  // REQUIRES: 0 <= id < 2^31 when narrow.
  void Set(size_t i, int64_t id) const {
    if (is_narrow_) {
      narrow_[i] = static_cast<int32_t>(id);
    } else {
      wide_[i] = id;
    }
  }
  // The array from element `offset` on.
  IdsOut operator+(size_t offset) const {
    return is_narrow_ ? IdsOut(narrow_ + offset) : IdsOut(wide_ + offset);
  }

 private:
  int64_t* wide_ = nullptr;
  int32_t* narrow_ = nullptr;
  bool is_narrow_ = false;
};

// Ids read in place, from 64-bit or 32-bit values (IdsOut's two forms).
class IdsIn {
 public:
  IdsIn() = default;
  IdsIn(const int64_t* wide) : wide_(wide) {}  // NOLINT
  IdsIn(const int32_t* narrow) : narrow_(narrow), is_narrow_(true) {}  // NOLINT
  int64_t operator[](size_t i) const { return is_narrow_ ? narrow_[i] : wide_[i]; }
  // The array from element `offset` on.
  IdsIn operator+(size_t offset) const {
    return is_narrow_ ? IdsIn(narrow_ + offset) : IdsIn(wide_ + offset);
  }

 private:
  const int64_t* wide_ = nullptr;
  const int32_t* narrow_ = nullptr;
  bool is_narrow_ = false;
};

// Where an answer of rows x k neighbours is written: called once with its shape before any value
// is written; returns the two arrays (distances, indices) of rows * k values to fill, e.g. a
// KNeighborsResult's or a response message's, or an error that ends the search.
using NeighborsSink =
    std::function<absl::StatusOr<std::pair<double*, IdsOut>>(size_t rows, size_t k)>;
// A sink into *result (shaped and sized to the answer).
NeighborsSink ResultSink(KNeighborsResult* result);

// Neighbours within a radius: query q's are [offsets[q], offsets[q+1]).
struct RadiusResult {
  std::vector<size_t> offsets;  // num_queries + 1 entries
  std::vector<double> distances;
  std::vector<int64_t> indices;
};

class NeighborIndex {
 public:
  virtual ~NeighborIndex() = default;
  NeighborIndex(const NeighborIndex&) = delete;
  NeighborIndex& operator=(const NeighborIndex&) = delete;

  size_t size() const { return size_; }
  size_t dim() const { return dim_; }
  const Minkowski& metric() const { return metric_; }
  // The concrete algorithm (never kAuto).
  virtual Algorithm algorithm() const = 0;

  // The training rows as this index stores them, and the id of each: row i of stored_rows() has
  // id stored_ids()[i]. Together they hold every (row, id) pair given to BuildIndex exactly once,
  // but in the index's own order (a tree's node order; brute force keeps the order given), so
  // callers must not rely on that order. They let a caller derive another index from this one
  // (e.g. over part of the rows) without keeping a second copy of the data.
  // Both view memory owned by the index: valid while the index lives.
  virtual MatrixView stored_rows() const = 0;
  virtual absl::Span<const int64_t> stored_ids() const = 0;

  // The k nearest training rows of each query, true distances.
  // InvalidArgument when k < 1 or k > size() ("n_neighbors: ..."), or when queries have the
  // wrong number of columns ("queries: expected 64 features, got 63"), or hold NaN/Inf.
  absl::StatusOr<KNeighborsResult> KNeighbors(MatrixView queries, int k, ThreadPool* pool) const;

  // As KNeighbors, but distances stay reduced (for merging partial answers across shards), and
  // k may exceed size(): each query then gets min(k, size()) neighbours.
  // rdist_bounds: empty, or one reduced distance per query (>= 0, +inf for none) known to be at
  // least the query's k-th over every shard (a coordinator's routing bound). Rows farther than
  // its bound cannot be among the query's k nearest anywhere, so the search leaves them out and
  // prunes by the bound from the start; a query with fewer than min(k, size()) rows within it
  // has its row padded with (+inf, kNoNeighborId) (top_k.h). Every neighbour within the bound,
  // ties included, is kept: merged with the other shards' answers the result is the unbounded
  // one. InvalidArgument ("rdist_bounds: ...") for a wrong count, NaN or a negative value.
  absl::StatusOr<KNeighborsResult> KNeighborsRdist(MatrixView queries, int k, ThreadPool* pool,
                                                   absl::Span<const double> rdist_bounds = {}) const;
  // As KNeighborsRdist, into the caller's arrays (e.g. a response message's), each of
  // queries.rows() * min(k, size()) values.
  absl::Status KNeighborsRdistInto(MatrixView queries, int k, ThreadPool* pool,
                                   double* distances, IdsOut indices,
                                   absl::Span<const double> rdist_bounds = {}) const;

  // All training rows within `radius` (inclusive) of each query, sorted as above.
  absl::StatusOr<RadiusResult> RadiusNeighbors(MatrixView queries, double radius,
                                               ThreadPool* pool) const;

 protected:
  NeighborIndex(size_t size, size_t dim, Minkowski metric)
      : size_(size), dim_(dim), metric_(metric) {}

  // Searches a block of queries: writes each query's k nearest (sorted, reduced distances) to
  // out[q * k, (q + 1) * k). With rdist_bounds (else null), query q's neighbours are those
  // within rdist_bounds[q], padded (TopK::TakeSortedPadded). REQUIRES: 1 <= k <= size();
  // queries.cols() == dim().
  virtual void SearchBlock(MatrixView queries, size_t k, const double* rdist_bounds,
                           Neighbor* out) const = 0;
  // Appends every row with rdist <= rdist_bound to `out` (unsorted).
  virtual void RadiusSearchOne(const double* query, double rdist_bound,
                               std::vector<Neighbor>* out) const = 0;

 private:
  absl::Status ValidateQueries(MatrixView queries) const;
  absl::StatusOr<KNeighborsResult> Search(MatrixView queries, size_t k, ThreadPool* pool,
                                          absl::Span<const double> rdist_bounds) const;
  // Writes queries.rows() * k distances and indices. REQUIRES: 1 <= k <= size().
  absl::Status SearchInto(MatrixView queries, size_t k, ThreadPool* pool,
                          absl::Span<const double> rdist_bounds, double* distances,
                          IdsOut indices) const;

  size_t size_;
  size_t dim_;
  Minkowski metric_;
};

// Builds an index over `data` (n x d, finite values, n >= 1). ids[i] is the id reported for row
// i; empty means 0..n-1. Trees are built on the calling thread (building is cheap next to search).
absl::StatusOr<std::unique_ptr<const NeighborIndex>> BuildIndex(
    std::shared_ptr<const Matrix> data, std::vector<int64_t> ids, const IndexOptions& options);

// One partial answer to merge, viewed in place (a KNeighborsResult, or the arrays of a received
// message): rows of `k` neighbours, each row sorted by the ordering of top_k.h.
struct PartialAnswer {
  size_t k = 0;
  const double* distances = nullptr;
  IdsIn indices;
  // The row answering query q is row_of[q], or none when row_of[q] < 0 (the part was not asked
  // about q: routed queries). Empty: row q answers query q, for every query.
  absl::Span<const int32_t> row_of;

  // A whole KNeighborsResult (row q answers query q), viewed in place.
  static PartialAnswer Whole(const KNeighborsResult& r) {
    return PartialAnswer{r.k, r.distances.data(), r.indices.data(), {}};
  }
};

// What MergePartialAnswers does with a query whose parts hold fewer than k neighbours in all.
enum class ShortRows {
  kFail,  // FailedPrecondition naming the first such query (a complete answer was expected)
  kPad,   // pad its row with (+inf, kNoNeighborId): bounded partial answers, merged again later
};

// Merges, for each of `num_queries` queries, the rows of the parts answering it into its k
// nearest with MergeTopK (a query answered by one part takes that row's first k), on `pool` in
// blocks, writing out_distances / out_indices[q * k, (q + 1) * k). Distances are reduced or true
// alike (all parts the same kind); with `to_true` (may be null) reduced distances are converted
// with its RdistToDist on the way out. A part's row ends at its first kNoNeighborId (a bounded
// search's padding). This is the one merge of partial answers: a worker's across its shards and
// the coordinator's across workers. A query answered by no part or left with fewer than k
// neighbours in all is handled as `short_rows` says.
absl::Status MergePartialAnswers(absl::Span<const PartialAnswer> parts, size_t num_queries,
                                 size_t k, const Minkowski* to_true, ThreadPool* pool,
                                 double* out_distances, IdsOut out_indices,
                                 ShortRows short_rows = ShortRows::kFail);

// MergePartialAnswers over whole KNeighborsResults (every part answers every query).
// InvalidArgument when the parts' shapes differ.
absl::StatusOr<KNeighborsResult> MergeKNeighbors(absl::Span<const KNeighborsResult* const> parts,
                                                 size_t k, ThreadPool* pool);

// Converts reduced distances to true ones in place (the metric's RdistToDist).
void ToTrueDistances(const Minkowski& metric, KNeighborsResult* result);

// Checks that every value is finite; the error names `what`, the row and the column.
absl::Status CheckFinite(MatrixView m, const std::string& what);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_NEIGHBOR_INDEX_H_
