#include "client/cli/commands.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cli/png_writer.h"
#include "core/base/status_macros.h"
#include "core/datasets/dataset.h"
#include "core/estimators/metrics.h"
#include "core/estimators/model_io.h"
#include "core/index/metric.h"
#include "core/model_selection/grid_search.h"

namespace knncluster::cli {
namespace {

using Json = nlohmann::ordered_json;

// The shortest decimal that reads back as the same double, as Python's repr prints it.
std::string Num(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// The label as a user wrote it: its class name, or the number.
Json LabelJson(double label, const std::vector<std::string>& class_names) {
  if (!class_names.empty()) {
    const auto code = static_cast<size_t>(label);
    return code < class_names.size() ? Json(class_names[code]) : Json(nullptr);
  }
  if (label == static_cast<double>(static_cast<int64_t>(label))) return static_cast<int64_t>(label);
  return label;
}

std::string LabelText(double label, const std::vector<std::string>& class_names) {
  Json j = LabelJson(label, class_names);
  return j.is_string() ? j.get<std::string>() : j.dump();
}

// Re-expresses `data`'s labels in the model's label space. With string labels, a name the model
// never saw becomes -1 (never predicted, so counted wrong).
absl::StatusOr<std::vector<double>> AlignLabels(const Dataset& data,
                                                const std::vector<std::string>& model_names) {
  if (data.targets.empty()) {
    return absl::InvalidArgumentError(
        "labels: the selected data has no label column (give --label-column or --labels)");
  }
  if (data.class_names.empty() != model_names.empty()) {
    return absl::InvalidArgumentError(
        data.class_names.empty()
            ? "labels: the model was fitted on string labels but these labels are numbers"
            : "labels: the model was fitted on numeric labels but these labels are strings");
  }
  if (model_names.empty()) return data.targets;
  std::vector<double> out;
  out.reserve(data.targets.size());
  for (double code : data.targets) {
    const std::string& name = data.class_names[static_cast<size_t>(code)];
    auto it = std::find(model_names.begin(), model_names.end(), name);
    out.push_back(it == model_names.end() ? -1.0 : static_cast<double>(it - model_names.begin()));
  }
  return out;
}

Json ParamsJson(const NeighborsParams& p) {
  Json j;
  j["n_neighbors"] = p.n_neighbors;
  j["weights"] = WeightsName(p.weights);
  j["algorithm"] = AlgorithmName(p.algorithm);
  j["leaf_size"] = p.leaf_size;
  j["p"] = std::isinf(p.p) ? Json("inf") : Json(p.p);
  return j;
}

std::string ParamsText(const NeighborsParams& p) {
  return absl::StrFormat("n_neighbors=%d, weights=%s, algorithm=%s, leaf_size=%d, p=%s",
                         p.n_neighbors, WeightsName(p.weights), AlgorithmName(p.algorithm),
                         p.leaf_size, Minkowski::Create(p.p).value().ToString());
}

Json ModelJson(const ModelDesc& m) {
  Json j;
  j["model"] = m.model;
  j["task"] = TaskName(m.task);
  j["params"] = ParamsJson(m.params);
  j["n_samples"] = m.rows;
  j["n_features"] = m.cols;
  if (!m.dataset.empty()) j["dataset"] = m.dataset;
  if (m.task == Model::Task::kOutlier && m.threshold) j["threshold"] = *m.threshold;
  return j;
}

absl::StatusOr<NeighborsParams> ParamsFrom(const ModelOptions& o) {
  const int k = (o.task == "outlier" && !o.n_neighbors_set) ? 1 : o.n_neighbors;
  return ParseParams(k, o.weights, o.algorithm, o.leaf_size, o.p);
}

absl::StatusOr<Model::Task> TaskFrom(const std::string& task) {
  if (task == "classifier") return Model::Task::kClassifier;
  if (task == "regressor") return Model::Task::kRegressor;
  if (task == "outlier") return Model::Task::kOutlier;
  return absl::InvalidArgumentError(
      absl::StrCat("task: expected classifier, regressor or outlier, got \"", task, "\""));
}

// "1,3,5" or "2:20:2" (start:stop[:step], stop exclusive, as Python's range).
absl::StatusOr<std::vector<int>> ParseIntList(const std::string& key, const std::string& text) {
  std::vector<int> out;
  std::vector<std::string> range = absl::StrSplit(text, ':');
  if (range.size() == 2 || range.size() == 3) {
    int start, stop, step = 1;
    if (!absl::SimpleAtoi(range[0], &start) || !absl::SimpleAtoi(range[1], &stop) ||
        (range.size() == 3 && (!absl::SimpleAtoi(range[2], &step) || step <= 0))) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, ": expected a range start:stop[:step] with step > 0, got \"", text, "\""));
    }
    for (int v = start; v < stop; v += step) out.push_back(v);
  } else {
    for (absl::string_view part : absl::StrSplit(text, ',')) {
      int v;
      if (!absl::SimpleAtoi(part, &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(key, ": \"", std::string(part), "\" is not an integer"));
      }
      out.push_back(v);
    }
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(key, ": no values in \"", text, "\""));
  return out;
}

