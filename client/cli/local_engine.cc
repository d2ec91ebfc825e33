// The in-process engine: models are model files; estimators come from core/estimators.
#include <filesystem>
#include <map>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/engine.h"
#include "core/base/status_macros.h"
#include "core/estimators/kneighbors_classifier.h"
#include "core/estimators/kneighbors_regressor.h"
#include "core/estimators/outlier_detector.h"
#include "core/estimators/voting.h"
#include "core/model_selection/grid_search.h"

namespace knncluster::cli {

absl::StatusOr<NeighborsParams> ParseParams(int n_neighbors, const std::string& weights,
                                            const std::string& algorithm, int leaf_size,
                                            const std::string& p) {
  NeighborsParams params;
  params.n_neighbors = n_neighbors;
  KNN_ASSIGN_OR_RETURN(params.weights, ParseWeights(weights));
  KNN_ASSIGN_OR_RETURN(params.algorithm, ParseAlgorithm(algorithm));
  params.leaf_size = leaf_size;
  KNN_ASSIGN_OR_RETURN(Minkowski metric, Minkowski::Parse(p));
  params.p = metric.p();
  KNN_RETURN_IF_ERROR(params.Validate());
  return params;
}

ModelDesc DescribeModelFile(const Model& model, const std::string& path) {
  ModelDesc d;
  d.model = path;
  d.task = model.task;
  d.params = model.params;
  d.rows = model.X.rows();
  d.cols = model.X.cols();
  d.class_names = model.class_names;
  d.threshold = model.threshold;
  d.contamination = model.contamination;
  d.dataset = model.dataset_name;
  if (model.task == Model::Task::kClassifier) {
    // The estimators' own encoding (a model file that loads has valid labels).
    auto encoded = EncodeClassLabels(model.y, model.class_names.size());
    if (encoded.ok()) d.classes = std::move(encoded->classes);
  }
  return d;
}

Selection Head(const Selection& rows, size_t n) {
  if (n == 0 || n >= rows.data.size()) return rows;
  Selection out;
  std::vector<int64_t> first(n);
  for (size_t i = 0; i < n; ++i) first[i] = static_cast<int64_t>(i);
  out.data = Subset(rows.data, first);
  return out;  // no remote name: a cluster receives these rows inline
}

namespace {

using Estimator = std::variant<KNeighborsClassifier, KNeighborsRegressor, OutlierDetector>;

class LocalEngine final : public Engine {
 public:
  explicit LocalEngine(ThreadPool* pool) : pool_(pool) {}

  std::string where() const override { return "local"; }

  absl::StatusOr<Selection> Select(const DataSourceOptions& options) override {
    Selection s;
    KNN_ASSIGN_OR_RETURN(s.data, LoadSelection(options));
    return s;
  }

  absl::StatusOr<TrainTestIndices> Split(const DataSourceOptions& options) override {
    KNN_ASSIGN_OR_RETURN(Dataset d, LoadSource(options));
    return SplitFor(options, static_cast<int64_t>(d.size()));
  }

  absl::StatusOr<ModelDesc> Fit(const std::string& path, const Selection& rows,
                                const FitSpec& spec) override {
    auto X = std::make_shared<const Matrix>(rows.data.features);
    absl::StatusOr<Model> model;
    if (spec.task == Model::Task::kClassifier) {
      KNeighborsClassifier clf(spec.params);
      KNN_RETURN_IF_ERROR(clf.Fit(X, rows.data.targets, rows.data.class_names));
      model = clf.ToModel();
    } else if (spec.task == Model::Task::kRegressor) {
      KNeighborsRegressor reg(spec.params);
      KNN_RETURN_IF_ERROR(reg.Fit(X, rows.data.targets));
      model = reg.ToModel();
    } else {
      OutlierParams op;
      op.neighbors = spec.params;
      op.contamination = spec.contamination;
      op.threshold = spec.threshold;
      OutlierDetector det(op);
      KNN_RETURN_IF_ERROR(det.Fit(X, pool_));
      model = det.ToModel();
    }
    KNN_RETURN_IF_ERROR(model.status());
    model->dataset_name = rows.data.name;
    model->feature_names = rows.data.feature_names;
    KNN_RETURN_IF_ERROR(SaveModel(path, *model));
    estimators_.erase(path);  // the file changed
    descs_.erase(path);
    return DescribeModelFile(*model, path);
  }

