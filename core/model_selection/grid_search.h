// Exhaustive grid search with cross-validation: the single-process engine and the oracle the
// cluster's distributed grid search must equal. Semantics are scikit-learn 1.2's GridSearchCV
// with KNeighborsClassifier / KNeighborsRegressor:
//   * candidates in ParameterGrid order: within a grid, keys sorted by name (algorithm,
//     leaf_size, n_neighbors, p, weights), the last varying fastest; grids in list order;
//   * cv = k: StratifiedKFold(k) for classifiers, KFold(k) for regressors (optionally shuffled
//     with a seed), or explicit folds;
//   * cv_results_: split<i>_test_score, mean_test_score (numpy mean), std_test_score (numpy
//     std), rank_test_score (scipy rankdata(-mean, "min")), best_index_ = first rank-1 candidate.
//
// Work the candidates share is done once. A FoldJob covers one fold and everything that changes
// the neighbour search (algorithm, leaf_size, p): it builds the fold's index once, finds the
// neighbours of the fold's validation rows once at the largest n_neighbors of its candidates, and
// scores every n_neighbors and weights from prefixes of that one answer. This is exact because
// neighbours are ordered by (distance, training index): the k nearest are always the first k of
// the K > k nearest. The tutorial grid (9 n_neighbors x 3 p x 5 folds) takes 15 searches.
// PlanFoldJobs / RunFoldJob / AggregateCvResults are the pieces the cluster schedules.
//
// Thread safety: pure functions; work runs on the ThreadPool passed in (null: calling thread).
#ifndef KNNCLUSTER_CORE_MODEL_SELECTION_GRID_SEARCH_H_
#define KNNCLUSTER_CORE_MODEL_SELECTION_GRID_SEARCH_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/matrix.h"
#include "core/base/thread_pool.h"
#include "core/estimators/kneighbors_classifier.h"
#include "core/estimators/kneighbors_regressor.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"
#include "core/model_selection/split.h"

