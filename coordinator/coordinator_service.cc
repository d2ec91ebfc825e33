#include "coordinator/coordinator_service.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/grid_search_convert.h"
#include "core/base/status_macros.h"
#include "core/estimators/model_io.h"
#include "core/estimators/outlier_detector.h"
#include "core/model_selection/split.h"
#include "rpc/convert.h"
#include "rpc/grid_convert.h"
#include "rpc/status.h"

namespace knncluster::coordinator {

namespace {

constexpr size_t kExportChunkBytes = 1 << 20;

absl::Time DeadlineOf(const grpc::ServerContext* context) {
  const auto d = context->deadline();
  if (d == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(d);
}

v1::LabelKind ToProto(LabelKind k) {
  switch (k) {
    case LabelKind::kNumeric:
      return v1::LABELS_NUMERIC;
    case LabelKind::kString:
      return v1::LABELS_STRING;
    case LabelKind::kNone:
      break;
  }
  return v1::LABELS_NONE;
}

absl::StatusOr<LabelKind> FromProto(v1::LabelKind k, const std::string& field) {
  switch (k) {
    case v1::LABELS_NONE:
      return LabelKind::kNone;
    case v1::LABELS_NUMERIC:
      return LabelKind::kNumeric;
    case v1::LABELS_STRING:
      return LabelKind::kString;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrFormat("%s: unknown label kind %d", field, k));
}

// What an imported model file says, checked as FitRequest's fields are: ModelManager::Import
// stores the training rows as a dataset before it fits, so nothing may fail after that for a
// reason the file alone shows.
absl::Status ValidateImportedModel(const Model& m) {
  if (m.X.rows() == 0) return absl::InvalidArgumentError("data: the model has no rows");
  absl::Status st;
  if (m.task == Model::Task::kOutlier) {
    OutlierParams op;
    op.neighbors = m.params;
    op.contamination = m.contamination;
    op.threshold = m.threshold;
    st = op.Validate();
  } else {
    st = m.params.Validate();
  }
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("data: the model file's ", st.message()));
  }
  const uint64_t k = static_cast<uint64_t>(m.params.n_neighbors);
  if (k > m.X.rows()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data: the model file's n_neighbors %d exceeds its %d training rows", k, m.X.rows()));
  }
  if (m.task == Model::Task::kOutlier && !m.threshold.has_value() && k >= m.X.rows()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data: the model file's outlier detector has no threshold, and fitting one needs "
        "n_neighbors < its %d training rows, got %d",
        m.X.rows(), k));
  }
  return absl::OkStatus();
}

}  // namespace

void ToProto(const DatasetMeta& meta, v1::DatasetInfo* out) {
  out->set_name(meta.name);
  out->set_rows(meta.rows);
  out->set_cols(meta.cols);
  out->set_labels(ToProto(meta.labels));
  for (const std::string& c : meta.class_names) out->add_class_names(c);
  out->set_view_of(meta.view_of);
  for (const std::string& f : meta.feature_names) out->add_feature_names(f);
}

CoordinatorService::CoordinatorService(DatasetStore* store, ModelRegistry* registry,
                                       ModelManager* models, WorkerPool* workers,
                                       GridSearchManager* searches, rpc::CallGuard guard,
                                       rpc::AdmissionControl* admission)
    : store_(store),
      registry_(registry),
      models_(models),
      workers_(workers),
      searches_(searches),
      guard_(std::move(guard)),
      admission_(admission) {}

absl::StatusOr<rpc::AdmissionControl::Ticket> CoordinatorService::Admit(
    absl::string_view method, uint64_t request_bytes, const v1::Queries* queries) const {
  if (admission_ == nullptr) return rpc::AdmissionControl::Ticket();
  uint64_t bytes = request_bytes;
  if (queries != nullptr && queries->source_case() == v1::Queries::kDataset) {
    // The rows the call will read (an unknown name is the handler's NotFound, after admission).
    if (absl::StatusOr<DatasetMeta> meta = store_->Describe(queries->dataset()); meta.ok()) {
      bytes += meta->rows * meta->cols * sizeof(double);
    }
  }
  return admission_->Admit(method, bytes);
}

