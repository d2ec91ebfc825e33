// The cluster engine: models live on a coordinator, named; data is uploaded once (built-in
// datasets under their own name, files under their stem plus a content hash) and split there.
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/engine.h"
#include "client/cpp/knn_client.h"
#include "core/base/crc32.h"
#include "core/base/status_macros.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "client/cli/commands.h"
#include "google/protobuf/util/json_util.h"
#include "rpc/convert.h"
#include "rpc/grid_convert.h"

namespace knncluster::cli {
namespace {

// How often the coordinator reports a running search's progress to us (the bar's refresh rate;
// plain progress lines are throttled further by the printer).
constexpr uint32_t kWatchIntervalMs = 250;

GridSearchStatus StatusFrom(const v1::GridSearchInfo& info) {
  GridSearchStatus s;
  s.id = info.id();
  s.state = std::string(absl::StripPrefix(v1::GridSearchState_Name(info.state()), "GRID_SEARCH_"));
  s.dataset = info.dataset();
  s.task = absl::AsciiStrToLower(absl::StripPrefix(v1::Task_Name(info.task()), "TASK_"));
  s.mode = absl::AsciiStrToLower(
      absl::StripPrefix(v1::GridSearchMode_Name(info.mode()), "GRID_SEARCH_MODE_"));
  s.scoring = info.scoring();
  s.refit_model = info.refit_model();
  s.error = info.error();
  s.n_candidates = info.n_candidates();
  s.n_splits = info.n_splits();
  s.jobs_total = info.jobs_total();
  s.jobs_done = info.jobs_done();
  s.jobs_requeued = info.jobs_requeued();
  s.neighbor_searches = info.neighbor_searches();
  s.elapsed_seconds = info.elapsed_seconds();
  s.eta_seconds = info.eta_seconds();
  s.started_unix_millis = info.started_unix_millis();
  return s;
}

absl::StatusOr<v1::GridSearchMode> ModeFrom(const std::string& mode) {
  if (mode == "auto") return v1::GRID_SEARCH_MODE_AUTO;
  if (mode == "replicated") return v1::GRID_SEARCH_MODE_REPLICATED;
  if (mode == "sharded") return v1::GRID_SEARCH_MODE_SHARDED;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode: expected auto, replicated or sharded, got \"", mode, "\""));
}

// A name for a file's rows on the cluster: its stem, sanitised, and a hash of its content, so
// the same data is uploaded once and a changed file never reuses stale rows.
std::string RemoteName(const DataSourceOptions& o, const Dataset& d) {
  if (!o.dataset.empty()) return o.dataset;
  std::string stem = std::filesystem::path(o.data_file).stem().string();
  for (char& c : stem) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    if (!ok) c = '_';
  }
  if (stem.size() > 80) stem.resize(80);
  uint32_t crc = ExtendCrc32(0, std::string_view(reinterpret_cast<const char*>(d.features.data()),
                                                 d.size() * d.dim() * sizeof(double)));
  crc = ExtendCrc32(crc, std::string_view(reinterpret_cast<const char*>(d.targets.data()),
                                          d.targets.size() * sizeof(double)));
  for (const auto& name : d.class_names) crc = ExtendCrc32(crc, name);
  return absl::StrFormat("%s-%08x", stem, crc);
}

class ClusterEngine final : public Engine {
 public:
  explicit ClusterEngine(const std::string& address) : address_(address) {
    client::ClientOptions options;
    options.address = address;
    client_ = client::KnnClient::Create(options);
  }

  std::string where() const override { return absl::StrCat("cluster ", address_); }

