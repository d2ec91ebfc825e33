#include "worker/worker_service.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
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
#include "core/model_selection/grid_search.h"
#include "rpc/content_hash.h"
#include "rpc/convert.h"
#include "rpc/grid_convert.h"
#include "rpc/status.h"
#include "worker/dataset_cache.h"
#include "worker/shard_files.h"
#include "worker/shard_store.h"
#include "worker/subset_index_cache.h"
#include "worker/worker_internal.h"

namespace knncluster::worker {

namespace {
// Shard ids are chosen by the coordinator ("<model>/<n>"); any printable id up to this length.
constexpr size_t kMaxShardIdLength = 256;
// Fold-subset keys are chosen by the coordinator; any id up to this length.
constexpr size_t kMaxSubsetKeyLength = 1024;
// The testing job delay sleeps in steps of at most this, checking for cancellation between them.
constexpr absl::Duration kDelayStep = absl::Milliseconds(10);

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

// The header's checks, before any row arrives. Fills the shard's global ids when the header
// lists them (they are in the message already); leaves `ids` empty for a contiguous range, which
// is materialised only once every row has arrived, so that a header alone claiming billions of
// rows cannot make the worker allocate for them.
// A LoadShard labels chunk: only with header.has_labels, finite, at most header.rows in all.
absl::Status AppendShardLabels(const v1::ShardHeader& h, const v1::ShardLabels& chunk,
                               size_t message, std::vector<double>* labels) {
  const std::string field = absl::StrCat("labels[message ", message, "]");
  if (!h.has_labels()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": header.has_labels is false"));
  }
  if (static_cast<uint64_t>(chunk.values_size()) > h.rows() - labels->size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: more labels than header.rows = %d", field, h.rows()));
  }
  for (int i = 0; i < chunk.values_size(); ++i) {
    if (!std::isfinite(chunk.values(i))) {
      return absl::InvalidArgumentError(absl::StrFormat("%s.values[%d]: not finite", field, i));
    }
  }
  labels->insert(labels->end(), chunk.values().begin(), chunk.values().end());
  return absl::OkStatus();
}

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
  }
  return absl::OkStatus();
}

// Builds a shard's index over `values` (rows x cols, row-major) with `ids`, and stores it.
// Returns the resolved algorithm and the build time.
absl::StatusOr<std::pair<Algorithm, double>> BuildAndStore(const v1::ShardHeader& header,
                                                           const IndexOptions& options,
                                                           std::vector<int64_t> ids,
                                                           std::vector<double> values,
                                                           ShardStore* store) {
  const size_t rows = static_cast<size_t>(header.rows());
  const size_t cols = static_cast<size_t>(header.cols());
  if (ids.empty()) {  // the contiguous range [first_global_index, + rows), validated
    ids.resize(rows);
    std::iota(ids.begin(), ids.end(), header.first_global_index());
  }
  const absl::Time start = absl::Now();
  // BuildIndex builds on this thread: there is no parallel build in the core, and building is
  // cheap next to searching.
  // The index is the one copy of the rows the worker keeps (fold-subset searches gather from its
  // stored_rows()): a tree copies them into its own order, and the staging buffer is freed as
  // BuildIndex returns; brute force shares it.
  KNN_ASSIGN_OR_RETURN(
      std::unique_ptr<const NeighborIndex> built,
      BuildIndex(std::make_shared<const Matrix>(rows, cols, std::move(values)), std::move(ids),
                 options));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::shared_ptr<const NeighborIndex> index(std::move(built));
  const Algorithm algorithm = index->algorithm();
  const uint64_t bytes = EstimateIndexBytes(*index, options.leaf_size);
  store->Put(header.shard_id(), std::move(index), bytes);
  ReleaseFreedMemory();  // any replaced shard (and a tree's staging buffer)
  return std::make_pair(algorithm, seconds);
}