// One grid from "n_neighbors=2:20:2;p=1,2,3;weights=uniform,distance".
absl::StatusOr<ParamGrid> ParseGrid(const std::string& text) {
  ParamGrid g;
  for (absl::string_view item : absl::StrSplit(text, ';', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    const std::string key(absl::StripAsciiWhitespace(kv.first));
    const std::string values(absl::StripAsciiWhitespace(kv.second));
    if (key == "n_neighbors" || key == "leaf_size") {
      KNN_ASSIGN_OR_RETURN(std::vector<int> v, ParseIntList(key, values));
      (key == "n_neighbors" ? g.n_neighbors : g.leaf_size) = std::move(v);
    } else if (key == "p") {
      for (absl::string_view part : absl::StrSplit(values, ',')) {
        KNN_ASSIGN_OR_RETURN(Minkowski m, Minkowski::Parse(std::string(part)));
        g.p.push_back(m.p());
      }
    } else if (key == "weights") {
      g.weights = absl::StrSplit(values, ',');
    } else if (key == "algorithm") {
      g.algorithm = absl::StrSplit(values, ',');
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "grid: unknown parameter \"", key,
          "\" (expected n_neighbors, p, weights, algorithm, leaf_size) in \"", text, "\""));
    }
  }
  return g;
}

Json CvResultsJson(const CvResults& cv) {
  Json j;
  Json params = Json::array();
  for (const NeighborsParams& p : cv.params) params.push_back(ParamsJson(p));
  j["params"] = params;
  for (size_t f = 0; f < (cv.split_test_scores.empty() ? 0 : cv.split_test_scores[0].size()); ++f) {
    Json col = Json::array();
    for (const auto& row : cv.split_test_scores) col.push_back(row[f]);
    j[absl::StrCat("split", f, "_test_score")] = col;
  }
  j["mean_test_score"] = cv.mean_test_score;
  j["std_test_score"] = cv.std_test_score;
  j["rank_test_score"] = cv.rank_test_score;
  return j;
}

std::string CvResultsText(const CvResults& cv) {
  std::string t = absl::StrFormat("%-5s %-11s %-5s %-9s %-20s %-9s\n", "rank", "n_neighbors", "p",
                                  "weights", "mean_test_score", "std");
  for (size_t c = 0; c < cv.params.size(); ++c) {
    const NeighborsParams& p = cv.params[c];
    absl::StrAppendFormat(&t, "%-5d %-11d %-5s %-9s %-20s %.6f\n", cv.rank_test_score[c],
                          p.n_neighbors, Minkowski::Create(p.p).value().ToString(),
                          WeightsName(p.weights), Num(cv.mean_test_score[c]), cv.std_test_score[c]);
  }
  return t;
}