absl::Status CoordinatorService::CheckWorkersCanHold(const std::string& what, uint64_t rows,
                                                     uint64_t cols,
                                                     const std::string& replacing) const {
  uint64_t budget = 0;
  int live = 0;
  for (const WorkerSnapshot& w : workers_->Snapshot()) {
    if (!w.alive) continue;
    // A live worker that has not told its budget: nothing can be said up front.
    if (w.memory_budget_bytes == 0) return absl::OkStatus();
    budget += w.memory_budget_bytes;
    ++live;
  }
  if (live == 0) return absl::OkStatus();  // the fit reports the missing workers itself
  // Each row of a shard: its features and its global id (the index's own overhead comes on top).
  auto bytes_of = [](uint64_t r, uint64_t c) {
    const long double b = static_cast<long double>(r) * (c + 1) * sizeof(double);
    return b > static_cast<long double>(UINT64_MAX) ? UINT64_MAX : static_cast<uint64_t>(b);
  };
  // Every copy of a shard (--replication) is held by another worker; with fewer live workers
  // than copies, one per worker.
  auto copies = [live](int replication) {
    return static_cast<uint64_t>(std::min(std::max(1, replication), live));
  };
  const uint64_t needed = bytes_of(rows, cols) * copies(models_->replication());
  uint64_t held = 0;
  for (const auto& m : registry_->List()) {
    if (m->name != replacing) held += bytes_of(m->rows, m->cols) * copies(m->replication);
  }
  if (needed > budget || held > budget - needed) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: %d rows x %d features (x %d copies) need %.1f MiB of worker memory; the %d live "
        "workers' budgets "
        "(--memory-budget-mb) total %.1f MiB, of which the other models hold %.1f MiB. Add "
        "workers, raise their --memory-budget-mb, or delete models",
        what, rows, cols, copies(models_->replication()), needed / 1048576.0, live,
        budget / 1048576.0, held / 1048576.0));
  }
  return absl::OkStatus();
}

void CoordinatorService::ToProto(const ModelEntry& e, v1::ModelInfo* out) const {
  out->set_name(e.name);
  out->set_task(rpc::ToProto(e.task));
  rpc::ToProto(e.params, out->mutable_params());
  out->set_dataset(e.dataset);
  out->set_rows(e.rows);
  out->set_cols(e.cols);
  for (const Placement& p : e.shards) {
    v1::ShardPlacement* s = out->add_shards();
    s->set_shard_id(p.location.shard_id);
    // The first copy a search would use now: the first on a live worker.
    for (const std::string& w : p.location.worker_ids) {
      if (s->worker_id().empty() || (workers_->IsAlive(w) && !workers_->IsAlive(s->worker_id()))) {
        s->set_worker_id(w);
      }
    }
    for (const std::string& w : p.location.worker_ids) s->add_replica_worker_ids(w);
    s->set_rows(p.location.rows);
    s->set_first_global_index(p.location.first_global_index);
  }
  if (e.labels != nullptr) {
    for (double c : e.labels->classes) out->add_classes(c);
    for (const std::string& n : e.labels->class_names) out->add_class_names(n);
  }
  if (e.threshold.has_value()) out->set_threshold(*e.threshold);
  out->set_replication(static_cast<uint32_t>(e.replication));
}

absl::StatusOr<std::shared_ptr<const ModelEntry>> CoordinatorService::FindModel(
    const std::string& name) const {
  KNN_RETURN_IF_ERROR(rpc::ValidateName(name, "model"));
  return registry_->Get(name);
}

absl::StatusOr<Matrix> CoordinatorService::ResolveQueries(const v1::Queries& queries) const {
  switch (queries.source_case()) {
    case v1::Queries::kMatrix:
      return rpc::FromProto(queries.matrix(), "queries.matrix");
    case v1::Queries::kDataset: {
      KNN_RETURN_IF_ERROR(rpc::ValidateName(queries.dataset(), "queries.dataset"));
      KNN_ASSIGN_OR_RETURN(DatasetMeta meta, store_->Describe(queries.dataset()));
      return store_->ReadRows(meta.name, 0, meta.rows);
    }
    default:
      break;
  }
  return absl::InvalidArgumentError("queries: set either matrix or dataset");
}

// ---- Datasets ------------------------------------------------------------------------------