// SearchShards' subset: the key, the excluded global ids and the index options.
absl::StatusOr<SubsetSpec> SubsetFromProto(const v1::FoldSubset& s) {
  if (s.key().empty() || s.key().size() > kMaxSubsetKeyLength) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "subset.key: a key of 1 to %d characters is required, got %d characters",
        kMaxSubsetKeyLength, s.key().size()));
  }
  KNN_ASSIGN_OR_RETURN(NeighborsParams params,
                       rpc::FromProto(s.index_params(), "subset.index_params"));
  for (int i = 0; i < s.excluded_size(); ++i) {
    if (s.excluded(i) < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("subset.excluded[%d]: must be >= 0, got %d", i, s.excluded(i)));
    }
  }
  SubsetSpec spec;
  spec.key = s.key();
  spec.excluded = std::make_shared<const std::vector<int64_t>>(s.excluded().begin(),
                                                               s.excluded().end());
  spec.options = params.index_options();
  return spec;
}

// SearchShards' distance bounds, one per query (+inf where none), or empty when the request has
// none.
absl::StatusOr<std::vector<double>> RdistBounds(const v1::SearchShardsRequest& request,
                                                size_t rows) {
  const auto& at = request.bounded_rows();
  const auto& bound = request.rdist_bounds();
  if (at.size() != bound.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "rdist_bounds: expected one value per bounded_rows entry (%d), got %d", at.size(),
        bound.size()));
  }
  std::vector<double> out;
  if (at.empty()) return out;
  out.assign(rows, std::numeric_limits<double>::infinity());
  for (int i = 0; i < at.size(); ++i) {
    if (at[i] >= rows || (i > 0 && at[i] <= at[i - 1])) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "bounded_rows[%d]: %d is not a request row above the previous entry (%d queries, "
          "strictly ascending)",
          i, at[i], rows));
    }
    if (!(bound[i] >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("rdist_bounds[%d]: must be >= 0 (or +inf), got %g", i, bound[i]));
    }
    out[at[i]] = bound[i];
  }
  return out;
}

// The subset index of every shard (null when all its rows are excluded), from the cache or built
// (the missing ones in parallel on `pool`) and then cached.
absl::StatusOr<std::vector<std::shared_ptr<const NeighborIndex>>> SubsetIndexes(
    const SubsetSpec& spec, const std::vector<Shard>& shards, SubsetIndexCache* cache,
    ThreadPool* pool) {
  std::vector<std::shared_ptr<const NeighborIndex>> indexes(shards.size());
  std::vector<size_t> missing;
  for (size_t s = 0; s < shards.size(); ++s) {
    std::optional<std::shared_ptr<const NeighborIndex>> found = cache->Find(spec, shards[s]);
    if (found.has_value()) {
      indexes[s] = std::move(*found);
    } else {
      missing.push_back(s);
    }
  }
  if (missing.empty()) return indexes;
  const absl::flat_hash_set<int64_t> excluded(spec.excluded->begin(), spec.excluded->end());
  std::vector<absl::Status> statuses(missing.size());
  ParallelFor(pool, missing.size(), [&](size_t i) {
    const Shard& shard = shards[missing[i]];
    absl::StatusOr<std::shared_ptr<const NeighborIndex>> built =
        BuildSubsetIndex(shard, excluded, spec.options);
    if (!built.ok()) {
      statuses[i] = built.status();
      return;
    }
    cache->Put(spec, shard, *built);
    indexes[missing[i]] = std::move(*built);
  });
  for (const absl::Status& status : statuses) KNN_RETURN_IF_ERROR(status);
  return indexes;
}

// A content hash as rpc/content_hash.h makes them: 64 lowercase hex digits.
absl::Status ValidateContentHash(const std::string& hash, const std::string& field) {
  bool ok = hash.size() == 64;
  for (char c : hash) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected a SHA-256 as 64 lowercase hex digits, got \"",
        hash.size() > 80 ? absl::StrCat(hash.substr(0, 80), "...") : hash, "\""));
  }
  return absl::OkStatus();
}

// Every index of a fold part within [0, rows), none twice. `seen` is scratch of `rows` entries.
absl::Status CheckFoldPart(const std::vector<int64_t>& part, size_t rows, const std::string& field,
                           std::vector<char>* seen) {
  std::fill(seen->begin(), seen->end(), 0);
  for (size_t i = 0; i < part.size(); ++i) {
    const int64_t r = part[i];
    if (r < 0 || static_cast<uint64_t>(r) >= rows) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s[%d]: row index %d out of range [0, %d)", field, i, r, rows));
    }
    if ((*seen)[r]) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s[%d]: row index %d appears twice", field, i, r));
    }
    (*seen)[r] = 1;
  }
  return absl::OkStatus();
}

