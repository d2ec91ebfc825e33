// ScatterGather: exact k-NN over a model's shards. For a batch of queries it sends one
// SearchShards call per worker (listing every shard of the model that worker holds), all at once
// through gRPC's callback API, each with a deadline; waits for all of them (absl::BlockingCounter,
// no thread per worker); and merges each query's partial lists with the core's MergeTopK on
// (reduced distance, global index). Reduced distances become true ones with the metric's
// RdistToDist, so the answer equals a single-process BuildIndex(all rows)->KNeighbors bit for bit.
//
// Large batches are cut into chunks (max_query_bytes of queries per call, and a response bound)
// to respect message limits; chunks run one after another, each fanned out to every worker.
//
// Routing (issue 3): a model fitted with spatial shards (each shard a region of the space, with
// the bounding box of its rows) carries a RoutingGrid. A query q then goes only to the workers
// holding a shard whose box is within U_q of q, where U_q = dist(q, c) + kth(c) >= q's true k-th
// distance (triangle inequality; c is the centre of q's grid cell, kth(c) its exact k-th
// distance over all training rows). Every row of q's answer (ties included) lies within U_q, so
// the merged answer is the same, bit for bit; each worker still gets one call per chunk, with
// the subset of the chunk's queries routed to it. A query sent to several workers carries U_q
// (reduced) as its distance bound: each searches only within it and pads its row, so the worker
// across a border spends little on a query whose neighbours lie mostly on the other side, and
// the merge of the rows is still exact (not with allow_partial: a missing shard breaks the
// bound's premise that every shard answers). Shards with a halo (ShardLocation::halo) also hold
// their neighbours' rows near their box: a query whose U_q-ball lies within a shard's halo goes to
// that shard alone, so few queries are searched on two workers.
//
// Replicas and failure: a shard may live on several workers (ShardLocation::worker_ids, in the
// order to try them). Each chunk picks, for every shard, a live replica (spreading rows evenly
// over the workers) and sends one call per chosen worker. A call that fails because of its
// worker (UNAVAILABLE, NOT_FOUND: it lost the shard, RESOURCE_EXHAUSTED: it is overloaded,
// DEADLINE_EXCEEDED on the coordinator's own per-call deadline, or cancelled here because the
// pool declared the worker dead while the call waited: a partition) is retried at once for the
// same shards on their other replicas, within the caller's deadline; the answer stays exact,
// because every copy of a shard holds the same rows. A worker that failed is not tried again in
// the same search. A shard with no live replica left fails the batch UNAVAILABLE naming the shard
// and why each replica could not answer ("shard m@1/2 is unavailable: worker w3 (127.0.0.1:4567)
// failed: UNAVAILABLE: ..."), never a silently partial answer: unless the caller passes
// `missing_shards` (allow_partial), and then the shards left out are listed there and the
// answer covers the others. DEADLINE_EXCEEDED on the caller's own deadline and any other error
// (a malformed request, a worker's INTERNAL) end the batch with their codes. A worker answering
// NOT_FOUND for a shard (it restarted without it) is reported to `on_shards_lost`.
//
// Ownership: borrows the WorkerPool and ThreadPool (both outlive it).
// Thread safety: const methods; any number of batches may run at once.
#ifndef KNNCLUSTER_COORDINATOR_SCATTER_GATHER_H_
#define KNNCLUSTER_COORDINATOR_SCATTER_GATHER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "coordinator/worker_pool.h"
#include "core/base/matrix.h"
#include "core/base/thread_pool.h"
#include "core/index/metric.h"
#include "core/index/neighbor_index.h"