absl::Status CoordinatorService::DoUpload(grpc::ServerContext* context,
                                          grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                                          v1::DatasetInfo* response) {
  v1::UploadDatasetRequest request;
  if (!reader->Read(&request)) {
    return absl::InvalidArgumentError("header: the upload stream is empty");
  }
  if (request.part_case() != v1::UploadDatasetRequest::kHeader) {
    return absl::InvalidArgumentError("header: the first message of an upload must be the header");
  }
  const v1::DatasetHeader& h = request.header();
  KNN_RETURN_IF_ERROR(rpc::ValidateName(h.name(), "header.name"));
  if (h.cols() == 0) return absl::InvalidArgumentError("header.cols: must be >= 1");
  UploadHeader header;
  header.name = h.name();
  header.cols = h.cols();
  KNN_ASSIGN_OR_RETURN(header.labels, FromProto(h.labels(), "header.labels"));
  header.feature_names.assign(h.feature_names().begin(), h.feature_names().end());
  header.replace = h.replace();
  // Copied now: `h` refers into `request`, which the chunks below overwrite.
  const bool check_rows = h.has_rows();
  const uint64_t expected_rows = h.rows();
  if (header.replace) KNN_RETURN_IF_ERROR(models_->CheckDatasetFree(header.name));
  KNN_ASSIGN_OR_RETURN(std::unique_ptr<DatasetWriter> writer, store_->BeginUpload(header));
  std::vector<std::string> string_labels;
  for (uint64_t chunk = 0; reader->Read(&request); ++chunk) {
    if (request.part_case() != v1::UploadDatasetRequest::kChunk) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk: message ", chunk + 1, " of the upload is not a chunk"));
    }
    const v1::DatasetChunk& c = request.chunk();
    absl::StatusOr<Matrix> rows = rpc::FromProto(c.rows(), "chunk.rows");
    absl::Status st = rows.status();
    if (st.ok()) {
      string_labels.assign(c.string_labels().begin(), c.string_labels().end());
      st = writer->Append(*rows, absl::Span<const double>(c.labels().data(), c.labels_size()),
                          string_labels);
    }
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat(st.message(), " (chunk ", chunk,
                                                  ", after ", writer->rows(), " rows)"));
    }
  }
  // A stream that ended early (the client cancelled or died) must not become a dataset: the
  // header's row count, when given, says what "complete" is; cancellation says it otherwise.
  if (context->IsCancelled()) {
    return absl::CancelledError("the client cancelled the upload; nothing was stored");
  }
  if (check_rows && writer->rows() != expected_rows) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "header.rows: the header announced %d rows, the stream carried %d (truncated upload; "
        "nothing was stored)",
        expected_rows, writer->rows()));
  }
  if (header.replace) KNN_RETURN_IF_ERROR(models_->CheckDatasetFree(header.name));
  KNN_ASSIGN_OR_RETURN(DatasetMeta meta, writer->Commit());
  coordinator::ToProto(meta, response);
  return absl::OkStatus();
}

grpc::Status CoordinatorService::UploadDataset(grpc::ServerContext* context,
                                               grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                                               v1::DatasetInfo* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("UploadDataset", 0);
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  return rpc::ToGrpcStatus(DoUpload(context, reader, response));
}

