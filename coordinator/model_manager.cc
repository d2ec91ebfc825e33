#include "coordinator/model_manager.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include <grpcpp/client_context.h>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/blocking_counter.h"
#include "core/base/status_macros.h"
#include "core/estimators/metrics.h"
#include "core/estimators/outlier_detector.h"
#include "core/estimators/voting.h"
#include "rpc/convert.h"
#include "rpc/status.h"

namespace knncluster::coordinator {

ModelManager::ModelManager(DatasetStore* store, WorkerPool* workers, ModelRegistry* registry,
                           ScatterGather* search, ThreadPool* pool, ModelManagerOptions options,
                           ModelCatalog* catalog)
    : store_(store),
      workers_(workers),
      registry_(registry),
      search_(search),
      pool_(pool),
      options_(std::move(options)),
      catalog_(catalog),
      restore_until_(absl::Now() + 3 * workers->options().heartbeat_interval +
                     absl::Seconds(2)),
      start_(absl::Now()) {}

absl::Status ModelManager::Persist(const std::string& name) const {
  return catalog_ == nullptr ? absl::OkStatus() : catalog_->Sync(*registry_, name);
}

absl::StatusOr<std::shared_ptr<const ModelLabels>> ModelManager::ReadModelLabels(
    Model::Task task, const std::string& dataset, uint64_t rows,
    const std::vector<std::string>& class_names) const {
  auto labels = std::make_shared<ModelLabels>();
  if (task == Model::Task::kOutlier) return std::shared_ptr<const ModelLabels>(labels);
  KNN_ASSIGN_OR_RETURN(labels->y, store_->ReadLabels(dataset));
  if (labels->y.size() != rows) {
    return absl::InternalError(
        absl::StrFormat("dataset %s: %d labels for %d rows", dataset, labels->y.size(), rows));
  }
  if (task == Model::Task::kClassifier) {
    labels->class_names = class_names;
    KNN_ASSIGN_OR_RETURN(EncodedLabels encoded,
                         EncodeClassLabels(labels->y, labels->class_names.size(), "dataset.labels"));
    labels->classes = std::move(encoded.classes);
    labels->codes = std::move(encoded.codes);
  }
  return std::shared_ptr<const ModelLabels>(labels);
}

absl::Status ModelManager::RestoreRecord(const v1::ModelRecord& record) {
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<ModelEntry> entry, FromRecord(record));
  KNN_ASSIGN_OR_RETURN(DatasetMeta meta, store_->Describe(entry->dataset));
  if (meta.rows != entry->rows || meta.cols != entry->cols) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "its training set %s is %d x %d, the model was fitted on %d x %d", meta.name, meta.rows,
        meta.cols, entry->rows, entry->cols));
  }
  const std::vector<std::string> names(record.class_names().begin(), record.class_names().end());
  KNN_ASSIGN_OR_RETURN(entry->labels,
                       ReadModelLabels(entry->task, entry->dataset, entry->rows, names));
  registry_->AdvanceGeneration(entry->generation);
  return registry_->Put(std::move(entry), /*replace=*/false).status();
}

namespace {

// Whether the shards of `record` hold each of its training rows, each once but for the rows of
// their halos (held by two shards: as many repeats as the shards' halo_rows in all).
absl::Status CheckShardsCoverRows(const v1::ModelRecord& record) {
  std::vector<bool> seen(record.rows(), false);
  uint64_t covered = 0, repeats = 0, halo_rows = 0;
  for (const v1::ShardRecord& s : record.shards()) halo_rows += s.halo_rows();
  const auto mark = [&](int64_t id, const std::string& shard) -> absl::Status {
    if (id < 0 || static_cast<uint64_t>(id) >= record.rows() ||
        (seen[id] && ++repeats > halo_rows)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "shard ", shard, " lists row ", id, " outside the training set or twice"));
    }
    if (!seen[id]) ++covered;
    seen[id] = true;
    return absl::OkStatus();
  };
  for (const v1::ShardRecord& s : record.shards()) {
    if (s.spatial()) {
      for (int64_t id : s.global_ids()) KNN_RETURN_IF_ERROR(mark(id, s.shard_id()));
    } else {
      for (uint64_t i = 0; i < s.rows(); ++i) {
        KNN_RETURN_IF_ERROR(mark(s.first_global_index() + static_cast<int64_t>(i), s.shard_id()));
      }
    }
  }
  if (covered != record.rows()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "its shards hold %d of the %d training rows", covered, record.rows()));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<absl::Status> ModelManager::Recover() {
  std::vector<absl::Status> errors;
  if (catalog_ == nullptr) return errors;
  ModelCatalog::Loaded loaded = catalog_->Load();
  errors = std::move(loaded.errors);
  for (const v1::ModelRecord& record : loaded.records) {
    absl::Status st = RestoreRecord(record);
    if (absl::IsNotFound(st) && store_->quarantined_bases().count(record.dataset()) > 0) {
      // Its training set was damaged: rebuild it from the shards once their workers register.
      const absl::Status cover = CheckShardsCoverRows(record);
      if (cover.ok()) {
        std::vector<std::string> ids;
        for (const v1::ShardRecord& s : record.shards()) ids.push_back(s.shard_id());
        registry_->AddPending(ids);  // not orphans meanwhile: Repair must not drop them
        Log(absl::StrFormat(
            "dataset \"%s\" was quarantined: rebuilding it from the %d shards of model \"%s\" "
            "once their workers register",
            record.dataset(), record.shards_size(), record.name()));
        absl::MutexLock lock(&rebuild_mu_);
        rebuilds_.push_back(record);
        continue;
      }
      st = absl::Status(st.code(), absl::StrCat(st.message(), "; the dataset cannot be rebuilt "
                                                              "from the model's shards: ",
                                                cover.message()));
    }
    if (!st.ok()) {
      absl::StatusOr<std::string> moved = catalog_->Quarantine(record.name());
      errors.push_back(absl::Status(
          st.code(), absl::StrCat(catalog_->PathOf(record.name()), ": model \"", record.name(),
                                  "\" cannot be restored: ", st.message(),
                                  moved.ok() ? absl::StrCat(" (moved to ", *moved, ")") : "")));
    }
  }
  return errors;
}

