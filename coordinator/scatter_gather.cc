#include "coordinator/scatter_gather.h"

#include <algorithm>
#include <cmath>
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

namespace {
// Relative slack on the routing bound, so rounding in dist(q, c) + kth(c) never drops a shard.
constexpr double kBoundSlack = 1e-6;
}  // namespace

void RoutingGrid::Center(size_t cell, double* center) const {
  const size_t dim = lo.size();
  for (size_t j = dim; j-- > 0;) {
    const size_t idx = cell % cells_per_dim;
    cell /= cells_per_dim;
    center[j] = lo[j] + (static_cast<double>(idx) + 0.5) * width[j];
  }
}

size_t RoutingGrid::CellOf(const double* q) const {
  size_t cell = 0;
  for (size_t j = 0; j < lo.size(); ++j) {
    const double t = std::floor((q[j] - lo[j]) / width[j]);
    const size_t idx = t <= 0 ? 0
                       : t >= static_cast<double>(cells_per_dim - 1)
                           ? cells_per_dim - 1
                           : static_cast<size_t>(t);
    cell = cell * cells_per_dim + idx;
  }
  return cell;
}

absl::StatusOr<KNeighborsResult> ScatterGather::Search(absl::Span<const ShardLocation> shards,
                                                       MatrixView queries, size_t k,
                                                       const Minkowski& metric,
                                                       absl::Time deadline,
                                                       const RoutingGrid* routing) const {
  KNN_ASSIGN_OR_RETURN(KNeighborsResult result,
                       SearchImpl(shards, queries, k, deadline, routing, &metric, nullptr));
  ToTrueDistances(metric, &result);
  return result;
}

absl::StatusOr<KNeighborsResult> ScatterGather::SearchRdist(absl::Span<const ShardLocation> shards,
                                                            MatrixView queries, size_t k,
                                                            absl::Time deadline,
                                                            const v1::FoldSubset* subset) const {
  return SearchImpl(shards, queries, k, deadline, nullptr, nullptr, subset);
}

