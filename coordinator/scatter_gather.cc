#include "coordinator/scatter_gather.h"

#include <algorithm>
#include <cmath>
#include <limits>
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

size_t RoutingGrid::CellOf(const double* q, bool* inside) const {
  size_t cell = 0;
  bool in = true;
  const double cells = static_cast<double>(cells_per_dim);
  for (size_t j = 0; j < lo.size(); ++j) {
    // (no std::floor: without SSE4.1 it is a library call; truncation is floor for t >= 0)
    const double t = (q[j] - lo[j]) / width[j];
    in = in && t >= 0 && t < cells;
    const size_t idx = !(t > 0) ? 0 : t >= cells ? cells_per_dim - 1 : static_cast<size_t>(t);
    cell = cell * cells_per_dim + std::min(idx, cells_per_dim - 1);
  }
  if (inside != nullptr) *inside = in;
  return cell;
}

namespace {
// Distance from q to the box [lo, hi] (0 inside): to its nearest point. scratch: dim values.
template <typename M>
double BoxRdist(const M& m, const double* q, const std::vector<double>& lo,
                const std::vector<double>& hi, double* scratch) {
  for (size_t j = 0; j < lo.size(); ++j) scratch[j] = std::min(std::max(q[j], lo[j]), hi[j]);
  return m.Rdist(q, scratch, lo.size());
}
}  // namespace

void RoutingGrid::ComputeSoleShards(absl::Span<const ShardLocation> model_shards,
                                    const Minkowski& metric) {
  shards.clear();
  sole_shard.clear();
  reach_all = 0;
  const size_t dim = lo.size();
  if (model_shards.empty() || model_shards.size() >= kSeveral || dim == 0 ||
      width.size() != dim) {
    return;
  }
  for (const ShardLocation& s : model_shards) {
    if (s.box_lo.size() != dim || s.box_hi.size() != dim) return;
  }
  size_t cells = 1;
  for (size_t j = 0; j < dim; ++j) cells *= cells_per_dim;
  if (kth_dist.size() != cells) return;
  metric.Visit([&](auto m) {
    std::vector<double> center(dim), corner(dim), scratch(dim);
    Center(0, center.data());
    for (size_t j = 0; j < dim; ++j) corner[j] = center[j] + width[j] / 2;
    const double h = m.RdistToDist(m.Rdist(center.data(), corner.data(), dim));
    sole_shard.assign(cells, kSeveral);
    reach_all = (h + *std::max_element(kth_dist.begin(), kth_dist.end())) * (1 + kBoundSlack);
    for (size_t c = 0; c < cells; ++c) {
      Center(c, center.data());
      const double reach = (2 * h + kth_dist[c]) * (1 + kBoundSlack);
      size_t near = 0, which = 0;
      for (size_t s = 0; s < model_shards.size(); ++s) {
        const double d = m.RdistToDist(BoxRdist(m, center.data(), model_shards[s].box_lo,
                                                model_shards[s].box_hi, scratch.data()));
        if (d <= reach) {
          ++near;
          which = s;
        }
      }
      if (near == 1) sole_shard[c] = static_cast<uint8_t>(which);
    }
  });
  for (const ShardLocation& s : model_shards) shards.push_back(s.shard_id);
}

absl::StatusOr<KNeighborsResult> ScatterGather::Search(absl::Span<const ShardLocation> shards,
                                                       MatrixView queries, size_t k,
                                                       const Minkowski& metric,
                                                       absl::Time deadline,
                                                       const RoutingGrid* routing,
                                                       std::vector<std::string>* missing) const {
  KNeighborsResult result;
  KNN_RETURN_IF_ERROR(
      SearchInto(shards, queries, k, metric, deadline, routing, missing, ResultSink(&result)));
  return result;
}

absl::Status ScatterGather::SearchInto(absl::Span<const ShardLocation> shards, MatrixView queries,
                                       size_t k, const Minkowski& metric, absl::Time deadline,
                                       const RoutingGrid* routing,
                                       std::vector<std::string>* missing,
                                       const NeighborsSink& sink) const {
  // SearchImpl converts to true distances as it merges.
  return SearchImpl(shards, queries, k, deadline, routing, &metric, nullptr, missing, sink);
}