absl::Status ModelManager::CheckDatasetFree(const std::string& dataset) const {
  const std::vector<std::string> users = registry_->ModelsUsing(dataset);
  if (!users.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dataset: \"", dataset, "\" is the training set of model \"", users.front(),
        "\" (its shards are re-sent from it); delete the model first"));
  }
  if (registry_->IsPinned(dataset)) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset: \"", dataset, "\" is being read by a fit in progress"));
  }
  return absl::OkStatus();
}

// ---- Fit -----------------------------------------------------------------------------------

absl::Status ModelManager::LoadShard(const WorkerHandle& worker, const std::string& shard_id,
                                     const std::string& dataset, int64_t first, uint64_t rows,
                                     uint64_t cols, const NeighborsParams& params,
                                     const std::vector<int64_t>* ids,
                                     const Matrix* training_rows) const {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.load_deadline));
  v1::LoadShardResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::LoadShardRequest>> writer =
      worker.stub->LoadShard(&ctx, &response);
  v1::LoadShardRequest header;
  v1::ShardHeader* h = header.mutable_header();
  h->set_shard_id(shard_id);
  h->set_rows(rows);
  h->set_cols(cols);
  absl::Status read_error;
  // Spatial shards: the rows are gathered from the whole training set (the caller's copy, or
  // read once here).
  absl::StatusOr<Matrix> read_rows = Matrix();
  if (ids != nullptr) {
    for (int64_t id : *ids) h->add_global_indices(id);
    if (training_rows == nullptr && !ids->empty()) {
      read_rows = store_->ReadRows(dataset, 0, static_cast<uint64_t>(ids->back()) + 1);
      if (!read_rows.ok()) read_error = read_rows.status();
    }
  } else {
    h->set_first_global_index(first);
  }
  rpc::ToProto(params, h->mutable_index_params());
  // The shard's labels travel with it (the worker keeps them in its shard file only), so that a
  // damaged training set can be rebuilt from the shards (dataset_rebuild.cc).
  std::vector<double> labels;
  if (read_error.ok()) {
    absl::StatusOr<DatasetMeta> meta = store_->Describe(dataset);
    if (!meta.ok()) {
      read_error = meta.status();
    } else if (meta->labels != LabelKind::kNone) {
      absl::StatusOr<std::vector<double>> all = store_->ReadLabels(dataset);
      if (!all.ok()) {
        read_error = all.status();
      } else {
        h->set_has_labels(true);
        for (const std::string& name : meta->class_names) h->add_class_names(name);
        labels.reserve(rows);
        for (uint64_t i = 0; i < rows && read_error.ok(); ++i) {
          const int64_t id = ids != nullptr ? (*ids)[i] : first + static_cast<int64_t>(i);
          if (id < 0 || static_cast<uint64_t>(id) >= all->size()) {
            read_error = absl::InternalError(absl::StrCat("shard ", shard_id, ": row ", id,
                                                          " is not a row of ", dataset));
          } else {
            labels.push_back((*all)[id]);
          }
        }
      }
    }
  }
  bool ok = read_error.ok() && writer->Write(header);
  if (!read_error.ok()) ctx.TryCancel();
  const uint64_t chunk = std::max<uint64_t>(1, options_.load_chunk_bytes / (cols * sizeof(double)));
  for (uint64_t begin = 0; ok && begin < rows; begin += chunk) {
    const uint64_t end = std::min(rows, begin + chunk);
    absl::StatusOr<Matrix> m =
        ids != nullptr
            ? absl::StatusOr<Matrix>(Matrix::Gather(
                  training_rows != nullptr ? training_rows->view() : read_rows->view(),
                  absl::MakeConstSpan(ids->data() + begin, end - begin)))
            : store_->ReadRows(dataset, static_cast<uint64_t>(first) + begin,
                               static_cast<uint64_t>(first) + end);
    if (!m.ok()) {
      read_error = m.status();
      ctx.TryCancel();
      break;
    }
    v1::LoadShardRequest request;
    rpc::ToProto(*m, request.mutable_rows());
    ok = writer->Write(request);
  }
  const uint64_t label_chunk = std::max<uint64_t>(1, options_.load_chunk_bytes / sizeof(double));
  for (uint64_t begin = 0; ok && read_error.ok() && begin < labels.size(); begin += label_chunk) {
    const uint64_t end = std::min<uint64_t>(labels.size(), begin + label_chunk);
    v1::LoadShardRequest request;
    request.mutable_labels()->mutable_values()->Add(labels.begin() + begin, labels.begin() + end);
    ok = writer->Write(request);
  }
  if (ok && read_error.ok()) writer->WritesDone();
  const absl::Status st = rpc::FromGrpcStatus(writer->Finish());
  if (!read_error.ok()) return read_error;
  if (!st.ok()) {
    workers_->ReportCallFailure(worker.id, st);
    return absl::UnavailableError(absl::StrCat(DescribeShards({shard_id}, worker),
                                               " could not be loaded: ",
                                               absl::StatusCodeToString(st.code()), ": ",
                                               st.message()));
  }
  workers_->ReportCallSuccess(worker.id, absl::Now());
  return absl::OkStatus();
}