grpc::Status CoordinatorService::ListDatasets(grpc::ServerContext* context,
                                              const v1::ListDatasetsRequest*,
                                              v1::ListDatasetsResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  for (const DatasetMeta& m : store_->List()) coordinator::ToProto(m, response->add_datasets());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::DescribeDataset(grpc::ServerContext* context,
                                                 const v1::DescribeDatasetRequest* request,
                                                 v1::DatasetInfo* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  absl::Status st = rpc::ValidateName(request->name(), "name");
  if (st.ok()) {
    absl::StatusOr<DatasetMeta> meta = store_->Describe(request->name());
    st = meta.status();
    if (st.ok()) coordinator::ToProto(*meta, response);
  }
  return rpc::ToGrpcStatus(st);
}

grpc::Status CoordinatorService::DeleteDataset(grpc::ServerContext* context,
                                               const v1::DeleteDatasetRequest* request,
                                               v1::DeleteDatasetResponse*) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("DeleteDataset", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  absl::Status st = rpc::ValidateName(request->name(), "name");
  if (st.ok()) st = store_->Describe(request->name()).status();
  if (st.ok()) st = models_->CheckDatasetFree(request->name());
  if (st.ok()) st = store_->Delete(request->name());
  return rpc::ToGrpcStatus(st);
}

absl::Status CoordinatorService::DoSplit(const v1::SplitDatasetRequest& request,
                                         v1::SplitDatasetResponse* response) {
  KNN_RETURN_IF_ERROR(rpc::ValidateName(request.dataset(), "dataset"));
  TestSize test_size = TestSize::Fraction(0.25);  // scikit-learn's default
  switch (request.test_size_case()) {
    case v1::SplitDatasetRequest::kTestFraction:
      if (!(request.test_fraction() > 0 && request.test_fraction() < 1)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "test_fraction: must be in (0, 1), got %g", request.test_fraction()));
      }
      test_size = TestSize::Fraction(request.test_fraction());
      break;
    case v1::SplitDatasetRequest::kTestCount:
      if (request.test_count() < 1) {
        return absl::InvalidArgumentError("test_count: must be >= 1");
      }
      test_size = TestSize::Count(static_cast<int64_t>(
          std::min<uint64_t>(request.test_count(), static_cast<uint64_t>(INT64_MAX))));
      break;
    default:
      break;
  }
  const std::string train_name =
      request.train_name().empty() ? absl::StrCat(request.dataset(), "-train") : request.train_name();
  const std::string test_name =
      request.test_name().empty() ? absl::StrCat(request.dataset(), "-test") : request.test_name();
  KNN_RETURN_IF_ERROR(rpc::ValidateName(train_name, "train_name"));
  KNN_RETURN_IF_ERROR(rpc::ValidateName(test_name, "test_name"));
  KNN_ASSIGN_OR_RETURN(DatasetMeta meta, store_->Describe(request.dataset()));
  if (meta.rows == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset: \"", request.dataset(), "\" has no rows"));
  }
  std::optional<uint32_t> random_state;
  if (request.has_random_state()) random_state = request.random_state();
  if (request.dry_run()) {
    KNN_ASSIGN_OR_RETURN(TrainTestIndices split,
                         TrainTestSplit(static_cast<int64_t>(meta.rows), test_size, random_state,
                                        !request.no_shuffle()));
    response->mutable_train()->set_name(train_name);
    response->mutable_train()->set_rows(split.train.size());
    response->mutable_test()->set_name(test_name);
    response->mutable_test()->set_rows(split.test.size());
    response->mutable_train_indices()->Assign(split.train.begin(), split.train.end());
    response->mutable_test_indices()->Assign(split.test.begin(), split.test.end());
    return absl::OkStatus();
  }
  if (request.replace()) {
    KNN_RETURN_IF_ERROR(models_->CheckDatasetFree(train_name));
    KNN_RETURN_IF_ERROR(models_->CheckDatasetFree(test_name));
  }
  KNN_ASSIGN_OR_RETURN(DatasetStore::SplitResult split,
                       store_->Split(request.dataset(), test_size, random_state,
                                     !request.no_shuffle(), train_name, test_name,
                                     request.replace()));
  coordinator::ToProto(split.train, response->mutable_train());
  coordinator::ToProto(split.test, response->mutable_test());
  if (request.return_indices()) {
    response->mutable_train_indices()->Assign(split.train_indices.begin(),
                                              split.train_indices.end());
    response->mutable_test_indices()->Assign(split.test_indices.begin(), split.test_indices.end());
  }
  return absl::OkStatus();
}

grpc::Status CoordinatorService::SplitDataset(grpc::ServerContext* context,
                                              const v1::SplitDatasetRequest* request,
                                              v1::SplitDatasetResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("SplitDataset", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  return rpc::ToGrpcStatus(DoSplit(*request, response));
}

// ---- Models --------------------------------------------------------------------------------

absl::Status CoordinatorService::DoFit(const v1::FitRequest& request, absl::Time deadline,
                                       v1::ModelInfo* response) {
  FitSpec spec;
  KNN_RETURN_IF_ERROR(rpc::ValidateName(request.model(), "model"));
  KNN_RETURN_IF_ERROR(rpc::ValidateName(request.dataset(), "dataset"));
  spec.model = request.model();
  spec.dataset = request.dataset();
  KNN_ASSIGN_OR_RETURN(spec.task, rpc::FromProto(request.task(), "task"));
  v1::NeighborsParams params = request.params();
  // The outlier detector's n_neighbors defaults to 1 (OutlierParams).
  if (spec.task == Model::Task::kOutlier && !params.has_n_neighbors()) params.set_n_neighbors(1);
  KNN_ASSIGN_OR_RETURN(spec.params, rpc::FromProto(params, "params"));
  if (request.has_contamination()) spec.contamination = request.contamination();
  if (request.has_threshold()) spec.threshold = request.threshold();
  if (spec.task == Model::Task::kOutlier) {
    if (!(spec.contamination > 0 && spec.contamination <= 0.5)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "contamination: must be in (0, 0.5], got %g", spec.contamination));
    }
    if (spec.threshold.has_value() && !(std::isfinite(*spec.threshold) && *spec.threshold >= 0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "threshold: must be a finite distance >= 0, got %g", *spec.threshold));
    }
  }
  spec.replace = request.replace();
  KNN_ASSIGN_OR_RETURN(DatasetMeta meta, store_->Describe(spec.dataset));
  KNN_RETURN_IF_ERROR(CheckWorkersCanHold(absl::StrCat("dataset \"", spec.dataset, "\""),
                                          meta.rows, meta.cols, spec.model));
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> entry, models_->Fit(spec, deadline));
  ToProto(*entry, response);
  return absl::OkStatus();
}