absl::StatusOr<KNeighborsResult> ScatterGather::SearchRdist(absl::Span<const ShardLocation> shards,
                                                            MatrixView queries, size_t k,
                                                            absl::Time deadline,
                                                            const v1::FoldSubset* subset,
                                                            std::vector<std::string>* missing) const {
  KNeighborsResult result;
  KNN_RETURN_IF_ERROR(SearchImpl(shards, queries, k, deadline, nullptr, nullptr, subset, missing,
                                 ResultSink(&result)));
  return result;
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

absl::Status ScatterGather::SearchImpl(absl::Span<const ShardLocation> shards, MatrixView queries,
                                       size_t k, absl::Time deadline, const RoutingGrid* routing,
                                       const Minkowski* metric, const v1::FoldSubset* subset,
                                       std::vector<std::string>* missing,
                                       const NeighborsSink& sink) const {
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
  for (const ShardLocation* s : active) total_rows += s->rows - s->halo_rows;  // distinct rows
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
  // Distance bounds hold when every shard answers: not with allow_partial, where a query's
  // neighbours may lie on a missing shard and the others must then give their own k nearest.
  const bool bounds = route && !state.allow_partial;

  const size_t k_out = static_cast<size_t>(std::min<uint64_t>(k, total_rows));
  KNN_ASSIGN_OR_RETURN(const auto out, sink(queries.rows(), k_out));
  const size_t chunk = ChunkRows(queries.cols(), k);
  ChunkRouting routed;
  for (size_t begin = 0; begin < queries.rows(); begin += chunk) {
    const size_t end = std::min(queries.rows(), begin + chunk);
    if (route) Route(*routing, *metric, active, queries.Slice(begin, end), bounds, &routed);
    KNN_RETURN_IF_ERROR(SearchChunk(active, queries.Slice(begin, end), k, k_out, id_end,
                                    deadline, route ? &routed : nullptr, subset, metric, &state,
                                    out.first + begin * k_out, out.second + begin * k_out));
  }
  if (missing != nullptr) missing->assign(state.missing.begin(), state.missing.end());
  return absl::OkStatus();
}

void ScatterGather::Route(const RoutingGrid& routing, const Minkowski& metric,
                          absl::Span<const ShardLocation* const> active, MatrixView queries,
                          bool bounds, ChunkRouting* out) const {
  const size_t dim = queries.cols();
  const size_t n = queries.rows();
  const size_t words = (active.size() + 63) / 64;
  out->words = words;
  out->need.assign(n * words, 0);
  out->rdist_bounds.clear();
  if (bounds) out->rdist_bounds.assign(n, std::numeric_limits<double>::infinity());
  // Each of the grid's shards' position in `active` (-1: not active).
  std::vector<int> active_of(routing.shards.size(), -1);
  for (size_t s = 0; s < active.size(); ++s) {
    for (size_t g = 0; g < routing.shards.size(); ++g) {
      if (routing.shards[g] == active[s]->shard_id) active_of[g] = static_cast<int>(s);
    }
  }
  const bool have_sole = !routing.sole_shard.empty();
  const bool have_reach = have_sole && routing.reach_all > 0;
  bool have_halo = false;
  for (const ShardLocation* s : active) have_halo = have_halo || s->halo > 0;
  std::vector<double> grid_hi(dim);  // the grid's far corner
  for (size_t j = 0; j < dim; ++j) {
    grid_hi[j] = routing.lo[j] + static_cast<double>(routing.cells_per_dim) * routing.width[j];
  }
  constexpr size_t kBlock = 1024;
  metric.Visit([&](auto m) {
    const double r_all = m.DistToRdist(routing.reach_all);
    ParallelFor(pool_, (n + kBlock - 1) / kBlock, [&](size_t block) {
      std::vector<double> center(dim), scratch(dim);
      std::vector<double> box_r(active.size());  // the query's reduced distance to each box
      for (size_t i = block * kBlock; i < std::min(n, (block + 1) * kBlock); ++i) {
        const double* q = queries.row(i);
        uint64_t* bits = out->need.data() + i * words;
        const auto send_to = [bits](size_t s) { bits[s / 64] |= uint64_t{1} << (s % 64); };
        for (size_t s = 0; s < active.size(); ++s) {
          box_r[s] = BoxRdist(m, q, active[s]->box_lo, active[s]->box_hi, scratch.data());
        }
        if (have_reach) {
          bool in_grid = true;
          for (size_t j = 0; j < dim; ++j) {
            in_grid = in_grid && q[j] >= routing.lo[j] && q[j] < grid_hi[j];
          }
          if (in_grid) {  // U_q <= reach_all: the shards whose box is that close
            size_t near = 0, which = 0;
            for (size_t s = 0; s < active.size(); ++s) {
              if (box_r[s] <= r_all) {
                ++near;
                which = s;
              }
            }
            if (near == 1) {
              send_to(which);
              continue;
            }
          }
        }
        bool inside = false;
        const size_t cell = routing.CellOf(q, &inside);
        if (have_sole && inside && routing.sole_shard[cell] != RoutingGrid::kSeveral) {
          const int s = active_of[routing.sole_shard[cell]];
          if (s >= 0) {  // one shard alone can hold q's neighbours
            send_to(static_cast<size_t>(s));
            continue;
          }
        }
        // U_q = dist(q, c) + kth(c) bounds q's k-th distance.
        routing.Center(cell, center.data());
        const double bound =
            (m.RdistToDist(m.Rdist(q, center.data(), dim)) + routing.kth_dist[cell]) *
            (1 + kBoundSlack);
        const double rbound = m.DistToRdist(bound);
        // A shard whose halo holds every row within U_q of q (dist(q, box) + U_q <= halo): q
        // needs it alone. The nearest such box.
        size_t cover = active.size();
        for (size_t s = 0; have_halo && s < active.size(); ++s) {
          const double halo = active[s]->halo;
          if (halo > bound && box_r[s] <= m.DistToRdist((halo - bound) * (1 - kBoundSlack)) &&
              (cover == active.size() || box_r[s] < box_r[cover])) {
            cover = s;
          }
        }
        if (cover < active.size()) {
          send_to(cover);
          continue;
        }
        // The exact test: the shards whose box is within U_q of q.
        size_t sent = 0;
        for (size_t s = 0; s < active.size(); ++s) {
          if (box_r[s] <= rbound) {
            send_to(s);
            ++sent;
          }
        }
        if (bounds && sent > 1) out->rdist_bounds[i] = rbound;
        // None cannot happen (q's nearest row lies within the bound); every shard, to be safe.
        if (sent == 0) {
          for (size_t s = 0; s < active.size(); ++s) send_to(s);
        }
      }
    });
  });
}

namespace {

// The request of one worker's call for a chunk: the call's shards (positions in `shards`) and the
// chunk's queries needing any of them (every query when `routed` is null), in order, with the
// bounds of those that have one. row_of[q]: the request row of chunk query q, or -1 (left empty
// when routed is null). Returns the number of rows sent.
size_t BuildSearchRequest(absl::Span<const ShardLocation* const> shards,
                          const std::vector<size_t>& call_shards, MatrixView queries,
                          const ChunkRouting* routed, size_t k, int64_t id_end,
                          const v1::FoldSubset* subset, v1::SearchShardsRequest* request,
                          std::vector<int32_t>* row_of) {
  const size_t n = queries.rows(), dim = queries.cols();
  for (size_t s : call_shards) request->add_shard_ids(shards[s]->shard_id);
  v1::Matrix* out = request->mutable_queries();
  out->set_cols(dim);
  size_t rows = n;
  if (routed == nullptr) {
    out->mutable_values()->Assign(queries.data(), queries.data() + n * dim);
  } else {
    // The chunk's rows needing any of this call's shards, in order. Branch-free: which worker a
    // query goes to is as good as random, so branches would be mispredicted.
    const size_t words = routed->words;
    const std::vector<uint64_t>* need = &routed->need;
    std::vector<uint64_t> mask(words, 0);
    for (size_t s : call_shards) mask[s / 64] |= uint64_t{1} << (s % 64);
    row_of->resize(n);
    std::vector<uint32_t> sent(n);  // request row -> chunk query
    rows = 0;
    for (size_t q = 0; q < n; ++q) {
      uint64_t hit = 0;
      for (size_t w = 0; w < words; ++w) hit |= (*need)[q * words + w] & mask[w];
      const size_t any = hit != 0;
      (*row_of)[q] = any ? static_cast<int32_t>(rows) : -1;
      sent[rows] = static_cast<uint32_t>(q);
      rows += any;
    }
    const int values = static_cast<int>(rows * dim);
    out->mutable_values()->Reserve(values);
    double* to = out->mutable_values()->AddNAlreadyReserved(values);
    for (size_t r = 0; r < rows; ++r) std::copy_n(queries.row(sent[r]), dim, to + r * dim);
    if (!routed->rdist_bounds.empty()) {
      for (size_t r = 0; r < rows; ++r) {
        const double bound = routed->rdist_bounds[sent[r]];
        if (bound < std::numeric_limits<double>::infinity()) {
          request->add_bounded_rows(static_cast<uint32_t>(r));
          request->add_rdist_bounds(bound);
        }
      }
    }
  }
  out->set_rows(rows);
  request->set_k(static_cast<uint32_t>(k));
  request->set_compact_indices(rpc::CompactIndices(true, static_cast<uint64_t>(id_end)));
  if (subset != nullptr) *request->mutable_subset() = *subset;
  return rows;
}

// Padding (kNoNeighborId) only in the rows the request gave a distance bound.
absl::Status CheckPaddingIsBounded(const v1::Neighbors& nb,
                                   const v1::SearchShardsRequest& request) {
  const IdsIn ids = rpc::IndicesOf(nb);
  const auto& bounded = request.bounded_rows();
  int next = 0;  // bounded_rows is ascending
  for (uint64_t r = 0; r < nb.num_queries(); ++r) {
    while (next < bounded.size() && bounded[next] < r) ++next;
    if (next < bounded.size() && bounded[next] == r) continue;
    for (uint32_t j = 0; j < nb.k(); ++j) {
      if (ids[r * nb.k() + j] == kNoNeighborId) {
        return absl::InternalError(absl::StrCat("returned no neighbour (index ", kNoNeighborId,
                                                ") in row ", r, ", which had no distance bound"));
      }
    }
  }
  return absl::OkStatus();
}

// Codes that say the worker, not the request, failed: the shards are tried on other replicas.
bool WorkerAtFault(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kNotFound ||
         code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kDeadlineExceeded || code == absl::StatusCode::kAborted;
}

}  // namespace

const std::string* ScatterGather::PickReplica(const ShardLocation& shard, const SearchState& state,
                                              const std::set<std::string>& tried,
                                              std::map<std::string, uint64_t>* assigned) const {
  const std::string* best = nullptr;
  for (const std::string& w : shard.worker_ids) {
    if (state.failed_workers.count(w) > 0 || tried.count(w) > 0 || !workers_->IsAlive(w)) {
      continue;
    }
    if (best == nullptr || (*assigned)[w] < (*assigned)[*best]) best = &w;
  }
  if (best != nullptr) (*assigned)[*best] += shard.rows;
  return best;
}

absl::Status ScatterGather::SearchChunk(absl::Span<const ShardLocation* const> shards,
                                        MatrixView queries, size_t k, size_t k_out,
                                        int64_t id_end, absl::Time deadline,
                                        const ChunkRouting* routed,
                                        const v1::FoldSubset* subset, const Minkowski* to_true,
                                        SearchState* state, double* distances,
                                        IdsOut indices) const {
  struct Call {
    WorkerHandle worker;
    std::vector<size_t> shards;  // indices into `shards`
    std::vector<int32_t> row_of; // routed: chunk row -> row of the request, or -1; else empty
    size_t rows = 0;             // queries sent
    grpc::ClientContext ctx;
    v1::SearchShardsRequest request;
    v1::SearchShardsResponse response;
    grpc::Status status;
    bool done = false;
    bool cancelled_dead = false;  // cancelled here: the pool declared the worker dead
  };
  const size_t n = queries.rows();
  // The shards some query needs.
  std::vector<size_t> pending;
  if (routed == nullptr) {
    for (size_t s = 0; s < shards.size(); ++s) pending.push_back(s);
  } else {
    const size_t words = routed->words;
    std::vector<uint64_t> used(words, 0);
    for (size_t q = 0; q < n; ++q) {
      for (size_t w = 0; w < words; ++w) used[w] |= routed->need[q * words + w];
    }
    for (size_t s = 0; s < shards.size(); ++s) {
      if ((used[s / 64] >> (s % 64)) & 1) pending.push_back(s);
    }
  }
  std::vector<std::set<std::string>> tried(shards.size());
  std::vector<std::vector<std::string>> failures(shards.size());  // why each replica failed
  // Shards every copy of which refused with RESOURCE_EXHAUSTED (overload, admission limits): the
  // answer keeps that code, so the client sees "busy, retry later" rather than "gone".
  std::vector<bool> only_overloaded(shards.size(), true);
  // The calls that answered; their responses are merged in place at the end.
  std::vector<std::unique_ptr<Call>> answered;

  while (!pending.empty()) {
    // Choose a live replica per shard, spreading rows over the workers.
    std::map<std::string, std::vector<size_t>> by_worker;
    std::map<std::string, uint64_t> assigned;
    std::vector<std::string> unavailable;
    bool all_overloaded = true;
    for (size_t s : pending) {
      if (const std::string* best = PickReplica(*shards[s], *state, tried[s], &assigned)) {
        by_worker[*best].push_back(s);
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
      calls.push_back(std::move(c));
    }
    if (calls.size() != by_worker.size()) {
      return absl::InternalError("a live worker vanished from the pool");
    }
    // Every request is built before the first call starts: once one worker is searching on
    // every core, building the next request would wait for a core while that worker's answer
    // waits for the other.
    for (const auto& call : calls) {
      Call* c = call.get();
      c->ctx.set_deadline(absl::ToChronoTime(call_deadline));
      c->rows = BuildSearchRequest(shards, c->shards, queries, routed, k, id_end, subset,
                                   &c->request, &c->row_of);
      // The answer's arrays at their final size (at most rows x k), so that parsing it copies
      // each value once (the field is `optional`: the parse keeps them).
      const size_t most = c->rows * k;
      if (most <= static_cast<size_t>(std::numeric_limits<int>::max())) {
        v1::Neighbors* nb = c->response.mutable_neighbors();
        nb->mutable_distances()->Reserve(static_cast<int>(most));
        if (c->request.compact_indices()) {
          nb->mutable_indices32()->Reserve(static_cast<int>(most));
        } else {
          nb->mutable_indices()->Reserve(static_cast<int>(most));
        }
      }
    }
    absl::Mutex mu;
    size_t remaining = calls.size();
    // The calls start from several threads at once: the first worker to receive its request
    // wakes on this core and starts searching on every core at once, and a call started after
    // it by this thread would wait for the scheduler's next tick (up to 4 ms) to be sent.
    ParallelFor(pool_, calls.size(), [&](size_t i) {
      Call* c = calls[i].get();
      c->worker.stub->async()->SearchShards(&c->ctx, &c->request, &c->response,
                                            [c, &mu, &remaining](grpc::Status st) {
                                              absl::MutexLock lock(&mu);
                                              c->status = std::move(st);
                                              c->done = true;
                                              --remaining;
                                            });
    });
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
    for (auto& call : calls) {
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
      // The answer is checked where it lies, and merged from there.
      const v1::Neighbors& nb = c.response.neighbors();
      absl::Status bad = rpc::CheckShape(nb, "SearchShardsResponse.neighbors");
      if (bad.ok() && (nb.num_queries() != c.rows || nb.k() > k)) {
        bad = absl::InternalError(absl::StrFormat("answered %d queries x %d neighbours for %d x %d",
                                                  nb.num_queries(), nb.k(), c.rows, k));
      }
      if (bad.ok()) {
        // Every index in [0, id_end), or kNoNeighborId (a bounded row's padding; the merge
        // refuses it where a neighbour is needed). One branch-free pass for the range, on the
        // batch's critical path.
        const auto [lo, hi] = rpc::IndexRange(nb);
        if (lo < kNoNeighborId || hi >= id_end) {
          bad = absl::InternalError(absl::StrCat("returned global index ",
                                                 lo < kNoNeighborId ? lo : hi, " outside [0, ",
                                                 id_end, ")"));
        } else if (lo == kNoNeighborId) {
          bad = CheckPaddingIsBounded(nb, c.request);
        }
      }
      if (!bad.ok()) {
        code = absl::StatusCode::kInternal;
        errors.push_back(absl::StrCat(DescribeShards(ids, c.worker),
                                      " sent a malformed answer: ", bad.message()));
        continue;
      }
      answered.push_back(std::move(call));
    }
    if (!errors.empty()) return absl::Status(code, absl::StrJoin(errors, "; "));
    if (!retry.empty() && absl::Now() >= deadline) {
      return absl::DeadlineExceededError("the deadline passed before the shards of a failed "
                                         "worker could be retried on a replica");
    }
    pending = std::move(retry);
  }

  // The one merge of partial answers (core), straight from the responses.
  if (answered.empty()) return absl::UnavailableError("no shard answered");
  std::vector<PartialAnswer> parts;
  for (const auto& c : answered) {
    const v1::Neighbors& nb = c->response.neighbors();
    parts.push_back(PartialAnswer{nb.k(), nb.distances().data(), rpc::IndicesOf(nb), c->row_of});
  }
  absl::Status merged = MergePartialAnswers(parts, n, k_out, to_true, pool_, distances, indices);
  if (!merged.ok()) {
    if (!state->missing.empty()) {
      return absl::UnavailableError(absl::StrCat(
          "the shards that answered hold too few neighbours (", merged.message(),
          "); missing shards ", absl::StrJoin(state->missing, ", ")));
    }
    return absl::InternalError(absl::StrCat("the workers' answers: ", merged.message()));
  }
  return absl::OkStatus();
}

}  // namespace knncluster::coordinator
