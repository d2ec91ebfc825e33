#include "client/cli/commands.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cli/param_spec.h"
#include "client/cli/png_writer.h"
#include "client/cli/progress.h"
#include "core/base/status_macros.h"
#include "core/datasets/dataset.h"
#include "core/estimators/metrics.h"
#include "core/estimators/model_io.h"
#include "core/index/metric.h"
#include "core/model_selection/grid_search.h"
#include "core/model_selection/heatmap_svg.h"

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

// ---- Grid search: cv_results_ as scikit-learn shapes it, the table, the heatmap ----------------

// The cv_results_ helpers live with the heatmap (core/model_selection/heatmap_svg.h).
std::vector<std::string> KeysOf(const CvResults& cv, size_t c) { return GridKeysOf(cv, c); }
std::vector<std::string> VaryingKeys(const CvResults& cv) { return GridVaryingKeys(cv); }
bool HasKey(const CvResults& cv, size_t c, const std::string& key) {
  return GridHasKey(cv, c, key);
}
std::string ParamValueText(const NeighborsParams& p, const std::string& key) {
  return GridParamText(p, key);
}
std::string ParamsSubsetText(const NeighborsParams& p, const std::vector<std::string>& keys) {
  return GridParamsText(p, keys);
}

Json ParamValueJson(const NeighborsParams& p, const std::string& key) {
  if (key == "algorithm") return AlgorithmName(p.algorithm);
  if (key == "leaf_size") return p.leaf_size;
  if (key == "n_neighbors") return p.n_neighbors;
  if (key == "p") return std::isinf(p.p) ? Json("inf") : Json(p.p);
  return WeightsName(p.weights);
}

Json ParamsSubsetJson(const NeighborsParams& p, const std::vector<std::string>& keys) {
  Json j = Json::object();
  for (const std::string& key : keys) j[key] = ParamValueJson(p, key);
  return j;
}

// cv_results_ in scikit-learn's key order; `params` lists only the keys each candidate's grid
// sets, and param_<key> is null where a candidate's grid does not set the key (a masked entry).
Json CvResultsJson(const CvResults& cv) {
  Json j;
  const size_t n = cv.params.size();
  if (cv.mean_fit_time.size() == n && n > 0) {
    j["mean_fit_time"] = cv.mean_fit_time;
    j["std_fit_time"] = cv.std_fit_time;
    j["mean_score_time"] = cv.mean_score_time;
    j["std_score_time"] = cv.std_score_time;
  }
  for (const std::string& key : VaryingKeys(cv)) {
    Json col = Json::array();
    for (size_t c = 0; c < n; ++c) {
      col.push_back(HasKey(cv, c, key) ? ParamValueJson(cv.params[c], key) : Json(nullptr));
    }
    j["param_" + key] = col;
  }
  Json params = Json::array();
  for (size_t c = 0; c < n; ++c) params.push_back(ParamsSubsetJson(cv.params[c], KeysOf(cv, c)));
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

// The candidates sorted by rank (then by their order), one column per varying key.
std::string CvResultsText(const CvResults& cv) {
  const std::vector<std::string> keys = VaryingKeys(cv);
  std::vector<size_t> order(cv.params.size());
  for (size_t c = 0; c < order.size(); ++c) order[c] = c;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return cv.rank_test_score[a] < cv.rank_test_score[b];
  });
  std::vector<size_t> width;
  for (const std::string& key : keys) {
    size_t w = key.size();
    for (size_t c : order) w = std::max(w, ParamValueText(cv.params[c], key).size());
    width.push_back(w);
  }
  std::string t = absl::StrFormat("%-5s", "rank");
  for (size_t k = 0; k < keys.size(); ++k) absl::StrAppendFormat(&t, " %-*s", width[k], keys[k]);
  absl::StrAppendFormat(&t, " %-20s %s\n", "mean_test_score", "std_test_score");
  for (size_t c : order) {
    absl::StrAppendFormat(&t, "%-5d", cv.rank_test_score[c]);
    for (size_t k = 0; k < keys.size(); ++k) {
      absl::StrAppendFormat(&t, " %-*s", width[k], ParamValueText(cv.params[c], keys[k]));
    }
    absl::StrAppendFormat(&t, " %-20s %.6f\n", Num(cv.mean_test_score[c]), cv.std_test_score[c]);
  }
  return t;
}