namespace knncluster {

enum class Scoring { kAccuracy, kBalancedAccuracy, kF1Macro, kR2, kNegMeanSquaredError };

// scikit-learn's scorer names: "accuracy", "balanced_accuracy", "f1_macro", "r2",
// "neg_mean_squared_error".
std::string ScoringName(Scoring s);
absl::StatusOr<Scoring> ParseScoring(const std::string& name);
bool IsClassifierScoring(Scoring s);
// InvalidArgument "<field>: r2 is a regression scorer, but the estimator is a classifier" when
// the scorer does not fit the task.
absl::Status CheckScoringForTask(Scoring s, bool classifier, const std::string& field = "scoring");
// The score of predictions `y_pred` against `y_true` (greater is better).
absl::StatusOr<double> ComputeScore(Scoring s, absl::Span<const double> y_true,
                                    absl::Span<const double> y_pred);

// One grid (one dict of scikit-learn's param_grid). An empty list leaves that parameter at the
// search's base value and out of the candidates' varying keys.
struct ParamGrid {
  std::vector<std::string> algorithm;  // names, as scikit-learn takes them
  std::vector<int> leaf_size;
  std::vector<int> n_neighbors;
  std::vector<double> p;
  std::vector<std::string> weights;
};

// Most candidates one search may have: a grid is a cartesian product, so a request of a few
// kilobytes could otherwise ask for billions of them.
inline constexpr size_t kMaxGridCandidates = 100000;

// All candidates, in ParameterGrid order. InvalidArgument names a bad value
// ("param_grid[0].n_neighbors[2]: must be >= 1, got 0"), or says that the grids hold more than
// kMaxGridCandidates candidates (refused before any is made).
// With `keys` (may be null): the parameter names each candidate's grid sets, sorted (scikit-learn's
// cv_results_["params"] lists only those).
absl::StatusOr<std::vector<NeighborsParams>> ExpandParamGrid(
    absl::Span<const ParamGrid> grids, const NeighborsParams& base,
    std::vector<std::vector<std::string>>* keys = nullptr);

struct GridSearchOptions {
  bool classifier = true;  // else a regressor
  std::vector<ParamGrid> param_grid;
  NeighborsParams base;  // the estimator's own parameters (scikit-learn's `estimator=`)
  int cv = 5;
  bool shuffle = false;
  std::optional<uint32_t> random_state;
  std::vector<TrainTestIndices> folds;  // explicit folds; when non-empty, cv/shuffle are unused
  std::optional<Scoring> scoring;       // default: accuracy (classifier) / r2 (regressor)
  bool refit = true;
};

// The folds the options describe over labels y. Explicit folds are checked (indices in range,
// no duplicates within a part, both parts non-empty) and their train indices sorted: within a
// fold, neighbours tie-break by the row's index in the dataset, so a fold's answer does not depend
// on how its train list is ordered (and a sharded search, which sees global indices, agrees).
absl::StatusOr<std::vector<TrainTestIndices>> MakeFolds(const GridSearchOptions& options,
                                                        absl::Span<const double> y);

// One unit of work: a fold, the search settings shared by its candidates, and which candidates.
struct FoldJob {
  size_t fold = 0;
  Algorithm algorithm = Algorithm::kAuto;
  int leaf_size = 30;
  double p = 2;
  int max_neighbors = 1;               // the one search's k
  std::vector<size_t> candidates;      // indices into the candidate list
};

// Groups candidates into jobs: one per fold x distinct (algorithm, leaf_size, p).
std::vector<FoldJob> PlanFoldJobs(absl::Span<const NeighborsParams> candidates, size_t n_folds);

// What one job measured: the score of each of job.candidates (same order) on its fold, the time
// to build the fold's index (fit) and the time of the search and scoring (score).
struct FoldJobResult {
  std::vector<double> scores;
  double fit_seconds = 0;
  double score_seconds = 0;
};

// Runs one job. The search uses the algorithm `auto` resolves to for the fold's shape, whatever
// job.algorithm says: every algorithm gives the same neighbours and distances bit for bit, so the
// scores are those of the requested algorithm and only the time differs (the refit model uses
// the requested one). X, y: the whole dataset (rows indexed by the fold's indices). For classifiers,
// y holds class codes 0..n_classes-1 (see EncodeClasses). InvalidArgument when a candidate needs
// more neighbours than the fold trains on.
absl::StatusOr<FoldJobResult> RunFoldJob(MatrixView X, absl::Span<const double> y,
                                         bool classifier, int32_t n_classes,
                                         const TrainTestIndices& fold, const FoldJob& job,
                                         absl::Span<const NeighborsParams> candidates,
                                         Scoring scoring, ThreadPool* pool);

// The scoring half of a job, from its one search: `neighbors` holds each validation row's (in
// fold.test order) job.max_neighbors nearest training rows, true distances, ordered by
// (distance, index); its indices index `train_targets` (positions in fold.train for RunFoldJob,
// global row indices for a sharded search, which passes the whole y). `y` is the whole dataset's
// targets (codes for classifiers), for the validation rows' true values.
absl::StatusOr<std::vector<double>> ScoreFoldCandidates(
    const KNeighborsResult& neighbors, absl::Span<const double> train_targets,
    absl::Span<const double> y, bool classifier, int32_t n_classes, const TrainTestIndices& fold,
    const FoldJob& job, absl::Span<const NeighborsParams> candidates, Scoring scoring);

// Sorted distinct labels, and y re-expressed as codes into them. InvalidArgument when a label is
// not an integer (classifiers take integer labels; strings arrive as codes already).
struct EncodedClasses {
  std::vector<double> classes;
  std::vector<double> codes;
};
absl::StatusOr<EncodedClasses> EncodeClasses(absl::Span<const double> y);

struct CvResults {
  std::vector<NeighborsParams> params;
  std::vector<std::vector<std::string>> param_keys;    // per candidate (see ExpandParamGrid)
  std::vector<std::vector<double>> split_test_scores;  // [candidate][fold]
  std::vector<double> mean_test_score;
  std::vector<double> std_test_score;
  std::vector<int> rank_test_score;
  // Per candidate over folds, numpy mean / std: the job's fit (index build) time and its search
  // and scoring time, as scikit-learn reports per fitted candidate. Empty when not measured.
  std::vector<double> mean_fit_time, std_fit_time, mean_score_time, std_score_time;
  size_t best_index = 0;
  double best_score = 0;
  NeighborsParams best_params;
  Scoring scoring = Scoring::kAccuracy;
  int64_t neighbor_searches = 0;  // one per FoldJob run
};

// Means, standard deviations, ranks and the best candidate from the per-fold scores; with
// `fit_times` / `score_times` ([candidate][fold]; may be null), their means and deviations.
CvResults AggregateCvResults(std::vector<NeighborsParams> params,
                             std::vector<std::vector<double>> split_test_scores, Scoring scoring,
                             const std::vector<std::vector<double>>* fit_times = nullptr,
                             const std::vector<std::vector<double>>* score_times = nullptr);

struct GridSearchResult {
  CvResults cv_results;
  // With refit: the best candidate fitted on all of X (the classifier or the regressor).
  std::optional<KNeighborsClassifier> best_classifier;
  std::optional<KNeighborsRegressor> best_regressor;
};

// The whole search in this process. class_names as for KNeighborsClassifier::Fit.
absl::StatusOr<GridSearchResult> GridSearchCV(std::shared_ptr<const Matrix> X,
                                              std::vector<double> y,
                                              const GridSearchOptions& options, ThreadPool* pool,
                                              std::vector<std::string> class_names = {});

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_MODEL_SELECTION_GRID_SEARCH_H_