Json BestJson(const CvResults& cv) {
  return {{"best_index", cv.best_index},
          {"best_score", cv.best_score},
          {"best_params", ParamsJson(cv.best_params)},
          {"scoring", ScoringName(cv.scoring)},
          {"neighbor_searches", cv.neighbor_searches}};
}

std::shared_ptr<const Matrix> Share(Matrix m) { return std::make_shared<const Matrix>(std::move(m)); }


// Per-query neighbour lists as JSON and text: query q's are [offsets[q], offsets[q+1]).
void AppendNeighbors(const std::vector<size_t>& offsets, const std::vector<double>& dists,
                     const std::vector<int64_t>& ids, Output* out) {
  Json distances = Json::array(), indices = Json::array();
  for (size_t q = 0; q + 1 < offsets.size(); ++q) {
    std::vector<double> dist(dists.begin() + offsets[q], dists.begin() + offsets[q + 1]);
    std::vector<int64_t> idx(ids.begin() + offsets[q], ids.begin() + offsets[q + 1]);
    absl::StrAppend(&out->text, q, "\t", absl::StrJoin(idx, " "), "\t",
                    absl::StrJoin(dist, " ", [](std::string* s, double v) {
                      absl::StrAppend(s, Num(v));
                    }), "\n");
    distances.push_back(std::move(dist));
    indices.push_back(std::move(idx));
  }
  out->json["distances"] = distances;
  out->json["indices"] = indices;
}