// best_params_ (only the keys the best candidate's grid sets, as scikit-learn) and the rest.
Json BestJson(const CvResults& cv) {
  return {{"best_index", cv.best_index},
          {"best_score", cv.best_score},
          {"best_params", ParamsSubsetJson(cv.best_params, KeysOf(cv, cv.best_index))},
          {"best_estimator_params", ParamsJson(cv.best_params)},
          {"scoring", ScoringName(cv.scoring)},
          {"neighbor_searches", cv.neighbor_searches}};
}

absl::Status WriteTextFile(const std::string& flag, const std::string& path,
                           const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot write ", path));
  return absl::OkStatus();
}

Json StatusJson(const GridSearchStatus& s) {
  Json j;
  j["id"] = s.id;
  j["state"] = s.state;
  j["dataset"] = s.dataset;
  j["task"] = s.task;
  j["mode"] = s.mode;
  j["scoring"] = s.scoring;
  j["n_candidates"] = s.n_candidates;
  j["n_splits"] = s.n_splits;
  j["jobs_total"] = s.jobs_total;
  j["jobs_done"] = s.jobs_done;
  j["jobs_requeued"] = s.jobs_requeued;
  j["neighbor_searches"] = s.neighbor_searches;
  j["elapsed_seconds"] = s.elapsed_seconds;
  j["eta_seconds"] = s.eta_seconds;
  j["started_unix_millis"] = s.started_unix_millis;
  j["refit_model"] = s.refit_model.empty() ? Json(nullptr) : Json(s.refit_model);
  if (!s.error.empty()) j["error"] = s.error;
  return j;
}

// The engine's spec from the command line; errors name the flag.
absl::StatusOr<GridSearchSpec> SpecFrom(const GridSearchCommandOptions& o,
                                        const DataSourceOptions& data) {
  GridSearchSpec spec;
  if (o.task != "classifier" && o.task != "regressor") {
    return absl::InvalidArgumentError(
        absl::StrCat("--task: grid search takes classifier or regressor, got \"", o.task, "\""));
  }
  spec.classifier = o.task == "classifier";
  KNN_ASSIGN_OR_RETURN(spec.base, ParamsFrom(o.base));
  if (!o.params.empty()) {
    ParamGrid first;
    for (const auto& [flag, assignment] : o.params) {
      if (flag == "--param") {
        KNN_RETURN_IF_ERROR(ParseParamAssignment(flag, assignment, &first));
      } else {  // a shorthand (--p VALUES): the flag names the key
        const size_t eq = assignment.find('=');
        KNN_RETURN_IF_ERROR(SetParamValues(flag, assignment.substr(0, eq),
                                           assignment.substr(eq + 1), &first));
      }
    }
    spec.param_grid.push_back(std::move(first));
  }
  for (size_t i = 0; i < o.grids.size(); ++i) {
    const std::string flag = o.grids.size() > 1 ? absl::StrCat("--grid #", i + 1) : "--grid";
    KNN_ASSIGN_OR_RETURN(ParamGrid grid, ParseGridSpec(flag, o.grids[i]));
    spec.param_grid.push_back(std::move(grid));
  }
  if (spec.param_grid.empty()) spec.param_grid.emplace_back();  // the base parameters alone
  KNN_ASSIGN_OR_RETURN(CvSpec cv, ParseCv(o.cv));
  spec.cv = cv.n_splits;
  spec.folds = std::move(cv.folds);
  if (!spec.folds.empty() && o.shuffle) {
    return absl::InvalidArgumentError("--shuffle: explicit folds (--cv FILE) are not shuffled");
  }
  spec.shuffle = o.shuffle;
  spec.random_state = data.random_state;
  if (!o.scoring.empty()) {
    absl::StatusOr<Scoring> scoring = ParseScoring(o.scoring);
    if (!scoring.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--scoring: expected accuracy, balanced_accuracy, f1_macro (classifier) or r2, "
          "neg_mean_squared_error (regressor), got \"", o.scoring, "\""));
    }
    if (IsClassifierScoring(*scoring) != spec.classifier) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--scoring: ", o.scoring, " scores a ", spec.classifier ? "regressor" : "classifier",
          ", but --task is ", o.task));
    }
    spec.scoring = *scoring;
  }
  if (!o.refit && !o.refit_model.empty()) {
    return absl::InvalidArgumentError("--refit-model: names the refit model, but --no-refit");
  }
  spec.refit = o.refit;
  spec.refit_model = o.refit_model;
  if (o.mode != "auto" && o.mode != "replicated" && o.mode != "sharded") {
    return absl::InvalidArgumentError(
        absl::StrCat("--mode: expected auto, replicated or sharded, got \"", o.mode, "\""));
  }
  spec.mode = o.mode;
  return spec;
}


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

