#include "core/model_selection/grid_search.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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

absl::Status CheckScoringForTask(Scoring s, bool classifier, const std::string& field) {
  if (IsClassifierScoring(s) == classifier) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": ", ScoringName(s), " is a ", IsClassifierScoring(s) ? "classification" : "regression",
      " scorer, but the estimator is a ", classifier ? "classifier" : "regressor"));
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

absl::StatusOr<std::vector<NeighborsParams>> ExpandParamGrid(
    absl::Span<const ParamGrid> grids, const NeighborsParams& base,
    std::vector<std::vector<std::string>>* keys) {
  std::vector<NeighborsParams> out;
  if (keys != nullptr) keys->clear();
  // Count first (saturating: each factor is a list's length, their product may overflow).
  size_t total = 0;
  for (const ParamGrid& grid : grids) {
    size_t n = 1;
    for (size_t len : {grid.algorithm.size(), grid.leaf_size.size(), grid.n_neighbors.size(),
                       grid.p.size(), grid.weights.size()}) {
      if (__builtin_mul_overflow(n, std::max<size_t>(1, len), &n)) n = SIZE_MAX;
    }
    if (__builtin_add_overflow(total, n, &total)) total = SIZE_MAX;
  }
  if (total > kMaxGridCandidates) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "param_grid: %s candidates, more than the %d one search may have",
        total == SIZE_MAX ? std::string("too many") : absl::StrCat(total), kMaxGridCandidates));
  }
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
    std::vector<std::string> grid_keys;
    if (!grid.algorithm.empty()) grid_keys.push_back("algorithm");
    if (!grid.leaf_size.empty()) grid_keys.push_back("leaf_size");
    if (!grid.n_neighbors.empty()) grid_keys.push_back("n_neighbors");
    if (!grid.p.empty()) grid_keys.push_back("p");
    if (!grid.weights.empty()) grid_keys.push_back("weights");
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
              if (keys != nullptr) keys->push_back(grid_keys);
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
    std::vector<TrainTestIndices> folds = options.folds;
    std::vector<char> seen(y.size());
    for (size_t f = 0; f < folds.size(); ++f) {
      TrainTestIndices& fold = folds[f];
      if (fold.train.empty() || fold.test.empty()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("folds[%d]: train and test must both be non-empty", f));
      }
      for (const auto& [part, name] : {std::pair{&fold.train, "train"}, {&fold.test, "test"}}) {
        std::fill(seen.begin(), seen.end(), 0);
        for (int64_t i : *part) {
          if (i < 0 || static_cast<size_t>(i) >= y.size()) {
            return absl::InvalidArgumentError(absl::StrFormat(
                "folds[%d].%s: row index %d out of range [0, %d)", f, name, i, y.size()));
          }
          if (seen[i]) {
            return absl::InvalidArgumentError(
                absl::StrFormat("folds[%d].%s: row index %d appears twice", f, name, i));
          }
          seen[i] = 1;
        }
      }
      std::sort(fold.train.begin(), fold.train.end());
    }
    return folds;
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

absl::StatusOr<FoldJobResult> RunFoldJob(MatrixView X, absl::Span<const double> y,
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
  FoldJobResult result;
  const absl::Time start = absl::Now();
  auto train = std::make_shared<const Matrix>(Matrix::Gather(X, fold.train));
  IndexOptions index_options;
  // Every algorithm returns the same neighbours bit for bit (one distance function, the tie
  // rule), so the job searches with the fastest for the fold's shape: what `auto` picks.
  index_options.algorithm = ResolveAuto(n_train, X.cols());
  index_options.leaf_size = job.leaf_size;
  index_options.p = job.p;
  KNN_ASSIGN_OR_RETURN(auto index, BuildIndex(train, {}, index_options));
  const absl::Time built = absl::Now();
  const Matrix test = Matrix::Gather(X, fold.test);
  KNN_ASSIGN_OR_RETURN(KNeighborsResult nb, index->KNeighbors(test, job.max_neighbors, pool));
  std::vector<double> y_train;
  y_train.reserve(n_train);
  for (int64_t i : fold.train) y_train.push_back(y[i]);
  KNN_ASSIGN_OR_RETURN(result.scores, ScoreFoldCandidates(nb, y_train, y, classifier, n_classes,
                                                          fold, job, candidates, scoring));
  result.fit_seconds = absl::ToDoubleSeconds(built - start);
  result.score_seconds = absl::ToDoubleSeconds(absl::Now() - built);
  return result;
}