void ModelManager::DropShards(
    const std::vector<std::pair<std::string, std::string>>& copies) const {
  struct Call {
    grpc::ClientContext ctx;
    v1::DropShardRequest request;
    v1::DropShardResponse response;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::vector<WorkerHandle> targets;
  for (const auto& [shard_id, worker_id] : copies) {
    absl::StatusOr<WorkerHandle> w = workers_->Get(worker_id);
    if (!w.ok() || !workers_->IsAlive(worker_id)) continue;  // dropped as an orphan on its return
    auto c = std::make_unique<Call>();
    c->ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.control_deadline));
    c->request.set_shard_id(shard_id);
    calls.push_back(std::move(c));
    targets.push_back(*std::move(w));
  }
  absl::BlockingCounter pending(static_cast<int>(calls.size()));
  for (size_t i = 0; i < calls.size(); ++i) {
    Call* c = calls[i].get();
    targets[i].stub->async()->DropShard(&c->ctx, &c->request, &c->response,
                                        [&pending](grpc::Status) { pending.DecrementCount(); });
  }
  pending.Wait();
}

absl::StatusOr<std::shared_ptr<const ModelEntry>> ModelManager::Fit(const FitSpec& spec,
                                                                    absl::Time deadline) {
  KNN_ASSIGN_OR_RETURN(DatasetMeta meta, store_->Describe(spec.dataset));
  if (meta.rows == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset: \"", spec.dataset, "\" has no rows"));
  }
  const int k = spec.params.n_neighbors;
  if (static_cast<uint64_t>(k) > meta.rows) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "params.n_neighbors: must be at most the training set's %d rows, got %d", meta.rows, k));
  }
  if (spec.task == Model::Task::kOutlier) {
    OutlierParams op;
    op.neighbors = spec.params;
    op.contamination = spec.contamination;
    op.threshold = spec.threshold;
    KNN_RETURN_IF_ERROR(op.Validate());
    if (!spec.threshold.has_value() && static_cast<uint64_t>(k) >= meta.rows) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "params.n_neighbors: fitting the threshold from contamination needs n_neighbors < "
          "the training set's %d rows (each row's own distance is left out), got %d",
          meta.rows, k));
    }
  }
  if (!spec.replace && registry_->Contains(spec.model)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "model: a model named \"", spec.model, "\" exists; set replace to overwrite it"));
  }

  // Labels stay on the coordinator.
  std::shared_ptr<const ModelLabels> labels = std::make_shared<const ModelLabels>();
  if (spec.task != Model::Task::kOutlier) {
    if (meta.labels == LabelKind::kNone) {
      return absl::FailedPreconditionError(absl::StrCat(
          "dataset: \"", spec.dataset, "\" has no labels; a ",
          TaskName(spec.task), " is fitted on labelled rows"));
    }
    KNN_ASSIGN_OR_RETURN(labels, ReadModelLabels(spec.task, spec.dataset, meta.rows,
                                                 spec.class_names.value_or(meta.class_names)));
  }

  auto entry = std::make_shared<ModelEntry>();
  entry->name = spec.model;
  entry->task = spec.task;
  entry->params = spec.params;
  entry->contamination = spec.contamination;
  entry->threshold = spec.threshold;
  entry->dataset = spec.dataset;
  entry->rows = meta.rows;
  entry->cols = meta.cols;
  entry->feature_names = meta.feature_names;
  entry->generation = registry_->NextGeneration();
  entry->labels = std::move(labels);

  std::vector<std::string> live_ids;
  std::vector<WorkerHandle> live = workers_->LiveWorkers();
  if (live.empty()) return absl::UnavailableError("no live workers to hold the model's shards");
  for (const WorkerHandle& w : live) live_ids.push_back(w.id);
  KNN_ASSIGN_OR_RETURN(std::vector<ShardSpec> plan,
                       PlanShards(spec.model, entry->generation, meta.rows, live_ids,
                                  options_.sharding));
  // Spatial shards (routing, issue 3) where they pay: low dimension, several shards, and a
  // training set the coordinator can hold in memory while it cuts it.
  std::vector<SpatialPart> regions;
  Matrix all_rows;
  if (plan.size() > 1 && meta.cols <= options_.max_routed_dim &&
      meta.rows * meta.cols * sizeof(double) <= options_.max_routed_bytes &&
      meta.rows >= plan.size() * options_.min_routed_rows_per_shard) {
    KNN_ASSIGN_OR_RETURN(all_rows, store_->ReadRows(spec.dataset, 0, meta.rows));
    regions = PartitionSpatially(all_rows, plan.size());
    if (regions.size() != plan.size()) regions.clear();
  }
  // Halos where they stay small next to the shards.
  double halo = 0;
  if (!regions.empty()) {
    halo = HaloWidth(regions, meta.rows, static_cast<size_t>(spec.params.n_neighbors));
    AddHalos(all_rows, halo, &regions);
    uint64_t in_halos = 0;
    for (const SpatialPart& r : regions) in_halos += r.halo_ids.size();
    if (static_cast<double>(in_halos) > options_.max_halo_share * static_cast<double>(meta.rows)) {
      halo = 0;
      AddHalos(all_rows, halo, &regions);
    }
  }
  std::vector<std::shared_ptr<const std::vector<int64_t>>> region_ids(plan.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    std::vector<int64_t> ids;  // its own rows and its halo's, ascending
    ids.reserve(regions[i].ids.size() + regions[i].halo_ids.size());
    std::merge(regions[i].ids.begin(), regions[i].ids.end(), regions[i].halo_ids.begin(),
               regions[i].halo_ids.end(), std::back_inserter(ids));
    plan[i].first_global_index = 0;
    plan[i].rows = ids.size();
    region_ids[i] = std::make_shared<const std::vector<int64_t>>(std::move(ids));
  }
  if (regions.empty()) all_rows = Matrix();
  std::vector<std::string> shard_ids;
  for (const ShardSpec& s : plan) shard_ids.push_back(s.shard_id);
  registry_->AddPending(shard_ids);
  registry_->PinDataset(spec.dataset);
  absl::Cleanup unpin = [&] {
    registry_->UnpinDataset(spec.dataset);
    registry_->RemovePending(shard_ids);
  };

  // Copy r of shard i goes to the worker r places after its primary in the plan's round-robin
  // order, so the copies of a shard are on distinct workers and every worker holds about as
  // many rows. Fewer live workers than the replication: one copy per worker (Repair adds the
  // others when workers join).
  const size_t copies = std::min<size_t>(static_cast<size_t>(std::max(1, options_.replication)),
                                         live_ids.size());
  entry->replication = std::max(1, options_.replication);
  std::map<std::string, size_t> position;
  for (size_t i = 0; i < live_ids.size(); ++i) position[live_ids[i]] = i;
  auto copy_worker = [&](size_t i, size_t r) -> const std::string& {
    return live_ids[(position[plan[i].worker_id] + r) % live_ids.size()];
  };
  // Stream the shards, several at once on the pool.
  std::vector<absl::Status> load_status(plan.size() * copies);
  std::vector<absl::Time> loaded_at(plan.size() * copies);
  ParallelFor(pool_, plan.size() * copies, [&](size_t t) {
    const size_t i = t / copies;
    const ShardSpec& s = plan[i];
    absl::StatusOr<WorkerHandle> w = workers_->Get(copy_worker(i, t % copies));
    load_status[t] = w.ok() ? LoadShard(*w, s.shard_id, spec.dataset, s.first_global_index,
                                        s.rows, meta.cols, spec.params, region_ids[i].get(),
                                        &all_rows)
                            : w.status();
    loaded_at[t] = absl::Now();
  });
  all_rows = Matrix();  // the workers hold the rows now
  for (size_t i = 0; i < plan.size(); ++i) {
    Placement p;
    p.location.shard_id = plan[i].shard_id;
    p.location.first_global_index = plan[i].first_global_index;
    p.location.rows = plan[i].rows;
    if (region_ids[i] != nullptr) {
      p.location.global_ids = region_ids[i];
      p.location.box_lo = std::move(regions[i].lo);
      p.location.box_hi = std::move(regions[i].hi);
      p.location.halo = halo;
      p.location.halo_rows = regions[i].halo_ids.size();
    }
    for (size_t r = 0; r < copies; ++r) {
      p.replicas.push_back({copy_worker(i, r), loaded_at[i * copies + r], false});
    }
    p.SyncLocation();
    entry->shards.push_back(std::move(p));
  }
  for (const absl::Status& st : load_status) {
    if (!st.ok()) {
      DropShards(entry->Copies());
      return st;
    }
  }

  if (!regions.empty()) {
    absl::StatusOr<std::shared_ptr<const RoutingGrid>> grid = BuildRoutingGrid(*entry, deadline);
    if (!grid.ok()) {
      DropShards(entry->Copies());
      return grid.status();
    }
    entry->routing = *std::move(grid);
  }

  if (spec.task == Model::Task::kOutlier && !entry->threshold.has_value()) {
    absl::StatusOr<double> threshold = FitThreshold(*entry, deadline);
    if (!threshold.ok()) {
      DropShards(entry->Copies());
      return threshold.status();
    }
    entry->threshold = *threshold;
  }

  absl::StatusOr<std::shared_ptr<const ModelEntry>> old = registry_->Put(entry, spec.replace);
  if (!old.ok()) {
    DropShards(entry->Copies());
    return old.status();
  }
  if (*old != nullptr) DropShards((*old)->Copies());
  if (absl::Status st = Persist(entry->name); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("model \"", entry->name,
                                                "\" is fitted and serving, but its record could "
                                                "not be saved and it will not survive a restart: ",
                                                st.message()));
  }
  return std::shared_ptr<const ModelEntry>(entry);
}