namespace {

// Cancels the search and waits for it to end: the coordinator answers as soon as the
// cancellation is under way, while jobs in flight are still being stopped.
absl::StatusOr<GridSearchStatus> CancelAndWait(Engine* engine, const std::string& id) {
  KNN_ASSIGN_OR_RETURN(GridSearchStatus s, engine->CancelGridSearch(id));
  if (s.finished()) return s;
  absl::StatusOr<GridSearchOutcome> r =
      engine->AttachGridSearch(id, [&s](const GridSearchStatus& now) { s = now; }, nullptr);
  // CANCELLED is how a cancelled search's watch ends; it may also have finished first.
  if (r.ok()) return r->status;
  if (r.status().code() != absl::StatusCode::kCancelled) return r.status();
  return s;
}

// The search's id and how to get back to it, after Ctrl-C.
absl::StatusOr<Output> Interrupted(Engine* engine, const GridSearchCommandOptions& options,
                                   const GridSearchStatus& last) {
  Output out;
  out.exit_code = 130;
  if (last.id.empty()) {
    out.json["interrupted"] = true;
    out.text = "interrupted before the grid search started\n";
    return out;
  }
  if (options.cancel_on_interrupt) {
    KNN_ASSIGN_OR_RETURN(GridSearchStatus s, CancelAndWait(engine, last.id));
    out.json = StatusJson(s);
    out.json["cancelled"] = s.state == "CANCELLED";
    out.text = s.state == "CANCELLED"
                   ? absl::StrFormat("cancelled grid search %s after %d/%d jobs\n", s.id,
                                     s.jobs_done, s.jobs_total)
                   : absl::StrFormat("grid search %s had already ended (%s); left as it is\n",
                                     s.id, s.state);
    return out;
  }
  const std::string attach = absl::StrCat(options.program, " --coordinator ",
                                          options.coordinator, " grid-search --attach ", last.id);
  out.json = StatusJson(last);
  out.json["detached"] = true;
  out.json["attach"] = attach;
  out.text = absl::StrFormat(
      "detached from grid search %s (%d/%d jobs done); it goes on on the cluster\n"
      "re-attach with: %s\n",
      last.id, last.jobs_done, last.jobs_total, attach);
  return out;
}

absl::StatusOr<Output> ListGridSearches(Engine* engine) {
  KNN_ASSIGN_OR_RETURN(std::vector<GridSearchStatus> searches, engine->ListGridSearches());
  Output out;
  out.json["searches"] = Json::array();
  out.text = absl::StrFormat("%-16s %-10s %-24s %-11s %-9s %-22s %s\n", "id", "state", "dataset",
                             "jobs", "elapsed", "scoring", "refit model");
  for (const GridSearchStatus& s : searches) {
    out.json["searches"].push_back(StatusJson(s));
    absl::StrAppendFormat(&out.text, "%-16s %-10s %-24s %-11s %-9s %-22s %s\n", s.id, s.state,
                          s.dataset, absl::StrCat(s.jobs_done, "/", s.jobs_total),
                          FormatSeconds(s.elapsed_seconds), s.scoring,
                          s.refit_model.empty() ? "-" : s.refit_model);
    if (!s.error.empty()) absl::StrAppend(&out.text, "  error: ", s.error, "\n");
  }
  if (searches.empty()) out.text = "no grid searches\n";
  return out;
}

absl::StatusOr<Output> CancelGridSearch(Engine* engine, const std::string& id) {
  KNN_ASSIGN_OR_RETURN(GridSearchStatus s, CancelAndWait(engine, id));
  Output out;
  out.json = StatusJson(s);
  out.json["cancelled"] = s.state == "CANCELLED";
  out.text = s.state == "CANCELLED"
                 ? absl::StrFormat("grid search %s: cancelled after %d/%d jobs\n", s.id,
                                   s.jobs_done, s.jobs_total)
                 : absl::StrFormat("grid search %s had already ended (%s); left as it is\n",
                                   s.id, s.state);
  return out;
}

absl::StatusOr<Output> GridSearchOutput(Engine* engine, const GridSearchOutcome& r,
                                        const GridSearchCommandOptions& options) {
  const CvResults& cv = r.cv_results;
  const GridSearchStatus& s = r.status;
  Output out;
  out.json["id"] = s.id;
  out.json["state"] = s.state;
  out.json["engine"] = engine->where();
  out.json["dataset"] = s.dataset;
  out.json["task"] = s.task;
  out.json["mode"] = s.mode;
  out.json.update(BestJson(cv));
  out.json["n_candidates"] = cv.params.size();
  out.json["n_splits"] = cv.split_test_scores.empty() ? 0 : cv.split_test_scores[0].size();
  out.json["jobs_total"] = s.jobs_total;
  out.json["jobs_requeued"] = s.jobs_requeued;
  out.json["elapsed_seconds"] = s.elapsed_seconds;
  out.json["refit_model"] = r.refit_model.empty() ? Json(nullptr) : Json(r.refit_model);
  out.json["cv_results"] = CvResultsJson(cv);
  out.text = CvResultsText(cv);
  absl::StrAppendFormat(&out.text, "best %s: %s with %s (candidate %d of %d)\n",
                        ScoringName(cv.scoring), Num(cv.best_score),
                        ParamsSubsetText(cv.best_params, KeysOf(cv, cv.best_index)),
                        cv.best_index, cv.params.size());
  absl::StrAppendFormat(&out.text, "best estimator: %s\n", ParamsText(cv.best_params));
  absl::StrAppendFormat(&out.text,
                        "%d candidates x %d folds: %d jobs, %d neighbour searches, %d re-queued, "
                        "%s (%s%s)\n",
                        cv.params.size(), out.json["n_splits"].get<size_t>(), s.jobs_total,
                        cv.neighbor_searches, s.jobs_requeued, FormatSeconds(s.elapsed_seconds),
                        s.id == "local" ? "in-process" : absl::StrCat("grid search ", s.id, ", "),
                        s.id == "local" ? "" : absl::StrCat(engine->where(), ", ", s.mode));
  if (!r.refit_model.empty()) {
    absl::StrAppendFormat(&out.text, "best model refit on all rows: %s\n", r.refit_model);
  }
  if (!options.heatmap.empty()) {
    KNN_ASSIGN_OR_RETURN(Heatmap h, CvResultsHeatmap(cv, options.heatmap_x, options.heatmap_y));
    KNN_ASSIGN_OR_RETURN(std::string svg, HeatmapSvg(h));
    KNN_RETURN_IF_ERROR(WriteTextFile("--heatmap", options.heatmap, svg));
    out.json["heatmap"] = {{"file", options.heatmap}, {"x", h.x_name},
                           {"y", h.y_name.empty() ? Json(nullptr) : Json(h.y_name)}};
    absl::StrAppendFormat(&out.text, "heatmap of mean %s over %s%s%s: %s\n",
                          ScoringName(cv.scoring), h.x_name, h.y_name.empty() ? "" : " x ",
                          h.y_name, options.heatmap);
  }
  return out;
}

}  // namespace

