#include "worker/worker_service.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/matrix.h"
#include "core/base/status_macros.h"
#include "core/base/thread_pool.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"
#include "core/index/top_k.h"
#include "rpc/convert.h"
#include "rpc/status.h"
#include "worker/shard_store.h"
#include "worker/worker_internal.h"

namespace knncluster::worker {

namespace {
// Shard ids are chosen by the coordinator ("<model>/<n>"); any printable id up to this length.
constexpr size_t kMaxShardIdLength = 256;
// Queries per merge task.

absl::Status ValidateShardId(const std::string& id, const std::string& field) {
  if (id.empty() || id.size() > kMaxShardIdLength) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: a shard id of 1 to %d characters is required, got \"%s\"", field,
                        kMaxShardIdLength, id));
  }
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": \"", id, "\" has a character outside printable ASCII"));
    }
  }
  return absl::OkStatus();
}

absl::Status Cancelled(const char* what) {
  return absl::CancelledError(absl::StrCat(what, ": cancelled by the caller"));
}

// The header's checks, before any row arrives. Fills the shard's global ids.
absl::Status ValidateHeader(const v1::ShardHeader& h, std::vector<int64_t>* ids) {
  KNN_RETURN_IF_ERROR(ValidateShardId(h.shard_id(), "header.shard_id"));
  if (h.rows() < 1) return absl::InvalidArgumentError("header.rows: must be >= 1, got 0");
  if (h.cols() < 1) return absl::InvalidArgumentError("header.cols: must be >= 1, got 0");
  // A shard must fit in memory: refuse sizes that overflow or exceed the machine before
  // reserving anything.
  const uint64_t max_values = std::numeric_limits<uint64_t>::max() / sizeof(double);
  const uint64_t physical = PhysicalMemoryBytes();
  if (h.rows() > max_values / h.cols() ||
      (physical != 0 && h.rows() * h.cols() * sizeof(double) > physical)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "header.rows: %d x %d doubles do not fit in this worker's memory (%d bytes)", h.rows(),
        h.cols(), physical));
  }
  const size_t rows = static_cast<size_t>(h.rows());
  if (h.global_indices_size() > 0) {
    if (static_cast<uint64_t>(h.global_indices_size()) != h.rows()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("header.global_indices: expected %d ids (one per row), got %d", h.rows(),
                          h.global_indices_size()));
    }
    ids->assign(h.global_indices().begin(), h.global_indices().end());
    for (size_t i = 0; i < rows; ++i) {
      if ((*ids)[i] < 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("header.global_indices[%d]: must be >= 0, got %d", i, (*ids)[i]));
      }
    }
  } else {
    const int64_t first = h.first_global_index();
    if (first < 0 ||
        static_cast<uint64_t>(std::numeric_limits<int64_t>::max() - first) < h.rows()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("header.first_global_index: must be >= 0 with room for %d rows, got %d",
                          h.rows(), first));
    }
    ids->resize(rows);
    for (size_t i = 0; i < rows; ++i) (*ids)[i] = first + static_cast<int64_t>(i);
  }
  return absl::OkStatus();
}
}  // namespace

WorkerService::WorkerService(std::string worker_id, ShardStore* store, ThreadPool* pool)
    : worker_id_(std::move(worker_id)), store_(store), pool_(pool) {}

// ---- LoadShard ----------------------------------------------------------------------------------

grpc::Status WorkerService::LoadShard(grpc::ServerContext* context,
                                      grpc::ServerReader<v1::LoadShardRequest>* reader,
                                      v1::LoadShardResponse* response) {
  return rpc::ToGrpcStatus(DoLoadShard(context, reader, response));
}