  absl::StatusOr<Selection> Select(const DataSourceOptions& options) override {
    KNN_ASSIGN_OR_RETURN(Dataset d, LoadSource(options));
    Selection s;
    KNN_ASSIGN_OR_RETURN(std::string base, EnsureUploaded(options, d));
    if (options.split == "all") {
      s.data = std::move(d);
      s.remote_name = base;
      return s;
    }
    if (options.split != "train" && options.split != "test") {
      return absl::InvalidArgumentError(
          absl::StrCat("--split: expected all, train or test, got \"", options.split, "\""));
    }
    KNN_ASSIGN_OR_RETURN(v1::SplitDatasetResponse split, RemoteSplit(options, base, false));
    const bool train = options.split == "train";
    // The same split computed here gives the rows' labels; it must agree with the server's.
    DataSourceOptions seeded = options;
    seeded.random_state = SeedFor(options);
    KNN_ASSIGN_OR_RETURN(TrainTestIndices local, SplitFor(seeded, static_cast<int64_t>(d.size())));
    const auto& info = train ? split.train() : split.test();
    const auto& rows = train ? local.train : local.test;
    if (info.rows() != rows.size()) {
      return absl::InternalError(absl::StrFormat(
          "the cluster's split of %s has %d %s rows, the local one %d", base, info.rows(),
          options.split, rows.size()));
    }
    s.data = Subset(d, rows);
    s.remote_name = info.name();
    return s;
  }

  absl::StatusOr<TrainTestIndices> Split(const DataSourceOptions& options) override {
    KNN_ASSIGN_OR_RETURN(Dataset d, LoadSource(options));
    KNN_ASSIGN_OR_RETURN(std::string base, EnsureUploaded(options, d));
    KNN_ASSIGN_OR_RETURN(v1::SplitDatasetResponse split, RemoteSplit(options, base, true));
    TrainTestIndices out;
    out.train.assign(split.train_indices().begin(), split.train_indices().end());
    out.test.assign(split.test_indices().begin(), split.test_indices().end());
    return out;
  }

  absl::StatusOr<ModelDesc> Fit(const std::string& model, const Selection& rows,
                                const FitSpec& spec) override {
    if (rows.remote_name.empty()) {
      return absl::InvalidArgumentError("dataset: fitting on the cluster needs an uploaded dataset");
    }
    v1::FitRequest request;
    request.set_model(model);
    request.set_dataset(rows.remote_name);
    request.set_task(rpc::ToProto(spec.task));
    rpc::ToProto(spec.params, request.mutable_params());
    if (spec.task == Model::Task::kOutlier) {
      request.set_contamination(spec.contamination);
      if (spec.threshold) request.set_threshold(*spec.threshold);
    }
    request.set_replace(true);
    KNN_ASSIGN_OR_RETURN(v1::ModelInfo info, client_->Fit(request));
    return FromInfo(info);
  }

  absl::StatusOr<ModelDesc> Describe(const std::string& model) override {
    KNN_ASSIGN_OR_RETURN(v1::ModelInfo info, client_->DescribeModel(model));
    return FromInfo(info);
  }

  absl::StatusOr<std::vector<double>> Predict(const ModelDesc& model,
                                              const Selection& rows) override {
    KNN_ASSIGN_OR_RETURN(v1::PredictResponse r, client_->Predict(model.model, QueriesOf(rows)));
    return std::vector<double>(r.predictions().begin(), r.predictions().end());
  }

  absl::StatusOr<Matrix> PredictProba(const ModelDesc& model, const Selection& rows) override {
    KNN_ASSIGN_OR_RETURN(v1::PredictProbaResponse r,
                         client_->PredictProba(model.model, QueriesOf(rows)));
    return rpc::FromProto(r.probabilities(), "probabilities");
  }

  absl::StatusOr<std::vector<double>> OutlierScores(const ModelDesc& model,
                                                    const Selection& rows) override {
    KNN_ASSIGN_OR_RETURN(v1::PredictResponse r, client_->Predict(model.model, QueriesOf(rows)));
    return std::vector<double>(r.scores().begin(), r.scores().end());
  }

  absl::StatusOr<KNeighborsResult> KNeighbors(const ModelDesc& model, const Selection& rows,
                                              std::optional<int> k) override {
    return client_->KNeighbors(model.model, QueriesOf(rows), k);
  }

