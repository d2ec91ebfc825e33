#include "coordinator/scatter_gather.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <memory>
#include <utility>

#include <grpcpp/client_context.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
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
                                                       const RoutingGrid* routing,
                                                       std::vector<std::string>* missing) const {
  KNN_ASSIGN_OR_RETURN(KNeighborsResult result,
                       SearchImpl(shards, queries, k, deadline, routing, &metric, nullptr, missing));
  ToTrueDistances(metric, &result);
  return result;
}

absl::StatusOr<KNeighborsResult> ScatterGather::SearchRdist(absl::Span<const ShardLocation> shards,
                                                            MatrixView queries, size_t k,
                                                            absl::Time deadline,
                                                            const v1::FoldSubset* subset,
                                                            std::vector<std::string>* missing) const {
  return SearchImpl(shards, queries, k, deadline, nullptr, nullptr, subset, missing);
}

namespace {

int64_t IdEnd(const ShardLocation& s) {
  if (s.global_ids != nullptr) return s.global_ids->empty() ? 0 : s.global_ids->back() + 1;
  return s.first_global_index + static_cast<int64_t>(s.rows);
}

// "no replica is alive (worker w1 (a:1): dead; worker w2: unknown)".
std::string NoLiveReplica(const ShardLocation& s, const WorkerPool& workers) {
  if (s.worker_ids.empty()) return "no worker holds a copy (every copy was lost; it is being re-sent)";
  std::vector<std::string> why;
  for (const std::string& id : s.worker_ids) {
    absl::StatusOr<WorkerHandle> w = workers.Get(id);
    why.push_back(w.ok() ? absl::StrCat(w->Describe(), ": dead (missed heartbeats or failed calls)")
                         : absl::StrCat("worker ", id, ": unknown"));
  }
  return absl::StrCat("no replica is alive (", absl::StrJoin(why, "; "), ")");
}

}  // namespace

absl::StatusOr<KNeighborsResult> ScatterGather::SearchImpl(absl::Span<const ShardLocation> shards,
                                                           MatrixView queries, size_t k,
                                                           absl::Time deadline,
                                                           const RoutingGrid* routing,
                                                           const Minkowski* metric,
                                                           const v1::FoldSubset* subset,
                                                           std::vector<std::string>* missing) const {
  if (shards.empty()) return absl::FailedPreconditionError("the model has no shards");
  if (k < 1) return absl::InvalidArgumentError("k: must be >= 1");
  SearchState state;
  state.allow_partial = missing != nullptr;
  // Every shard needs a live replica before any call is made.
  int64_t id_end = 0;
  std::vector<const ShardLocation*> active;
  std::vector<std::string> unavailable;
  for (const ShardLocation& s : shards) {
    id_end = std::max(id_end, IdEnd(s));
    bool live = false;
    for (const std::string& w : s.worker_ids) live = live || workers_->IsAlive(w);
    if (live) {
      active.push_back(&s);
    } else if (state.allow_partial) {
      state.missing.insert(s.shard_id);
    } else {
      unavailable.push_back(
          absl::StrCat("shard ", s.shard_id, " is unavailable: ", NoLiveReplica(s, *workers_)));
    }
  }
  if (!unavailable.empty()) return absl::UnavailableError(absl::StrJoin(unavailable, "; "));
  uint64_t total_rows = 0;
  for (const ShardLocation* s : active) total_rows += s->rows;
  if (active.empty() || (!state.missing.empty() && total_rows < k)) {
    return absl::UnavailableError(absl::StrCat(
        "too few shards are available for a partial answer: ", total_rows,
        " rows on live shards for k = ", k, "; missing shards ",
        absl::StrJoin(state.missing, ", ")));
  }

  // Routing applies when the grid's bounds hold for this k and every shard has a box.
  const size_t dim = queries.cols();
  bool route = routing != nullptr && metric != nullptr && k <= routing->k && active.size() > 1 &&
               routing->lo.size() == dim && dim > 0 && routing->cells_per_dim >= 1;
  for (const ShardLocation* s : active) {
    if (s->box_lo.size() != dim || s->box_hi.size() != dim) route = false;
  }
  const size_t words = (active.size() + 63) / 64;

  KNeighborsResult result;
  result.num_queries = queries.rows();
  result.k = static_cast<size_t>(std::min<uint64_t>(k, total_rows));
  result.distances.resize(result.num_queries * result.k);
  result.indices.resize(result.num_queries * result.k);
  const size_t chunk = ChunkRows(queries.cols(), k);
  std::vector<uint64_t> need;
  std::vector<double> center(dim), nearest(dim);
  for (size_t begin = 0; begin < queries.rows(); begin += chunk) {
    const size_t end = std::min(queries.rows(), begin + chunk);
    if (route) {
      need.assign((end - begin) * words, 0);
      for (size_t i = begin; i < end; ++i) {
        const double* q = queries.row(i);
        const size_t cell = routing->CellOf(q);
        routing->Center(cell, center.data());
        const double bound =
            (metric->RdistToDist(metric->Rdist(q, center.data(), dim)) + routing->kth_dist[cell]) *
            (1 + kBoundSlack);
        uint64_t* bits = need.data() + (i - begin) * words;
        bool any = false;
        for (size_t s = 0; s < active.size(); ++s) {
          for (size_t j = 0; j < dim; ++j) {
            nearest[j] = std::min(std::max(q[j], active[s]->box_lo[j]), active[s]->box_hi[j]);
          }
          if (metric->RdistToDist(metric->Rdist(q, nearest.data(), dim)) <= bound) {
            bits[s / 64] |= uint64_t{1} << (s % 64);
            any = true;
          }
        }
        // Cannot happen (q's nearest row lies within the bound); every shard, to be safe.
        if (!any) {
          for (size_t s = 0; s < active.size(); ++s) bits[s / 64] |= uint64_t{1} << (s % 64);
        }
      }
    }
    KNN_RETURN_IF_ERROR(SearchChunk(active, queries.Slice(begin, end), k, result.k, id_end,
                                    deadline, route ? &need : nullptr, words, subset, &state,
                                    result.distances.data() + begin * result.k,
                                    result.indices.data() + begin * result.k));
  }
  if (missing != nullptr) missing->assign(state.missing.begin(), state.missing.end());
  return result;
}