absl::Status WorkerService::DoLoadShard(grpc::ServerContext* context,
                                        grpc::ServerReader<v1::LoadShardRequest>* reader,
                                        v1::LoadShardResponse* response) {
  v1::LoadShardRequest message;
  if (!reader->Read(&message)) {
    return absl::InvalidArgumentError(
        "header: the stream is empty; the first message must carry the shard header");
  }
  if (message.part_case() != v1::LoadShardRequest::kHeader) {
    return absl::InvalidArgumentError(
        "header: the first message must carry the shard header, before any rows");
  }
  const v1::ShardHeader header = std::move(*message.mutable_header());
  std::vector<int64_t> ids;
  KNN_RETURN_IF_ERROR(ValidateHeader(header, &ids));
  KNN_ASSIGN_OR_RETURN(NeighborsParams params,
                       rpc::FromProto(header.index_params(), "header.index_params"));
  const IndexOptions options = params.index_options();

  const size_t rows = static_cast<size_t>(header.rows());
  const size_t cols = static_cast<size_t>(header.cols());
  // The one staging copy of the rows, filled chunk by chunk.
  std::vector<double> values;
  // Reserve what the header announces, up to 128 MiB; beyond that the buffer grows as rows
  // actually arrive, so a header alone cannot claim the machine's memory.
  values.reserve(std::min<size_t>(rows * cols, size_t{16} << 20));
  size_t received = 0;
  for (size_t chunk = 1; reader->Read(&message); ++chunk) {
    if (context->IsCancelled()) return Cancelled("LoadShard");
    const std::string field = absl::StrCat("rows[message ", chunk, "]");
    if (message.part_case() != v1::LoadShardRequest::kRows) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": expected a chunk of rows (the header comes once, first)"));
    }
    const v1::Matrix& m = message.rows();
    if (m.cols() != header.cols() && !(m.rows() == 0 && m.values_size() == 0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s.cols: expected %d features (header.cols), got %d", field, cols, m.cols()));
    }
    if (m.rows() > rows - received) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: more rows than header.rows = %d (%d received before this chunk of %d)", field, rows,
          received, m.rows()));
    }
    // Validates shape and finiteness (the error names the row within the chunk); the chunk's
    // temporary copy is released at the end of the iteration.
    KNN_ASSIGN_OR_RETURN(Matrix part, rpc::FromProto(m, field));
    values.insert(values.end(), part.data(), part.data() + part.rows() * part.cols());
    received += part.rows();
  }
  if (received != rows) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rows: expected %d rows (header.rows), got %d", rows, received));
  }
  if (context->IsCancelled()) return Cancelled("LoadShard");

  const absl::Time start = absl::Now();
  // BuildIndex builds on this thread: there is no parallel build in the core, and building is
  // cheap next to searching. Moving `data` in means that a tree (which copies the rows into its
  // own order) leaves no other owner, so the staging buffer is freed when BuildIndex returns;
  // brute force keeps it as its data.
  auto data = std::make_shared<const Matrix>(rows, cols, std::move(values));
  KNN_ASSIGN_OR_RETURN(std::unique_ptr<const NeighborIndex> built,
                       BuildIndex(std::move(data), std::move(ids), options));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::shared_ptr<const NeighborIndex> index(std::move(built));
  const Algorithm algorithm = index->algorithm();
  store_->Put(header.shard_id(), index, EstimateIndexBytes(*index, options.leaf_size));
  ReleaseFreedMemory();  // the staging buffer (trees) and any replaced shard

  response->set_shard_id(header.shard_id());
  response->set_rows(rows);
  response->set_algorithm(AlgorithmName(algorithm));
  response->set_build_seconds(seconds);
  return absl::OkStatus();
}

// ---- SearchShards -------------------------------------------------------------------------------

grpc::Status WorkerService::SearchShards(grpc::ServerContext* context,
                                         const v1::SearchShardsRequest* request,
                                         v1::SearchShardsResponse* response) {
  return rpc::ToGrpcStatus(DoSearchShards(context, *request, response));
}

