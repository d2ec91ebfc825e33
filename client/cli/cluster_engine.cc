// The cluster engine: models live on a coordinator, named; data is uploaded once (built-in
// datasets under their own name, files under their stem plus a content hash) and split there.
// It reaches the coordinator through the public C++ client library (<knncluster/client.h>), as
// any other program does, and converts its values to the core types the commands work on.
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/commands.h"
#include "client/cli/engine.h"
#include "client/cpp/core_convert.h"
#include "core/base/crc32.h"
#include "core/base/status_macros.h"
#include "knncluster/client.h"

namespace knncluster::cli {
namespace {

// How often the coordinator reports a running search's progress to us (the bar's refresh rate;
// plain progress lines are throttled further by the printer).
constexpr uint32_t kWatchIntervalMs = 250;

GridSearchStatus StatusFrom(const client::GridSearchInfo& info) {
  GridSearchStatus s;
  s.id = info.id;
  s.state = client::GridSearchStateName(info.state);
  s.dataset = info.dataset;
  s.task = client::TaskName(info.task);
  s.mode = client::GridSearchModeName(info.mode);
  s.scoring = info.scoring;
  s.refit_model = info.refit_model;
  s.error = info.error;
  s.n_candidates = info.n_candidates;
  s.n_splits = info.n_splits;
  s.jobs_total = info.jobs_total;
  s.jobs_done = info.jobs_done;
  s.jobs_requeued = info.jobs_requeued;
  s.neighbor_searches = info.neighbor_searches;
  s.elapsed_seconds = info.elapsed_seconds;
  s.eta_seconds = info.eta_seconds;
  s.started_unix_millis = info.started_unix_millis;
  return s;
}

absl::StatusOr<client::GridSearchMode> ModeFrom(const std::string& mode) {
  if (mode == "auto") return client::GridSearchMode::kAuto;
  if (mode == "replicated") return client::GridSearchMode::kReplicated;
  if (mode == "sharded") return client::GridSearchMode::kSharded;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode: expected auto, replicated or sharded, got \"", mode, "\""));
}