  absl::StatusOr<ModelDesc> Describe(const std::string& path) override {
    KNN_ASSIGN_OR_RETURN(const Estimator* e, Get(path));
    (void)e;
    return descs_.at(path);
  }

  absl::StatusOr<std::vector<double>> Predict(const ModelDesc& model,
                                              const Selection& rows) override {
    KNN_ASSIGN_OR_RETURN(const Estimator* e, Get(model.model));
    if (auto* clf = std::get_if<KNeighborsClassifier>(e)) {
      return clf->Predict(rows.data.features, pool_);
    }
    if (auto* reg = std::get_if<KNeighborsRegressor>(e)) {
      return reg->Predict(rows.data.features, pool_);
    }
    KNN_ASSIGN_OR_RETURN(std::vector<int> pred,
                         std::get<OutlierDetector>(*e).Predict(rows.data.features, pool_));
    return std::vector<double>(pred.begin(), pred.end());
  }

  absl::StatusOr<Matrix> PredictProba(const ModelDesc& model, const Selection& rows) override {
    KNN_ASSIGN_OR_RETURN(const Estimator* e, Get(model.model));
    auto* clf = std::get_if<KNeighborsClassifier>(e);
    if (clf == nullptr) {
      return absl::FailedPreconditionError("model: predict_proba needs a classifier");
    }
    return clf->PredictProba(rows.data.features, pool_);
  }

  absl::StatusOr<std::vector<double>> OutlierScores(const ModelDesc& model,
                                                    const Selection& rows) override {
    KNN_ASSIGN_OR_RETURN(const Estimator* e, Get(model.model));
    auto* det = std::get_if<OutlierDetector>(e);
    if (det == nullptr) return absl::FailedPreconditionError("model: not an outlier detector");
    return det->ScoreSamples(rows.data.features, pool_);
  }

  absl::StatusOr<KNeighborsResult> KNeighbors(const ModelDesc& model, const Selection& rows,
                                              std::optional<int> k) override {
    KNN_ASSIGN_OR_RETURN(const Estimator* e, Get(model.model));
    return Index(*e)->KNeighbors(rows.data.features, k.value_or(model.params.n_neighbors), pool_);
  }

  absl::StatusOr<RadiusResult> RadiusNeighbors(const ModelDesc& model, const Selection& rows,
                                               double radius) override {
    KNN_ASSIGN_OR_RETURN(const Estimator* e, Get(model.model));
    return Index(*e)->RadiusNeighbors(rows.data.features, radius, pool_);
  }

  std::optional<double> ServerScore(const ModelDesc&, const Selection&) override {
    return std::nullopt;
  }

  absl::Status Save(const ModelDesc& model, const std::string& path) override {
    KNN_ASSIGN_OR_RETURN(Model m, LoadModel(model.model));
    return SaveModel(path, m);
  }

  absl::StatusOr<ModelDesc> Load(const std::string& path, const std::string&) override {
    return Describe(path);
  }

  absl::Status Delete(const std::string& path) override {
    estimators_.erase(path);
    descs_.erase(path);
    std::error_code ec;
    if (!std::filesystem::remove(path, ec)) {
      return absl::NotFoundError(absl::StrCat(path, ": no such model file"));
    }
    return absl::OkStatus();
  }