absl::StatusOr<std::shared_ptr<const RoutingGrid>> ModelManager::BuildRoutingGrid(
    const ModelEntry& entry, absl::Time deadline) const {
  // The grid spans the bounding box of the training rows (the union of the shards' boxes),
  // with at most one cell per kRowsPerRoutingCell rows and max_routing_cells; each centre's
  // k-th distance comes from the cluster itself (exact over all rows), so U_q = dist(q, c) +
  // kth(c) is a true upper bound.
  const size_t dim = entry.cols;
  auto grid = std::make_shared<RoutingGrid>();
  grid->k = static_cast<size_t>(entry.params.n_neighbors);
  constexpr uint64_t kRowsPerCell = ModelManagerOptions::kRowsPerRoutingCell;
  const uint64_t cells_wanted = std::max<uint64_t>(
      1, std::min<uint64_t>(options_.max_routing_cells, entry.rows / kRowsPerCell));
  grid->cells_per_dim = std::max<size_t>(
      1, static_cast<size_t>(std::floor(std::pow(static_cast<double>(cells_wanted),
                                                  1.0 / static_cast<double>(dim)) + 1e-9)));
  std::vector<double> lo(dim, std::numeric_limits<double>::infinity());
  std::vector<double> hi(dim, -std::numeric_limits<double>::infinity());
  for (const Placement& p : entry.shards) {
    for (size_t j = 0; j < dim; ++j) {
      lo[j] = std::min(lo[j], p.location.box_lo[j]);
      hi[j] = std::max(hi[j], p.location.box_hi[j]);
    }
  }
  grid->lo = lo;
  grid->width.resize(dim);
  for (size_t j = 0; j < dim; ++j) {
    const double w = (hi[j] - lo[j]) / static_cast<double>(grid->cells_per_dim);
    grid->width[j] = w > 0 && std::isfinite(w) ? w : 1.0;
  }
  size_t cells = 1;
  for (size_t j = 0; j < dim; ++j) cells *= grid->cells_per_dim;
  Matrix centers(cells, dim);
  for (size_t c = 0; c < cells; ++c) grid->Center(c, centers.row(c));
  KNN_ASSIGN_OR_RETURN(Minkowski metric, Minkowski::Create(entry.params.p));
  KNN_ASSIGN_OR_RETURN(KNeighborsResult nb,
                       search_->Search(entry.Locations(), centers, grid->k, metric, deadline));
  if (nb.k != grid->k) return absl::InternalError("routing grid: fewer neighbours than k");
  grid->kth_dist.resize(cells);
  for (size_t c = 0; c < cells; ++c) grid->kth_dist[c] = nb.distance(c, nb.k - 1);
  grid->ComputeSoleShards(entry.Locations(), metric);
  return std::shared_ptr<const RoutingGrid>(std::move(grid));
}