absl::Status WorkerService::DoSearchShards(grpc::ServerContext* context,
                                           const v1::SearchShardsRequest& request,
                                           v1::SearchShardsResponse* response) {
  // Validate everything before searching anything.
  if (request.k() < 1) return absl::InvalidArgumentError("k: must be >= 1, got 0");
  if (request.shard_ids_size() == 0) {
    return absl::InvalidArgumentError("shard_ids: at least one shard is required");
  }
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < request.shard_ids_size(); ++i) {
    if (!seen.insert(request.shard_ids(i)).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("shard_ids[%d]: shard \"%s\" is listed twice", i, request.shard_ids(i)));
    }
  }
  KNN_ASSIGN_OR_RETURN(const Matrix queries, rpc::FromProto(request.queries(), "queries"));
  const std::vector<std::string> shard_ids(request.shard_ids().begin(), request.shard_ids().end());
  // Our own references: the shards stay alive for this search even if replaced or dropped.
  KNN_ASSIGN_OR_RETURN(const std::vector<Shard> shards, store_->Find(shard_ids));
  size_t total_rows = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    const NeighborIndex& index = *shards[s].index;
    if (queries.cols() != index.dim()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("queries: expected %d features, got %d", index.dim(), queries.cols()));
    }
    // Reduced distances of different metrics cannot be merged.
    const double p0 = shards[0].index->metric().p(), p = index.metric().p();
    if (p != p0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "shard_ids[%d]: shard \"%s\" uses p = %g but shard \"%s\" uses p = %g; their "
          "distances cannot be merged",
          s, shard_ids[s], p, shard_ids[0], p0));
    }
    total_rows += index.size();
  }
  const size_t k = std::min<size_t>({static_cast<size_t>(request.k()), total_rows,
                                     static_cast<size_t>(std::numeric_limits<int>::max())});
  const size_t num_queries = queries.rows();
  if (num_queries > 0 && k > static_cast<size_t>(std::numeric_limits<int>::max()) / num_queries) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "k: %d queries x %d neighbours do not fit in one response; send smaller batches",
        num_queries, k));
  }

  // Each shard's own top-k (min(k, its rows) per query), on all cores.
  std::vector<KNeighborsResult> parts;
  parts.reserve(shards.size());
  for (const Shard& shard : shards) {
    if (context->IsCancelled()) return Cancelled("SearchShards");
    KNN_ASSIGN_OR_RETURN(KNeighborsResult part,
                         shard.index->KNeighborsRdist(queries, static_cast<int>(k), pool_));
    parts.push_back(std::move(part));
  }
  if (context->IsCancelled()) return Cancelled("SearchShards");

  v1::Neighbors* out = response->mutable_neighbors();
  if (parts.size() == 1) {
    rpc::ToProto(parts[0], out);  // k == min(k, rows of the one shard) already
    return absl::OkStatus();
  }

  std::vector<const KNeighborsResult*> part_ptrs;
  for (const KNeighborsResult& part : parts) part_ptrs.push_back(&part);
  absl::StatusOr<KNeighborsResult> merged = MergeKNeighbors(part_ptrs, k, pool_);
  if (!merged.ok()) {
    // Only possible when listed shards hold the same rows (replicas): their rows were counted
    // twice in k.
    return absl::InvalidArgumentError(
        "shard_ids: the listed shards hold the same global rows; list each row's shard once");
  }
  rpc::ToProto(*merged, out);
  return absl::OkStatus();
}

// ---- DropShard, GetWorkerStatus -----------------------------------------------------------------

grpc::Status WorkerService::DropShard(grpc::ServerContext* /*context*/,
                                      const v1::DropShardRequest* request,
                                      v1::DropShardResponse* response) {
  absl::Status status = ValidateShardId(request->shard_id(), "shard_id");
  if (status.ok()) {
    response->set_existed(store_->Drop(request->shard_id()));
    if (response->existed()) ReleaseFreedMemory();
  }
  return rpc::ToGrpcStatus(status);
}

grpc::Status WorkerService::GetWorkerStatus(grpc::ServerContext* /*context*/,
                                            const v1::GetWorkerStatusRequest* /*request*/,
                                            v1::WorkerStatus* response) {
  response->set_worker_id(worker_id_);
  for (const ShardInfo& info : store_->List()) {
    v1::ShardStatus* s = response->add_shards();
    s->set_shard_id(info.shard_id);
    s->set_rows(info.rows);
    s->set_cols(info.cols);
    s->set_algorithm(AlgorithmName(info.algorithm));
    s->set_memory_bytes(info.memory_bytes);
  }
  response->set_rss_bytes(ResidentBytes());
  response->set_cores(static_cast<uint32_t>(pool_->num_threads()));
  return rpc::ToGrpcStatus(absl::OkStatus());
}

}  // namespace knncluster::worker