  // Runs core GridSearchCV in-process; progress is reported at the start and at the end.
  absl::StatusOr<GridSearchOutcome> GridSearch(const Selection& rows, const GridSearchSpec& spec,
                                               const GridSearchProgressFn& progress,
                                               client::CancelToken*) override {
    if (rows.data.targets.empty()) {
      return absl::InvalidArgumentError(
          "labels: grid search needs labels (give --label-column or --labels)");
    }
    GridSearchOptions o;
    o.classifier = spec.classifier;
    o.param_grid = spec.param_grid;
    o.base = spec.base;
    o.cv = spec.cv;
    o.shuffle = spec.shuffle;
    o.random_state = spec.random_state;
    o.folds = spec.folds;
    o.scoring = spec.scoring;
    // A refit model is a file here; without one there is nothing to keep it in.
    o.refit = spec.refit && !spec.refit_model.empty();
    KNN_ASSIGN_OR_RETURN(std::vector<NeighborsParams> candidates,
                         ExpandParamGrid(o.param_grid, o.base));
    GridSearchStatus status;
    status.id = "local";
    status.state = "RUNNING";
    status.dataset = rows.data.name;
    status.task = spec.classifier ? "classifier" : "regressor";
    status.mode = "in-process";
    status.scoring = ScoringName(spec.scoring.value_or(spec.classifier ? Scoring::kAccuracy
                                                                       : Scoring::kR2));
    status.n_candidates = static_cast<uint32_t>(candidates.size());
    status.n_splits = static_cast<uint32_t>(spec.folds.empty() ? spec.cv : spec.folds.size());
    status.jobs_total = static_cast<uint32_t>(PlanFoldJobs(candidates, status.n_splits).size());
    const absl::Time start = absl::Now();
    status.started_unix_millis = absl::ToUnixMillis(start);
    if (progress) progress(status);
    KNN_ASSIGN_OR_RETURN(GridSearchResult r,
                         GridSearchCV(std::make_shared<const Matrix>(rows.data.features),
                                      rows.data.targets, o, pool_, rows.data.class_names));
    GridSearchOutcome out;
    if (o.refit) {
      absl::StatusOr<Model> model =
          r.best_classifier ? r.best_classifier->ToModel() : r.best_regressor->ToModel();
      KNN_RETURN_IF_ERROR(model.status());
      model->dataset_name = rows.data.name;
      model->feature_names = rows.data.feature_names;
      KNN_RETURN_IF_ERROR(SaveModel(spec.refit_model, *model));
      estimators_.erase(spec.refit_model);  // the file changed
      descs_.erase(spec.refit_model);
      out.refit_model = spec.refit_model;
    }
    status.state = "SUCCEEDED";
    status.jobs_done = status.jobs_total;
    status.neighbor_searches = static_cast<uint32_t>(r.cv_results.neighbor_searches);
    status.elapsed_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    status.eta_seconds = 0;
    status.refit_model = out.refit_model;
    if (progress) progress(status);
    out.status = std::move(status);
    out.cv_results = std::move(r.cv_results);
    return out;
  }

  absl::StatusOr<GridSearchOutcome> AttachGridSearch(const std::string&,
                                                     const GridSearchProgressFn&,
                                                     client::CancelToken*) override {
    return NoStore();
  }
  absl::StatusOr<GridSearchStatus> CancelGridSearch(const std::string&) override {
    return NoStore();
  }
  absl::StatusOr<std::vector<GridSearchStatus>> ListGridSearches() override { return NoStore(); }

 private:
  static absl::Status NoStore() {
    return absl::FailedPreconditionError(
        "grid searches in local mode run in this process and end with it; --attach, --cancel "
        "and --list need a cluster (--coordinator HOST:PORT)");
  }

  static const NeighborIndex* Index(const Estimator& e) {
    return std::visit([](const auto& x) { return x.index().get(); }, e);
  }

  // The estimator of a model file, loaded once per command.
  absl::StatusOr<const Estimator*> Get(const std::string& path) {
    auto it = estimators_.find(path);
    if (it != estimators_.end()) return &it->second;
    KNN_ASSIGN_OR_RETURN(Model model, LoadModel(path));
    const ModelDesc desc = DescribeModelFile(model, path);
    absl::StatusOr<Estimator> e = absl::InternalError("unset");
    switch (model.task) {
      case Model::Task::kClassifier:
        e = KNeighborsClassifier::FromModel(std::move(model));
        break;
      case Model::Task::kRegressor:
        e = KNeighborsRegressor::FromModel(std::move(model));
        break;
      case Model::Task::kOutlier:
        e = OutlierDetector::FromModel(std::move(model), pool_);
        break;
    }
    KNN_RETURN_IF_ERROR(e.status());
    descs_[path] = desc;
    return &estimators_.emplace(path, *std::move(e)).first->second;
  }

  ThreadPool* pool_;
  std::map<std::string, Estimator> estimators_;
  std::map<std::string, ModelDesc> descs_;
};

}  // namespace

std::unique_ptr<Engine> MakeLocalEngine(ThreadPool* pool) {
  return std::make_unique<LocalEngine>(pool);
}

}  // namespace knncluster::cli