// Sleeps `delay` in small steps; Cancelled as soon as the call is cancelled (or its deadline
// passes).
absl::Status TestingDelay(grpc::ServerContext* context, absl::Duration delay,
                          const char* method = "RunFoldJob") {
  const absl::Time end = absl::Now() + delay;
  for (absl::Time now = absl::Now(); now < end; now = absl::Now()) {
    if (context->IsCancelled()) return Cancelled(method);
    absl::SleepFor(std::min(kDelayStep, end - now));
  }
  if (context->IsCancelled()) return Cancelled(method);
  return absl::OkStatus();
}
}  // namespace

WorkerService::WorkerService(WorkerServiceContext context)
    : worker_id_(std::move(context.worker_id)),
      store_(context.store),
      datasets_(context.datasets),
      subset_indexes_(context.subset_indexes),
      pool_(context.pool),
      files_(context.files),
      testing_job_delay_(context.testing_job_delay),
      testing_search_delay_(context.testing_search_delay),
      admission_(context.admission),
      memory_budget_bytes_(context.memory_budget_bytes),
      guard_(std::move(context.guard)) {}

absl::StatusOr<rpc::AdmissionControl::Ticket> WorkerService::Admit(const char* method,
                                                                   uint64_t request_bytes) {
  if (admission_ == nullptr) return rpc::AdmissionControl::Ticket();
  return admission_->Admit(method, request_bytes);
}

// ---- LoadShard ----------------------------------------------------------------------------------

grpc::Status WorkerService::LoadShard(grpc::ServerContext* context,
                                      grpc::ServerReader<v1::LoadShardRequest>* reader,
                                      v1::LoadShardResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("LoadShard", 0);
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
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
  if (memory_budget_bytes_ > 0) {
    // Each row: its features and its global id; the shard it replaces (same id) is freed.
    const long double needed = static_cast<long double>(rows) * (cols + 1) * sizeof(double);
    uint64_t held = store_->TotalBytes();
    for (const ShardInfo& info : store_->List()) {
      if (info.shard_id == header.shard_id()) held -= std::min(held, info.memory_bytes);
    }
    if (needed + held > static_cast<long double>(memory_budget_bytes_)) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "header.rows: shard \"%s\" (%d rows x %d features) needs %.1f MiB; this worker holds "
          "%.1f MiB of shards within its budget of %.1f MiB (--memory-budget-mb)",
          header.shard_id(), rows, cols, static_cast<double>(needed / 1048576.0L),
          held / 1048576.0, memory_budget_bytes_ / 1048576.0));
    }
  }
  // The one staging copy of the rows, filled chunk by chunk.
  std::vector<double> values;
  // Reserve what the header announces, up to 128 MiB; beyond that the buffer grows as rows
  // actually arrive, so a header alone cannot claim the machine's memory.
  values.reserve(std::min<size_t>(rows * cols, size_t{16} << 20));
  size_t received = 0;
  // header.has_labels: the rows' labels, staged only until the shard file is written.
  std::vector<double> labels;
  for (size_t chunk = 1; reader->Read(&message); ++chunk) {
    if (context->IsCancelled()) return Cancelled("LoadShard");
    if (message.part_case() == v1::LoadShardRequest::kLabels) {
      KNN_RETURN_IF_ERROR(AppendShardLabels(header, message.labels(), chunk, &labels));
      continue;
    }
    const std::string field = absl::StrCat("rows[message ", chunk, "]");
    if (!labels.empty() && message.part_case() == v1::LoadShardRequest::kRows) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": rows after labels"));
    }
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
  if (header.has_labels() && labels.size() != rows) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "labels: expected %d labels (header.rows), got %d", rows, labels.size()));
  }
  if (context->IsCancelled()) return Cancelled("LoadShard");
  // Durable before the shard is acknowledged: a worker restarted on its data directory holds
  // every shard it answered OK for. The rows are written as received (before an index reorders
  // them), so a restored shard is built from the same input.
  if (files_ != nullptr) {
    KNN_RETURN_IF_ERROR(files_->Write(header, values, labels));
  }
  labels = std::vector<double>();  // on disk only
  absl::StatusOr<std::pair<Algorithm, double>> built =
      BuildAndStore(header, options, std::move(ids), std::move(values), store_);
  if (!built.ok()) {
    // Not held, so not kept either (a shard of this id held before keeps serving from memory;
    // after a restart the coordinator re-sends it).
    if (files_ != nullptr) files_->Remove(header.shard_id()).IgnoreError();
    return built.status();
  }
  const Algorithm algorithm = built->first;
  const double seconds = built->second;
  shard_loads_.fetch_add(1, std::memory_order_relaxed);

  response->set_shard_id(header.shard_id());
  response->set_rows(rows);
  response->set_algorithm(AlgorithmName(algorithm));
  response->set_build_seconds(seconds);
  return absl::OkStatus();
}