grpc::Status CoordinatorService::Fit(grpc::ServerContext* context, const v1::FitRequest* request,
                                     v1::ModelInfo* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("Fit", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  return rpc::ToGrpcStatus(DoFit(*request, DeadlineOf(context), response));
}

grpc::Status CoordinatorService::KNeighbors(grpc::ServerContext* context,
                                            const v1::KNeighborsRequest* request,
                                            v1::KNeighborsResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("KNeighbors", request->ByteSizeLong(), &request->queries());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  auto run = [&]() -> absl::Status {
    KNN_ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> model, FindModel(request->model()));
    KNN_ASSIGN_OR_RETURN(Matrix queries, ResolveQueries(request->queries()));
    const int k = request->has_k() ? request->k() : model->params.n_neighbors;
    std::vector<std::string> missing;
    // The merge writes straight into the response (training indices are 0 .. rows - 1).
    const bool compact = rpc::CompactIndices(request->compact_indices(), model->rows);
    KNN_RETURN_IF_ERROR(models_->KNeighbors(
        *model, queries, k, DeadlineOf(context), request->allow_partial() ? &missing : nullptr,
        rpc::NeighborsSinkInto(response->mutable_neighbors(), compact)));
    for (const std::string& id : missing) response->add_missing_shards(id);
    return absl::OkStatus();
  };
  return rpc::ToGrpcStatus(run());
}

grpc::Status CoordinatorService::Predict(grpc::ServerContext* context,
                                         const v1::PredictRequest* request,
                                         v1::PredictResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("Predict", request->ByteSizeLong(), &request->queries());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  auto run = [&]() -> absl::Status {
    KNN_ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> model, FindModel(request->model()));
    KNN_ASSIGN_OR_RETURN(Matrix queries, ResolveQueries(request->queries()));
    std::vector<std::string> missing;
    KNN_ASSIGN_OR_RETURN(Predictions p,
                         models_->Predict(*model, queries, DeadlineOf(context),
                                          request->allow_partial() ? &missing : nullptr));
    for (const std::string& id : missing) response->add_missing_shards(id);
    response->mutable_predictions()->Assign(p.values.begin(), p.values.end());
    for (const std::string& l : p.labels) response->add_labels(l);
    response->mutable_scores()->Assign(p.scores.begin(), p.scores.end());
    if (model->task == Model::Task::kOutlier && model->threshold.has_value()) {
      response->set_threshold(*model->threshold);
    }
    return absl::OkStatus();
  };
  return rpc::ToGrpcStatus(run());
}

grpc::Status CoordinatorService::PredictProba(grpc::ServerContext* context,
                                              const v1::PredictProbaRequest* request,
                                              v1::PredictProbaResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("PredictProba", request->ByteSizeLong(), &request->queries());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  auto run = [&]() -> absl::Status {
    KNN_ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> model, FindModel(request->model()));
    KNN_ASSIGN_OR_RETURN(Matrix queries, ResolveQueries(request->queries()));
    std::vector<std::string> missing;
    KNN_ASSIGN_OR_RETURN(Matrix proba,
                         models_->PredictProba(*model, queries, DeadlineOf(context),
                                               request->allow_partial() ? &missing : nullptr));
    for (const std::string& id : missing) response->add_missing_shards(id);
    for (double c : model->labels->classes) response->add_classes(c);
    for (const std::string& n : model->labels->class_names) response->add_class_names(n);
    rpc::ToProto(proba, response->mutable_probabilities());
    return absl::OkStatus();
  };
  return rpc::ToGrpcStatus(run());
}

