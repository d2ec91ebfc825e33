// ModelManager::RebuildDatasets: a training set the DatasetStore quarantined at start (a flipped
// byte in a data file, a truncated file, an unreadable meta) is rebuilt from the shards of a
// model fitted on it, which the workers keep in their shard files with the rows' labels
// (worker/shard_files.h) and stream back through Worker.ReadShard. See model_manager.h and
// coordinator/README.md (Persistence).
//
// The rows are reassembled in memory (rows x cols doubles): a recovery path, run once per
// damaged dataset, from the repair thread.
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "coordinator/model_manager.h"
#include "rpc/convert.h"
#include "rpc/status.h"

namespace knncluster::coordinator {

namespace {

// Rows appended to the DatasetWriter at a time.
constexpr uint64_t kAppendRows = 4096;

// The rebuilt rows and labels of one dataset, filled shard by shard.
struct Assembly {
  Matrix x;
  std::vector<double> labels;
  std::vector<bool> seen;
  uint64_t filled = 0;
  // From the first shard; every other shard must agree.
  bool header_seen = false;
  bool has_labels = false;
  std::vector<std::string> class_names;
};

// The global ids a record says the shard holds, in the order loaded.
std::vector<int64_t> RecordedIds(const v1::ShardRecord& s) {
  if (s.spatial()) return {s.global_ids().begin(), s.global_ids().end()};
  std::vector<int64_t> ids(s.rows());
  for (uint64_t i = 0; i < s.rows(); ++i) ids[i] = s.first_global_index() + static_cast<int64_t>(i);
  return ids;
}

// Streams one shard from `worker` into `out`, checking it against the record.
absl::Status ReadOneShard(const WorkerHandle& worker, const v1::ShardRecord& shard,
                          const v1::ModelRecord& record, absl::Duration deadline,
                          Assembly* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  v1::ReadShardRequest request;
  request.set_shard_id(shard.shard_id());
  std::unique_ptr<grpc::ClientReader<v1::ReadShardChunk>> reader =
      worker.stub->ReadShard(&ctx, request);
  const std::vector<int64_t> expected = RecordedIds(shard);
  const std::string where = absl::StrCat("shard ", shard.shard_id(), " from ", worker.Describe());
  // Staged per shard, so a shard that fails half way leaves `out` untouched.
  std::vector<std::pair<int64_t, size_t>> rows;  // (global id, offset into values)
  std::vector<double> values, labels;
  v1::ShardHeader header;
  bool have_header = false;
  absl::Status bad;
  v1::ReadShardChunk chunk;
  while (reader->Read(&chunk)) {
    if (!bad.ok()) continue;  // drain
    if (chunk.has_header()) {
      header = chunk.header();
      have_header = true;
      if (header.cols() != record.cols() || header.rows() != shard.rows()) {
        bad = absl::DataLossError(absl::StrFormat("%s: %d x %d, the record says %d x %d", where,
                                                  header.rows(), header.cols(), shard.rows(),
                                                  record.cols()));
        ctx.TryCancel();
        continue;
      }
    }
    if (!have_header) {
      bad = absl::DataLossError(absl::StrCat(where, ": the first chunk carries no header"));
      ctx.TryCancel();
      continue;
    }
    absl::StatusOr<Matrix> m = rpc::FromProto(chunk.rows(), "rows");
    if (!m.ok() || m->cols() != record.cols() ||
        static_cast<size_t>(chunk.global_ids_size()) != m->rows() ||
        (header.has_labels() && static_cast<size_t>(chunk.labels_size()) != m->rows()) ||
        rows.size() + m->rows() > expected.size()) {
      bad = absl::DataLossError(absl::StrCat(where, ": a malformed chunk"));
      ctx.TryCancel();
      continue;
    }
    for (size_t i = 0; i < m->rows(); ++i) {
      const int64_t id = chunk.global_ids(static_cast<int>(i));
      if (id != expected[rows.size()]) {
        bad = absl::DataLossError(absl::StrFormat("%s: row %d has global id %d, the record says %d",
                                                  where, rows.size(), id, expected[rows.size()]));
        ctx.TryCancel();
        break;
      }
      rows.emplace_back(id, values.size());
      values.insert(values.end(), m->data() + i * m->cols(), m->data() + (i + 1) * m->cols());
      if (header.has_labels()) labels.push_back(chunk.labels(static_cast<int>(i)));
    }
  }
  const absl::Status st = rpc::FromGrpcStatus(reader->Finish());
  KNN_RETURN_IF_ERROR(bad);
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat(where, ": ", st.message()));
  }
  if (rows.size() != expected.size()) {
    return absl::DataLossError(
        absl::StrFormat("%s: %d rows, the record says %d", where, rows.size(), expected.size()));
  }
  const std::vector<std::string> names(header.class_names().begin(), header.class_names().end());
  if (!out->header_seen) {
    out->header_seen = true;
    out->has_labels = header.has_labels();
    out->class_names = names;
  } else if (out->has_labels != header.has_labels() || out->class_names != names) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, ": its labels differ in kind or class names from the other shards' (loaded by "
               "different builds?)"));
  }
  const uint64_t cols = record.cols();
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto [id, offset] = rows[r];
    if (out->seen[id]) {
      // A halo row (ShardLocation::halo) is in two shards, the same in both: kept once.
      const bool same =
          std::equal(values.begin() + offset, values.begin() + offset + cols,
                     out->x.data() + id * cols) &&
          (!out->has_labels || out->labels[id] == labels[r]);
      if (same) continue;
      return absl::DataLossError(
          absl::StrCat(where, ": row ", id, " is in another shard too, with other values"));
    }
    out->seen[id] = true;
    ++out->filled;
    std::copy(values.begin() + offset, values.begin() + offset + cols, out->x.data() + id * cols);
    if (out->has_labels) out->labels[id] = labels[r];
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> ModelManager::PendingRebuilds() const {
  absl::MutexLock lock(&rebuild_mu_);
  std::vector<std::string> names;
  for (const v1::ModelRecord& r : rebuilds_) names.push_back(r.name());
  return names;
}

