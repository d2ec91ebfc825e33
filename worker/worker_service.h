// WorkerService: the gRPC adapter of the Worker service (proto/knncluster/v1/worker.proto), on
// the sync API. Each handler converts and validates the request (rpc/convert.h) before touching
// the ShardStore, does the work, and ends in `return rpc::ToGrpcStatus(...)`; a bad request fails
// that request only.
//
// - LoadShard: header first, then row chunks; builds the shard's index (ids = global ids) and
//   stores it, replacing a shard of the same id. One copy of the rows is staged and then kept by
//   the store (for fold-subset searches): brute force searches that very buffer; a tree copies
//   the rows into its own order, so a tree shard holds its rows twice.
// - SearchShards: each listed shard's top-k (reduced distances) on the server's ThreadPool,
//   merged per query with MergePartialAnswers straight into the response: min(k, rows over the
//   listed shards) neighbours per query. With `subset` (grid search, sharded mode), each shard
//   is searched through an index over its rows less subset.excluded, built with
//   subset.index_params and kept in the SubsetIndexCache for the job's next chunk; merged the
//   same way. Queries with a distance bound (bounded_rows / rdist_bounds: the coordinator's
//   routing bound) are searched within it and their rows padded (NeighborIndex::KNeighborsRdist).
// - Persistence: LoadShard writes the shard's file (ShardFiles) before answering OK; DropShard
//   removes it; RestoreShard, called by the server at start before it serves, rebuilds a shard
//   read back from its file through the same checks and build as LoadShard.
// - LoadShard with header.has_labels: label chunks follow the rows; the labels go to the shard
//   file only and are released once it is written (never indexed, never held).
// - ReadShard (read_shard.cc): streams a shard back from its file (rows as loaded, global ids,
//   labels) for the coordinator to rebuild a damaged dataset.
// - DropShard (idempotent), GetWorkerStatus.
// - PutDataset: header, row chunks, label chunks; checked against the memory budget from the
//   header (before any row is read), against its content hash at the end, then cached in the
//   DatasetCache. A dataset already cached is answered from the header alone.
// - RunFoldJob: pins the cached dataset, checks the fold against it, runs the core's RunFoldJob
//   on the ThreadPool.
//
// Ownership: the store, the caches and the pool are borrowed and must outlive the service.
// Thread safety: gRPC calls the handlers from many threads at once; the service has no mutable
// state of its own, and the store and the caches are thread-safe.
#ifndef KNNCLUSTER_WORKER_WORKER_SERVICE_H_
#define KNNCLUSTER_WORKER_WORKER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "knncluster/v1/worker.grpc.pb.h"
#include "rpc/admission.h"
#include "rpc/credentials.h"

namespace knncluster {
class ThreadPool;
}  // namespace knncluster

namespace knncluster::worker {

class DatasetCache;
class ShardFiles;
class ShardStore;
struct StoredShard;
class SubsetIndexCache;

// What the service borrows from its server; every pointer non-null and outliving the service.
struct WorkerServiceContext {
  std::string worker_id;
  ShardStore* store = nullptr;
  DatasetCache* datasets = nullptr;
  SubsetIndexCache* subset_indexes = nullptr;
  ThreadPool* pool = nullptr;
  // Where shards are persisted; null: nowhere (they are lost with the process).
  ShardFiles* files = nullptr;
  // For tests: every fold job first sleeps this long (in small steps; CANCELLED if the call is
  // cancelled or its deadline passes meanwhile).
  absl::Duration testing_job_delay = absl::ZeroDuration();
  // Checked first by every handler: with TLS, only the coordinator's certificate may call.
  // Default: everyone (plaintext).
  rpc::CallGuard guard;
  // For tests: every SearchShards first sleeps this long (the same way).
  absl::Duration testing_search_delay = absl::ZeroDuration();
  // Admits LoadShard, SearchShards, DropShard, PutDataset and RunFoldJob (GetWorkerStatus, the
  // coordinator's liveness probe, is never refused). Null: no limit.
  rpc::AdmissionControl* admission = nullptr;
  // What the worker may hold (--memory-budget-mb): a LoadShard whose header announces more
  // than fits beside the shards already held is refused before any row is read. 0: no check.
  uint64_t memory_budget_bytes = 0;
};

class WorkerService final : public v1::Worker::Service {
 public:
  explicit WorkerService(WorkerServiceContext context);
  WorkerService(const WorkerService&) = delete;
  WorkerService& operator=(const WorkerService&) = delete;

