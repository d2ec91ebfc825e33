#include "core/model_selection/grid_search.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "core/base/status_macros.h"
#include "core/estimators/metrics.h"
#include "core/estimators/voting.h"
#include "core/index/neighbor_index.h"

namespace knncluster {

namespace {
constexpr Scoring kAllScorings[] = {Scoring::kAccuracy, Scoring::kBalancedAccuracy,
                                    Scoring::kF1Macro, Scoring::kR2,
                                    Scoring::kNegMeanSquaredError};
}  // namespace

std::string ScoringName(Scoring s) {
  switch (s) {
    case Scoring::kAccuracy:
      return "accuracy";
    case Scoring::kBalancedAccuracy:
      return "balanced_accuracy";
    case Scoring::kF1Macro:
      return "f1_macro";
    case Scoring::kR2:
      return "r2";
    case Scoring::kNegMeanSquaredError:
      return "neg_mean_squared_error";
  }
  return "unknown";
}

absl::StatusOr<Scoring> ParseScoring(const std::string& name) {
  for (Scoring s : kAllScorings) {
    if (ScoringName(s) == name) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "scoring: expected accuracy, balanced_accuracy, f1_macro, r2 or neg_mean_squared_error; "
      "got \"", name, "\""));
}

bool IsClassifierScoring(Scoring s) {
  return s == Scoring::kAccuracy || s == Scoring::kBalancedAccuracy || s == Scoring::kF1Macro;
}

absl::StatusOr<double> ComputeScore(Scoring s, absl::Span<const double> y_true,
                                    absl::Span<const double> y_pred) {
  switch (s) {
    case Scoring::kAccuracy:
      return AccuracyScore(y_true, y_pred);
    case Scoring::kBalancedAccuracy:
      return BalancedAccuracyScore(y_true, y_pred);
    case Scoring::kF1Macro:
      return F1ScoreMacro(y_true, y_pred);
    case Scoring::kR2:
      return R2Score(y_true, y_pred);
    case Scoring::kNegMeanSquaredError: {
      KNN_ASSIGN_OR_RETURN(double mse, MeanSquaredError(y_true, y_pred));
      return -mse;
    }
  }
  return absl::InternalError("unknown scoring");
}

absl::StatusOr<std::vector<NeighborsParams>> ExpandParamGrid(absl::Span<const ParamGrid> grids,
                                                             const NeighborsParams& base) {
  std::vector<NeighborsParams> out;
  for (size_t g = 0; g < grids.size(); ++g) {
    const ParamGrid& grid = grids[g];
    const std::string where = absl::StrCat("param_grid[", g, "]");
    // Validate and convert the values that need it.
    std::vector<Algorithm> algorithms;
    for (size_t i = 0; i < grid.algorithm.size(); ++i) {
      auto a = ParseAlgorithm(grid.algorithm[i]);
      if (!a.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".algorithm[", i, "]: ", a.status().message()));
      }
      algorithms.push_back(*a);
    }
    std::vector<Weights> weights;
    for (size_t i = 0; i < grid.weights.size(); ++i) {
      auto w = ParseWeights(grid.weights[i]);
      if (!w.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".weights[", i, "]: ", w.status().message()));
      }
      weights.push_back(*w);
    }
    // Keys in sorted order; a key without values keeps the base value (one "choice").
    const size_t na = std::max<size_t>(1, algorithms.size());
    const size_t nl = std::max<size_t>(1, grid.leaf_size.size());
    const size_t nk = std::max<size_t>(1, grid.n_neighbors.size());
    const size_t np_ = std::max<size_t>(1, grid.p.size());
    const size_t nw = std::max<size_t>(1, weights.size());
    for (size_t a = 0; a < na; ++a)
      for (size_t l = 0; l < nl; ++l)
        for (size_t k = 0; k < nk; ++k)
          for (size_t p = 0; p < np_; ++p)
            for (size_t w = 0; w < nw; ++w) {
              NeighborsParams c = base;
              if (!algorithms.empty()) c.algorithm = algorithms[a];
              if (!grid.leaf_size.empty()) c.leaf_size = grid.leaf_size[l];
              if (!grid.n_neighbors.empty()) c.n_neighbors = grid.n_neighbors[k];
              if (!grid.p.empty()) c.p = grid.p[p];
              if (!weights.empty()) c.weights = weights[w];
              absl::Status st = c.Validate();
              if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", st.message()));
              out.push_back(c);
            }
  }
  if (out.empty()) return absl::InvalidArgumentError("param_grid: no candidates");
  return out;
}