absl::Status WorkerService::RestoreShard(StoredShard shard) {
  const v1::ShardHeader& header = shard.header;
  std::vector<int64_t> ids;
  KNN_RETURN_IF_ERROR(ValidateHeader(header, &ids));
  KNN_ASSIGN_OR_RETURN(NeighborsParams params,
                       rpc::FromProto(header.index_params(), "header.index_params"));
  if (shard.values.size() != header.rows() * header.cols()) {
    return absl::DataLossError(absl::StrFormat("shard \"%s\": expected %d x %d values, got %d",
                                               header.shard_id(), header.rows(), header.cols(),
                                               shard.values.size()));
  }
  for (size_t i = 0; i < shard.values.size(); ++i) {
    if (!std::isfinite(shard.values[i])) {
      return absl::DataLossError(absl::StrFormat("shard \"%s\": row %d has a non-finite value",
                                                 header.shard_id(), i / header.cols()));
    }
  }
  return BuildAndStore(header, params.index_options(), std::move(ids), std::move(shard.values),
                       store_)
      .status();
}

// ---- SearchShards -------------------------------------------------------------------------------

grpc::Status WorkerService::SearchShards(grpc::ServerContext* context,
                                         const v1::SearchShardsRequest* request,
                                         v1::SearchShardsResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("SearchShards", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  if (testing_search_delay_ > absl::ZeroDuration()) {
    absl::Status st = TestingDelay(context, testing_search_delay_, "SearchShards");
    if (!st.ok()) return rpc::ToGrpcStatus(st);
  }
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
  KNN_ASSIGN_OR_RETURN(const std::vector<double> bounds, RdistBounds(request, queries.rows()));
  std::optional<SubsetSpec> subset;
  if (request.has_subset()) {
    KNN_ASSIGN_OR_RETURN(subset, SubsetFromProto(request.subset()));
  }
  const std::vector<std::string> shard_ids(request.shard_ids().begin(), request.shard_ids().end());
  // Our own references: the shards stay alive for this search even if replaced or dropped.
  KNN_ASSIGN_OR_RETURN(const std::vector<Shard> shards, store_->Find(shard_ids));
  for (size_t s = 0; s < shards.size(); ++s) {
    if (queries.cols() != shards[s].info.cols) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "queries: expected %d features, got %d", shards[s].info.cols, queries.cols()));
    }
    // Reduced distances of different metrics cannot be merged (a subset search uses one p).
    const double p0 = shards[0].index->metric().p(), p = shards[s].index->metric().p();
    if (!subset.has_value() && p != p0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "shard_ids[%d]: shard \"%s\" uses p = %g but shard \"%s\" uses p = %g; their "
          "distances cannot be merged",
          s, shard_ids[s], p, shard_ids[0], p0));
    }
  }

  // What each shard is searched through: its own index, or its subset index (none when every
  // row of the shard is excluded).
  std::vector<std::shared_ptr<const NeighborIndex>> indexes;
  if (subset.has_value()) {
    KNN_ASSIGN_OR_RETURN(indexes, SubsetIndexes(*subset, shards, subset_indexes_, pool_));
    indexes.erase(std::remove(indexes.begin(), indexes.end(), nullptr), indexes.end());
  } else {
    for (const Shard& shard : shards) indexes.push_back(shard.index);
  }
  size_t total_rows = 0;
  for (const auto& index : indexes) total_rows += index->size();
  const size_t k = std::min<size_t>({static_cast<size_t>(request.k()), total_rows,
                                     static_cast<size_t>(std::numeric_limits<int>::max())});
  const size_t num_queries = queries.rows();
  // The answer is written where it is sent from (refused here, before any search, when it would
  // not fit in one message).
  int64_t id_end = 0;
  for (const Shard& shard : shards) id_end = std::max(id_end, shard.info.id_end);
  KNN_ASSIGN_OR_RETURN(
      const auto arrays,
      rpc::NeighborsSinkInto(response->mutable_neighbors(),
                             rpc::CompactIndices(request.compact_indices(),
                                                 static_cast<uint64_t>(id_end)))(num_queries, k));
  if (indexes.empty()) return absl::OkStatus();  // every row excluded: no neighbours at all
  if (indexes.size() == 1) {  // k <= total_rows = the index's rows
    return indexes[0]->KNeighborsRdistInto(queries, static_cast<int>(k), pool_, arrays.first,
                                           arrays.second, bounds);
  }
  // Each index's own top-k (min(k, its rows) per query), on all cores, then the one merge.
  std::vector<KNeighborsResult> parts;
  parts.reserve(indexes.size());
  for (const auto& index : indexes) {
    if (context->IsCancelled()) return Cancelled("SearchShards");
    KNN_ASSIGN_OR_RETURN(KNeighborsResult part,
                         index->KNeighborsRdist(queries, static_cast<int>(k), pool_, bounds));
    parts.push_back(std::move(part));
  }
  if (context->IsCancelled()) return Cancelled("SearchShards");
  std::vector<PartialAnswer> views;
  for (const KNeighborsResult& part : parts) views.push_back(PartialAnswer::Whole(part));
  // Bounded rows may hold fewer than k here (the rest lies on other workers): padded again.
  if (!MergePartialAnswers(views, num_queries, k, nullptr, pool_, arrays.first, arrays.second,
                           bounds.empty() ? ShortRows::kFail : ShortRows::kPad)
           .ok()) {
    // Only possible when listed shards hold the same rows (replicas): their rows were counted
    // twice in k.
    return absl::InvalidArgumentError(
        "shard_ids: the listed shards hold the same global rows; list each row's shard once");
  }
  return absl::OkStatus();
}

