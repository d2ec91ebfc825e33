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
  absl::StatusOr<KNeighborsResult> SearchRdist(absl::Span<const ShardLocation> shards,
                                               MatrixView queries, size_t k,
                                               absl::Time deadline) const;

  // As SearchRdist, then true distances with metric.RdistToDist.
  absl::StatusOr<KNeighborsResult> Search(absl::Span<const ShardLocation> shards,
                                          MatrixView queries, size_t k, const Minkowski& metric,
                                          absl::Time deadline) const;

  // Queries per call for this width and k (at least 1).
  size_t ChunkRows(size_t cols, size_t k) const;

 private:
  struct WorkerGroup {
    WorkerHandle worker;
    std::vector<const ShardLocation*> shards;
  };
  absl::Status SearchChunk(absl::Span<const WorkerGroup> groups, MatrixView queries, size_t k,
                           size_t k_out, int64_t id_end, absl::Time deadline,
                           double* distances, int64_t* indices) const;

  WorkerPool* const workers_;
  ThreadPool* const pool_;
  const ScatterGatherOptions options_;
};

// "shard a on worker w" / "shards a, b on worker w", for error messages.
std::string DescribeShards(const std::vector<std::string>& shard_ids, const WorkerHandle& worker);

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_SCATTER_GATHER_H_