namespace knncluster::coordinator {

// Where one shard of a model lives.
struct ShardLocation {
  std::string shard_id;
  // The workers holding a copy, in the order a search tries them (dead ones are skipped).
  std::vector<std::string> worker_ids;
  int64_t first_global_index = 0;
  uint64_t rows = 0;
  // Spatial shards: the global index of each row, ascending (then first_global_index is 0 and
  // unused); null for the contiguous range [first_global_index, first_global_index + rows).
  std::shared_ptr<const std::vector<int64_t>> global_ids;
  // Spatial shards: the bounding box of the shard's own rows; empty when unknown (never routed).
  std::vector<double> box_lo;
  std::vector<double> box_hi;
  // Spatial shards with a halo: besides its own rows the shard holds every other shard's row
  // within `halo` of its box in each dimension (halo_rows of its `rows`, listed in global_ids
  // with the others). A query whose neighbours all lie within `halo` of the box (dist(q, box) +
  // U_q <= halo) needs this shard alone. Where a query goes to several shards, a row held by two
  // of them is merged once (MergeTopK keeps one of equal (distance, id) pairs).
  double halo = 0;
  uint64_t halo_rows = 0;
};

// Upper bounds of the k-th neighbour distance over a grid (see Routing above). Immutable.
struct RoutingGrid {
  size_t k = 0;              // the bounds hold for any k' <= k
  size_t cells_per_dim = 0;  // >= 1
  std::vector<double> lo;    // origin, per dimension
  std::vector<double> width; // cell width (> 0), per dimension
  // Per cell (row-major, dimension 0 slowest): the true distance from the cell's centre to its
  // k-th nearest training row.
  std::vector<double> kth_dist;

  // Derived from the fields above and the model's shards by ComputeSoleShards (not stored). A
  // query q inside cell c has dist(q, c) <= h (h: the cell's half-diagonal), so U_q <= h +
  // kth(c), and a shard whose box is farther than 2h + kth(c) from c holds no row within U_q of
  // q. When exactly one shard is that close, sole_shard[c] is its position in `shards` and the
  // cell's queries are routed with no per-query test; else kSeveral. One byte per cell, so the
  // table stays in cache (32,768 cells: 32 KiB). Empty: unknown.
  static constexpr uint8_t kSeveral = 255;
  std::vector<std::string> shards;  // at most 255
  std::vector<uint8_t> sole_shard;
  // Also derived: (h + the largest kth(c)) with the slack, a bound on U_q for every q inside the
  // grid. A query inside the grid with exactly one shard's box within
  // `reach_all` goes to that shard alone, decided from the boxes (in registers) without reading
  // the per-cell table, which the workers' searches evict from cache between batches (it was
  // the coordinator's largest single cost on uniform3d). 0: unknown.
  double reach_all = 0;

  // The centre of cell `cell`, written to center[0, dim).
  void Center(size_t cell, double* center) const;
  // The cell whose centre bounds q (q clamped into the grid). *inside (may be null): whether q
  // lies inside the grid (not clamped), so that dist(q, centre) <= the half-diagonal.
  size_t CellOf(const double* q, bool* inside = nullptr) const;
  // Fills shards / sole_shard for a model's shards (all with boxes; else, or with more than 255
  // shards, leaves them empty).
  void ComputeSoleShards(absl::Span<const ShardLocation> model_shards, const Minkowski& metric);
};

// A chunk's routing (ScatterGather's Route): which shards each query needs and, for those sent
// to several, its distance bound.
struct ChunkRouting {
  size_t words = 0;  // per query in `need`: (shards + 63) / 64
  // Query q needs shard s when bit s of need[q * words + s / 64] is set (at least one each).
  std::vector<uint64_t> need;
  // Empty, or per query: the reduced distance its k-th neighbour cannot exceed (U_q) for the
  // queries sent to several shards, +inf for the others. Sent with them
  // (SearchShardsRequest.rdist_bounds), so that each worker searches within it: a query near a
  // shard's border costs the shard across it little.
  std::vector<double> rdist_bounds;
};

struct ScatterGatherOptions {
  // Deadline of each SearchShards call (capped by the caller's deadline).
  absl::Duration rpc_deadline = absl::Seconds(60);
  // Bytes of query values per call.
  size_t max_query_bytes = 2 << 20;
  // Approximate bytes of neighbours per response (16 bytes per neighbour).
  size_t max_response_bytes = 16 << 20;
  // How often a batch waiting on its calls checks the pool for workers declared dead (and
  // cancels their calls, to retry the shards on replicas).
  absl::Duration liveness_poll = absl::Milliseconds(100);
  // Called with a worker's id and the ids of shards it no longer holds (NOT_FOUND); may be
  // empty.
  std::function<void(const std::string& worker_id, const std::vector<std::string>& shard_ids)>
      on_shards_lost;
};

class ScatterGather {
 public:
  ScatterGather(WorkerPool* workers, ThreadPool* pool, ScatterGatherOptions options);
  ScatterGather(const ScatterGather&) = delete;
  ScatterGather& operator=(const ScatterGather&) = delete;

