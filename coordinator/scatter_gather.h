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
// the subset of the chunk's queries routed to it.
//
// Failure: a batch needs every shard. A shard on a dead or unknown worker fails the batch before
// any call is sent, and a failed call fails it afterwards: UNAVAILABLE naming the shard(s) and
// the worker ("shard digits-model@1/2 on worker w3 (127.0.0.1:4567) is unavailable: ...").
// DEADLINE_EXCEEDED and CANCELLED keep their codes. A worker answering NOT_FOUND for a shard
// (it restarted and lost it) is reported to `on_shards_lost` so the shard can be re-sent.
//
// Ownership: borrows the WorkerPool and ThreadPool (both outlive it).
// Thread safety: const methods; any number of batches may run at once.
#ifndef KNNCLUSTER_COORDINATOR_SCATTER_GATHER_H_
#define KNNCLUSTER_COORDINATOR_SCATTER_GATHER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
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
  std::string worker_id;
  int64_t first_global_index = 0;
  uint64_t rows = 0;
  // Spatial shards: the global index of each row, ascending (then first_global_index is 0 and
  // unused); null for the contiguous range [first_global_index, first_global_index + rows).
  std::shared_ptr<const std::vector<int64_t>> global_ids;
  // Spatial shards: the bounding box of the shard's rows; empty when unknown (never routed).
  std::vector<double> box_lo;
  std::vector<double> box_hi;
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

  // The centre of cell `cell`, written to center[0, dim).
  void Center(size_t cell, double* center) const;
  // The cell whose centre bounds q (q clamped into the grid).
  size_t CellOf(const double* q) const;
};

struct ScatterGatherOptions {
  // Deadline of each SearchShards call (capped by the caller's deadline).
  absl::Duration rpc_deadline = absl::Seconds(60);
  // Bytes of query values per call.
  size_t max_query_bytes = 2 << 20;
  // Approximate bytes of neighbours per response (16 bytes per neighbour).
  size_t max_response_bytes = 16 << 20;
  // Called with the ids of shards a worker no longer holds (NOT_FOUND); may be empty.
  std::function<void(const std::vector<std::string>& shard_ids)> on_shards_lost;
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
  absl::StatusOr<KNeighborsResult> SearchRdist(absl::Span<const ShardLocation> shards,
                                               MatrixView queries, size_t k, absl::Time deadline,
                                               const v1::FoldSubset* subset = nullptr) const;

  // As SearchRdist, then true distances with metric.RdistToDist. With `routing` (may be null;
  // used when k <= routing->k and every shard has a box), each query goes only to the workers
  // whose shards can hold its neighbours.
  absl::StatusOr<KNeighborsResult> Search(absl::Span<const ShardLocation> shards,
                                          MatrixView queries, size_t k, const Minkowski& metric,
                                          absl::Time deadline,
                                          const RoutingGrid* routing = nullptr) const;

  // Queries per call for this width and k (at least 1).
  size_t ChunkRows(size_t cols, size_t k) const;

 private:
  struct WorkerGroup {
    WorkerHandle worker;
    std::vector<const ShardLocation*> shards;
  };
  absl::StatusOr<KNeighborsResult> SearchImpl(absl::Span<const ShardLocation> shards,
                                              MatrixView queries, size_t k, absl::Time deadline,
                                              const RoutingGrid* routing, const Minkowski* metric,
                                              const v1::FoldSubset* subset) const;
  // routed: null sends every query to every group; else routed[q] is the bit mask of the groups
  // query q goes to (never 0).
  absl::Status SearchChunk(absl::Span<const WorkerGroup> groups, MatrixView queries, size_t k,
                           size_t k_out, int64_t id_end, absl::Time deadline,
                           const std::vector<uint64_t>* routed, const v1::FoldSubset* subset,
                           double* distances, int64_t* indices) const;

  WorkerPool* const workers_;
  ThreadPool* const pool_;
  const ScatterGatherOptions options_;
};

// "shard a on worker w" / "shards a, b on worker w", for error messages.
std::string DescribeShards(const std::vector<std::string>& shard_ids, const WorkerHandle& worker);

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_SCATTER_GATHER_H_