// ---- DropShard, GetWorkerStatus -----------------------------------------------------------------

grpc::Status WorkerService::DropShard(grpc::ServerContext* context,
                                      const v1::DropShardRequest* request,
                                      v1::DropShardResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("DropShard", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  absl::Status status = ValidateShardId(request->shard_id(), "shard_id");
  if (status.ok()) {
    response->set_existed(store_->Drop(request->shard_id()));
    if (response->existed()) ReleaseFreedMemory();
    if (files_ != nullptr) status = files_->Remove(request->shard_id());
  }
  return rpc::ToGrpcStatus(status);
}

grpc::Status WorkerService::GetWorkerStatus(grpc::ServerContext* context,
                                            const v1::GetWorkerStatusRequest* /*request*/,
                                            v1::WorkerStatus* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
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
  response->set_memory_budget_bytes(datasets_->budget_bytes());
  response->set_cached_datasets(static_cast<uint32_t>(datasets_->size()));
  response->set_shard_loads(shard_loads_.load(std::memory_order_relaxed));
  response->set_shards_restored(shards_restored_);
  if (files_ != nullptr) {
    for (std::string& line : files_->quarantined()) response->add_quarantined_files(std::move(line));
  }
  return rpc::ToGrpcStatus(absl::OkStatus());
}

// ---- PutDataset ---------------------------------------------------------------------------------

grpc::Status WorkerService::PutDataset(grpc::ServerContext* context,
                                       grpc::ServerReader<v1::PutDatasetRequest>* reader,
                                       v1::PutDatasetResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("PutDataset", 0);
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  return rpc::ToGrpcStatus(DoPutDataset(context, reader, response));
}

absl::Status WorkerService::DoPutDataset(grpc::ServerContext* context,
                                         grpc::ServerReader<v1::PutDatasetRequest>* reader,
                                         v1::PutDatasetResponse* response) {
  v1::PutDatasetRequest message;
  if (!reader->Read(&message)) {
    return absl::InvalidArgumentError(
        "header: the stream is empty; the first message must carry the dataset header");
  }
  if (message.part_case() != v1::PutDatasetRequest::kHeader) {
    return absl::InvalidArgumentError(
        "header: the first message must carry the dataset header, before any rows or labels");
  }
  const v1::PutDatasetHeader header = std::move(*message.mutable_header());
  KNN_RETURN_IF_ERROR(ValidateContentHash(header.content_hash(), "header.content_hash"));
  // Already here: answer from the header, without reading the rest of the stream.
  if (datasets_->Touch(header.content_hash())) {
    response->set_already_cached(true);
    response->set_cached_datasets(datasets_->size());
    return absl::OkStatus();
  }
  if (header.rows() < 1) return absl::InvalidArgumentError("header.rows: must be >= 1, got 0");
  if (header.cols() < 1) return absl::InvalidArgumentError("header.cols: must be >= 1, got 0");
  KNN_ASSIGN_OR_RETURN(const uint64_t bytes,
                       DatasetBytes(header.rows(), header.cols(), header.has_labels()));
  // The room is set aside (evicting idle datasets if need be) before any row is read.
  KNN_ASSIGN_OR_RETURN(DatasetCache::Reservation reservation, datasets_->Reserve(bytes));

  const size_t rows = static_cast<size_t>(header.rows());
  const size_t cols = static_cast<size_t>(header.cols());
  std::vector<double> values;
  values.reserve(rows * cols);  // within the budget just reserved
  std::vector<double> labels;
  if (header.has_labels()) labels.reserve(rows);
  size_t received = 0;
  for (size_t n = 1; reader->Read(&message); ++n) {
    if (context->IsCancelled()) return Cancelled("PutDataset");
    switch (message.part_case()) {
      case v1::PutDatasetRequest::kRows: {
        const v1::Matrix& m = message.rows();
        if (!labels.empty()) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rows: a chunk of rows after the labels (message %d); every row comes first", n));
        }
        if (m.rows() == 0 && m.values_size() == 0) break;  // an empty chunk
        if (m.cols() != header.cols()) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rows.cols: expected %d (header.cols), got %d (message %d)", cols, m.cols(), n));
        }
        if (m.rows() > rows - received) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "rows: more rows than header.rows = %d (%d received before message %d, which has "
              "%d)",
              rows, received, n, m.rows()));
        }
        if (static_cast<uint64_t>(m.values_size()) != m.rows() * m.cols()) {
          return absl::InvalidArgumentError(
              absl::StrFormat("rows.values: expected rows * cols = %d * %d values, got %d "
                              "(message %d)",
                              m.rows(), m.cols(), m.values_size(), n));
        }
        values.insert(values.end(), m.values().begin(), m.values().end());
        received += static_cast<size_t>(m.rows());
        break;
      }
      case v1::PutDatasetRequest::kLabels: {
        const v1::DoubleChunk& chunk = message.labels();
        if (!header.has_labels()) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "labels: header.has_labels is false, but labels were sent (message %d)", n));
        }
        if (received != rows) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "labels: sent after %d of the %d rows (header.rows, message %d); every row comes "
              "first",
              received, rows, n));
        }
        if (static_cast<size_t>(chunk.values_size()) > rows - labels.size()) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "labels: more labels than header.rows = %d (%d received before message %d, which "
              "has %d)",
              rows, labels.size(), n, chunk.values_size()));
        }
        labels.insert(labels.end(), chunk.values().begin(), chunk.values().end());
        break;
      }
      case v1::PutDatasetRequest::kHeader:
        return absl::InvalidArgumentError(
            absl::StrFormat("header: sent again (message %d); it comes once, first", n));
      case v1::PutDatasetRequest::PART_NOT_SET:
        return absl::InvalidArgumentError(
            absl::StrFormat("message %d: empty (neither rows nor labels)", n));
    }
  }
  if (context->IsCancelled()) return Cancelled("PutDataset");
  if (received != rows) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rows: expected %d rows (header.rows), got %d", rows, received));
  }
  if (header.has_labels() && labels.size() != rows) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "labels: expected %d labels (header.rows, header.has_labels), got %d", rows,
        labels.size()));
  }
  auto features = std::make_shared<const Matrix>(rows, cols, std::move(values));
  KNN_RETURN_IF_ERROR(CheckFinite(*features, "rows"));
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!std::isfinite(labels[i])) {
      return absl::InvalidArgumentError(
          absl::StrFormat("labels[%d]: value %g is not finite", i, labels[i]));
    }
  }
  const std::string hash = rpc::DatasetContentHash(*features, labels);
  if (hash != header.content_hash()) {
    return absl::InvalidArgumentError(absl::StrCat("content_hash: the rows sent hash to ", hash,
                                                   ", header says ", header.content_hash()));
  }
  auto dataset = std::make_shared<const CachedDataset>(hash, std::move(features),
                                                       std::move(labels));
  response->set_already_cached(false);
  response->set_cached_datasets(datasets_->Insert(std::move(reservation), std::move(dataset)));
  return absl::OkStatus();
}