absl::StatusOr<double> ModelManager::FitThreshold(const ModelEntry& entry,
                                                  absl::Time deadline) const {
  // OutlierDetector::Fit's rule through the cluster: each training row queried with k + 1
  // neighbours, its own index left out (or, when it is not among them, the last entry), the
  // k-th remaining distance is its score; threshold = NumpyPercentile(scores, 100(1 - c)).
  const size_t k = static_cast<size_t>(entry.params.n_neighbors);
  KNN_ASSIGN_OR_RETURN(Minkowski metric, Minkowski::Create(entry.params.p));
  const std::vector<ShardLocation> shards = entry.Locations();
  std::vector<double> scores(entry.rows);
  for (uint64_t begin = 0; begin < entry.rows; begin += options_.threshold_batch_rows) {
    const uint64_t end = std::min<uint64_t>(entry.rows, begin + options_.threshold_batch_rows);
    KNN_ASSIGN_OR_RETURN(Matrix rows, store_->ReadRows(entry.dataset, begin, end));
    KNN_ASSIGN_OR_RETURN(KNeighborsResult nb,
                         search_->Search(shards, rows, k + 1, metric, deadline));
    for (size_t i = 0; i < rows.rows(); ++i) {
      scores[begin + i] = LeaveSelfOutDistance(nb, i, static_cast<int64_t>(begin + i), k);
    }
  }
  return NumpyPercentile(std::move(scores), 100 * (1 - entry.contamination));
}

// ---- Queries -------------------------------------------------------------------------------

absl::StatusOr<KNeighborsResult> ModelManager::Neighbors(
    const ModelEntry& model, MatrixView queries, int k, absl::Time deadline,
    std::vector<std::string>* missing_shards) const {
  KNeighborsResult result;
  KNN_RETURN_IF_ERROR(
      KNeighbors(model, queries, k, deadline, missing_shards, ResultSink(&result)));
  return result;
}

