// WorkerService::ReadShard: streams a shard back from its file (worker_service.h). Kept apart
// from worker_service.cc because it touches nothing but ShardFiles.
#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "rpc/status.h"
#include "worker/shard_files.h"
#include "worker/shard_store.h"
#include "worker/worker_service.h"

namespace knncluster::worker {

namespace {
// Values (features, ids, labels) per chunk: 1 MiB of doubles, far under any message limit.
constexpr uint64_t kChunkValues = (1 << 20) / sizeof(double);
}  // namespace

grpc::Status WorkerService::ReadShard(grpc::ServerContext* context,
                                      const v1::ReadShardRequest* request,
                                      grpc::ServerWriter<v1::ReadShardChunk>* writer) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("ReadShard", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  return rpc::ToGrpcStatus(DoReadShard(context, *request, writer));
}

absl::Status WorkerService::DoReadShard(grpc::ServerContext* context,
                                        const v1::ReadShardRequest& request,
                                        grpc::ServerWriter<v1::ReadShardChunk>* writer) {
  if (files_ == nullptr) {
    return absl::FailedPreconditionError(
        "ReadShard: this worker has no data directory, so it keeps no shard files");
  }
  // The file is the authority (it holds the labels), but a shard this worker no longer serves
  // (dropped, or quarantined at start) is not one it holds.
  const std::string ids[] = {request.shard_id()};
  if (!store_->Find(ids).ok()) {
    return absl::NotFoundError(
        absl::StrCat("shard_id: no shard \"", request.shard_id(), "\" on this worker"));
  }
  KNN_ASSIGN_OR_RETURN(StoredShard shard, files_->Read(request.shard_id()));
  const v1::ShardHeader& h = shard.header;
  const uint64_t rows = h.rows(), cols = h.cols();
  const uint64_t per_chunk = std::max<uint64_t>(1, kChunkValues / (cols + 2));
  for (uint64_t begin = 0; begin < rows; begin += per_chunk) {
    if (context->IsCancelled()) return absl::CancelledError("ReadShard: cancelled");
    const uint64_t end = std::min(rows, begin + per_chunk);
    v1::ReadShardChunk chunk;
    if (begin == 0) {
      *chunk.mutable_header() = h;
      chunk.mutable_header()->clear_global_indices();  // sent per chunk as global_ids
    }
    v1::Matrix* m = chunk.mutable_rows();
    m->set_rows(end - begin);
    m->set_cols(cols);
    m->mutable_values()->Add(shard.values.begin() + begin * cols,
                             shard.values.begin() + end * cols);
    for (uint64_t r = begin; r < end; ++r) {
      chunk.add_global_ids(h.global_indices_size() > 0
                               ? h.global_indices(static_cast<int>(r))
                               : h.first_global_index() + static_cast<int64_t>(r));
    }
    if (!shard.labels.empty()) {
      chunk.mutable_labels()->Add(shard.labels.begin() + begin, shard.labels.begin() + end);
    }
    if (!writer->Write(chunk)) return absl::CancelledError("ReadShard: the reader went away");
  }
  return absl::OkStatus();
}

}  // namespace knncluster::worker