// The scoring a finished search reports (the server resolves the default).
absl::StatusOr<Scoring> ScoringOf(const client::GridSearchInfo& info) {
  const bool classifier = info.task != client::Task::kRegressor;
  if (info.scoring.empty()) return classifier ? Scoring::kAccuracy : Scoring::kR2;
  auto s = ParseScoring(info.scoring);
  if (!s.ok() || IsClassifierScoring(*s) != classifier) {
    return absl::InternalError(absl::StrFormat("result.info.scoring: \"%s\" does not fit a %s",
                                               info.scoring, client::TaskName(info.task)));
  }
  return *s;
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
  explicit ClusterEngine(const client::ClientOptions& options) : address_(options.address) {
    // Create fails only on bad TLS or token options; their error is every command's.
    auto c = client::Client::Create(options);
    setup_ = c.status();
    if (c.ok()) client_ = *std::move(c);
  }

  std::string where() const override { return absl::StrCat("cluster ", address_); }

  absl::StatusOr<Selection> Select(const DataSourceOptions& options) override {
    KNN_RETURN_IF_ERROR(setup_);
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
    KNN_ASSIGN_OR_RETURN(client::SplitResult split, RemoteSplit(options, base, false));
    const bool train = options.split == "train";
    // The same split computed here gives the rows' labels; it must agree with the server's.
    DataSourceOptions seeded = options;
    seeded.random_state = SeedFor(options);
    KNN_ASSIGN_OR_RETURN(TrainTestIndices local, SplitFor(seeded, static_cast<int64_t>(d.size())));
    const client::DatasetInfo& info = train ? split.train : split.test;
    const auto& rows = train ? local.train : local.test;
    if (info.rows != rows.size()) {
      return absl::InternalError(
          absl::StrFormat("the cluster's split of %s has %d %s rows, the local one %d", base,
                          info.rows, options.split, rows.size()));
    }
    s.data = Subset(d, rows);
    s.remote_name = info.name;
    return s;
  }

  absl::StatusOr<TrainTestIndices> Split(const DataSourceOptions& options) override {
    KNN_RETURN_IF_ERROR(setup_);
    KNN_ASSIGN_OR_RETURN(Dataset d, LoadSource(options));
    KNN_ASSIGN_OR_RETURN(std::string base, EnsureUploaded(options, d));
    KNN_ASSIGN_OR_RETURN(client::SplitResult split, RemoteSplit(options, base, true));
    TrainTestIndices out;
    out.train = std::move(split.train_indices);
    out.test = std::move(split.test_indices);
    return out;
  }

  absl::StatusOr<ModelDesc> Fit(const std::string& model, const Selection& rows,
                                const FitSpec& spec) override {
    KNN_RETURN_IF_ERROR(setup_);
    if (rows.remote_name.empty()) {
      return absl::InvalidArgumentError(
          "dataset: fitting on the cluster needs an uploaded dataset");
    }
    client::FitRequest request;
    request.model = model;
    request.dataset = rows.remote_name;
    request.task = client::FromCore(spec.task);
    request.params = client::FromCore(spec.params);
    if (spec.task == Model::Task::kOutlier) {
      request.contamination = spec.contamination;
      request.threshold = spec.threshold;
    }
    request.replace = true;
    KNN_ASSIGN_OR_RETURN(client::ModelInfo info, client_->Fit(request));
    return FromInfo(info);
  }

  absl::StatusOr<ModelDesc> Describe(const std::string& model) override {
    KNN_RETURN_IF_ERROR(setup_);
    KNN_ASSIGN_OR_RETURN(client::ModelInfo info, client_->DescribeModel(model));
    return FromInfo(info);
  }

  absl::StatusOr<std::vector<double>> Predict(const ModelDesc& model,
                                              const Selection& rows) override {
    KNN_RETURN_IF_ERROR(setup_);
    KNN_ASSIGN_OR_RETURN(client::Predictions r, client_->Predict(model.model, QueriesOf(rows)));
    return std::move(r.predictions);
  }

  absl::StatusOr<Matrix> PredictProba(const ModelDesc& model, const Selection& rows) override {
    KNN_RETURN_IF_ERROR(setup_);
    KNN_ASSIGN_OR_RETURN(client::Probabilities r,
                         client_->PredictProba(model.model, QueriesOf(rows)));
    return Matrix(r.rows, r.cols, std::move(r.values));
  }

  absl::StatusOr<std::vector<double>> OutlierScores(const ModelDesc& model,
                                                    const Selection& rows) override {
    KNN_RETURN_IF_ERROR(setup_);
    KNN_ASSIGN_OR_RETURN(client::Predictions r, client_->Predict(model.model, QueriesOf(rows)));
    return std::move(r.scores);
  }

  absl::StatusOr<KNeighborsResult> KNeighbors(const ModelDesc& model, const Selection& rows,
                                              std::optional<int> k) override {
    KNN_RETURN_IF_ERROR(setup_);
    KNN_ASSIGN_OR_RETURN(client::Neighbors r, client_->KNeighbors(model.model, QueriesOf(rows), k));
    return client::ToCore(r);
  }

  absl::StatusOr<RadiusResult> RadiusNeighbors(const ModelDesc&, const Selection&,
                                               double) override {
    return absl::UnimplementedError(
        "--radius: radius neighbours are answered in local mode only for now");
  }

  std::optional<double> ServerScore(const ModelDesc& model, const Selection& rows) override {
    if (!setup_.ok() || rows.remote_name.empty()) return std::nullopt;
    auto r = client_->Score(model.model, client::Queries::OfDataset(rows.remote_name));
    if (!r.ok()) return std::nullopt;
    return r->score;
  }

  absl::Status Save(const ModelDesc& model, const std::string& path) override {
    KNN_RETURN_IF_ERROR(setup_);
    KNN_ASSIGN_OR_RETURN(std::string bytes, client_->ExportModel(model.model));
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) return absl::DataLossError(absl::StrCat(path, ": cannot write the model file"));
    return absl::OkStatus();
  }

  absl::StatusOr<ModelDesc> Load(const std::string& path, const std::string& name) override {
    KNN_RETURN_IF_ERROR(setup_);
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the model file"));
    std::stringstream bytes;
    bytes << in.rdbuf();
    KNN_ASSIGN_OR_RETURN(client::ModelInfo info, client_->ImportModel(name, bytes.str()));
    return FromInfo(info);
  }

  absl::Status Delete(const std::string& model) override {
    KNN_RETURN_IF_ERROR(setup_);
    return client_->DeleteModel(model);
  }

  absl::StatusOr<GridSearchOutcome> GridSearch(const Selection& rows, const GridSearchSpec& spec,
                                               const GridSearchProgressFn& progress,
                                               client::CancelToken* detach) override {
    KNN_RETURN_IF_ERROR(setup_);
    if (rows.remote_name.empty()) {
      return absl::InvalidArgumentError(
          "dataset: a grid search on the cluster needs an uploaded dataset");
    }
    client::GridSearchRequest request;
    request.dataset = rows.remote_name;
    request.task = spec.classifier ? client::Task::kClassifier : client::Task::kRegressor;
    request.base = client::FromCore(spec.base);
    for (const ParamGrid& grid : spec.param_grid) {
      request.param_grid.push_back(client::FromCore(grid));
    }
    request.cv = spec.cv;
    request.shuffle = spec.shuffle;
    request.random_state = spec.random_state;
    for (const TrainTestIndices& fold : spec.folds) {
      request.folds.push_back(client::FromCore(fold));
    }
    if (spec.scoring) request.scoring = ScoringName(*spec.scoring);
    request.refit = spec.refit;
    if (spec.refit && !spec.refit_model.empty()) {
      request.refit_model = spec.refit_model;
      request.replace_refit_model = true;  // as `fit` replaces a model of the same name
    }
    KNN_ASSIGN_OR_RETURN(request.mode, ModeFrom(spec.mode));
    if (detach != nullptr && detach->cancelled()) {
      return absl::CancelledError("interrupted before the grid search started");
    }
    KNN_ASSIGN_OR_RETURN(client::GridSearchInfo info, client_->StartGridSearch(request));
    if (progress) progress(StatusFrom(info));
    return Wait(info.id, progress, detach);
  }

  absl::StatusOr<GridSearchOutcome> AttachGridSearch(const std::string& id,
                                                     const GridSearchProgressFn& progress,
                                                     client::CancelToken* detach) override {
    KNN_RETURN_IF_ERROR(setup_);
    return Wait(id, progress, detach);
  }

  absl::StatusOr<GridSearchStatus> CancelGridSearch(const std::string& id) override {
    KNN_RETURN_IF_ERROR(setup_);
    KNN_ASSIGN_OR_RETURN(client::GridSearchInfo info, client_->CancelGridSearch(id));
    return StatusFrom(info);
  }

  absl::StatusOr<std::vector<GridSearchStatus>> ListGridSearches() override {
    KNN_RETURN_IF_ERROR(setup_);
    KNN_ASSIGN_OR_RETURN(std::vector<client::GridSearchInfo> searches, client_->ListGridSearches());
    std::vector<GridSearchStatus> out;
    for (const auto& info : searches) out.push_back(StatusFrom(info));
    return out;
  }

 private:
  // Watches the search until it ends, then fetches its result.
  absl::StatusOr<GridSearchOutcome> Wait(const std::string& id,
                                         const GridSearchProgressFn& progress,
                                         client::CancelToken* detach) {
    GridSearchStatus last;
    KNN_RETURN_IF_ERROR(client_->WatchGridSearch(
        id, std::chrono::milliseconds(kWatchIntervalMs),
        [&](const client::GridSearchInfo& info) {
          last = StatusFrom(info);
          if (progress) progress(last);
        },
        detach));
    if (last.state == "CANCELLED") {
      return absl::CancelledError(absl::StrCat("grid search ", id, " was cancelled"));
    }
    KNN_ASSIGN_OR_RETURN(client::GridSearchResult r, client_->GetGridSearchResult(id));
    GridSearchOutcome out;
    out.status = StatusFrom(r.info);
    if (progress) progress(out.status);
    out.cv_results = client::ToCore(r.cv_results, r.best_index, r.best_score, r.best_params);
    KNN_ASSIGN_OR_RETURN(out.cv_results.scoring, ScoringOf(r.info));
    out.cv_results.neighbor_searches = r.info.neighbor_searches;
    out.refit_model = r.refit_model;
    return out;
  }

  // The rows a selection names on the cluster, or (a --limit head) the rows themselves, borrowed.
  static client::Queries QueriesOf(const Selection& rows) {
    if (!rows.remote_name.empty()) return client::Queries::OfDataset(rows.remote_name);
    const Matrix& x = rows.data.features;
    return client::Queries::Inline(x.cols(), absl::MakeConstSpan(x.data(), x.rows() * x.cols()));
  }

  absl::StatusOr<std::string> EnsureUploaded(const DataSourceOptions& options, const Dataset& d) {
    const std::string name = RemoteName(options, d);
    auto info = client_->DescribeDataset(name);
    if (info.ok()) return name;
    if (info.status().code() != absl::StatusCode::kNotFound) return info.status();
    auto uploaded = client_->UploadDataset(name, client::ViewOf(d));
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

  absl::StatusOr<client::SplitResult> RemoteSplit(const DataSourceOptions& options,
                                                  const std::string& base, bool indices) {
    KNN_ASSIGN_OR_RETURN(TestSize test_size, ParseTestSize(options.test_size));
    const uint32_t seed = SeedFor(options);
    client::SplitRequest request;
    request.dataset = base;
    if (test_size.is_fraction()) {
      request.test_fraction = test_size.fraction();
    } else {
      request.test_count = static_cast<uint64_t>(test_size.count());
    }
    request.random_state = seed;
    request.shuffle = options.shuffle;
    // Views are named by their parameters, so the same split is made once and then reused.
    const std::string suffix = absl::StrCat(options.test_size, "-", options.shuffle ? seed : 0,
                                            options.shuffle ? "" : "-noshuffle");
    request.train_name = absl::StrCat(base, ".train-", suffix);
    request.test_name = absl::StrCat(base, ".test-", suffix);
    request.return_indices = indices;
    // `knnctl split` only wants the indices: nothing is stored.
    request.dry_run = indices;
    // A view of the same parameters is the same split: reuse it (a model fitted on it keeps it
    // in use, so it is never replaced).
    if (!indices) {
      auto train = client_->DescribeDataset(request.train_name);
      auto test = client_->DescribeDataset(request.test_name);
      if (train.ok() && test.ok()) {
        client::SplitResult existing;
        existing.train = *std::move(train);
        existing.test = *std::move(test);
        return existing;
      }
    }
    auto split = client_->SplitDataset(request);
    if (split.ok() || split.status().code() != absl::StatusCode::kAlreadyExists) return split;
    // Another client made the same views meanwhile.
    client::SplitResult existing;
    KNN_ASSIGN_OR_RETURN(existing.train, client_->DescribeDataset(request.train_name));
    KNN_ASSIGN_OR_RETURN(existing.test, client_->DescribeDataset(request.test_name));
    return existing;
  }

  static ModelDesc FromInfo(const client::ModelInfo& info) {
    ModelDesc d;
    d.model = info.name;
    d.task = client::ToCore(info.task);
    d.params = client::ToCore(info.params);
    d.rows = info.rows;
    d.cols = info.cols;
    d.classes = info.classes;
    d.class_names = info.class_names;
    d.threshold = info.threshold;
    d.dataset = info.dataset;
    return d;
  }

  std::string address_;
  absl::Status setup_;
  std::unique_ptr<client::Client> client_;  // null when !setup_.ok()
  std::optional<uint32_t> random_seed_;
};

}  // namespace