absl::StatusOr<EncodedClasses> EncodeClasses(absl::Span<const double> y) {
  KNN_ASSIGN_OR_RETURN(EncodedLabels encoded, EncodeClassLabels(y));
  EncodedClasses e;
  e.classes = std::move(encoded.classes);
  e.codes.assign(encoded.codes.begin(), encoded.codes.end());
  return e;
}

absl::StatusOr<std::vector<TrainTestIndices>> MakeFolds(const GridSearchOptions& options,
                                                        absl::Span<const double> y) {
  if (!options.folds.empty()) {
    for (size_t f = 0; f < options.folds.size(); ++f) {
      const TrainTestIndices& fold = options.folds[f];
      if (fold.train.empty() || fold.test.empty()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("folds[%d]: train and test must both be non-empty", f));
      }
      for (const auto* part : {&fold.train, &fold.test}) {
        for (int64_t i : *part) {
          if (i < 0 || static_cast<size_t>(i) >= y.size()) {
            return absl::InvalidArgumentError(absl::StrFormat(
                "folds[%d]: row index %d out of range [0, %d)", f, i, y.size()));
          }
        }
      }
    }
    return options.folds;
  }
  if (options.classifier) {
    std::vector<int64_t> labels(y.begin(), y.end());
    return StratifiedKFold(options.cv, options.shuffle, options.random_state).Split(labels);
  }
  return KFold(options.cv, options.shuffle, options.random_state).Split(static_cast<int64_t>(y.size()));
}

std::vector<FoldJob> PlanFoldJobs(absl::Span<const NeighborsParams> candidates, size_t n_folds) {
  // Distinct search settings in first-appearance order.
  std::vector<FoldJob> settings;
  std::map<std::tuple<int, int, double>, size_t> slot;
  for (size_t c = 0; c < candidates.size(); ++c) {
    const NeighborsParams& p = candidates[c];
    auto key = std::make_tuple(static_cast<int>(p.algorithm), p.leaf_size, p.p);
    auto [it, inserted] = slot.emplace(key, settings.size());
    if (inserted) {
      FoldJob job;
      job.algorithm = p.algorithm;
      job.leaf_size = p.leaf_size;
      job.p = p.p;
      job.max_neighbors = p.n_neighbors;
      settings.push_back(job);
    }
    FoldJob& job = settings[it->second];
    job.max_neighbors = std::max(job.max_neighbors, p.n_neighbors);
    job.candidates.push_back(c);
  }
  std::vector<FoldJob> jobs;
  for (size_t f = 0; f < n_folds; ++f) {
    for (FoldJob job : settings) {
      job.fold = f;
      jobs.push_back(std::move(job));
    }
  }
  return jobs;
}

absl::StatusOr<std::vector<double>> RunFoldJob(MatrixView X, absl::Span<const double> y,
                                               bool classifier, int32_t n_classes,
                                               const TrainTestIndices& fold, const FoldJob& job,
                                               absl::Span<const NeighborsParams> candidates,
                                               Scoring scoring, ThreadPool* pool) {
  const size_t n_train = fold.train.size();
  if (static_cast<size_t>(job.max_neighbors) > n_train) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "n_neighbors: a candidate needs %d neighbours but fold %d trains on only %d rows",
        job.max_neighbors, job.fold, n_train));
  }
  auto train = std::make_shared<const Matrix>(Matrix::Gather(X, fold.train));
  const Matrix test = Matrix::Gather(X, fold.test);
  IndexOptions index_options;
  index_options.algorithm = job.algorithm;
  index_options.leaf_size = job.leaf_size;
  index_options.p = job.p;
  KNN_ASSIGN_OR_RETURN(auto index, BuildIndex(train, {}, index_options));
  KNN_ASSIGN_OR_RETURN(KNeighborsResult nb, index->KNeighbors(test, job.max_neighbors, pool));

  std::vector<double> y_true, y_train;
  for (int64_t i : fold.test) y_true.push_back(y[i]);
  for (int64_t i : fold.train) y_train.push_back(y[i]);
  std::vector<int32_t> labels;
  if (classifier) labels.assign(y_train.begin(), y_train.end());

  const size_t K = nb.k;
  std::vector<double> scores;
  std::vector<double> y_pred(nb.num_queries);
  for (size_t c : job.candidates) {
    const NeighborsParams& params = candidates[c];
    const size_t k = static_cast<size_t>(params.n_neighbors);
    for (size_t q = 0; q < nb.num_queries; ++q) {
      absl::Span<const double> dist(nb.distances.data() + q * K, k);
      absl::Span<const int64_t> idx(nb.indices.data() + q * K, k);
      y_pred[q] = classifier ? VoteClass(dist, idx, labels, n_classes, params.weights)
                             : RegressionValue(dist, idx, y_train, params.weights);
    }
    KNN_ASSIGN_OR_RETURN(double score, ComputeScore(scoring, y_true, y_pred));
    scores.push_back(score);
  }
  return scores;
}