// Accuracy, balanced accuracy, macro F1 and the confusion matrix of predictions.
absl::Status AppendClassifierScores(const std::vector<double>& y, const std::vector<double>& pred,
                                    const std::vector<std::string>& class_names, Output* out) {
  KNN_ASSIGN_OR_RETURN(double accuracy, AccuracyScore(y, pred));
  KNN_ASSIGN_OR_RETURN(double balanced, BalancedAccuracyScore(y, pred));
  KNN_ASSIGN_OR_RETURN(double f1, F1ScoreMacro(y, pred));
  KNN_ASSIGN_OR_RETURN(ConfusionMatrixResult cm, ConfusionMatrix(y, pred));
  size_t correct = 0;
  for (size_t i = 0; i < y.size(); ++i) correct += (y[i] == pred[i]);
  out->json["task"] = "classifier";
  out->json["metric"] = "accuracy";
  out->json["score"] = accuracy;
  out->json["n_correct"] = correct;
  out->json["balanced_accuracy"] = balanced;
  out->json["f1_macro"] = f1;
  Json labels = Json::array(), matrix = Json::array();
  for (double l : cm.labels) labels.push_back(LabelJson(l, class_names));
  for (size_t i = 0; i < cm.labels.size(); ++i) {
    matrix.push_back(std::vector<int64_t>(cm.counts.begin() + i * cm.labels.size(),
                                          cm.counts.begin() + (i + 1) * cm.labels.size()));
  }
  out->json["confusion_matrix"] = {{"labels", labels}, {"counts", matrix}};
  out->text = absl::StrFormat(
      "accuracy: %s (%d of %d)\nbalanced accuracy: %s\nmacro F1: %s\n", Num(accuracy), correct,
      y.size(), Num(balanced), Num(f1));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Output> RunSplit(Engine* engine, const DataSourceOptions& data) {
  KNN_ASSIGN_OR_RETURN(TrainTestIndices split, engine->Split(data));
  const std::string name = data.dataset.empty() ? data.data_file : data.dataset;
  const size_t n = split.train.size() + split.test.size();
  Output out;
  out.json["dataset"] = name;
  out.json["n_samples"] = n;
  out.json["test_size"] = data.test_size;
  out.json["random_state"] = data.random_state ? Json(*data.random_state) : Json(nullptr);
  out.json["shuffle"] = data.shuffle;
  out.json["n_train"] = split.train.size();
  out.json["n_test"] = split.test.size();
  out.json["train"] = split.train;
  out.json["test"] = split.test;
  out.text = absl::StrFormat("%s: %d samples -> %d train, %d test\ntrain: %s\ntest: %s\n", name,
                             n, split.train.size(), split.test.size(),
                             absl::StrJoin(split.train, " "), absl::StrJoin(split.test, " "));
  return out;
}

absl::StatusOr<Output> RunFit(Engine* engine, const DataSourceOptions& data,
                              const ModelOptions& options, const std::string& model) {
  FitSpec spec;
  KNN_ASSIGN_OR_RETURN(spec.task, TaskFrom(options.task));
  KNN_ASSIGN_OR_RETURN(spec.params, ParamsFrom(options));
  spec.contamination = options.contamination;
  spec.threshold = options.threshold;
  KNN_ASSIGN_OR_RETURN(Selection rows, engine->Select(data));
  if (spec.task != Model::Task::kOutlier && rows.data.targets.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels: fitting a ", options.task, " needs labels (give --label-column or --labels)"));
  }
  KNN_ASSIGN_OR_RETURN(ModelDesc desc, engine->Fit(model, rows, spec));
  Output out;
  out.json = ModelJson(desc);
  out.text = absl::StrFormat("fitted %s (%s) on %d samples x %d features; saved as %s\n",
                             TaskName(desc.task), ParamsText(desc.params), desc.rows, desc.cols,
                             model);
  if (desc.threshold) absl::StrAppendFormat(&out.text, "outlier threshold: %s\n", Num(*desc.threshold));
  return out;
}

absl::StatusOr<Output> RunScore(Engine* engine, const std::string& model,
                                const DataSourceOptions& data) {
  KNN_ASSIGN_OR_RETURN(ModelDesc desc, engine->Describe(model));
  KNN_ASSIGN_OR_RETURN(Selection rows, engine->Select(data));
  KNN_ASSIGN_OR_RETURN(std::vector<double> pred, engine->Predict(desc, rows));
  Output out;
  if (desc.task == Model::Task::kClassifier) {
    KNN_ASSIGN_OR_RETURN(std::vector<double> y, AlignLabels(rows.data, desc.class_names));
    KNN_RETURN_IF_ERROR(AppendClassifierScores(y, pred, desc.class_names, &out));
  } else if (desc.task == Model::Task::kRegressor) {
    KNN_ASSIGN_OR_RETURN(std::vector<double> y, AlignLabels(rows.data, {}));
    KNN_ASSIGN_OR_RETURN(double r2, R2Score(y, pred));
    KNN_ASSIGN_OR_RETURN(double mse, MeanSquaredError(y, pred));
    out.json["task"] = "regressor";
    out.json["metric"] = "r2";
    out.json["score"] = r2;
    out.json["mean_squared_error"] = mse;
    out.text = absl::StrFormat("R²: %s\nmean squared error: %s\n", Num(r2), Num(mse));
  } else {
    const size_t outliers = std::count(pred.begin(), pred.end(), -1.0);
    const double fraction = pred.empty() ? 0.0 : static_cast<double>(outliers) / pred.size();
    out.json["task"] = "outlier";
    out.json["metric"] = "outlier_fraction";
    out.json["score"] = fraction;
    out.json["n_outliers"] = outliers;
    out.json["threshold"] = desc.threshold.value_or(0);
    out.text = absl::StrFormat("outliers: %d of %d (%s) at threshold %s\n", outliers, pred.size(),
                               Num(fraction), Num(desc.threshold.value_or(0)));
  }
  out.json["model"] = model;
  out.json["n_samples"] = pred.size();
  if (auto server = engine->ServerScore(desc, rows)) out.json["server_score"] = *server;
  return out;
}

absl::StatusOr<Output> RunPredict(Engine* engine, const std::string& model,
                                  const DataSourceOptions& data, bool proba, size_t limit) {
  KNN_ASSIGN_OR_RETURN(ModelDesc desc, engine->Describe(model));
  KNN_ASSIGN_OR_RETURN(Selection all, engine->Select(data));
  const Selection rows = Head(all, limit);
  KNN_ASSIGN_OR_RETURN(std::vector<double> pred, engine->Predict(desc, rows));
  Output out;
  out.json["model"] = model;
  Json predictions = Json::array();
  if (desc.task == Model::Task::kClassifier) {
    for (size_t i = 0; i < pred.size(); ++i) {
      predictions.push_back(LabelJson(pred[i], desc.class_names));
      absl::StrAppend(&out.text, i, "\t", LabelText(pred[i], desc.class_names), "\n");
    }
    if (proba) {
      KNN_ASSIGN_OR_RETURN(Matrix p, engine->PredictProba(desc, rows));
      Json classes = Json::array(), probs = Json::array();
      for (double c : desc.classes) classes.push_back(LabelJson(c, desc.class_names));
      out.text = absl::StrCat("row\tprediction\t",
                              absl::StrJoin(classes, "\t", [](std::string* s, const Json& c) {
                                absl::StrAppend(s, c.is_string() ? c.get<std::string>() : c.dump());
                              }),
                              "\n");
      for (size_t i = 0; i < p.rows(); ++i) {
        std::vector<double> row(p.row(i), p.row(i) + p.cols());
        absl::StrAppend(&out.text, i, "\t", LabelText(pred[i], desc.class_names), "\t",
                        absl::StrJoin(row, "\t", [](std::string* s, double v) {
                          absl::StrAppendFormat(s, "%.6g", v);
                        }), "\n");
        probs.push_back(std::move(row));
      }
      out.json["classes"] = classes;
      out.json["probabilities"] = probs;
    }
  } else if (desc.task == Model::Task::kRegressor) {
    for (size_t i = 0; i < pred.size(); ++i) {
      predictions.push_back(pred[i]);
      absl::StrAppendFormat(&out.text, "%d\t%s\n", i, Num(pred[i]));
    }
  } else {
    KNN_ASSIGN_OR_RETURN(std::vector<double> scores, engine->OutlierScores(desc, rows));
    out.json["scores"] = scores;
    out.json["threshold"] = desc.threshold.value_or(0);
    for (size_t i = 0; i < pred.size(); ++i) {
      predictions.push_back(static_cast<int>(pred[i]));
      absl::StrAppendFormat(&out.text, "%d\t%s\t%s\n", i, pred[i] < 0 ? "outlier" : "inlier",
                            Num(scores[i]));
    }
  }
  out.json["predictions"] = predictions;
  return out;
}

absl::StatusOr<Output> RunKNeighbors(Engine* engine, const std::string& model,
                                     const DataSourceOptions& data, std::optional<int> k,
                                     std::optional<double> radius, size_t limit) {
  KNN_ASSIGN_OR_RETURN(ModelDesc desc, engine->Describe(model));
  KNN_ASSIGN_OR_RETURN(Selection all, engine->Select(data));
  const Selection rows = Head(all, limit);
  Output out;
  out.json["model"] = model;
  if (radius) {
    KNN_ASSIGN_OR_RETURN(RadiusResult r, engine->RadiusNeighbors(desc, rows, *radius));
    out.json["radius"] = *radius;
    AppendNeighbors(r.offsets, r.distances, r.indices, &out);
  } else {
    KNN_ASSIGN_OR_RETURN(KNeighborsResult r, engine->KNeighbors(desc, rows, k));
    std::vector<size_t> offsets;
    for (size_t q = 0; q <= r.num_queries; ++q) offsets.push_back(q * r.k);
    out.json["n_neighbors"] = r.k;
    AppendNeighbors(offsets, r.distances, r.indices, &out);
  }
  return out;
}

absl::StatusOr<Output> RunSave(Engine* engine, const std::string& model,
                               const std::string& out_path) {
  KNN_ASSIGN_OR_RETURN(ModelDesc desc, engine->Describe(model));
  KNN_RETURN_IF_ERROR(engine->Save(desc, out_path));
  Output out;
  out.json = ModelJson(desc);
  out.json["out"] = out_path;
  out.text = absl::StrFormat("saved %s model %s to %s\n", TaskName(desc.task), model, out_path);
  return out;
}

absl::StatusOr<Output> RunLoad(Engine* engine, const std::string& path, const std::string& name) {
  // Local mode: parse the file fully (rebuilding the estimator checks everything).
  if (engine->where() == "local") KNN_RETURN_IF_ERROR(LoadModel(path).status());
  KNN_ASSIGN_OR_RETURN(ModelDesc desc, engine->Load(path, name));
  Output out;
  out.json = ModelJson(desc);
  out.json["file"] = path;
  out.text = absl::StrFormat("%s: %s model (%s), %d samples x %d features%s\n", path,
                             TaskName(desc.task), ParamsText(desc.params), desc.rows, desc.cols,
                             desc.model == path ? "" : absl::StrCat(", loaded as ", desc.model));
  return out;
}

absl::StatusOr<Output> RunGridSearch(const DataSourceOptions& data,
                                     const GridSearchCommandOptions& options, ThreadPool* pool) {
  GridSearchOptions o;
  if (options.task != "classifier" && options.task != "regressor") {
    return absl::InvalidArgumentError(absl::StrCat(
        "task: grid search takes classifier or regressor, got \"", options.task, "\""));
  }
  o.classifier = options.task == "classifier";
  KNN_ASSIGN_OR_RETURN(o.base, ParamsFrom(options.base));
  for (const std::string& g : options.grids) {
    KNN_ASSIGN_OR_RETURN(ParamGrid grid, ParseGrid(g));
    o.param_grid.push_back(std::move(grid));
  }
  if (o.param_grid.empty()) o.param_grid.emplace_back();  // just the base parameters
  o.cv = options.cv;
  o.shuffle = options.shuffle;
  o.random_state = data.random_state;
  if (!options.scoring.empty()) {
    KNN_ASSIGN_OR_RETURN(Scoring scoring, ParseScoring(options.scoring));
    o.scoring = scoring;
  }
  o.refit = !options.refit_model.empty();
  KNN_ASSIGN_OR_RETURN(Dataset d, LoadSelection(data));
  if (d.targets.empty()) {
    return absl::InvalidArgumentError("labels: grid search needs labels (give --label-column or --labels)");
  }
  KNN_ASSIGN_OR_RETURN(GridSearchResult r, GridSearchCV(Share(std::move(d.features)), d.targets, o,
                                                        pool, d.class_names));
  Output out;
  out.json = BestJson(r.cv_results);
  out.json["n_candidates"] = r.cv_results.params.size();
  out.json["cv_results"] = CvResultsJson(r.cv_results);
  out.text = CvResultsText(r.cv_results);
  absl::StrAppendFormat(&out.text, "best %s: %s with %s (%d neighbour searches)\n",
                        ScoringName(r.cv_results.scoring), Num(r.cv_results.best_score),
                        ParamsText(r.cv_results.best_params), r.cv_results.neighbor_searches);
  if (o.refit) {
    absl::StatusOr<Model> model = r.best_classifier ? r.best_classifier->ToModel()
                                                    : r.best_regressor->ToModel();
    KNN_RETURN_IF_ERROR(model.status());
    model->dataset_name = d.name;
    model->feature_names = d.feature_names;
    KNN_RETURN_IF_ERROR(SaveModel(options.refit_model, *model));
    out.json["refit_model"] = options.refit_model;
    absl::StrAppendFormat(&out.text, "best model refit on all %d rows, saved to %s\n",
                          model->X.rows(), options.refit_model);
  }
  return out;
}

absl::StatusOr<Output> RunTutorial(Engine* engine, const TutorialOptions& options,
                                   ThreadPool* pool) {
  Output out;
  out.json["engine"] = engine->where();
  // 1. The digits.
  KNN_ASSIGN_OR_RETURN(Dataset digits, LoadDigits());
  out.json["dataset"] = {{"name", digits.name},
                         {"n_samples", digits.size()},
                         {"n_features", digits.dim()}};
  absl::StrAppendFormat(&out.text, "digits: %d images of 8x8 pixels (%d features)\n",
                        digits.size(), digits.dim());
  // 2. train_test_split(test_size=0.2, random_state=1337).
  DataSourceOptions train_rows;
  train_rows.dataset = "digits";
  train_rows.test_size = options.test_size;
  train_rows.random_state = options.random_state;
  train_rows.split = "train";
  DataSourceOptions test_rows = train_rows;
  test_rows.split = "test";
  KNN_ASSIGN_OR_RETURN(Selection train, engine->Select(train_rows));
  KNN_ASSIGN_OR_RETURN(Selection test, engine->Select(test_rows));
  out.json["split"] = {{"test_size", options.test_size},
                       {"random_state", options.random_state},
                       {"n_train", train.data.size()},
                       {"n_test", test.data.size()}};
  absl::StrAppendFormat(&out.text,
                        "train_test_split(test_size=%s, random_state=%d): %d train, %d test\n",
                        options.test_size, options.random_state, train.data.size(),
                        test.data.size());
  // 3. KNeighborsClassifier(n_neighbors=20, algorithm=kd_tree, p=2): fit, then test accuracy.
  FitSpec spec;
  KNN_ASSIGN_OR_RETURN(spec.params, ParseParams(options.n_neighbors, "uniform", options.algorithm,
                                                30, options.p));
  const bool local = engine->where() == "local";
  std::string model = options.model;
  std::error_code ec;
  const bool temporary_file = local && model.empty();
  if (temporary_file) {
    model = (std::filesystem::temp_directory_path(ec) /
             absl::StrCat("knnctl-tutorial-", getpid(), ".model")).string();
  } else if (model.empty()) {
    model = "tutorial-knn";
  }
  KNN_ASSIGN_OR_RETURN(ModelDesc desc, engine->Fit(model, train, spec));
  KNN_ASSIGN_OR_RETURN(std::vector<double> pred, engine->Predict(desc, test));
  KNN_ASSIGN_OR_RETURN(double accuracy, AccuracyScore(test.data.targets, pred));
  size_t correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += (pred[i] == test.data.targets[i]);
  out.json["classifier"] = {{"model", model},
                            {"params", ParamsJson(spec.params)},
                            {"test_accuracy", accuracy},
                            {"n_correct", correct}};
  absl::StrAppendFormat(&out.text, "KNeighborsClassifier(%s)\n  test accuracy: %s (%d of %d)\n",
                        ParamsText(spec.params), Num(accuracy), correct, pred.size());
  // 4. Save the model to a file, load it back, and check it predicts the same.
  const std::string file =
      local ? absl::StrCat(model, ".saved")
            : (std::filesystem::temp_directory_path(ec) /
               absl::StrCat("knnctl-tutorial-", getpid(), ".model")).string();
  KNN_RETURN_IF_ERROR(engine->Save(desc, file));
  const auto file_size = std::filesystem::file_size(file, ec);
  KNN_ASSIGN_OR_RETURN(ModelDesc reloaded, engine->Load(file, absl::StrCat(model, "-reloaded")));
  KNN_ASSIGN_OR_RETURN(std::vector<double> pred2, engine->Predict(reloaded, test));
  std::filesystem::remove(file, ec);
  if (temporary_file) std::filesystem::remove(model, ec);
  KNN_ASSIGN_OR_RETURN(double accuracy2, AccuracyScore(test.data.targets, pred2));
  const bool identical = pred2 == pred;
  out.json["save_load"] = {{"bytes", ec ? 0 : file_size},
                           {"identical_predictions", identical},
                           {"test_accuracy", accuracy2}};
  absl::StrAppendFormat(&out.text,
                        "saved the model (%d bytes) and loaded it back: %s, accuracy %s\n",
                        ec ? 0 : file_size,
                        identical ? "identical predictions" : "PREDICTIONS DIFFER", Num(accuracy2));
  if (!identical) return absl::InternalError("the reloaded model predicts differently");
  // 5. GridSearchCV(KNeighborsClassifier(algorithm), {n_neighbors: 2..18 step 2, p: 1..3},
  //    cv=5) on all of digits, then the refit best model's accuracy on the test split. It runs
  //    in-process in both modes until the distributed grid search lands.
  GridSearchOptions gs;
  gs.base = spec.params;
  ParamGrid grid;
  for (int k = 2; k < 20; k += 2) grid.n_neighbors.push_back(k);
  grid.p = {1, 2, 3};
  gs.param_grid = {grid};
  gs.cv = 5;
  KNN_ASSIGN_OR_RETURN(GridSearchResult search,
                       GridSearchCV(std::make_shared<const Matrix>(digits.features),
                                    digits.targets, gs, pool));
  const CvResults& cv = search.cv_results;
  KNN_ASSIGN_OR_RETURN(double best_test,
                       search.best_classifier->Score(test.data.features, test.data.targets, pool));
  out.json["grid_search"] = BestJson(cv);
  out.json["grid_search"]["engine"] = "local";
  out.json["grid_search"]["cv"] = gs.cv;
  out.json["grid_search"]["n_candidates"] = cv.params.size();
  out.json["grid_search"]["test_accuracy_of_best_estimator"] = best_test;
  out.json["grid_search"]["cv_results"] = CvResultsJson(cv);
  absl::StrAppendFormat(&out.text,
                        "GridSearchCV(n_neighbors=2..18 step 2, p=1..3, cv=5): %d candidates, %d "
                        "neighbour searches%s\n%s",
                        cv.params.size(), cv.neighbor_searches,
                        local ? "" : " (in-process)", CvResultsText(cv));
  absl::StrAppendFormat(&out.text, "  best score: %s\n  best params: n_neighbors=%d, p=%s\n",
                        Num(cv.best_score), cv.best_params.n_neighbors,
                        Minkowski::Create(cv.best_params.p).value().ToString());
  absl::StrAppendFormat(&out.text, "  test accuracy of the best model: %s\n", Num(best_test));
  return out;
}

absl::StatusOr<Output> RunShowDigits(int count, int scale, const std::string& out_path) {
  KNN_ASSIGN_OR_RETURN(Dataset digits, LoadDigits());
  if (count < 1 || static_cast<size_t>(count) > digits.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--count: must be in [1, %d], got %d", digits.size(), count));
  }
  if (scale < 1 || scale > 64) {
    return absl::InvalidArgumentError(absl::StrFormat("--scale: must be in [1, 64], got %d", scale));
  }
  // Each digit is an 8x8 cell block with a one-cell white margin, like the tutorial's subplots.
  const int cell = scale, side = 8, pitch = side + 1;
  const int width = (count * pitch + 1) * cell, height = (side + 2) * cell;
  std::vector<uint8_t> pixels(static_cast<size_t>(width) * height, 255);
  for (int n = 0; n < count; ++n) {
    for (int r = 0; r < side; ++r) {
      for (int c = 0; c < side; ++c) {
        const double v = digits.features.at(n, r * side + c);  // 0..16, 16 = full ink
        const auto gray = static_cast<uint8_t>(255 - std::lround(v * 255.0 / 16.0));
        for (int dy = 0; dy < cell; ++dy) {
          for (int dx = 0; dx < cell; ++dx) {
            const int x = (n * pitch + 1 + c) * cell + dx, y = (1 + r) * cell + dy;
            pixels[static_cast<size_t>(y) * width + x] = gray;
          }
        }
      }
    }
  }
  KNN_RETURN_IF_ERROR(WriteGrayPng(out_path, width, height, pixels));
  Output out;
  std::vector<int64_t> labels;
  for (int n = 0; n < count; ++n) labels.push_back(static_cast<int64_t>(digits.targets[n]));
  out.json["out"] = out_path;
  out.json["count"] = count;
  out.json["width"] = width;
  out.json["height"] = height;
  out.json["labels"] = labels;
  out.text = absl::StrFormat("wrote %s (%dx%d): digits %s\n", out_path, width, height,
                             absl::StrJoin(labels, " "));
  return out;
}

}  // namespace knncluster::cli