absl::Status ModelManager::KNeighbors(const ModelEntry& model, MatrixView queries, int k,
                                      absl::Time deadline,
                                      std::vector<std::string>* missing_shards,
                                      const NeighborsSink& sink) const {
  if (queries.cols() != model.cols && !(queries.rows() == 0 && queries.cols() == 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "queries: expected %d features, got %d", model.cols, queries.cols()));
  }
  if (k < 1 || static_cast<uint64_t>(k) > model.rows) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "k: must be in [1, %d] (the model's training rows), got %d", model.rows, k));
  }
  KNN_ASSIGN_OR_RETURN(Minkowski metric, Minkowski::Create(model.params.p));
  if (queries.rows() == 0) return sink(0, static_cast<size_t>(k)).status();
  // A shard whose every copy was lost (its workers restarted without it) has no worker to ask:
  // ScatterGather reports it UNAVAILABLE (or leaves it out of a partial answer).
  return search_->SearchInto(model.Locations(), queries, static_cast<size_t>(k), metric, deadline,
                             model.routing.get(), missing_shards, sink);
}

absl::StatusOr<Predictions> ModelManager::Predict(const ModelEntry& model, MatrixView queries,
                                                  absl::Time deadline,
                                                  std::vector<std::string>* missing_shards) const {
  KNN_ASSIGN_OR_RETURN(
      KNeighborsResult nb,
      Neighbors(model, queries, model.params.n_neighbors, deadline, missing_shards));
  const ModelLabels& labels = *model.labels;
  Predictions out;
  switch (model.task) {
    case Model::Task::kClassifier: {
      KNN_ASSIGN_OR_RETURN(std::vector<int32_t> codes,
                           VoteClassBatch(nb, labels.codes,
                                          static_cast<int32_t>(labels.classes.size()),
                                          model.params.weights, pool_));
      out.values.resize(codes.size());
      for (size_t i = 0; i < codes.size(); ++i) {
        out.values[i] = labels.classes[static_cast<size_t>(codes[i])];
      }
      if (!labels.class_names.empty()) {
        out.labels.resize(codes.size());
        for (size_t i = 0; i < codes.size(); ++i) {
          out.labels[i] = labels.class_names[static_cast<size_t>(out.values[i])];
        }
      }
      break;
    }
    case Model::Task::kRegressor: {
      KNN_ASSIGN_OR_RETURN(out.values,
                           RegressionBatch(nb, labels.y, model.params.weights, pool_));
      break;
    }
    case Model::Task::kOutlier: {
      // OutlierDetector::ScoreSamples / Predict: the k-th distance; > threshold is an outlier.
      const double threshold = model.threshold.value_or(0.0);
      const size_t k = nb.k;
      out.scores.resize(nb.num_queries);
      out.values.resize(nb.num_queries);
      for (size_t i = 0; i < nb.num_queries; ++i) {
        out.scores[i] = nb.distance(i, k - 1);
        out.values[i] = out.scores[i] > threshold ? -1 : 1;
      }
      break;
    }
  }
  return out;
}

absl::StatusOr<Matrix> ModelManager::PredictProba(const ModelEntry& model, MatrixView queries,
                                                  absl::Time deadline,
                                                  std::vector<std::string>* missing_shards) const {
  if (model.task != Model::Task::kClassifier) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model: \"", model.name, "\" is a ", TaskName(model.task),
        "; predict_proba needs a classifier"));
  }
  KNN_ASSIGN_OR_RETURN(
      KNeighborsResult nb,
      Neighbors(model, queries, model.params.n_neighbors, deadline, missing_shards));
  const ModelLabels& labels = *model.labels;
  return ClassProbabilitiesBatch(nb, labels.codes, static_cast<int32_t>(labels.classes.size()),
                                 model.params.weights, pool_);
}

absl::StatusOr<ScoreResult> ModelManager::Score(const ModelEntry& model, MatrixView queries,
                                                std::vector<double> y_true,
                                                const std::vector<std::string>* y_class_names,
                                                absl::Time deadline,
                                                std::vector<std::string>* missing_shards) const {
  ScoreResult out;
  out.n_samples = queries.rows();
  if (model.task != Model::Task::kOutlier && y_true.size() != queries.rows()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "labels: expected %d labels (one per query), got %d", queries.rows(), y_true.size()));
  }
  KNN_ASSIGN_OR_RETURN(Predictions pred, Predict(model, queries, deadline, missing_shards));
  switch (model.task) {
    case Model::Task::kClassifier: {
      const std::vector<std::string>& names = model.labels->class_names;
      if (y_class_names != nullptr && !names.empty() && *y_class_names != names) {
        // Codes of another name list: map each through its name onto the model's codes; a name
        // the model does not know can never be predicted (-1 is no code).
        std::map<std::string, double> code_of;
        for (size_t c = 0; c < names.size(); ++c) code_of[names[c]] = static_cast<double>(c);
        for (double& y : y_true) {
          const size_t c = static_cast<size_t>(y);
          auto it = c < y_class_names->size() ? code_of.find((*y_class_names)[c]) : code_of.end();
          y = it == code_of.end() ? -1 : it->second;
        }
      }
      KNN_ASSIGN_OR_RETURN(out.score, AccuracyScore(y_true, pred.values));
      out.metric = "accuracy";
      for (size_t i = 0; i < y_true.size(); ++i) out.n_correct += y_true[i] == pred.values[i];
      break;
    }
    case Model::Task::kRegressor: {
      KNN_ASSIGN_OR_RETURN(out.score, R2Score(y_true, pred.values));
      out.metric = "r2";
      break;
    }
    case Model::Task::kOutlier: {
      const size_t outliers = std::count(pred.values.begin(), pred.values.end(), -1.0);
      out.score = pred.values.empty() ? 0.0 : static_cast<double>(outliers) / pred.values.size();
      out.metric = "outlier_fraction";
      break;
    }
  }
  return out;
}