absl::Status CoordinatorService::DoScore(const v1::ScoreRequest& request, absl::Time deadline,
                                         v1::ScoreResponse* response) {
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> model, FindModel(request.model()));
  KNN_ASSIGN_OR_RETURN(Matrix queries, ResolveQueries(request.queries()));
  std::vector<double> y;
  std::vector<std::string> y_names;
  const std::vector<std::string>* y_class_names = nullptr;
  if (model->task != Model::Task::kOutlier) {
    if (request.queries().source_case() == v1::Queries::kDataset) {
      KNN_ASSIGN_OR_RETURN(DatasetMeta meta, store_->Describe(request.queries().dataset()));
      if (meta.labels == LabelKind::kNone) {
        return absl::FailedPreconditionError(
            absl::StrCat("queries.dataset: \"", meta.name,
                         "\" has no labels; scoring needs labelled rows"));
      }
      KNN_ASSIGN_OR_RETURN(y, store_->ReadLabels(meta.name));
      if (meta.labels == LabelKind::kString) {
        y_names = meta.class_names;
        y_class_names = &y_names;
      }
    } else {
      if (request.labels_size() == 0 && queries.rows() > 0) {
        return absl::FailedPreconditionError(
            "labels: the queries are unlabeled; scoring needs one label per query");
      }
      y.assign(request.labels().begin(), request.labels().end());
      for (size_t i = 0; i < y.size(); ++i) {
        if (!std::isfinite(y[i])) {
          return absl::InvalidArgumentError(
              absl::StrFormat("labels[%d]: value %g is not finite", i, y[i]));
        }
      }
    }
  }
  std::vector<std::string> missing;
  KNN_ASSIGN_OR_RETURN(ScoreResult r,
                       models_->Score(*model, queries, std::move(y), y_class_names, deadline,
                                      request.allow_partial() ? &missing : nullptr));
  for (const std::string& id : missing) response->add_missing_shards(id);
  response->set_score(r.score);
  response->set_metric(r.metric);
  response->set_n_samples(r.n_samples);
  response->set_n_correct(r.n_correct);
  return absl::OkStatus();
}

grpc::Status CoordinatorService::Score(grpc::ServerContext* context,
                                       const v1::ScoreRequest* request,
                                       v1::ScoreResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("Score", request->ByteSizeLong(), &request->queries());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  return rpc::ToGrpcStatus(DoScore(*request, DeadlineOf(context), response));
}

absl::Status CoordinatorService::DoExport(const v1::ExportModelRequest& request,
                                          grpc::ServerWriter<v1::ModelChunk>* writer) {
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> model, FindModel(request.model()));
  KNN_ASSIGN_OR_RETURN(Model m, models_->ToModel(*model));
  const std::string bytes = SerializeModel(m);
  for (size_t begin = 0; begin < bytes.size(); begin += kExportChunkBytes) {
    v1::ModelChunk chunk;
    chunk.set_data(bytes.substr(begin, kExportChunkBytes));
    if (!writer->Write(chunk)) return absl::CancelledError("the client went away");
  }
  return absl::OkStatus();
}

grpc::Status CoordinatorService::ExportModel(grpc::ServerContext* context,
                                             const v1::ExportModelRequest* request,
                                             grpc::ServerWriter<v1::ModelChunk>* writer) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("ExportModel", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  return rpc::ToGrpcStatus(DoExport(*request, writer));
}

absl::Status CoordinatorService::DoImport(grpc::ServerContext* context,
                                          grpc::ServerReader<v1::ImportModelRequest>* reader,
                                          absl::Time deadline, v1::ModelInfo* response) {
  v1::ImportModelRequest request;
  if (!reader->Read(&request) || request.part_case() != v1::ImportModelRequest::kModel) {
    return absl::InvalidArgumentError(
        "model: the first message of an import must name the model");
  }
  const std::string name = request.model();
  KNN_RETURN_IF_ERROR(rpc::ValidateName(name, "model"));
  // The file holds the training rows, which must fit in the workers: a stream longer than their
  // budgets together is refused as it arrives, before it can fill the coordinator's memory.
  uint64_t max_bytes = 0;
  for (const WorkerSnapshot& w : workers_->Snapshot()) {
    if (w.alive) max_bytes += w.memory_budget_bytes;
  }
  std::string bytes;
  while (reader->Read(&request)) {
    if (request.part_case() != v1::ImportModelRequest::kData) {
      return absl::InvalidArgumentError("data: every message after the first must carry data");
    }
    if (max_bytes > 0 && bytes.size() + request.data().size() > max_bytes) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "data: the model file is larger than the live workers' memory budgets together "
          "(%.1f MiB, --memory-budget-mb); it cannot be served",
          max_bytes / 1048576.0));
    }
    bytes += request.data();
  }
  if (context->IsCancelled()) {
    return absl::CancelledError("the client cancelled the import; nothing was stored");
  }
  absl::StatusOr<Model> parsed = ParseModel(bytes, absl::StrCat("import of ", name));
  if (!parsed.ok()) {
    // The file is the caller's data: a truncated or corrupt one (DATA_LOSS when read from disk)
    // is INVALID_ARGUMENT here, naming the field.
    const absl::Status& st = parsed.status();
    return st.code() == absl::StatusCode::kResourceExhausted
               ? st
               : absl::InvalidArgumentError(absl::StrCat("data: ", st.message()));
  }
  Model model = *std::move(parsed);
  KNN_RETURN_IF_ERROR(ValidateImportedModel(model));
  KNN_RETURN_IF_ERROR(CheckWorkersCanHold(absl::StrCat("model \"", name, "\""), model.X.rows(),
                                          model.X.cols(), name));
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> entry,
                       models_->Import(name, std::move(model), deadline));
  ToProto(*entry, response);
  return absl::OkStatus();
}