absl::StatusOr<Output> RunClusterStatus(const client::ClientOptions& connect) {
  const std::string& address = connect.address;
  if (address.empty()) {
    return absl::FailedPreconditionError(
        "status: give --coordinator HOST:PORT (in local mode there is no cluster)");
  }
  client::ClientOptions options = connect;
  options.deadline = std::chrono::milliseconds(10'000);
  KNN_ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client, client::Client::Create(options));
  KNN_ASSIGN_OR_RETURN(client::ClusterStatus status, client->GetClusterStatus());
  Output out;
  out.json = nlohmann::ordered_json::parse(client::ClusterStatusToJson(status));
  size_t alive = 0;
  for (const auto& w : status.workers) alive += w.state == client::WorkerState::kAlive;
  out.text =
      absl::StrFormat("coordinator %s: %d workers (%d alive), %d datasets, %d models\n", address,
                      status.workers.size(), alive, status.datasets.size(), status.models.size());
  for (const auto& w : status.workers) {
    absl::StrAppendFormat(&out.text, "  worker %s at %s: %s, %d shards, %d rows, %d MiB RSS\n",
                          w.worker_id, w.address,
                          w.state == client::WorkerState::kAlive ? "alive" : "DEAD",
                          w.shard_ids.size(), w.rows, w.rss_bytes >> 20);
  }
  for (const auto& d : status.datasets) {
    absl::StrAppendFormat(&out.text, "  dataset %s: %d x %d%s\n", d.name, d.rows, d.cols,
                          d.view_of.empty() ? "" : absl::StrCat(" (view of ", d.view_of, ")"));
  }
  for (const auto& m : status.models) {
    absl::StrAppendFormat(&out.text, "  model %s: fitted on %s, %d rows in %d shards\n", m.name,
                          m.dataset, m.rows, m.shards.size());
  }
  return out;
}

std::unique_ptr<Engine> MakeClusterEngine(const client::ClientOptions& options) {
  return std::make_unique<ClusterEngine>(options);
}

}  // namespace knncluster::cli