absl::StatusOr<std::vector<double>> ScoreFoldCandidates(
    const KNeighborsResult& nb, absl::Span<const double> train_targets,
    absl::Span<const double> y, bool classifier, int32_t n_classes, const TrainTestIndices& fold,
    const FoldJob& job, absl::Span<const NeighborsParams> candidates, Scoring scoring) {
  if (nb.num_queries != fold.test.size() || nb.k < static_cast<size_t>(job.max_neighbors)) {
    return absl::InternalError(absl::StrFormat(
        "fold %d: expected %d nearest of %d validation rows, got %d of %d", job.fold,
        job.max_neighbors, fold.test.size(), nb.k, nb.num_queries));
  }
  std::vector<double> y_true;
  y_true.reserve(fold.test.size());
  for (int64_t i : fold.test) y_true.push_back(y[i]);
  std::vector<int32_t> labels;
  if (classifier) labels.assign(train_targets.begin(), train_targets.end());

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
                             : RegressionValue(dist, idx, train_targets, params.weights);
    }
    KNN_ASSIGN_OR_RETURN(double score, ComputeScore(scoring, y_true, y_pred));
    scores.push_back(score);
  }
  return scores;
}

namespace {
// numpy's mean and std (ddof 0) of one candidate's values over folds.
std::pair<double, double> NumpyMeanStd(const std::vector<double>& s) {
  const double mean = NumpySum(s) / static_cast<double>(s.size());
  std::vector<double> sq(s.size());
  for (size_t f = 0; f < s.size(); ++f) sq[f] = (s[f] - mean) * (s[f] - mean);
  return {mean, std::sqrt(NumpySum(sq) / static_cast<double>(s.size()))};
}
}  // namespace

CvResults AggregateCvResults(std::vector<NeighborsParams> params,
                             std::vector<std::vector<double>> split_test_scores, Scoring scoring,
                             const std::vector<std::vector<double>>* fit_times,
                             const std::vector<std::vector<double>>* score_times) {
  CvResults r;
  r.scoring = scoring;
  const size_t n = params.size();
  for (size_t c = 0; c < n; ++c) {
    auto [mean, std] = NumpyMeanStd(split_test_scores[c]);
    r.mean_test_score.push_back(mean);
    r.std_test_score.push_back(std);
    if (fit_times != nullptr) {
      std::tie(mean, std) = NumpyMeanStd((*fit_times)[c]);
      r.mean_fit_time.push_back(mean);
      r.std_fit_time.push_back(std);
    }
    if (score_times != nullptr) {
      std::tie(mean, std) = NumpyMeanStd((*score_times)[c]);
      r.mean_score_time.push_back(mean);
      r.std_score_time.push_back(std);
    }
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
  KNN_RETURN_IF_ERROR(CheckScoringForTask(scoring, options.classifier));
  std::vector<std::vector<std::string>> keys;
  KNN_ASSIGN_OR_RETURN(std::vector<NeighborsParams> candidates,
                       ExpandParamGrid(options.param_grid, options.base, &keys));
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
  std::vector<std::vector<double>> fit_times = scores, score_times = scores;
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
    for (size_t i = 0; i < job.candidates.size(); ++i) {
      const size_t c = job.candidates[i];
      scores[c][job.fold] = s->scores[i];
      fit_times[c][job.fold] = s->fit_seconds;
      score_times[c][job.fold] = s->score_seconds;
    }
  });
  KNN_RETURN_IF_ERROR(first_error);

  GridSearchResult result;
  result.cv_results = AggregateCvResults(std::move(candidates), std::move(scores), scoring,
                                         &fit_times, &score_times);
  result.cv_results.param_keys = std::move(keys);
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