int ModelManager::RebuildDatasets() {
  std::vector<v1::ModelRecord> pending;
  {
    absl::MutexLock lock(&rebuild_mu_);
    pending.swap(rebuilds_);
  }
  if (pending.empty()) return 0;
  // Shard id -> live workers reporting it.
  std::map<std::string, std::vector<WorkerHandle>> holders;
  for (const WorkerSnapshot& w : workers_->Snapshot()) {
    if (!w.alive || !w.reported_shards.has_value()) continue;
    absl::StatusOr<WorkerHandle> handle = workers_->Get(w.id);
    if (!handle.ok()) continue;
    for (const std::string& id : *w.reported_shards) holders[id].push_back(*handle);
  }
  int rebuilt = 0;
  std::vector<v1::ModelRecord> still;
  for (v1::ModelRecord& record : pending) {
    std::vector<std::string> missing;
    for (const v1::ShardRecord& s : record.shards()) {
      if (holders.count(s.shard_id()) == 0) missing.push_back(s.shard_id());
    }
    absl::Status st;
    bool done = true;
    if (store_->Describe(record.dataset()).ok()) {
      // Rebuilt for another model of the same dataset (or uploaded again): just restore.
      st = RestoreRecord(record);
    } else if (!missing.empty()) {
      if (absl::Now() < start_ + options_.rebuild_wait) {
        done = false;
      } else {
        st = absl::UnavailableError(absl::StrFormat(
            "no live worker reported shard %s (and %d more) within %s of the start",
            missing.front(), missing.size() - 1, absl::FormatDuration(options_.rebuild_wait)));
      }
    } else {
      st = RebuildDataset(record, holders);
      if (st.ok()) {
        ++rebuilt;
        Log(absl::StrFormat("dataset \"%s\" rebuilt from %d shards of model \"%s\"",
                            record.dataset(), record.shards_size(), record.name()));
        st = RestoreRecord(record);
      }
    }
    if (!done) {
      still.push_back(std::move(record));
      continue;
    }
    std::vector<std::string> ids;
    for (const v1::ShardRecord& s : record.shards()) ids.push_back(s.shard_id());
    registry_->RemovePending(ids);
    if (st.ok()) {
      Log(absl::StrCat("model \"", record.name(), "\" restored"));
      continue;
    }
    std::string moved;
    if (catalog_ != nullptr) {
      absl::StatusOr<std::string> to = catalog_->Quarantine(record.name());
      if (to.ok()) moved = absl::StrCat(" (moved to ", *to, ")");
    }
    Log(absl::StrCat("dataset \"", record.dataset(), "\" cannot be rebuilt and stays quarantined; ",
                     "model \"", record.name(), "\" cannot be restored: ", st.ToString(), moved));
  }
  absl::MutexLock lock(&rebuild_mu_);
  for (v1::ModelRecord& r : still) rebuilds_.push_back(std::move(r));
  return rebuilt;
}