// ---- Export / import / delete ----------------------------------------------------------------

absl::StatusOr<Model> ModelManager::ToModel(const ModelEntry& entry) const {
  Model model;
  model.task = entry.task;
  model.params = entry.params;
  model.contamination = entry.contamination;
  model.threshold = entry.threshold;
  KNN_ASSIGN_OR_RETURN(model.X, store_->ReadRows(entry.dataset, 0, entry.rows));
  if (entry.task != Model::Task::kOutlier) model.y = entry.labels->y;
  model.class_names = entry.labels->class_names;
  model.feature_names = entry.feature_names;
  model.dataset_name = entry.dataset;
  return model;
}

absl::StatusOr<std::shared_ptr<const ModelEntry>> ModelManager::Import(const std::string& name,
                                                                       Model model,
                                                                       absl::Time deadline) {
  if (registry_->Contains(name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("model: a model named \"", name, "\" exists; delete it first"));
  }
  if (model.X.rows() == 0) return absl::InvalidArgumentError("data: the model has no rows");
  const std::string dataset = absl::StrCat(name, ".data");
  KNN_RETURN_IF_ERROR(CheckDatasetFree(dataset));
  UploadHeader header;
  header.name = dataset;
  header.cols = model.X.cols();
  header.labels = model.task == Model::Task::kOutlier ? LabelKind::kNone : LabelKind::kNumeric;
  header.feature_names = model.feature_names;
  header.replace = true;
  KNN_ASSIGN_OR_RETURN(std::unique_ptr<DatasetWriter> writer, store_->BeginUpload(header));
  constexpr size_t kChunk = 8192;
  for (size_t begin = 0; begin < model.X.rows(); begin += kChunk) {
    const size_t end = std::min(model.X.rows(), begin + kChunk);
    absl::Span<const double> y;
    if (header.labels == LabelKind::kNumeric) {
      y = absl::Span<const double>(model.y).subspan(begin, end - begin);
    }
    KNN_RETURN_IF_ERROR(writer->Append(model.X.view().Slice(begin, end), y, {}));
  }
  KNN_RETURN_IF_ERROR(writer->Commit().status());
  FitSpec spec;
  spec.model = name;
  spec.dataset = dataset;
  spec.task = model.task;
  spec.params = model.params;
  spec.contamination = model.contamination;
  if (model.task == Model::Task::kOutlier) spec.threshold = model.threshold;
  if (model.task == Model::Task::kClassifier && !model.class_names.empty()) {
    spec.class_names = model.class_names;
  }
  return Fit(spec, deadline);
}

absl::Status ModelManager::Delete(const std::string& name) {
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> old, registry_->Remove(name));
  DropShards(old->Copies());
  return Persist(name);
}

// ---- Maintenance -----------------------------------------------------------------------------

void ModelManager::CheckWorkers() {
  struct Probe {
    WorkerHandle worker;
    grpc::ClientContext ctx;
    v1::GetWorkerStatusRequest request;
    v1::WorkerStatus response;
    grpc::Status status;
  };
  const absl::Time now = absl::Now();
  std::vector<WorkerHandle> targets = workers_->WorkersToProbe(now);
  const absl::Duration timeout =
      std::max(absl::Milliseconds(200),
               std::min(options_.control_deadline, workers_->options().heartbeat_interval));
  std::vector<std::unique_ptr<Probe>> probes;
  absl::BlockingCounter pending(static_cast<int>(targets.size()));
  for (WorkerHandle& w : targets) {
    auto p = std::make_unique<Probe>();
    p->worker = std::move(w);
    p->ctx.set_deadline(absl::ToChronoTime(now + timeout));
    Probe* raw = p.get();
    probes.push_back(std::move(p));
    raw->worker.stub->async()->GetWorkerStatus(&raw->ctx, &raw->request, &raw->response,
                                               [raw, &pending](grpc::Status s) {
                                                 raw->status = std::move(s);
                                                 pending.DecrementCount();
                                               });
  }
  pending.Wait();
  for (const auto& p : probes) {
    if (p->status.ok()) workers_->ProbeSucceeded(p->worker.id, p->response, absl::Now());
  }
  workers_->CheckLiveness(absl::Now());
}