grpc::Status CoordinatorService::ImportModel(grpc::ServerContext* context,
                                             grpc::ServerReader<v1::ImportModelRequest>* reader,
                                             v1::ModelInfo* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("ImportModel", 0);
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  return rpc::ToGrpcStatus(DoImport(context, reader, DeadlineOf(context), response));
}

grpc::Status CoordinatorService::ListModels(grpc::ServerContext* context,
                                            const v1::ListModelsRequest*,
                                            v1::ListModelsResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  for (const auto& e : registry_->List()) ToProto(*e, response->add_models());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::DescribeModel(grpc::ServerContext* context,
                                               const v1::DescribeModelRequest* request,
                                               v1::ModelInfo* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  absl::StatusOr<std::shared_ptr<const ModelEntry>> model = FindModel(request->model());
  if (model.ok()) ToProto(**model, response);
  return rpc::ToGrpcStatus(model.status());
}

grpc::Status CoordinatorService::DeleteModel(grpc::ServerContext* context,
                                             const v1::DeleteModelRequest* request,
                                             v1::DeleteModelResponse*) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("DeleteModel", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  absl::Status st = rpc::ValidateName(request->model(), "model");
  if (st.ok()) st = models_->Delete(request->model());
  return rpc::ToGrpcStatus(st);
}

grpc::Status CoordinatorService::GetClusterStatus(grpc::ServerContext* context,
                                                  const v1::GetClusterStatusRequest*,
                                                  v1::ClusterStatus* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  FillClusterStatus(response);
  return grpc::Status::OK;
}

void CoordinatorService::FillClusterStatus(v1::ClusterStatus* response) const {
  const std::vector<std::shared_ptr<const ModelEntry>> models = registry_->List();
  std::map<std::string, std::vector<const Placement*>> by_worker;
  for (const auto& m : models) {
    for (const Placement& p : m->shards) {
      for (const std::string& w : p.location.worker_ids) by_worker[w].push_back(&p);
    }
  }
  const absl::Time now = absl::Now();
  for (const WorkerSnapshot& w : workers_->Snapshot()) {
    v1::WorkerInfo* info = response->add_workers();
    info->set_worker_id(w.id);
    info->set_address(w.address);
    info->set_state(w.alive ? v1::WORKER_ALIVE : v1::WORKER_DEAD);
    info->set_millis_since_heartbeat(w.last_contact == absl::InfinitePast()
                                         ? -1
                                         : absl::ToInt64Milliseconds(now - w.last_contact));
    uint64_t rows = 0;
    for (const Placement* p : by_worker[w.id]) {
      info->add_shard_ids(p->location.shard_id);
      rows += p->location.rows;
    }
    info->set_rows(rows);
    info->set_rss_bytes(w.rss_bytes);
    info->set_cores(w.cores);
    info->set_memory_budget_bytes(w.memory_budget_bytes);
  }
  for (const DatasetMeta& m : store_->List()) coordinator::ToProto(m, response->add_datasets());
  for (const auto& m : models) ToProto(*m, response->add_models());
}

// ---- Grid search ---------------------------------------------------------------------------

namespace {

absl::Status NoSearches() {
  return absl::UnimplementedError("grid search is not enabled on this coordinator");
}

}  // namespace

grpc::Status CoordinatorService::StartGridSearch(grpc::ServerContext* context,
                                                 const v1::StartGridSearchRequest* request,
                                                 v1::GridSearchInfo* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto ticket = Admit("StartGridSearch", request->ByteSizeLong());
  if (!ticket.ok()) return rpc::ToGrpcStatus(ticket.status());
  auto run = [&]() -> absl::Status {
    if (searches_ == nullptr) return NoSearches();
    KNN_ASSIGN_OR_RETURN(GridSearchSpec spec, SpecFromProto(*request));
    KNN_ASSIGN_OR_RETURN(GridSearchProgress p, searches_->Start(std::move(spec)));
    InfoToProto(p, response);
    return absl::OkStatus();
  };
  return rpc::ToGrpcStatus(run());
}

grpc::Status CoordinatorService::WatchGridSearch(grpc::ServerContext* context,
                                                 const v1::WatchGridSearchRequest* request,
                                                 grpc::ServerWriter<v1::GridSearchInfo>* writer) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto run = [&]() -> absl::Status {
    if (searches_ == nullptr) return NoSearches();
    const uint32_t interval_ms =
        request->interval_ms() == 0 ? 1000 : std::clamp<uint32_t>(request->interval_ms(), 50, 60000);
    uint64_t seen = 0;
    absl::Time last_write = absl::InfinitePast();
    while (!context->IsCancelled()) {
      // Wake at least every 100 ms to notice a client that went away.
      KNN_ASSIGN_OR_RETURN(GridSearchProgress p,
                           searches_->Watch(request->id(), seen, absl::Milliseconds(100)));
      const absl::Time now = absl::Now();
      if (p.version == seen && now - last_write < absl::Milliseconds(interval_ms)) continue;
      seen = p.version;
      last_write = now;
      v1::GridSearchInfo info;
      InfoToProto(p, &info);
      if (!writer->Write(info)) return absl::OkStatus();  // the client went away
      if (IsTerminal(p.state)) return absl::OkStatus();
    }
    return absl::CancelledError("the client cancelled the watch");
  };
  return rpc::ToGrpcStatus(run());
}