absl::StatusOr<KNeighborsResult> ScatterGather::SearchImpl(absl::Span<const ShardLocation> shards,
                                                           MatrixView queries, size_t k,
                                                           absl::Time deadline,
                                                           const RoutingGrid* routing,
                                                           const Minkowski* metric,
                                                           const v1::FoldSubset* subset) const {
  if (shards.empty()) return absl::FailedPreconditionError("the model has no shards");
  if (k < 1) return absl::InvalidArgumentError("k: must be >= 1");
  // Group the shards by worker; every worker must be alive.
  std::map<std::string, std::vector<const ShardLocation*>> by_worker;
  uint64_t total_rows = 0;
  int64_t id_end = 0;
  for (const ShardLocation& s : shards) {
    by_worker[s.worker_id].push_back(&s);
    total_rows += s.rows;
    if (s.global_ids != nullptr) {
      if (!s.global_ids->empty()) id_end = std::max<int64_t>(id_end, s.global_ids->back() + 1);
    } else {
      id_end = std::max<int64_t>(id_end, s.first_global_index + static_cast<int64_t>(s.rows));
    }
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

  // Routing applies when the grid's bounds hold for this k and every shard has a box.
  const size_t dim = queries.cols();
  bool route = routing != nullptr && metric != nullptr && k <= routing->k && groups.size() > 1 &&
               groups.size() <= 64 && routing->lo.size() == dim && dim > 0 &&
               routing->cells_per_dim >= 1;
  for (const ShardLocation& s : shards) {
    if (s.box_lo.size() != dim || s.box_hi.size() != dim) route = false;
  }

  KNeighborsResult result;
  result.num_queries = queries.rows();
  result.k = static_cast<size_t>(std::min<uint64_t>(k, total_rows));
  result.distances.resize(result.num_queries * result.k);
  result.indices.resize(result.num_queries * result.k);
  const size_t chunk = ChunkRows(queries.cols(), k);
  std::vector<uint64_t> routed;
  std::vector<double> center(dim), nearest(dim);
  for (size_t begin = 0; begin < queries.rows(); begin += chunk) {
    const size_t end = std::min(queries.rows(), begin + chunk);
    if (route) {
      routed.assign(end - begin, 0);
      for (size_t i = begin; i < end; ++i) {
        const double* q = queries.row(i);
        const size_t cell = routing->CellOf(q);
        routing->Center(cell, center.data());
        const double bound =
            (metric->RdistToDist(metric->Rdist(q, center.data(), dim)) + routing->kth_dist[cell]) *
            (1 + kBoundSlack);
        uint64_t mask = 0;
        for (size_t g = 0; g < groups.size(); ++g) {
          for (const ShardLocation* s : groups[g].shards) {
            for (size_t j = 0; j < dim; ++j) {
              nearest[j] = std::min(std::max(q[j], s->box_lo[j]), s->box_hi[j]);
            }
            if (metric->RdistToDist(metric->Rdist(q, nearest.data(), dim)) <= bound) {
              mask |= uint64_t{1} << g;
              break;
            }
          }
        }
        // Cannot happen (q's nearest row lies within the bound); all groups, to be safe.
        if (mask == 0) {
          mask = groups.size() == 64 ? ~uint64_t{0} : (uint64_t{1} << groups.size()) - 1;
        }
        routed[i - begin] = mask;
      }
    }
    KNN_RETURN_IF_ERROR(SearchChunk(groups, queries.Slice(begin, end), k, result.k, id_end,
                                    deadline, route ? &routed : nullptr, subset,
                                    result.distances.data() + begin * result.k,
                                    result.indices.data() + begin * result.k));
  }
  return result;
}

absl::Status ScatterGather::SearchChunk(absl::Span<const WorkerGroup> groups, MatrixView queries,
                                        size_t k, size_t k_out, int64_t id_end,
                                        absl::Time deadline,
                                        const std::vector<uint64_t>* routed,
                                        const v1::FoldSubset* subset, double* distances,
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
  // Which chunk rows each group gets (routed only; else every row to every group).
  std::vector<std::vector<int64_t>> rows_of(groups.size());
  if (routed != nullptr) {
    for (size_t q = 0; q < routed->size(); ++q) {
      for (size_t g = 0; g < groups.size(); ++g) {
        if (((*routed)[q] >> g) & 1) rows_of[g].push_back(static_cast<int64_t>(q));
      }
    }
  }
  auto group_rows = [&](size_t g) {
    return routed == nullptr ? queries.rows() : rows_of[g].size();
  };
  // Serialize the queries once; each call's request copies the proto matrix.
  v1::Matrix proto_queries;
  if (routed == nullptr) rpc::ToProto(queries, &proto_queries);
  size_t n_calls = 0;
  for (size_t i = 0; i < groups.size(); ++i) n_calls += group_rows(i) > 0 ? 1 : 0;
  absl::BlockingCounter pending(static_cast<int>(n_calls));
  for (size_t i = 0; i < groups.size(); ++i) {
    calls[i] = std::make_unique<Call>();
    if (group_rows(i) == 0) continue;  // routed: nothing for this worker
    Call* c = calls[i].get();
    c->ctx.set_deadline(absl::ToChronoTime(call_deadline));
    for (const ShardLocation* s : groups[i].shards) c->request.add_shard_ids(s->shard_id);
    if (routed == nullptr) {
      *c->request.mutable_queries() = proto_queries;
    } else {
      rpc::ToProto(Matrix::Gather(queries, rows_of[i]), c->request.mutable_queries());
    }
    c->request.set_k(static_cast<uint32_t>(k));
    if (subset != nullptr) *c->request.mutable_subset() = *subset;
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
    if (group_rows(i) == 0) continue;
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
    if (r.ok() && (r->num_queries != group_rows(i) || r->k > k)) {
      r = absl::InternalError(absl::StrFormat("answered %d queries x %d neighbours for %d x %d",
                                              r->num_queries, r->k, group_rows(i), k));
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
  if (routed == nullptr) {
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
  // Routed: queries grouped by the set of groups that answered them. A query answered by one
  // group takes that group's list as is; the others merge their groups' lists.
  std::vector<std::vector<size_t>> pos(groups.size());  // chunk row -> row in parts[g]
  for (size_t g = 0; g < groups.size(); ++g) {
    pos[g].assign(queries.rows(), 0);
    for (size_t r = 0; r < rows_of[g].size(); ++r) pos[g][static_cast<size_t>(rows_of[g][r])] = r;
  }
  std::map<uint64_t, std::vector<size_t>> by_mask;
  for (size_t q = 0; q < routed->size(); ++q) by_mask[(*routed)[q]].push_back(q);
  for (const auto& [mask, qs] : by_mask) {
    std::vector<size_t> members;
    for (size_t g = 0; g < groups.size(); ++g) {
      if ((mask >> g) & 1) members.push_back(g);
    }
    if (members.size() == 1) {
      const KNeighborsResult& part = parts[members[0]];
      if (part.k != k_out) {
        return absl::InternalError(absl::StrFormat(
            "the workers' answers: %d neighbours for a query that needs %d", part.k, k_out));
      }
      for (size_t q : qs) {
        const size_t r = pos[members[0]][q];
        std::copy_n(part.distances.begin() + r * k_out, k_out, distances + q * k_out);
        std::copy_n(part.indices.begin() + r * k_out, k_out, indices + q * k_out);
      }
      continue;
    }
    std::vector<KNeighborsResult> sub(members.size());
    std::vector<const KNeighborsResult*> sub_ptrs;
    for (size_t m = 0; m < members.size(); ++m) {
      const KNeighborsResult& part = parts[members[m]];
      sub[m].num_queries = qs.size();
      sub[m].k = part.k;
      sub[m].distances.resize(qs.size() * part.k);
      sub[m].indices.resize(qs.size() * part.k);
      for (size_t i = 0; i < qs.size(); ++i) {
        const size_t r = pos[members[m]][qs[i]];
        std::copy_n(part.distances.begin() + r * part.k, part.k,
                    sub[m].distances.begin() + i * part.k);
        std::copy_n(part.indices.begin() + r * part.k, part.k, sub[m].indices.begin() + i * part.k);
      }
      sub_ptrs.push_back(&sub[m]);
    }
    absl::StatusOr<KNeighborsResult> merged = MergeKNeighbors(sub_ptrs, k_out, pool_);
    if (!merged.ok()) {
      return absl::InternalError(absl::StrCat("the workers' answers: ", merged.status().message()));
    }
    for (size_t i = 0; i < qs.size(); ++i) {
      std::copy_n(merged->distances.begin() + i * k_out, k_out, distances + qs[i] * k_out);
      std::copy_n(merged->indices.begin() + i * k_out, k_out, indices + qs[i] * k_out);
    }
  }
  return absl::OkStatus();
}

}  // namespace knncluster::coordinator