void ModelManager::Repair() {
  RebuildDatasets();
  const absl::Duration grace = 2 * workers_->options().heartbeat_interval + absl::Seconds(1);
  // 1. Compare what live workers report with the copies they should hold.
  std::map<std::string, std::map<std::string, const Replica*>> placed;  // worker -> shard -> copy
  std::vector<std::shared_ptr<const ModelEntry>> models = registry_->List();
  for (const auto& m : models) {
    for (const Placement& p : m->shards) {
      for (const Replica& r : p.replicas) placed[r.worker_id][p.location.shard_id] = &r;
    }
  }
  std::vector<std::pair<std::string, std::string>> lost;
  std::vector<std::pair<std::string, std::string>> orphans;  // (shard, worker)
  for (const WorkerSnapshot& w : workers_->Snapshot()) {
    if (!w.alive || !w.reported_shards.has_value()) continue;
    const std::set<std::string> reported(w.reported_shards->begin(), w.reported_shards->end());
    for (const auto& [id, r] : placed[w.id]) {
      if (reported.count(id) == 0 && !r->lost && r->placed_at + grace < w.shards_reported_at) {
        lost.emplace_back(id, w.id);
      }
    }
    for (const std::string& id : reported) {
      if (placed[w.id].count(id) == 0) orphans.emplace_back(id, w.id);
    }
  }
  // Models whose entries the repair changed, saved on the way out. A failed save is not fatal:
  // the record then lags until the model's next change, and a coordinator restarted meanwhile
  // corrects it from the workers' reports (unreported copies are marked lost and re-sent).
  std::set<std::string> changed;
  absl::Cleanup save = [&] {
    for (const std::string& name : changed) Persist(name).IgnoreError();
  };
  if (!lost.empty()) {
    registry_->MarkLost(lost);
    std::set<std::string> lost_ids;
    for (const auto& l : lost) lost_ids.insert(l.first);
    for (const auto& m : models) {
      for (const Placement& p : m->shards) {
        if (lost_ids.count(p.location.shard_id) > 0) changed.insert(m->name);
      }
    }
  }
  if (!orphans.empty()) {
    // A shard loaded by a fit or a repair that committed after the snapshot above is no orphan:
    // check pending first, then a fresh snapshot (both commit before clearing their pending ids).
    std::vector<std::pair<std::string, std::string>> still;
    for (const auto& o : orphans) {
      if (!registry_->IsPending(o.first)) still.push_back(o);
    }
    std::set<std::pair<std::string, std::string>> now_placed;
    for (const auto& m : registry_->List()) {
      for (const auto& copy : m->Copies()) now_placed.insert(copy);
    }
    orphans.clear();
    for (const auto& o : still) {
      if (now_placed.count(o) == 0) orphans.push_back(o);
    }
    DropShards(orphans);
  }

  // 2. Every shard back to its model's replication: a new copy on the live worker with the
  // fewest rows that has none, for each missing one; extra live copies dropped from the workers
  // with the most rows.
  models = registry_->List();
  std::vector<WorkerHandle> live = workers_->LiveWorkers();
  if (live.empty()) return;
  std::map<std::string, uint64_t> load;
  for (const WorkerHandle& w : live) load[w.id] = 0;
  for (const auto& m : models) {
    for (const Placement& p : m->shards) {
      for (const Replica& r : p.replicas) {
        auto it = load.find(r.worker_id);
        if (it != load.end() && !r.lost) it->second += p.location.rows;
      }
    }
  }
  for (const auto& m : models) {
    const size_t wanted = std::min<size_t>(static_cast<size_t>(std::max(1, m->replication)),
                                           live.size());
    for (const Placement& p : m->shards) {
      std::set<std::string> holders;  // live, not lost
      bool awaited = false;           // a copy on a worker not registered yet, after a restart
      for (const Replica& r : p.replicas) {
        if (!r.lost && workers_->IsAlive(r.worker_id)) holders.insert(r.worker_id);
        awaited = awaited || (!r.lost && !workers_->Get(r.worker_id).ok());
      }
      // Just after a restart the workers are still re-registering with the copies they kept:
      // wait for them before loading new copies (which would only be dropped again).
      if (awaited && absl::Now() < restore_until_) continue;
      while (holders.size() < wanted) {
        const WorkerHandle* target = nullptr;
        for (const WorkerHandle& w : live) {
          if (holders.count(w.id) > 0 || !workers_->IsAlive(w.id)) continue;
          if (target == nullptr || load[w.id] < load[target->id]) target = &w;
        }
        if (target == nullptr) break;
        registry_->AddPending({p.location.shard_id});
        const absl::Status st =
            LoadShard(*target, p.location.shard_id, m->dataset, p.location.first_global_index,
                      p.location.rows, m->cols, m->params, p.location.global_ids.get(),
                      /*training_rows=*/nullptr);
        if (st.ok() && registry_->AddReplica(m->name, m->generation, p.location.shard_id,
                                             target->id, absl::Now())) {
          changed.insert(m->name);
        }
        registry_->RemovePending({p.location.shard_id});
        load[target->id] += p.location.rows;  // tried: the next copy goes elsewhere
        holders.insert(target->id);
        if (!st.ok()) break;
      }
      while (holders.size() > wanted) {
        auto busiest = holders.begin();
        for (auto it = holders.begin(); it != holders.end(); ++it) {
          if (load[*it] > load[*busiest]) busiest = it;
        }
        if (registry_->RemoveReplica(m->name, m->generation, p.location.shard_id, *busiest)) {
          DropShards({{p.location.shard_id, *busiest}});
          changed.insert(m->name);
        }
        load[*busiest] -= std::min(load[*busiest], p.location.rows);
        holders.erase(busiest);
      }
      // Lost copies are forgotten once the shard has its copies elsewhere. Copies on dead
      // workers stay listed: a worker that returns with its data directory reports them and
      // they count again (then one copy is extra and is dropped above).
      if (holders.size() >= wanted) {
        for (const Replica& r : p.replicas) {
          if (r.lost && registry_->RemoveReplica(m->name, m->generation, p.location.shard_id,
                                                 r.worker_id)) {
            changed.insert(m->name);
          }
        }
      }
    }
  }
}

}  // namespace knncluster::coordinator