namespace {

// Codes that say the worker, not the request, failed: the shards are tried on other replicas.
bool WorkerAtFault(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kNotFound ||
         code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kDeadlineExceeded || code == absl::StatusCode::kAborted;
}

}  // namespace

absl::Status ScatterGather::SearchChunk(absl::Span<const ShardLocation* const> shards,
                                        MatrixView queries, size_t k, size_t k_out,
                                        int64_t id_end, absl::Time deadline,
                                        const std::vector<uint64_t>* need, size_t words,
                                        const v1::FoldSubset* subset, SearchState* state,
                                        double* distances, int64_t* indices) const {
  struct Call {
    WorkerHandle worker;
    std::vector<size_t> shards;  // indices into `shards`
    std::vector<int64_t> rows;   // routed: the chunk rows sent; else empty (all)
    grpc::ClientContext ctx;
    v1::SearchShardsRequest request;
    v1::SearchShardsResponse response;
    grpc::Status status;
    bool done = false;
    bool cancelled_dead = false;  // cancelled here: the pool declared the worker dead
  };
  struct Part {
    KNeighborsResult result;
    std::vector<int32_t> pos;  // routed: chunk row -> row of result, or -1
  };
  const size_t n = queries.rows();
  auto needs = [&](size_t q, size_t s) {
    return need == nullptr || (((*need)[q * words + s / 64] >> (s % 64)) & 1) != 0;
  };
  // The shards some query needs.
  std::vector<size_t> pending;
  for (size_t s = 0; s < shards.size(); ++s) {
    bool used = need == nullptr;
    for (size_t q = 0; q < n && !used; ++q) used = needs(q, s);
    if (used) pending.push_back(s);
  }
  std::vector<std::set<std::string>> tried(shards.size());
  std::vector<std::vector<std::string>> failures(shards.size());  // why each replica failed
  // Shards every copy of which refused with RESOURCE_EXHAUSTED (overload, admission limits): the
  // answer keeps that code, so the client sees "busy, retry later" rather than "gone".
  std::vector<bool> only_overloaded(shards.size(), true);
  std::vector<Part> parts;
  // Serialize the queries once; each unrouted call's request copies the proto matrix.
  v1::Matrix proto_queries;
  if (need == nullptr) rpc::ToProto(queries, &proto_queries);

  while (!pending.empty()) {
    // Choose a live replica per shard, spreading rows over the workers.
    std::map<std::string, std::vector<size_t>> by_worker;
    std::map<std::string, uint64_t> assigned;
    std::vector<std::string> unavailable;
    bool all_overloaded = true;
    for (size_t s : pending) {
      const std::string* best = nullptr;
      for (const std::string& w : shards[s]->worker_ids) {
        if (state->failed_workers.count(w) > 0 || tried[s].count(w) > 0 ||
            !workers_->IsAlive(w)) {
          continue;
        }
        if (best == nullptr || assigned[w] < assigned[*best]) best = &w;
      }
      if (best != nullptr) {
        by_worker[*best].push_back(s);
        assigned[*best] += shards[s]->rows;
        continue;
      }
      if (state->allow_partial) {
        state->missing.insert(shards[s]->shard_id);
        continue;
      }
      // Why each copy could not answer: its own failure, or its worker's state.
      std::vector<std::string> why = failures[s];
      for (const std::string& w : shards[s]->worker_ids) {
        if (tried[s].count(w) > 0) continue;
        absl::StatusOr<WorkerHandle> h = workers_->Get(w);
        why.push_back(absl::StrCat(h.ok() ? h->Describe() : absl::StrCat("worker ", w), ": ",
                                   !h.ok()                      ? "unknown"
                                   : !workers_->IsAlive(w)      ? "dead"
                                                                : "failed earlier in this search"));
      }
      all_overloaded = all_overloaded && !failures[s].empty() && only_overloaded[s] &&
                       tried[s].size() == shards[s]->worker_ids.size();
      unavailable.push_back(absl::StrCat(
          "shard ", shards[s]->shard_id, " is unavailable: ",
          why.empty() ? NoLiveReplica(*shards[s], *workers_)
                      : absl::StrCat("no copy could answer (", absl::StrJoin(why, "; "), ")")));
    }
    if (!unavailable.empty()) {
      return all_overloaded ? absl::ResourceExhaustedError(absl::StrJoin(unavailable, "; "))
                            : absl::UnavailableError(absl::StrJoin(unavailable, "; "));
    }

    // When the client's deadline is the nearer one, a worker that runs out of time is not at
    // fault: that must not mark it dead for everyone else, nor be retried.
    const absl::Time own_deadline = absl::Now() + options_.rpc_deadline;
    const bool client_deadline_binds = deadline < own_deadline;
    const absl::Time call_deadline = std::min(deadline, own_deadline);
    std::vector<std::unique_ptr<Call>> calls;
    for (auto& [worker_id, list] : by_worker) {
      absl::StatusOr<WorkerHandle> w = workers_->Get(worker_id);
      if (!w.ok()) continue;  // cannot happen: IsAlive said it is known
      auto c = std::make_unique<Call>();
      c->worker = *std::move(w);
      c->shards = std::move(list);
      if (need != nullptr) {
        for (size_t q = 0; q < n; ++q) {
          bool any = false;
          for (size_t s : c->shards) any = any || needs(q, s);
          if (any) c->rows.push_back(static_cast<int64_t>(q));
        }
      }
      calls.push_back(std::move(c));
    }
    if (calls.size() != by_worker.size()) {
      return absl::InternalError("a live worker vanished from the pool");
    }
    absl::Mutex mu;
    size_t remaining = calls.size();
    for (const auto& call : calls) {
      Call* c = call.get();
      c->ctx.set_deadline(absl::ToChronoTime(call_deadline));
      for (size_t s : c->shards) c->request.add_shard_ids(shards[s]->shard_id);
      if (need == nullptr) {
        *c->request.mutable_queries() = proto_queries;
      } else {
        rpc::ToProto(Matrix::Gather(queries, c->rows), c->request.mutable_queries());
      }
      c->request.set_k(static_cast<uint32_t>(k));
      if (subset != nullptr) *c->request.mutable_subset() = *subset;
      c->worker.stub->async()->SearchShards(&c->ctx, &c->request, &c->response,
                                            [c, &mu, &remaining](grpc::Status st) {
                                              absl::MutexLock lock(&mu);
                                              c->status = std::move(st);
                                              c->done = true;
                                              --remaining;
                                            });
    }
    // Wait; meanwhile a call to a worker the pool declares dead (missed heartbeats: a partition
    // or a hung process) is cancelled, so that its shards go to a replica within the deadline.
    {
      absl::MutexLock lock(&mu);
      while (!mu.AwaitWithTimeout(absl::Condition(+[](size_t* r) { return *r == 0; }, &remaining),
                                  options_.liveness_poll)) {
        for (const auto& c : calls) {
          if (!c->done && !c->cancelled_dead && !workers_->IsAlive(c->worker.id)) {
            c->cancelled_dead = true;
            c->ctx.TryCancel();
          }
        }
      }
    }

    // Gather: keep the answers, queue the shards of failed workers for their other replicas.
    std::vector<size_t> retry;
    std::vector<std::string> errors;
    absl::StatusCode code = absl::StatusCode::kOk;
    const absl::Time now = absl::Now();
    for (const auto& call : calls) {
      Call& c = *call;
      std::vector<std::string> ids;
      for (size_t s : c.shards) ids.push_back(shards[s]->shard_id);
      absl::Status st = rpc::FromGrpcStatus(c.status);
      if (!st.ok() && c.cancelled_dead) {
        st = absl::UnavailableError("the worker was declared dead (missed heartbeats) during the call");
      }
      if (!st.ok()) {
        const bool caller_out_of_time =
            client_deadline_binds && st.code() == absl::StatusCode::kDeadlineExceeded;
        if (!caller_out_of_time) workers_->ReportCallFailure(c.worker.id, st);
        const bool lost = st.code() == absl::StatusCode::kNotFound;
        if (lost && options_.on_shards_lost) options_.on_shards_lost(c.worker.id, ids);
        if (!caller_out_of_time && WorkerAtFault(st.code()) && absl::Now() < deadline) {
          // Overload and a lost shard are this call's problem; the others the worker's.
          if (st.code() != absl::StatusCode::kNotFound &&
              st.code() != absl::StatusCode::kResourceExhausted) {
            state->failed_workers.insert(c.worker.id);
          }
          for (size_t s : c.shards) {
            tried[s].insert(c.worker.id);
            if (st.code() != absl::StatusCode::kResourceExhausted) only_overloaded[s] = false;
            failures[s].push_back(absl::StrCat(c.worker.Describe(), " failed: ",
                                               absl::StatusCodeToString(st.code()), ": ",
                                               st.message()));
            retry.push_back(s);
          }
          continue;
        }
        if (code == absl::StatusCode::kOk) code = st.code();
        errors.push_back(absl::StrCat(DescribeShards(ids, c.worker), " failed: ",
                                      absl::StatusCodeToString(st.code()), ": ", st.message()));
        continue;
      }
      workers_->ReportCallSuccess(c.worker.id, now);
      const size_t expect = need == nullptr ? n : c.rows.size();
      absl::StatusOr<KNeighborsResult> r =
          rpc::FromProto(c.response.neighbors(), "SearchShardsResponse.neighbors");
      if (r.ok() && (r->num_queries != expect || r->k > k)) {
        r = absl::InternalError(absl::StrFormat("answered %d queries x %d neighbours for %d x %d",
                                                r->num_queries, r->k, expect, k));
      }
      if (r.ok()) {
        for (int64_t id : r->indices) {
          if (id < 0 || id >= id_end) {
            r = absl::InternalError(absl::StrCat("returned global index ", id, " outside [0, ",
                                                 id_end, ")"));
            break;
          }
        }
      }
      if (!r.ok()) {
        code = absl::StatusCode::kInternal;
        errors.push_back(absl::StrCat(DescribeShards(ids, c.worker),
                                      " sent a malformed answer: ", r.status().message()));
        continue;
      }
      Part part;
      part.result = *std::move(r);
      if (need != nullptr) {
        part.pos.assign(n, -1);
        for (size_t i = 0; i < c.rows.size(); ++i) {
          part.pos[static_cast<size_t>(c.rows[i])] = static_cast<int32_t>(i);
        }
      }
      parts.push_back(std::move(part));
    }
    if (!errors.empty()) return absl::Status(code, absl::StrJoin(errors, "; "));
    if (!retry.empty() && absl::Now() >= deadline) {
      return absl::DeadlineExceededError("the deadline passed before the shards of a failed "
                                         "worker could be retried on a replica");
    }
    pending = std::move(retry);
  }

  // The one merge of partial answers (core), per set of parts that answered a query.
  if (parts.empty()) return absl::UnavailableError("no shard answered");
  std::map<std::vector<uint32_t>, std::vector<size_t>> by_parts;
  if (need == nullptr) {
    std::vector<uint32_t> all(parts.size());
    for (size_t p = 0; p < parts.size(); ++p) all[p] = static_cast<uint32_t>(p);
    std::vector<size_t>& qs = by_parts[all];
    for (size_t q = 0; q < n; ++q) qs.push_back(q);
  } else {
    std::vector<uint32_t> key;
    for (size_t q = 0; q < n; ++q) {
      key.clear();
      for (size_t p = 0; p < parts.size(); ++p) {
        if (parts[p].pos[q] >= 0) key.push_back(static_cast<uint32_t>(p));
      }
      by_parts[key].push_back(q);
    }
  }
  for (const auto& [members, qs] : by_parts) {
    if (members.empty()) {
      return absl::UnavailableError("a query's shards were all left out of the partial answer");
    }
    size_t rows_answered = 0;
    for (uint32_t m : members) rows_answered += parts[m].result.k;
    if (rows_answered < k_out) {
      return absl::UnavailableError(absl::StrFormat(
          "the shards that answered hold %d neighbours of a query that needs %d (missing shards "
          "%s)", rows_answered, k_out, absl::StrJoin(state->missing, ", ")));
    }
    const bool whole = need == nullptr;
    if (members.size() == 1 && whole) {
      const KNeighborsResult& r = parts[members[0]].result;
      for (size_t q : qs) {
        std::copy_n(r.distances.begin() + q * r.k, k_out, distances + q * k_out);
        std::copy_n(r.indices.begin() + q * r.k, k_out, indices + q * k_out);
      }
      continue;
    }
    std::vector<KNeighborsResult> sub(members.size());
    std::vector<const KNeighborsResult*> sub_ptrs;
    for (size_t m = 0; m < members.size(); ++m) {
      const Part& part = parts[members[m]];
      const size_t pk = part.result.k;
      if (whole) {
        sub_ptrs.push_back(&part.result);
        continue;
      }
      sub[m].num_queries = qs.size();
      sub[m].k = pk;
      sub[m].distances.resize(qs.size() * pk);
      sub[m].indices.resize(qs.size() * pk);
      for (size_t i = 0; i < qs.size(); ++i) {
        const size_t r = static_cast<size_t>(part.pos[qs[i]]);
        std::copy_n(part.result.distances.begin() + r * pk, pk, sub[m].distances.begin() + i * pk);
        std::copy_n(part.result.indices.begin() + r * pk, pk, sub[m].indices.begin() + i * pk);
      }
      sub_ptrs.push_back(&sub[m]);
    }
    absl::StatusOr<KNeighborsResult> merged = MergeKNeighbors(sub_ptrs, k_out, pool_);
    if (!merged.ok()) {
      return absl::InternalError(absl::StrCat("the workers' answers: ", merged.status().message()));
    }
    if (whole) {
      std::copy(merged->distances.begin(), merged->distances.end(), distances);
      std::copy(merged->indices.begin(), merged->indices.end(), indices);
      continue;
    }
    for (size_t i = 0; i < qs.size(); ++i) {
      std::copy_n(merged->distances.begin() + i * k_out, k_out, distances + qs[i] * k_out);
      std::copy_n(merged->indices.begin() + i * k_out, k_out, indices + qs[i] * k_out);
    }
  }
  return absl::OkStatus();
}

}  // namespace knncluster::coordinator