grpc::Status CoordinatorService::CancelGridSearch(grpc::ServerContext* context,
                                                  const v1::CancelGridSearchRequest* request,
                                                  v1::GridSearchInfo* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto run = [&]() -> absl::Status {
    if (searches_ == nullptr) return NoSearches();
    KNN_ASSIGN_OR_RETURN(GridSearchProgress p, searches_->Cancel(request->id()));
    InfoToProto(p, response);
    return absl::OkStatus();
  };
  return rpc::ToGrpcStatus(run());
}

grpc::Status CoordinatorService::ListGridSearches(grpc::ServerContext* context,
                                                  const v1::ListGridSearchesRequest*,
                                                  v1::ListGridSearchesResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  if (searches_ == nullptr) return rpc::ToGrpcStatus(NoSearches());
  for (const GridSearchProgress& p : searches_->List()) InfoToProto(p, response->add_searches());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetGridSearchResult(grpc::ServerContext* context,
                                                     const v1::GetGridSearchResultRequest* request,
                                                     v1::GridSearchResult* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  auto run = [&]() -> absl::Status {
    if (searches_ == nullptr) return NoSearches();
    KNN_ASSIGN_OR_RETURN(GridSearchOutcome r, searches_->Result(request->id()));
    ResultToProto(r, response);
    return absl::OkStatus();
  };
  return rpc::ToGrpcStatus(run());
}

// ---- Membership ----------------------------------------------------------------------------

MembershipService::MembershipService(WorkerPool* workers, rpc::CallGuard guard)
    : workers_(workers), guard_(std::move(guard)) {}

grpc::Status MembershipService::Register(grpc::ServerContext* context,
                                         const v1::RegisterRequest* request,
                                         v1::RegisterResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  const absl::Status st = workers_->Register(request->worker_id(), request->address(),
                                             request->cores(), request->memory_bytes(),
                                             absl::Now(), request->memory_budget_bytes(),
                                             std::vector<std::string>(request->shard_ids().begin(),
                                                                      request->shard_ids().end()));
  if (st.ok()) {
    response->set_heartbeat_interval_ms(static_cast<uint32_t>(
        absl::ToInt64Milliseconds(workers_->options().heartbeat_interval)));
  }
  return rpc::ToGrpcStatus(st);
}

grpc::Status MembershipService::Heartbeat(grpc::ServerContext* context,
                                          const v1::HeartbeatRequest* request,
                                          v1::HeartbeatResponse* response) {
  if (grpc::Status denied = guard_.Check(context); !denied.ok()) return denied;
  std::vector<std::string> shards(request->shard_ids().begin(), request->shard_ids().end());
  response->set_reregister(
      !workers_->Heartbeat(request->worker_id(), std::move(shards), request->rss_bytes(),
                           absl::Now()));
  return grpc::Status::OK;
}

}  // namespace knncluster::coordinator