absl::StatusOr<Output> RunGridSearch(Engine* engine, const DataSourceOptions& data,
                                     const GridSearchCommandOptions& options,
                                     const GridSearchProgressFn& progress,
                                     client::CancelToken* interrupt) {
  const bool local = engine->where() == "local";
  const int actions = !options.attach.empty() + !options.cancel.empty() + options.list;
  if (actions > 1) {
    return absl::InvalidArgumentError("--attach, --cancel, --list: give at most one");
  }
  const char* action = !options.attach.empty()   ? "--attach"
                       : !options.cancel.empty() ? "--cancel"
                       : options.list            ? "--list"
                                                 : nullptr;
  if (local && action != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        action, ": needs a cluster (--coordinator HOST:PORT); a local grid search runs in this "
                "process and ends with it"));
  }
  if (local && options.mode_set) {
    return absl::InvalidArgumentError(
        "--mode: chooses how a cluster runs the search; give --coordinator HOST:PORT");
  }
  if (options.heatmap.empty() && !(options.heatmap_x.empty() && options.heatmap_y.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.heatmap_x.empty() ? "--heatmap-y" : "--heatmap-x", ": needs --heatmap FILE.svg"));
  }
  if (action != nullptr && (!options.params.empty() || !options.grids.empty() ||
                            !data.dataset.empty() || !data.data_file.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        action, ": acts on existing searches; --param, --grid and the data belong to a new one"));
  }
  if (options.list) return ListGridSearches(engine);
  if (!options.cancel.empty()) return CancelGridSearch(engine, options.cancel);

  GridSearchStatus last;
  const GridSearchProgressFn on_progress = [&](const GridSearchStatus& s) {
    last = s;
    if (progress) progress(s);
  };
  absl::StatusOr<GridSearchOutcome> outcome;
  if (!options.attach.empty()) {
    last.id = options.attach;
    outcome = engine->AttachGridSearch(options.attach, on_progress, interrupt);
  } else {
    KNN_ASSIGN_OR_RETURN(GridSearchSpec spec, SpecFrom(options, data));
    KNN_ASSIGN_OR_RETURN(Selection rows, engine->Select(data));
    if (rows.data.targets.empty()) {
      return absl::InvalidArgumentError(
          "labels: grid search needs labels (give --label-column or --labels)");
    }
    outcome = engine->GridSearch(rows, spec, on_progress, interrupt);
  }
  if (!outcome.ok() && outcome.status().code() == absl::StatusCode::kCancelled &&
      interrupt != nullptr && interrupt->cancelled()) {
    return Interrupted(engine, options, last);
  }
  KNN_RETURN_IF_ERROR(outcome.status());
  return GridSearchOutput(engine, *outcome, options);
}

