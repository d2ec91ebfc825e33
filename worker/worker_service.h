// WorkerService: the gRPC adapter of the Worker service (proto/knncluster/v1/worker.proto), on
// the sync API. Each handler converts and validates the request (rpc/convert.h) before touching
// the ShardStore, does the work, and ends in `return rpc::ToGrpcStatus(...)`; a bad request fails
// that request only.
//
// - LoadShard: header first, then row chunks; builds the shard's index (ids = global ids) and
//   stores it, replacing a shard of the same id. Only one copy of the rows is staged: a tree
//   copies it into its own order and the staging buffer is then freed; brute force keeps it.
// - SearchShards: each listed shard's top-k (reduced distances) on the server's ThreadPool,
//   merged per query with MergeTopK: min(k, rows over the listed shards) neighbours per query.
// - DropShard (idempotent), GetWorkerStatus.
//
// Ownership: the store and the pool are borrowed and must outlive the service.
// Thread safety: gRPC calls the handlers from many threads at once; the service has no mutable
// state of its own, and the store is thread-safe.
#ifndef KNNCLUSTER_WORKER_WORKER_SERVICE_H_
#define KNNCLUSTER_WORKER_WORKER_SERVICE_H_

#include <string>

#include "absl/status/status.h"
#include "knncluster/v1/worker.grpc.pb.h"

namespace knncluster {
class ThreadPool;
}  // namespace knncluster

namespace knncluster::worker {

class ShardStore;

class WorkerService final : public v1::Worker::Service {
 public:
  // `store` and `pool` are borrowed, non-null, and outlive the service.
  WorkerService(std::string worker_id, ShardStore* store, ThreadPool* pool);
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

 private:
  absl::Status DoLoadShard(grpc::ServerContext* context,
                           grpc::ServerReader<v1::LoadShardRequest>* reader,
                           v1::LoadShardResponse* response);
  absl::Status DoSearchShards(grpc::ServerContext* context, const v1::SearchShardsRequest& request,
                              v1::SearchShardsResponse* response);

  const std::string worker_id_;
  ShardStore* const store_;
  ThreadPool* const pool_;
};

}  // namespace knncluster::worker

#endif  // KNNCLUSTER_WORKER_WORKER_SERVICE_H_