  grpc::Status LoadShard(grpc::ServerContext* context,
                         grpc::ServerReader<v1::LoadShardRequest>* reader,
                         v1::LoadShardResponse* response) override;
  grpc::Status SearchShards(grpc::ServerContext* context, const v1::SearchShardsRequest* request,
                            v1::SearchShardsResponse* response) override;
  grpc::Status DropShard(grpc::ServerContext* context, const v1::DropShardRequest* request,
                         v1::DropShardResponse* response) override;
  grpc::Status GetWorkerStatus(grpc::ServerContext* context,
                               const v1::GetWorkerStatusRequest* request,
                               v1::WorkerStatus* response) override;
  // In read_shard.cc.
  grpc::Status ReadShard(grpc::ServerContext* context, const v1::ReadShardRequest* request,
                         grpc::ServerWriter<v1::ReadShardChunk>* writer) override;
  grpc::Status PutDataset(grpc::ServerContext* context,
                          grpc::ServerReader<v1::PutDatasetRequest>* reader,
                          v1::PutDatasetResponse* response) override;
  grpc::Status RunFoldJob(grpc::ServerContext* context, const v1::RunFoldJobRequest* request,
                          v1::RunFoldJobResponse* response) override;

  // Rebuilds a shard read back from the data directory and stores it (not written again). The
  // same validation as LoadShard: an error means the file's contents are unusable.
  absl::Status RestoreShard(StoredShard shard);
  // Recorded for GetWorkerStatus.shards_restored. REQUIRES: before serving.
  void set_shards_restored(uint32_t n) { shards_restored_ = n; }

 private:
  // Admits a call (an empty ticket without admission control).
  absl::StatusOr<rpc::AdmissionControl::Ticket> Admit(const char* method, uint64_t request_bytes);
  absl::Status DoLoadShard(grpc::ServerContext* context,
                           grpc::ServerReader<v1::LoadShardRequest>* reader,
                           v1::LoadShardResponse* response);
  absl::Status DoSearchShards(grpc::ServerContext* context, const v1::SearchShardsRequest& request,
                              v1::SearchShardsResponse* response);
  absl::Status DoPutDataset(grpc::ServerContext* context,
                            grpc::ServerReader<v1::PutDatasetRequest>* reader,
                            v1::PutDatasetResponse* response);
  absl::Status DoReadShard(grpc::ServerContext* context, const v1::ReadShardRequest& request,
                           grpc::ServerWriter<v1::ReadShardChunk>* writer);
  absl::Status DoRunFoldJob(grpc::ServerContext* context, const v1::RunFoldJobRequest& request,
                            v1::RunFoldJobResponse* response);

  const std::string worker_id_;
  ShardStore* const store_;
  DatasetCache* const datasets_;
  SubsetIndexCache* const subset_indexes_;
  ThreadPool* const pool_;
  ShardFiles* const files_;
  const absl::Duration testing_job_delay_;
  const absl::Duration testing_search_delay_;
  rpc::AdmissionControl* const admission_;
  const uint64_t memory_budget_bytes_;
  std::atomic<uint64_t> shard_loads_{0};
  uint32_t shards_restored_ = 0;
  const rpc::CallGuard guard_;
};

}  // namespace knncluster::worker

#endif  // KNNCLUSTER_WORKER_WORKER_SERVICE_H_