  absl::StatusOr<RadiusResult> RadiusNeighbors(const ModelDesc&, const Selection&,
                                               double) override {
    return absl::UnimplementedError(
        "--radius: radius neighbours are answered in local mode only for now");
  }

  std::optional<double> ServerScore(const ModelDesc& model, const Selection& rows) override {
    if (rows.remote_name.empty()) return std::nullopt;
    auto r = client_->Score(model.model, client::KnnClient::DatasetQueries(rows.remote_name));
    if (!r.ok()) return std::nullopt;
    return r->score();
  }

  absl::Status Save(const ModelDesc& model, const std::string& path) override {
    KNN_ASSIGN_OR_RETURN(std::string bytes, client_->ExportModel(model.model));
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) return absl::DataLossError(absl::StrCat(path, ": cannot write the model file"));
    return absl::OkStatus();
  }

  absl::StatusOr<ModelDesc> Load(const std::string& path, const std::string& name) override {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the model file"));
    std::stringstream bytes;
    bytes << in.rdbuf();
    KNN_ASSIGN_OR_RETURN(v1::ModelInfo info, client_->ImportModel(name, bytes.str()));
    return FromInfo(info);
  }

  absl::Status Delete(const std::string& model) override { return client_->DeleteModel(model); }

  absl::StatusOr<GridSearchOutcome> GridSearch(const Selection& rows, const GridSearchSpec& spec,
                                               const GridSearchProgressFn& progress,
                                               client::CancelToken* detach) override {
    if (rows.remote_name.empty()) {
      return absl::InvalidArgumentError(
          "dataset: a grid search on the cluster needs an uploaded dataset");
    }
    v1::StartGridSearchRequest request;
    request.set_dataset(rows.remote_name);
    request.set_task(rpc::ToProto(spec.classifier ? Model::Task::kClassifier
                                                  : Model::Task::kRegressor));
    rpc::ToProto(spec.base, request.mutable_base());
    for (const ParamGrid& grid : spec.param_grid) {
      KNN_RETURN_IF_ERROR(rpc::ToProto(grid, request.add_param_grid()));
    }
    request.set_cv(static_cast<uint32_t>(spec.cv));
    request.set_shuffle(spec.shuffle);
    if (spec.random_state) request.set_random_state(*spec.random_state);
    for (const TrainTestIndices& fold : spec.folds) rpc::ToProto(fold, request.add_folds());
    if (spec.scoring) request.set_scoring(ScoringName(*spec.scoring));
    request.set_refit(spec.refit);
    if (spec.refit && !spec.refit_model.empty()) {
      request.set_refit_model(spec.refit_model);
      request.set_replace_refit_model(true);  // as `fit` replaces a model of the same name
    }
    KNN_ASSIGN_OR_RETURN(v1::GridSearchMode mode, ModeFrom(spec.mode));
    request.set_mode(mode);
    if (detach != nullptr && detach->cancelled()) {
      return absl::CancelledError("interrupted before the grid search started");
    }
    KNN_ASSIGN_OR_RETURN(v1::GridSearchInfo info, client_->StartGridSearch(request));
    if (progress) progress(StatusFrom(info));
    return Wait(info.id(), progress, detach);
  }

  absl::StatusOr<GridSearchOutcome> AttachGridSearch(const std::string& id,
                                                     const GridSearchProgressFn& progress,
                                                     client::CancelToken* detach) override {
    return Wait(id, progress, detach);
  }

  absl::StatusOr<GridSearchStatus> CancelGridSearch(const std::string& id) override {
    KNN_ASSIGN_OR_RETURN(v1::GridSearchInfo info, client_->CancelGridSearch(id));
    return StatusFrom(info);
  }

  absl::StatusOr<std::vector<GridSearchStatus>> ListGridSearches() override {
    KNN_ASSIGN_OR_RETURN(v1::ListGridSearchesResponse r, client_->ListGridSearches());
    std::vector<GridSearchStatus> out;
    for (const auto& info : r.searches()) out.push_back(StatusFrom(info));
    return out;
  }

 private:
  // Watches the search until it ends, then fetches its result.
  absl::StatusOr<GridSearchOutcome> Wait(const std::string& id,
                                         const GridSearchProgressFn& progress,
                                         client::CancelToken* detach) {
    GridSearchStatus last;
    KNN_RETURN_IF_ERROR(client_->WatchGridSearch(
        id, kWatchIntervalMs,
        [&](const v1::GridSearchInfo& info) {
          last = StatusFrom(info);
          if (progress) progress(last);
        },
        detach));
    if (last.state == "CANCELLED") {
      return absl::CancelledError(absl::StrCat("grid search ", id, " was cancelled"));
    }
    KNN_ASSIGN_OR_RETURN(v1::GridSearchResult r, client_->GetGridSearchResult(id));
    GridSearchOutcome out;
    out.status = StatusFrom(r.info());
    if (progress) progress(out.status);
    KNN_ASSIGN_OR_RETURN(out.cv_results, rpc::FromProto(r.cv_results(), "result.cv_results"));
    CvResults& cv = out.cv_results;
    if (r.best_index() >= cv.params.size()) {
      return absl::InternalError(absl::StrFormat(
          "result.best_index: %d is not a candidate (%d candidates)", r.best_index(),
          cv.params.size()));
    }
    cv.best_index = r.best_index();
    cv.best_score = r.best_score();
    KNN_ASSIGN_OR_RETURN(cv.best_params, rpc::FromProto(r.best_params(), "result.best_params"));
    KNN_ASSIGN_OR_RETURN(cv.scoring, rpc::ScoringFromName(r.info().scoring(),
                                                          r.info().task() != v1::TASK_REGRESSOR,
                                                          "result.info.scoring"));
    cv.neighbor_searches = r.info().neighbor_searches();
    out.refit_model = r.refit_model();
    return out;
  }

  static v1::Queries QueriesOf(const Selection& rows) {
    return rows.remote_name.empty() ? client::KnnClient::InlineQueries(rows.data.features)
                                    : client::KnnClient::DatasetQueries(rows.remote_name);
  }

  absl::StatusOr<std::string> EnsureUploaded(const DataSourceOptions& options, const Dataset& d) {
    const std::string name = RemoteName(options, d);
    auto info = client_->DescribeDataset(name);
    if (info.ok()) return name;
    if (info.status().code() != absl::StatusCode::kNotFound) return info.status();
    auto uploaded = client_->UploadDataset(name, d);
    // Another client may have uploaded it meanwhile; the content is the same either way.
    if (!uploaded.ok() && uploaded.status().code() != absl::StatusCode::kAlreadyExists) {
      return uploaded.status();
    }
    return name;
  }

  // The seed of a split: the user's, or one drawn once per command (a random split).
  uint32_t SeedFor(const DataSourceOptions& options) {
    if (options.random_state) return *options.random_state;
    if (!random_seed_) random_seed_ = std::random_device{}();
    return *random_seed_;
  }

  absl::StatusOr<v1::SplitDatasetResponse> RemoteSplit(const DataSourceOptions& options,
                                                       const std::string& base, bool indices) {
    KNN_ASSIGN_OR_RETURN(TestSize test_size, ParseTestSize(options.test_size));
    const uint32_t seed = SeedFor(options);
    v1::SplitDatasetRequest request;
    request.set_dataset(base);
    if (test_size.is_fraction()) {
      request.set_test_fraction(test_size.fraction());
    } else {
      request.set_test_count(static_cast<uint64_t>(test_size.count()));
    }
    request.set_random_state(seed);
    request.set_no_shuffle(!options.shuffle);
    // Views are named by their parameters, so the same split is made once and then reused.
    const std::string suffix = absl::StrCat(options.test_size, "-", options.shuffle ? seed : 0,
                                            options.shuffle ? "" : "-noshuffle");
    request.set_train_name(absl::StrCat(base, ".train-", suffix));
    request.set_test_name(absl::StrCat(base, ".test-", suffix));
    request.set_return_indices(indices);
    // `knnctl split` only wants the indices: nothing is stored.
    request.set_dry_run(indices);
    // A view of the same parameters is the same split: reuse it (a model fitted on it keeps it
    // in use, so it is never replaced).
    if (!indices) {
      auto train = client_->DescribeDataset(request.train_name());
      auto test = client_->DescribeDataset(request.test_name());
      if (train.ok() && test.ok()) {
        v1::SplitDatasetResponse existing;
        *existing.mutable_train() = *train;
        *existing.mutable_test() = *test;
        return existing;
      }
    }
    auto split = client_->SplitDataset(request);
    if (split.ok() || split.status().code() != absl::StatusCode::kAlreadyExists) return split;
    // Another client made the same views meanwhile.
    v1::SplitDatasetResponse existing;
    KNN_ASSIGN_OR_RETURN(*existing.mutable_train(), client_->DescribeDataset(request.train_name()));
    KNN_ASSIGN_OR_RETURN(*existing.mutable_test(), client_->DescribeDataset(request.test_name()));
    return existing;
  }

  static absl::StatusOr<ModelDesc> FromInfo(const v1::ModelInfo& info) {
    ModelDesc d;
    d.model = info.name();
    KNN_ASSIGN_OR_RETURN(d.task, rpc::FromProto(info.task(), "model.task"));
    KNN_ASSIGN_OR_RETURN(d.params, rpc::FromProto(info.params(), "model.params"));
    d.rows = info.rows();
    d.cols = info.cols();
    d.classes.assign(info.classes().begin(), info.classes().end());
    d.class_names.assign(info.class_names().begin(), info.class_names().end());
    if (info.has_threshold()) d.threshold = info.threshold();
    d.dataset = info.dataset();
    return d;
  }

  std::string address_;
  std::unique_ptr<client::KnnClient> client_;
  std::optional<uint32_t> random_seed_;
};

}  // namespace