  // Each query's min(k, total rows) nearest training rows over `shards`, reduced distances.
  // REQUIRES: k >= 1; queries validated (width, finite) by the caller; shards non-empty.
  // With `subset` (may be null; grid search, sharded mode), each worker searches its shards' rows
  // less subset->excluded through an index built for subset->index_params.
  // `missing_shards`: null requires every shard (UNAVAILABLE otherwise); non-null allows a
  // partial answer and receives the ids of the shards left out (sorted; empty when none). Even
  // then the shards answering must hold at least k rows.
  absl::StatusOr<KNeighborsResult> SearchRdist(absl::Span<const ShardLocation> shards,
                                               MatrixView queries, size_t k, absl::Time deadline,
                                               const v1::FoldSubset* subset = nullptr,
                                               std::vector<std::string>* missing_shards =
                                                   nullptr) const;

  // As SearchRdist, then true distances with metric.RdistToDist. With `routing` (may be null;
  // used when k <= routing->k and every shard has a box), each query goes only to the workers
  // whose shards can hold its neighbours.
  absl::StatusOr<KNeighborsResult> Search(absl::Span<const ShardLocation> shards,
                                          MatrixView queries, size_t k, const Minkowski& metric,
                                          absl::Time deadline,
                                          const RoutingGrid* routing = nullptr,
                                          std::vector<std::string>* missing_shards =
                                              nullptr) const;

  // As Search, writing the answer to `sink` (core's NeighborsSink).
  absl::Status SearchInto(absl::Span<const ShardLocation> shards, MatrixView queries, size_t k,
                          const Minkowski& metric, absl::Time deadline,
                          const RoutingGrid* routing, std::vector<std::string>* missing_shards,
                          const NeighborsSink& sink) const;

  // Queries per call for this width and k (at least 1).
  size_t ChunkRows(size_t cols, size_t k) const;

 private:
  // What one search learns across its chunks.
  struct SearchState {
    bool allow_partial = false;
    std::set<std::string> failed_workers;  // not tried again in this search
    std::set<std::string> missing;         // allow_partial: shards left out
  };
  absl::Status SearchImpl(absl::Span<const ShardLocation> shards, MatrixView queries, size_t k,
                          absl::Time deadline, const RoutingGrid* routing,
                          const Minkowski* metric, const v1::FoldSubset* subset,
                          std::vector<std::string>* missing_shards,
                          const NeighborsSink& sink) const;
  // One chunk over `shards`. routed: null sends every query to every shard's worker. The merged
  // answer goes to distances / indices (k_out per query), true distances when `to_true` is set
  // (else reduced).
  absl::Status SearchChunk(absl::Span<const ShardLocation* const> shards, MatrixView queries,
                           size_t k, size_t k_out, int64_t id_end, absl::Time deadline,
                           const ChunkRouting* routed, const v1::FoldSubset* subset,
                           const Minkowski* to_true, SearchState* state, double* distances,
                           IdsOut indices) const;
  // The replica a chunk asks for `shard`: among its live copies not failed in this search nor
  // `tried` for it, the worker with the fewest rows `assigned` so far (then counted there); null
  // when there is none.
  const std::string* PickReplica(const ShardLocation& shard, const SearchState& state,
                                 const std::set<std::string>& tried,
                                 std::map<std::string, uint64_t>* assigned) const;
  // Which shards each query of `queries` needs (bits over `active`), and with `bounds` the
  // distance bound of each query sent to several.
  void Route(const RoutingGrid& routing, const Minkowski& metric,
             absl::Span<const ShardLocation* const> active, MatrixView queries, bool bounds,
             ChunkRouting* out) const;

  WorkerPool* const workers_;
  ThreadPool* const pool_;
  const ScatterGatherOptions options_;
};

// "shard a on worker w" / "shards a, b on worker w", for error messages.
std::string DescribeShards(const std::vector<std::string>& shard_ids, const WorkerHandle& worker);

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_SCATTER_GATHER_H_