CvResults AggregateCvResults(std::vector<NeighborsParams> params,
                             std::vector<std::vector<double>> split_test_scores, Scoring scoring) {
  CvResults r;
  r.scoring = scoring;
  const size_t n = params.size();
  for (size_t c = 0; c < n; ++c) {
    const std::vector<double>& s = split_test_scores[c];
    const double mean = NumpySum(s) / static_cast<double>(s.size());
    std::vector<double> sq(s.size());
    for (size_t f = 0; f < s.size(); ++f) sq[f] = (s[f] - mean) * (s[f] - mean);
    r.mean_test_score.push_back(mean);
    r.std_test_score.push_back(std::sqrt(NumpySum(sq) / static_cast<double>(s.size())));
  }
  // scipy.stats.rankdata(-mean, method="min"); NaN means rank with the worst.
  for (size_t c = 0; c < n; ++c) {
    const double mc = r.mean_test_score[c];
    int rank = 1;
    for (size_t o = 0; o < n; ++o) {
      const double mo = r.mean_test_score[o];
      if (std::isnan(mc) ? !std::isnan(mo) : (!std::isnan(mo) && mo > mc)) ++rank;
    }
    r.rank_test_score.push_back(rank);
  }
  r.best_index = static_cast<size_t>(
      std::min_element(r.rank_test_score.begin(), r.rank_test_score.end()) - r.rank_test_score.begin());
  r.best_score = r.mean_test_score[r.best_index];
  r.best_params = params[r.best_index];
  r.params = std::move(params);
  r.split_test_scores = std::move(split_test_scores);
  return r;
}

absl::StatusOr<GridSearchResult> GridSearchCV(std::shared_ptr<const Matrix> X,
                                              std::vector<double> y,
                                              const GridSearchOptions& options, ThreadPool* pool,
                                              std::vector<std::string> class_names) {
  if (X == nullptr || X->rows() == 0) return absl::InvalidArgumentError("X: no rows");
  if (y.size() != X->rows()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "y: expected %d labels (one per row of X), got %d", X->rows(), y.size()));
  }
  const Scoring scoring =
      options.scoring.value_or(options.classifier ? Scoring::kAccuracy : Scoring::kR2);
  if (IsClassifierScoring(scoring) != options.classifier) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scoring: ", ScoringName(scoring), " is a ",
        IsClassifierScoring(scoring) ? "classification" : "regression", " scorer, but the estimator is a ",
        options.classifier ? "classifier" : "regressor"));
  }
  KNN_ASSIGN_OR_RETURN(std::vector<NeighborsParams> candidates,
                       ExpandParamGrid(options.param_grid, options.base));
  std::vector<double> target = y;
  int32_t n_classes = 0;
  if (options.classifier) {
    KNN_ASSIGN_OR_RETURN(EncodedClasses enc, EncodeClasses(y));
    target = std::move(enc.codes);
    n_classes = static_cast<int32_t>(enc.classes.size());
  }
  KNN_ASSIGN_OR_RETURN(std::vector<TrainTestIndices> folds, MakeFolds(options, target));
  const std::vector<FoldJob> jobs = PlanFoldJobs(candidates, folds.size());

  std::vector<std::vector<double>> scores(candidates.size(), std::vector<double>(folds.size()));
  absl::Mutex mu;
  absl::Status first_error;
  ParallelFor(pool, jobs.size(), [&](size_t j) {
    const FoldJob& job = jobs[j];
    auto s = RunFoldJob(*X, target, options.classifier, n_classes, folds[job.fold], job, candidates,
                        scoring, pool);
    absl::MutexLock lock(&mu);
    if (!s.ok()) {
      if (first_error.ok()) first_error = s.status();
      return;
    }
    for (size_t i = 0; i < job.candidates.size(); ++i) scores[job.candidates[i]][job.fold] = (*s)[i];
  });
  KNN_RETURN_IF_ERROR(first_error);

  GridSearchResult result;
  result.cv_results = AggregateCvResults(std::move(candidates), std::move(scores), scoring);
  result.cv_results.neighbor_searches = static_cast<int64_t>(jobs.size());
  if (options.refit) {
    const NeighborsParams& best = result.cv_results.best_params;
    if (options.classifier) {
      KNeighborsClassifier clf(best);
      KNN_RETURN_IF_ERROR(clf.Fit(X, std::move(y), std::move(class_names)));
      result.best_classifier = std::move(clf);
    } else {
      KNeighborsRegressor reg(best);
      KNN_RETURN_IF_ERROR(reg.Fit(X, std::move(y)));
      result.best_regressor = std::move(reg);
    }
  }
  return result;
}

}  // namespace knncluster