absl::StatusOr<Output> RunClusterStatus(const std::string& address) {
  if (address.empty()) {
    return absl::FailedPreconditionError(
        "status: give --coordinator HOST:PORT (in local mode there is no cluster)");
  }
  client::ClientOptions options;
  options.address = address;
  options.deadline = std::chrono::milliseconds(10'000);
  auto client = client::KnnClient::Create(options);
  KNN_ASSIGN_OR_RETURN(v1::ClusterStatus status, client->GetClusterStatus());
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.always_print_primitive_fields = true;
  print.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(status, &json, print).ok()) {
    return absl::InternalError("status: cannot print the cluster status as JSON");
  }
  Output out;
  out.json = nlohmann::ordered_json::parse(json);
  size_t alive = 0;
  for (const auto& w : status.workers()) alive += w.state() == v1::WORKER_ALIVE;
  out.text = absl::StrFormat("coordinator %s: %d workers (%d alive), %d datasets, %d models\n",
                             address, status.workers_size(), alive, status.datasets_size(),
                             status.models_size());
  for (const auto& w : status.workers()) {
    absl::StrAppendFormat(&out.text, "  worker %s at %s: %s, %d shards, %d rows, %d MiB RSS\n",
                          w.worker_id(), w.address(),
                          w.state() == v1::WORKER_ALIVE ? "alive" : "DEAD", w.shard_ids_size(),
                          w.rows(), w.rss_bytes() >> 20);
  }
  for (const auto& d : status.datasets()) {
    absl::StrAppendFormat(&out.text, "  dataset %s: %d x %d%s\n", d.name(), d.rows(), d.cols(),
                          d.view_of().empty() ? "" : absl::StrCat(" (view of ", d.view_of(), ")"));
  }
  for (const auto& m : status.models()) {
    absl::StrAppendFormat(&out.text, "  model %s: fitted on %s, %d rows in %d shards\n", m.name(),
                          m.dataset(), m.rows(), m.shards_size());
  }
  return out;
}

std::unique_ptr<Engine> MakeClusterEngine(const std::string& address) {
  return std::make_unique<ClusterEngine>(address);
}

}  // namespace knncluster::cli
