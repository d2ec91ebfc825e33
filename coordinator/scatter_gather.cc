#include "coordinator/scatter_gather.h"

#include <algorithm>
#include <map>
#include <memory>
#include <utility>

#include <grpcpp/client_context.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/blocking_counter.h"
#include "core/base/status_macros.h"
#include "core/index/top_k.h"
#include "rpc/convert.h"
#include "rpc/status.h"

namespace knncluster::coordinator {

std::string DescribeShards(const std::vector<std::string>& shard_ids, const WorkerHandle& worker) {
  return absl::StrCat(shard_ids.size() == 1 ? "shard " : "shards ",
                      absl::StrJoin(shard_ids, ", "), " on ", worker.Describe());
}

ScatterGather::ScatterGather(WorkerPool* workers, ThreadPool* pool, ScatterGatherOptions options)
    : workers_(workers), pool_(pool), options_(std::move(options)) {}

size_t ScatterGather::ChunkRows(size_t cols, size_t k) const {
  const size_t by_query = options_.max_query_bytes / (std::max<size_t>(cols, 1) * sizeof(double));
  const size_t by_response = options_.max_response_bytes / (std::max<size_t>(k, 1) * 16);
  return std::max<size_t>(1, std::min(by_query, by_response));
}

absl::StatusOr<KNeighborsResult> ScatterGather::Search(absl::Span<const ShardLocation> shards,
                                                       MatrixView queries, size_t k,
                                                       const Minkowski& metric,
                                                       absl::Time deadline) const {
  KNN_ASSIGN_OR_RETURN(KNeighborsResult result, SearchRdist(shards, queries, k, deadline));
  ToTrueDistances(metric, &result);
  return result;
}

absl::StatusOr<KNeighborsResult> ScatterGather::SearchRdist(absl::Span<const ShardLocation> shards,
                                                            MatrixView queries, size_t k,
                                                            absl::Time deadline) const {
  if (shards.empty()) return absl::FailedPreconditionError("the model has no shards");
  if (k < 1) return absl::InvalidArgumentError("k: must be >= 1");
  // Group the shards by worker; every worker must be alive.
  std::map<std::string, std::vector<const ShardLocation*>> by_worker;
  uint64_t total_rows = 0;
  int64_t id_end = 0;
  for (const ShardLocation& s : shards) {
    by_worker[s.worker_id].push_back(&s);
    total_rows += s.rows;
    id_end = std::max<int64_t>(id_end, s.first_global_index + static_cast<int64_t>(s.rows));
  }
  std::vector<WorkerGroup> groups;
  std::vector<std::string> unavailable;
  for (auto& [worker_id, list] : by_worker) {
    absl::StatusOr<WorkerHandle> w = workers_->Get(worker_id);
    std::vector<std::string> ids;
    for (const ShardLocation* s : list) ids.push_back(s->shard_id);
    if (!w.ok()) {
      unavailable.push_back(absl::StrCat(DescribeShards(ids, WorkerHandle{worker_id, worker_id, {}}),
                                         " is unavailable: the worker is unknown"));
      continue;
    }
    if (!workers_->IsAlive(worker_id)) {
      unavailable.push_back(absl::StrCat(DescribeShards(ids, *w),
                                         " is unavailable: the worker is dead (missed heartbeats or "
                                         "failed calls); the shard is being re-sent"));
      continue;
    }
    groups.push_back({*std::move(w), std::move(list)});
  }
  if (!unavailable.empty()) return absl::UnavailableError(absl::StrJoin(unavailable, "; "));

  KNeighborsResult result;
  result.num_queries = queries.rows();
  result.k = static_cast<size_t>(std::min<uint64_t>(k, total_rows));
  result.distances.resize(result.num_queries * result.k);
  result.indices.resize(result.num_queries * result.k);
  const size_t chunk = ChunkRows(queries.cols(), k);
  for (size_t begin = 0; begin < queries.rows(); begin += chunk) {
    const size_t end = std::min(queries.rows(), begin + chunk);
    KNN_RETURN_IF_ERROR(SearchChunk(groups, queries.Slice(begin, end), k, result.k, id_end,
                                    deadline, result.distances.data() + begin * result.k,
                                    result.indices.data() + begin * result.k));
  }
  return result;
}

absl::Status ScatterGather::SearchChunk(absl::Span<const WorkerGroup> groups, MatrixView queries,
                                        size_t k, size_t k_out, int64_t id_end,
                                        absl::Time deadline, double* distances,
                                        int64_t* indices) const {
  struct Call {
    grpc::ClientContext ctx;
    v1::SearchShardsRequest request;
    v1::SearchShardsResponse response;
    grpc::Status status;
  };
  // When the client's deadline is the nearer one, a worker that runs out of time is not at
  // fault: that must not mark it dead for everyone else.
  const absl::Time own_deadline = absl::Now() + options_.rpc_deadline;
  const bool client_deadline_binds = deadline < own_deadline;
  const absl::Time call_deadline = std::min(deadline, own_deadline);
  std::vector<std::unique_ptr<Call>> calls(groups.size());
  // Serialize the queries once; each call's request copies the proto matrix.
  v1::Matrix proto_queries;
  rpc::ToProto(queries, &proto_queries);
  absl::BlockingCounter pending(static_cast<int>(groups.size()));
  for (size_t i = 0; i < groups.size(); ++i) {
    calls[i] = std::make_unique<Call>();
    Call* c = calls[i].get();
    c->ctx.set_deadline(absl::ToChronoTime(call_deadline));
    for (const ShardLocation* s : groups[i].shards) c->request.add_shard_ids(s->shard_id);
    *c->request.mutable_queries() = proto_queries;
    c->request.set_k(static_cast<uint32_t>(k));
    groups[i].worker.stub->async()->SearchShards(&c->ctx, &c->request, &c->response,
                                                 [c, &pending](grpc::Status s) {
                                                   c->status = std::move(s);
                                                   pending.DecrementCount();
                                                 });
  }
  pending.Wait();

  // Gather: check every answer, then merge.
  std::vector<KNeighborsResult> parts(groups.size());
  std::vector<std::string> errors;
  absl::StatusCode code = absl::StatusCode::kUnavailable;
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < groups.size(); ++i) {
    const WorkerGroup& g = groups[i];
    std::vector<std::string> ids;
    for (const ShardLocation* s : g.shards) ids.push_back(s->shard_id);
    const absl::Status st = rpc::FromGrpcStatus(calls[i]->status);
    if (!st.ok()) {
      if (!(client_deadline_binds && st.code() == absl::StatusCode::kDeadlineExceeded)) {
        workers_->ReportCallFailure(g.worker.id, st);
      }
      const bool lost = st.code() == absl::StatusCode::kNotFound;
      if (lost && options_.on_shards_lost) options_.on_shards_lost(ids);
      // A lost shard or an unreachable worker is UNAVAILABLE (retryable once the shard is
      // re-sent); any other answer keeps the worker's own code.
      const absl::StatusCode this_code = lost ? absl::StatusCode::kUnavailable : st.code();
      if (errors.empty() || this_code != absl::StatusCode::kUnavailable) code = this_code;
      errors.push_back(absl::StrCat(DescribeShards(ids, g.worker),
                                    this_code == absl::StatusCode::kUnavailable
                                        ? " is unavailable: "
                                        : " failed: ",
                                    absl::StatusCodeToString(st.code()), ": ", st.message()));
      continue;
    }
    workers_->ReportCallSuccess(g.worker.id, now);
    absl::StatusOr<KNeighborsResult> r =
        rpc::FromProto(calls[i]->response.neighbors(), "SearchShardsResponse.neighbors");
    if (r.ok() && (r->num_queries != queries.rows() || r->k > k)) {
      r = absl::InternalError(absl::StrFormat("answered %d queries x %d neighbours for %d x %d",
                                              r->num_queries, r->k, queries.rows(), k));
    }
    if (!r.ok()) {
      errors.push_back(absl::StrCat(DescribeShards(ids, g.worker),
                                    " sent a malformed answer: ", r.status().message()));
      code = absl::StatusCode::kInternal;
      continue;
    }
    for (int64_t id : r->indices) {
      if (id < 0 || id >= id_end) {
        return absl::InternalError(absl::StrCat(DescribeShards(ids, g.worker),
                                                " returned global index ", id, " outside [0, ",
                                                id_end, ")"));
      }
    }
    parts[i] = *std::move(r);
  }
  if (!errors.empty()) return absl::Status(code, absl::StrJoin(errors, "; "));

  // The one merge of partial answers (core), then into the caller's buffers.
  std::vector<const KNeighborsResult*> part_ptrs;
  for (const KNeighborsResult& part : parts) part_ptrs.push_back(&part);
  absl::StatusOr<KNeighborsResult> merged = MergeKNeighbors(part_ptrs, k_out, pool_);
  if (!merged.ok()) {
    return absl::InternalError(absl::StrCat("the workers' answers: ", merged.status().message()));
  }
  std::copy(merged->distances.begin(), merged->distances.end(), distances);
  std::copy(merged->indices.begin(), merged->indices.end(), indices);
  return absl::OkStatus();
}

}  // namespace knncluster::coordinator