absl::StatusOr<Output> RunTutorial(Engine* engine, const TutorialOptions& options) {
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
  // On a cluster the reloaded copy is a named model: a previous run's is replaced.
  const std::string reloaded_name = absl::StrCat(model, "-reloaded");
  if (!local) {
    absl::Status deleted = engine->Delete(reloaded_name);
    if (!deleted.ok() && deleted.code() != absl::StatusCode::kNotFound) return deleted;
  }
  KNN_ASSIGN_OR_RETURN(ModelDesc reloaded, engine->Load(file, reloaded_name));
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
  //    cv=5) on all of digits (on a cluster, the coordinator's distributed search), then the
  //    refit best model's accuracy on the test split.
  GridSearchSpec gs;
  gs.base = spec.params;
  ParamGrid grid;
  for (int k = 2; k < 20; k += 2) grid.n_neighbors.push_back(k);
  grid.p = {1, 2, 3};
  gs.param_grid = {grid};
  gs.cv = 5;
  gs.refit = true;
  gs.refit_model = local ? absl::StrCat(model, ".best") : absl::StrCat(model, "-best");
  DataSourceOptions all_rows;
  all_rows.dataset = "digits";
  KNN_ASSIGN_OR_RETURN(Selection all, engine->Select(all_rows));
  KNN_ASSIGN_OR_RETURN(GridSearchOutcome search, engine->GridSearch(all, gs, nullptr, nullptr));
  const CvResults& cv = search.cv_results;
  KNN_ASSIGN_OR_RETURN(ModelDesc best, engine->Describe(search.refit_model));
  KNN_ASSIGN_OR_RETURN(std::vector<double> best_pred, engine->Predict(best, test));
  if (local) std::filesystem::remove(search.refit_model, ec);
  KNN_ASSIGN_OR_RETURN(double best_test, AccuracyScore(test.data.targets, best_pred));
  out.json["grid_search"] = BestJson(cv);
  out.json["grid_search"]["engine"] = engine->where();
  out.json["grid_search"]["id"] = search.status.id;
  out.json["grid_search"]["cv"] = gs.cv;
  out.json["grid_search"]["n_candidates"] = cv.params.size();
  out.json["grid_search"]["jobs_requeued"] = search.status.jobs_requeued;
  out.json["grid_search"]["refit_model"] = local ? Json(nullptr) : Json(search.refit_model);
  out.json["grid_search"]["test_accuracy_of_best_estimator"] = best_test;
  out.json["grid_search"]["cv_results"] = CvResultsJson(cv);
  absl::StrAppendFormat(&out.text,
                        "GridSearchCV(n_neighbors=2..18 step 2, p=1..3, cv=5): %d candidates, %d "
                        "neighbour searches%s\n%s",
                        cv.params.size(), cv.neighbor_searches,
                        local ? "" : absl::StrCat(" (grid search ", search.status.id, ")"),
                        CvResultsText(cv));
  absl::StrAppendFormat(&out.text, "  best score: %s\n  best params: n_neighbors=%d, p=%s\n",
                        Num(cv.best_score), cv.best_params.n_neighbors,
                        Minkowski::Create(cv.best_params.p).value().ToString());
  absl::StrAppendFormat(&out.text,
                        "  test accuracy of the best model: %s (flattering: the refit used all of "
                        "digits, these %d test rows included)\n",
                        Num(best_test), test.data.size());
  // 6. The honest figure: the same search on the training split alone, its refit best model
  //    scored on the test rows it has never seen.
  GridSearchSpec honest = gs;
  honest.refit_model =
      local ? absl::StrCat(model, ".best-train") : absl::StrCat(model, "-best-train");
  KNN_ASSIGN_OR_RETURN(GridSearchOutcome train_search,
                       engine->GridSearch(train, honest, nullptr, nullptr));
  const CvResults& tcv = train_search.cv_results;
  KNN_ASSIGN_OR_RETURN(ModelDesc train_best, engine->Describe(train_search.refit_model));
  KNN_ASSIGN_OR_RETURN(std::vector<double> train_best_pred, engine->Predict(train_best, test));
  if (local) std::filesystem::remove(train_search.refit_model, ec);
  KNN_ASSIGN_OR_RETURN(double honest_test, AccuracyScore(test.data.targets, train_best_pred));
  out.json["grid_search_on_train_split"] = BestJson(tcv);
  out.json["grid_search_on_train_split"]["id"] = train_search.status.id;
  out.json["grid_search_on_train_split"]["refit_model"] =
      local ? Json(nullptr) : Json(train_search.refit_model);
  out.json["grid_search_on_train_split"]["test_accuracy_of_best_estimator"] = honest_test;
  absl::StrAppendFormat(
      &out.text,
      "The same grid search on the %d training rows alone (the honest figure):\n"
      "  best score: %s\n  best params: n_neighbors=%d, p=%s\n"
      "  test accuracy of its best model on the %d unseen test rows: %s\n",
      train.data.size(), Num(tcv.best_score), tcv.best_params.n_neighbors,
      Minkowski::Create(tcv.best_params.p).value().ToString(), test.data.size(), Num(honest_test));
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