// ---- RunFoldJob ---------------------------------------------------------------------------------

grpc::Status WorkerService::RunFoldJob(grpc::ServerContext* context,
                                       const v1::RunFoldJobRequest* request,
                                       v1::RunFoldJobResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("RunFoldJob", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  return rpc::ToGrpcStatus(DoRunFoldJob(context, *request, response));
}

absl::Status WorkerService::DoRunFoldJob(grpc::ServerContext* context,
                                         const v1::RunFoldJobRequest& request,
                                         v1::RunFoldJobResponse* response) {
  KNN_RETURN_IF_ERROR(ValidateContentHash(request.content_hash(), "content_hash"));
  KNN_ASSIGN_OR_RETURN(rpc::FoldJobWork work, rpc::FromProto(request.job(), "job"));
  // Pinned until this call returns: eviction cannot free the dataset mid-job.
  KNN_ASSIGN_OR_RETURN(const DatasetCache::Pin dataset,
                       datasets_->Acquire(request.content_hash()));
  const size_t rows = dataset->rows();
  std::vector<char> seen(rows);
  KNN_RETURN_IF_ERROR(CheckFoldPart(work.fold.train, rows, "job.fold.train", &seen));
  KNN_RETURN_IF_ERROR(CheckFoldPart(work.fold.test, rows, "job.fold.test", &seen));
  std::vector<char>().swap(seen);
  // Neighbours tie-break by position in fold.train: sorted, that is the row's dataset index, as
  // everywhere else (the order the coordinator sends does not matter).
  std::sort(work.fold.train.begin(), work.fold.train.end());
  if (static_cast<size_t>(work.job.max_neighbors) > work.fold.train.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "job.max_neighbors: %d exceeds the %d training rows of job.fold", work.job.max_neighbors,
        work.fold.train.size()));
  }
  if (!dataset->has_labels()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "content_hash: dataset ", request.content_hash(),
        " has no labels; a fold job scores its candidates against them"));
  }
  absl::Span<const double> y = dataset->labels();
  int32_t n_classes = 0;
  if (work.classifier) {
    const absl::StatusOr<EncodedClasses>& classes = dataset->Classes();
    if (!classes.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "job.classifier: the labels of dataset ", request.content_hash(),
          " are not class labels: ", classes.status().message()));
    }
    y = classes->codes;
    n_classes = static_cast<int32_t>(classes->classes.size());
  }
  if (testing_job_delay_ > absl::ZeroDuration()) {
    KNN_RETURN_IF_ERROR(TestingDelay(context, testing_job_delay_));
  }
  KNN_ASSIGN_OR_RETURN(
      FoldJobResult result,
      knncluster::RunFoldJob(dataset->features(), y, work.classifier, n_classes, work.fold,
                             work.job, work.candidates, work.scoring, pool_));
  if (context->IsCancelled()) return Cancelled("RunFoldJob");
  rpc::ToProto(result, response->mutable_result());
  return absl::OkStatus();
}

}  // namespace knncluster::worker
