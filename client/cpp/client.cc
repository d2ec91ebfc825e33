// The public client: KnnClient (the wire-level client) underneath, and conversions between the
// public types and the wire's. Where a conversion exists between the wire and the core
// (rpc/convert.h, rpc/grid_convert.h, which validate and name the field), the public value goes
// through the core type (client/cpp/core_convert.h) rather than being converted a second way.
#include "knncluster/client.h"

#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/cpp/core_convert.h"
#include "client/cpp/knn_client.h"
#include "core/base/status_macros.h"
#include "rpc/convert.h"
#include "rpc/grid_convert.h"

namespace knncluster::client {

std::string TaskName(Task task) { return ::knncluster::TaskName(ToCore(task)); }

std::string AlgorithmName(Algorithm algorithm) {
  NeighborsParams p;
  p.algorithm = algorithm;
  return ::knncluster::AlgorithmName(ToCore(p).algorithm);
}

std::string WeightsName(Weights weights) {
  NeighborsParams p;
  p.weights = weights;
  return ::knncluster::WeightsName(ToCore(p).weights);
}

std::string GridSearchModeName(GridSearchMode mode) {
  switch (mode) {
    case GridSearchMode::kAuto:
      return "auto";
    case GridSearchMode::kReplicated:
      return "replicated";
    case GridSearchMode::kSharded:
      return "sharded";
  }
  return "unknown";
}

std::string GridSearchStateName(GridSearchState state) {
  switch (state) {
    case GridSearchState::kQueued:
      return "QUEUED";
    case GridSearchState::kRunning:
      return "RUNNING";
    case GridSearchState::kRefitting:
      return "REFITTING";
    case GridSearchState::kSucceeded:
      return "SUCCEEDED";
    case GridSearchState::kFailed:
      return "FAILED";
    case GridSearchState::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

namespace {

// ---- Wire to public. Replies come from the coordinator; an enum value this client does not know
// (a newer server) is refused naming the field, as rpc/convert.h does.

absl::Status UnknownEnum(const std::string& field, int value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown value ", value));
}

absl::StatusOr<Labels> FromProto(v1::LabelKind k, const std::string& field) {
  switch (k) {
    case v1::LABELS_NONE:
      return Labels::kNone;
    case v1::LABELS_NUMERIC:
      return Labels::kNumeric;
    case v1::LABELS_STRING:
      return Labels::kString;
    default:
      return UnknownEnum(field, k);
  }
}

absl::StatusOr<Task> FromProto(v1::Task t, const std::string& field) {
  KNN_ASSIGN_OR_RETURN(Model::Task task, rpc::FromProto(t, field));
  return FromCore(task);
}

absl::StatusOr<NeighborsParams> FromProto(const v1::NeighborsParams& p, const std::string& field) {
  KNN_ASSIGN_OR_RETURN(::knncluster::NeighborsParams params, rpc::FromProto(p, field));
  return FromCore(params);
}

absl::StatusOr<DatasetInfo> FromProto(const v1::DatasetInfo& d, const std::string& field) {
  DatasetInfo out;
  out.name = d.name();
  out.rows = d.rows();
  out.cols = d.cols();
  KNN_ASSIGN_OR_RETURN(out.labels, FromProto(d.labels(), field + ".labels"));
  out.class_names.assign(d.class_names().begin(), d.class_names().end());
  out.view_of = d.view_of();
  out.feature_names.assign(d.feature_names().begin(), d.feature_names().end());
  return out;
}

absl::StatusOr<ModelInfo> FromProto(const v1::ModelInfo& m, const std::string& field) {
  ModelInfo out;
  out.name = m.name();
  KNN_ASSIGN_OR_RETURN(out.task, FromProto(m.task(), field + ".task"));
  KNN_ASSIGN_OR_RETURN(out.params, FromProto(m.params(), field + ".params"));
  out.dataset = m.dataset();
  out.rows = m.rows();
  out.cols = m.cols();
  for (const auto& s : m.shards()) {
    out.shards.push_back(ShardPlacement{s.shard_id(), s.worker_id(), s.rows(),
                                        s.first_global_index(),
                                        {s.replica_worker_ids().begin(),
                                         s.replica_worker_ids().end()}});
  }
  out.replication = m.replication();
  out.classes.assign(m.classes().begin(), m.classes().end());
  out.class_names.assign(m.class_names().begin(), m.class_names().end());
  if (m.has_threshold()) out.threshold = m.threshold();
  return out;
}

absl::StatusOr<WorkerInfo> FromProto(const v1::WorkerInfo& w, const std::string& field) {
  WorkerInfo out;
  out.worker_id = w.worker_id();
  out.address = w.address();
  switch (w.state()) {
    case v1::WORKER_ALIVE:
      out.state = WorkerState::kAlive;
      break;
    case v1::WORKER_DEAD:
      out.state = WorkerState::kDead;
      break;
    default:
      return UnknownEnum(field + ".state", w.state());
  }
  out.millis_since_heartbeat = w.millis_since_heartbeat();
  out.shard_ids.assign(w.shard_ids().begin(), w.shard_ids().end());
  out.rows = w.rows();
  out.rss_bytes = w.rss_bytes();
  out.memory_budget_bytes = w.memory_budget_bytes();
  out.cores = w.cores();
  return out;
}

absl::StatusOr<GridSearchInfo> FromProto(const v1::GridSearchInfo& g, const std::string& field) {
  GridSearchInfo out;
  out.id = g.id();
  switch (g.state()) {
    case v1::GRID_SEARCH_QUEUED:
      out.state = GridSearchState::kQueued;
      break;
    case v1::GRID_SEARCH_RUNNING:
      out.state = GridSearchState::kRunning;
      break;
    case v1::GRID_SEARCH_REFITTING:
      out.state = GridSearchState::kRefitting;
      break;
    case v1::GRID_SEARCH_SUCCEEDED:
      out.state = GridSearchState::kSucceeded;
      break;
    case v1::GRID_SEARCH_FAILED:
      out.state = GridSearchState::kFailed;
      break;
    case v1::GRID_SEARCH_CANCELLED:
      out.state = GridSearchState::kCancelled;
      break;
    default:
      return UnknownEnum(field + ".state", g.state());
  }
  out.dataset = g.dataset();
  KNN_ASSIGN_OR_RETURN(out.task, FromProto(g.task(), field + ".task"));
  switch (g.mode()) {
    case v1::GRID_SEARCH_MODE_AUTO:
      out.mode = GridSearchMode::kAuto;
      break;
    case v1::GRID_SEARCH_MODE_REPLICATED:
      out.mode = GridSearchMode::kReplicated;
      break;
    case v1::GRID_SEARCH_MODE_SHARDED:
      out.mode = GridSearchMode::kSharded;
      break;
    default:
      return UnknownEnum(field + ".mode", g.mode());
  }
  out.scoring = g.scoring();
  out.n_candidates = g.n_candidates();
  out.n_splits = g.n_splits();
  out.jobs_total = g.jobs_total();
  out.jobs_done = g.jobs_done();
  out.jobs_requeued = g.jobs_requeued();
  out.neighbor_searches = g.neighbor_searches();
  out.dataset_transfers = g.dataset_transfers();
  out.elapsed_seconds = g.elapsed_seconds();
  out.eta_seconds = g.eta_seconds();
  out.started_unix_millis = g.started_unix_millis();
  out.refit_model = g.refit_model();
  out.error = g.error();
  return out;
}

absl::StatusOr<GridSearchResult> FromProto(const v1::GridSearchResult& r) {
  GridSearchResult out;
  KNN_ASSIGN_OR_RETURN(out.info, FromProto(r.info(), "result.info"));
  KNN_ASSIGN_OR_RETURN(::knncluster::CvResults cv,
                       rpc::FromProto(r.cv_results(), "result.cv_results"));
  out.cv_results = FromCore(cv);
  if (r.best_index() >= out.cv_results.params.size()) {
    return absl::InvalidArgumentError(absl::StrCat("result.best_index: ", r.best_index(),
                                                   " is not a candidate (",
                                                   out.cv_results.params.size(), " candidates)"));
  }
  out.best_index = r.best_index();
  out.best_score = r.best_score();
  KNN_ASSIGN_OR_RETURN(out.best_params, FromProto(r.best_params(), "result.best_params"));
  out.refit_model = r.refit_model();
  out.classes.assign(r.classes().begin(), r.classes().end());
  out.class_names.assign(r.class_names().begin(), r.class_names().end());
  return out;
}

// ---- Public to wire. Requests are the caller's: a bad value is refused before anything is sent.

v1::LabelKind ToProto(Labels l) {
  switch (l) {
    case Labels::kNone:
      return v1::LABELS_NONE;
    case Labels::kNumeric:
      return v1::LABELS_NUMERIC;
    case Labels::kString:
      return v1::LABELS_STRING;
  }
  return v1::LABELS_NONE;
}

v1::GridSearchMode ToProto(GridSearchMode m) {
  switch (m) {
    case GridSearchMode::kAuto:
      return v1::GRID_SEARCH_MODE_AUTO;
    case GridSearchMode::kReplicated:
      return v1::GRID_SEARCH_MODE_REPLICATED;
    case GridSearchMode::kSharded:
      return v1::GRID_SEARCH_MODE_SHARDED;
  }
  return v1::GRID_SEARCH_MODE_AUTO;
}

absl::StatusOr<v1::Queries> ToProto(const Queries& q) {
  if (!q.dataset.empty()) {
    if (!q.rows.empty()) {
      return absl::InvalidArgumentError("queries: a dataset name or inline rows, not both");
    }
    return KnnClient::DatasetQueries(q.dataset);
  }
  if (q.cols == 0 || q.rows.size() % q.cols != 0) {
    return absl::InvalidArgumentError(absl::StrCat("queries: ", q.rows.size(),
                                                   " values do not make rows of ", q.cols,
                                                   " columns (and no dataset is named)"));
  }
  return KnnClient::InlineQueries(MatrixView(q.rows.data(), q.rows.size() / q.cols, q.cols));
}

v1::DatasetInfo ToProto(const DatasetInfo& d) {
  v1::DatasetInfo out;
  out.set_name(d.name);
  out.set_rows(d.rows);
  out.set_cols(d.cols);
  out.set_labels(ToProto(d.labels));
  for (const auto& n : d.class_names) out.add_class_names(n);
  out.set_view_of(d.view_of);
  for (const auto& n : d.feature_names) out.add_feature_names(n);
  return out;
}

v1::ModelInfo ToProto(const ModelInfo& m) {
  v1::ModelInfo out;
  out.set_name(m.name);
  out.set_task(rpc::ToProto(ToCore(m.task)));
  rpc::ToProto(ToCore(m.params), out.mutable_params());
  out.set_dataset(m.dataset);
  out.set_rows(m.rows);
  out.set_cols(m.cols);
  for (const auto& s : m.shards) {
    v1::ShardPlacement* p = out.add_shards();
    p->set_shard_id(s.shard_id);
    p->set_worker_id(s.worker_id);
    p->set_rows(s.rows);
    p->set_first_global_index(s.first_global_index);
    for (const std::string& w : s.replica_worker_ids) p->add_replica_worker_ids(w);
  }
  out.set_replication(m.replication);
  out.mutable_classes()->Assign(m.classes.begin(), m.classes.end());
  for (const auto& n : m.class_names) out.add_class_names(n);
  if (m.threshold) out.set_threshold(*m.threshold);
  return out;
}

v1::WorkerInfo ToProto(const WorkerInfo& w) {
  v1::WorkerInfo out;
  out.set_worker_id(w.worker_id);
  out.set_address(w.address);
  out.set_state(w.state == WorkerState::kDead ? v1::WORKER_DEAD : v1::WORKER_ALIVE);
  out.set_millis_since_heartbeat(w.millis_since_heartbeat);
  for (const auto& s : w.shard_ids) out.add_shard_ids(s);
  out.set_rows(w.rows);
  out.set_rss_bytes(w.rss_bytes);
  out.set_cores(w.cores);
  out.set_memory_budget_bytes(w.memory_budget_bytes);
  return out;
}

}  // namespace

std::string ClusterStatusToJson(const ClusterStatus& status) {
  v1::ClusterStatus proto;
  for (const auto& w : status.workers) *proto.add_workers() = ToProto(w);
  for (const auto& d : status.datasets) *proto.add_datasets() = ToProto(d);
  for (const auto& m : status.models) *proto.add_models() = ToProto(m);
  google::protobuf::util::JsonPrintOptions print;
  print.always_print_primitive_fields = true;
  print.preserve_proto_field_names = true;
  std::string json;
  // Printing a message this library built cannot fail (no Any fields, no unknown enums).
  (void)google::protobuf::util::MessageToJsonString(proto, &json, print);
  return json;
}

// ---- Client ------------------------------------------------------------------------------------

class Client::Impl {
 public:
  explicit Impl(std::unique_ptr<KnnClient> wire) : wire_(std::move(wire)) {}
  KnnClient& wire() { return *wire_; }

 private:
  const std::unique_ptr<KnnClient> wire_;
};

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  KNN_ASSIGN_OR_RETURN(std::unique_ptr<KnnClient> wire, KnnClient::Connect(options));
  return std::unique_ptr<Client>(new Client(std::make_unique<Impl>(std::move(wire))));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::StatusOr<DatasetInfo> Client::UploadDataset(const std::string& name, const DatasetView& data,
                                                  bool replace) {
  KNN_ASSIGN_OR_RETURN(v1::DatasetInfo info, impl_->wire().UploadDataset(name, data, replace));
  return FromProto(info, "dataset");
}

absl::StatusOr<DatasetInfo> Client::DescribeDataset(const std::string& name) {
  KNN_ASSIGN_OR_RETURN(v1::DatasetInfo info, impl_->wire().DescribeDataset(name));
  return FromProto(info, "dataset");
}

absl::StatusOr<std::vector<DatasetInfo>> Client::ListDatasets() {
  KNN_ASSIGN_OR_RETURN(v1::ListDatasetsResponse r, impl_->wire().ListDatasets());
  std::vector<DatasetInfo> out;
  for (int i = 0; i < r.datasets_size(); ++i) {
    KNN_ASSIGN_OR_RETURN(DatasetInfo d,
                         FromProto(r.datasets(i), absl::StrCat("datasets[", i, "]")));
    out.push_back(std::move(d));
  }
  return out;
}

absl::Status Client::DeleteDataset(const std::string& name) {
  return impl_->wire().DeleteDataset(name);
}

absl::StatusOr<SplitResult> Client::SplitDataset(const SplitRequest& request) {
  v1::SplitDatasetRequest proto;
  proto.set_dataset(request.dataset);
  if (request.test_fraction && request.test_count) {
    return absl::InvalidArgumentError("test_fraction, test_count: give one, not both");
  }
  if (request.test_fraction) proto.set_test_fraction(*request.test_fraction);
  if (request.test_count) proto.set_test_count(*request.test_count);
  if (request.random_state) proto.set_random_state(*request.random_state);
  proto.set_no_shuffle(!request.shuffle);
  proto.set_train_name(request.train_name);
  proto.set_test_name(request.test_name);
  proto.set_return_indices(request.return_indices);
  proto.set_replace(request.replace);
  proto.set_dry_run(request.dry_run);
  KNN_ASSIGN_OR_RETURN(v1::SplitDatasetResponse r, impl_->wire().SplitDataset(proto));
  SplitResult out;
  KNN_ASSIGN_OR_RETURN(out.train, FromProto(r.train(), "train"));
  KNN_ASSIGN_OR_RETURN(out.test, FromProto(r.test(), "test"));
  out.train_indices.assign(r.train_indices().begin(), r.train_indices().end());
  out.test_indices.assign(r.test_indices().begin(), r.test_indices().end());
  return out;
}

absl::StatusOr<ModelInfo> Client::Fit(const FitRequest& request) {
  v1::FitRequest proto;
  proto.set_model(request.model);
  proto.set_dataset(request.dataset);
  proto.set_task(rpc::ToProto(ToCore(request.task)));
  rpc::ToProto(ToCore(request.params), proto.mutable_params());
  if (request.contamination) proto.set_contamination(*request.contamination);
  if (request.threshold) proto.set_threshold(*request.threshold);
  proto.set_replace(request.replace);
  KNN_ASSIGN_OR_RETURN(v1::ModelInfo info, impl_->wire().Fit(proto));
  return FromProto(info, "model");
}

absl::StatusOr<Predictions> Client::Predict(const std::string& model, const Queries& queries) {
  KNN_ASSIGN_OR_RETURN(v1::Queries q, ToProto(queries));
  KNN_ASSIGN_OR_RETURN(v1::PredictResponse r, impl_->wire().Predict(model, q));
  Predictions out;
  out.predictions.assign(r.predictions().begin(), r.predictions().end());
  out.labels.assign(r.labels().begin(), r.labels().end());
  out.scores.assign(r.scores().begin(), r.scores().end());
  if (r.has_threshold()) out.threshold = r.threshold();
  out.missing_shards.assign(r.missing_shards().begin(), r.missing_shards().end());
  return out;
}

absl::StatusOr<Probabilities> Client::PredictProba(const std::string& model,
                                                   const Queries& queries) {
  KNN_ASSIGN_OR_RETURN(v1::Queries q, ToProto(queries));
  KNN_ASSIGN_OR_RETURN(v1::PredictProbaResponse r, impl_->wire().PredictProba(model, q));
  KNN_ASSIGN_OR_RETURN(Matrix m, rpc::FromProto(r.probabilities(), "probabilities"));
  Probabilities out;
  out.classes.assign(r.classes().begin(), r.classes().end());
  out.class_names.assign(r.class_names().begin(), r.class_names().end());
  out.rows = m.rows();
  out.cols = m.cols();
  out.values = m.values();
  out.missing_shards.assign(r.missing_shards().begin(), r.missing_shards().end());
  return out;
}

absl::StatusOr<Neighbors> Client::KNeighbors(const std::string& model, const Queries& queries,
                                             std::optional<int> k) {
  KNN_ASSIGN_OR_RETURN(v1::Queries q, ToProto(queries));
  std::vector<std::string> missing;
  KNN_ASSIGN_OR_RETURN(KNeighborsResult r, impl_->wire().KNeighbors(model, q, k, &missing));
  Neighbors out = FromCore(r);
  out.missing_shards = std::move(missing);
  return out;
}

absl::StatusOr<ScoreResult> Client::Score(const std::string& model, const Queries& queries,
                                          absl::Span<const double> labels) {
  KNN_ASSIGN_OR_RETURN(v1::Queries q, ToProto(queries));
  KNN_ASSIGN_OR_RETURN(v1::ScoreResponse r, impl_->wire().Score(model, q, labels));
  return ScoreResult{r.score(), r.metric(), r.n_samples(), r.n_correct(),
                     {r.missing_shards().begin(), r.missing_shards().end()}};
}

absl::StatusOr<std::string> Client::ExportModel(const std::string& model) {
  return impl_->wire().ExportModel(model);
}

absl::StatusOr<ModelInfo> Client::ImportModel(const std::string& model, const std::string& bytes) {
  KNN_ASSIGN_OR_RETURN(v1::ModelInfo info, impl_->wire().ImportModel(model, bytes));
  return FromProto(info, "model");
}

absl::StatusOr<ModelInfo> Client::DescribeModel(const std::string& model) {
  KNN_ASSIGN_OR_RETURN(v1::ModelInfo info, impl_->wire().DescribeModel(model));
  return FromProto(info, "model");
}

absl::StatusOr<std::vector<ModelInfo>> Client::ListModels() {
  KNN_ASSIGN_OR_RETURN(v1::ListModelsResponse r, impl_->wire().ListModels());
  std::vector<ModelInfo> out;
  for (int i = 0; i < r.models_size(); ++i) {
    KNN_ASSIGN_OR_RETURN(ModelInfo m, FromProto(r.models(i), absl::StrCat("models[", i, "]")));
    out.push_back(std::move(m));
  }
  return out;
}

absl::Status Client::DeleteModel(const std::string& model) {
  return impl_->wire().DeleteModel(model);
}

absl::StatusOr<GridSearchInfo> Client::StartGridSearch(const GridSearchRequest& request) {
  v1::StartGridSearchRequest proto;
  proto.set_dataset(request.dataset);
  proto.set_task(rpc::ToProto(ToCore(request.task)));
  rpc::ToProto(ToCore(request.base), proto.mutable_base());
  for (const ParamGrid& grid : request.param_grid) {
    KNN_RETURN_IF_ERROR(rpc::ToProto(ToCore(grid), proto.add_param_grid()));
  }
  if (request.cv < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cv: must be >= 2, got ", request.cv));
  }
  proto.set_cv(static_cast<uint32_t>(request.cv));
  proto.set_shuffle(request.shuffle);
  if (request.random_state) proto.set_random_state(*request.random_state);
  for (const Fold& fold : request.folds) rpc::ToProto(ToCore(fold), proto.add_folds());
  proto.set_scoring(request.scoring);
  proto.set_refit(request.refit);
  proto.set_refit_model(request.refit_model);
  proto.set_replace_refit_model(request.replace_refit_model);
  proto.set_mode(ToProto(request.mode));
  KNN_ASSIGN_OR_RETURN(v1::GridSearchInfo info, impl_->wire().StartGridSearch(proto));
  return FromProto(info, "info");
}

absl::Status Client::WatchGridSearch(const std::string& id, std::chrono::milliseconds interval,
                                     const std::function<void(const GridSearchInfo&)>& on_info,
                                     CancelToken* cancel) {
  // A report this client cannot read (an enum of a newer server) ends the reports; the watch
  // returns its error once the stream ends.
  absl::Status bad_reply;
  const auto count = interval.count();
  const uint32_t interval_ms = count < 0            ? 0
                               : count > UINT32_MAX ? UINT32_MAX
                                                    : static_cast<uint32_t>(count);
  absl::Status s = impl_->wire().WatchGridSearch(
      id, interval_ms,
      [&](const v1::GridSearchInfo& proto) {
        if (!bad_reply.ok()) return;
        auto info = FromProto(proto, "info");
        if (!info.ok()) {
          bad_reply = info.status();
          return;
        }
        on_info(*info);
      },
      cancel);
  return bad_reply.ok() ? s : bad_reply;
}

absl::StatusOr<GridSearchInfo> Client::CancelGridSearch(const std::string& id) {
  KNN_ASSIGN_OR_RETURN(v1::GridSearchInfo info, impl_->wire().CancelGridSearch(id));
  return FromProto(info, "info");
}

absl::StatusOr<std::vector<GridSearchInfo>> Client::ListGridSearches() {
  KNN_ASSIGN_OR_RETURN(v1::ListGridSearchesResponse r, impl_->wire().ListGridSearches());
  std::vector<GridSearchInfo> out;
  for (int i = 0; i < r.searches_size(); ++i) {
    KNN_ASSIGN_OR_RETURN(GridSearchInfo g,
                         FromProto(r.searches(i), absl::StrCat("searches[", i, "]")));
    out.push_back(std::move(g));
  }
  return out;
}

absl::StatusOr<GridSearchResult> Client::GetGridSearchResult(const std::string& id) {
  KNN_ASSIGN_OR_RETURN(v1::GridSearchResult r, impl_->wire().GetGridSearchResult(id));
  return FromProto(r);
}

absl::StatusOr<ClusterStatus> Client::GetClusterStatus() {
  KNN_ASSIGN_OR_RETURN(v1::ClusterStatus r, impl_->wire().GetClusterStatus());
  ClusterStatus out;
  for (int i = 0; i < r.workers_size(); ++i) {
    KNN_ASSIGN_OR_RETURN(WorkerInfo w, FromProto(r.workers(i), absl::StrCat("workers[", i, "]")));
    out.workers.push_back(std::move(w));
  }
  for (int i = 0; i < r.datasets_size(); ++i) {
    KNN_ASSIGN_OR_RETURN(DatasetInfo d,
                         FromProto(r.datasets(i), absl::StrCat("datasets[", i, "]")));
    out.datasets.push_back(std::move(d));
  }
  for (int i = 0; i < r.models_size(); ++i) {
    KNN_ASSIGN_OR_RETURN(ModelInfo m, FromProto(r.models(i), absl::StrCat("models[", i, "]")));
    out.models.push_back(std::move(m));
  }
  return out;
}

absl::StatusOr<Dataset> LoadDigits() {
  KNN_ASSIGN_OR_RETURN(::knncluster::Dataset d, ::knncluster::LoadDigits());
  return FromCore(d);
}

}  // namespace knncluster::client