absl::Status ModelManager::RebuildDataset(
    const v1::ModelRecord& record,
    const std::map<std::string, std::vector<WorkerHandle>>& holders) {
  if (record.rows() == 0 || record.cols() == 0) {
    return absl::FailedPreconditionError("the record describes no rows");
  }
  Assembly a;
  a.x = Matrix(record.rows(), record.cols());
  a.labels.assign(record.rows(), 0.0);
  a.seen.assign(record.rows(), false);
  for (const v1::ShardRecord& s : record.shards()) {
    const auto it = holders.find(s.shard_id());
    absl::Status st = absl::UnavailableError(absl::StrCat("no live copy of shard ", s.shard_id()));
    for (const WorkerHandle& w : it == holders.end() ? std::vector<WorkerHandle>{} : it->second) {
      st = ReadOneShard(w, s, record, options_.load_deadline, &a);
      if (st.ok()) break;  // else try the next copy
    }
    KNN_RETURN_IF_ERROR(st);
  }
  if (a.filled != record.rows()) {
    return absl::DataLossError(absl::StrFormat("the shards hold %d of the %d training rows",
                                               a.filled, record.rows()));
  }
  const bool needs_labels = record.task() != v1::TASK_OUTLIER;
  if (needs_labels && !a.has_labels) {
    return absl::FailedPreconditionError(
        "the shards carry no labels (they were loaded by a build that did not send them)");
  }
  if (a.has_labels && !a.class_names.empty() && record.class_names_size() > 0 &&
      !std::equal(record.class_names().begin(), record.class_names().end(),
                  a.class_names.begin(), a.class_names.end())) {
    return absl::DataLossError("the shards' class names differ from the model record's");
  }
  UploadHeader header;
  header.name = record.dataset();
  header.cols = record.cols();
  header.labels = !a.has_labels            ? LabelKind::kNone
                  : a.class_names.empty() ? LabelKind::kNumeric
                                          : LabelKind::kString;
  header.feature_names.assign(record.feature_names().begin(), record.feature_names().end());
  KNN_ASSIGN_OR_RETURN(std::unique_ptr<DatasetWriter> writer, store_->BeginUpload(header));
  std::vector<std::string> names;
  for (uint64_t begin = 0; begin < record.rows(); begin += kAppendRows) {
    const uint64_t end = std::min<uint64_t>(record.rows(), begin + kAppendRows);
    const MatrixView rows(a.x.data() + begin * record.cols(), end - begin, record.cols());
    absl::Span<const double> numeric;
    names.clear();
    if (header.labels == LabelKind::kNumeric) {
      numeric = absl::MakeConstSpan(a.labels.data() + begin, end - begin);
    } else if (header.labels == LabelKind::kString) {
      for (uint64_t i = begin; i < end; ++i) {
        const double code = a.labels[i];
        if (!(code >= 0) || code >= static_cast<double>(a.class_names.size()) ||
            code != static_cast<double>(static_cast<size_t>(code))) {
          return absl::DataLossError(
              absl::StrCat("row ", i, ": label code ", code, " is not a class index"));
        }
        names.push_back(a.class_names[static_cast<size_t>(code)]);
      }
    }
    KNN_RETURN_IF_ERROR(writer->Append(rows, numeric, names));
  }
  KNN_ASSIGN_OR_RETURN(DatasetMeta meta, writer->Commit());
  if (meta.rows != record.rows() || meta.cols != record.cols() ||
      (header.labels == LabelKind::kString && meta.class_names != a.class_names)) {
    return absl::InternalError(absl::StrFormat(
        "the rebuilt dataset is %d x %d, the record says %d x %d", meta.rows, meta.cols,
        record.rows(), record.cols()));
  }
  return absl::OkStatus();
}

}  // namespace knncluster::coordinator
