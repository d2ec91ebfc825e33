// Engine: where knnctl's models live and run. The local engine fits in-process and keeps a model
// in a model file (--model FILE); the cluster engine sends the work to a coordinator (--model is a
// model name there, data is uploaded once and referred to by name). Commands (commands.cc) are
// written once against this interface and compute every metric client-side from predictions, so
// both engines print the same figures in the same format.
//
// Thread safety: an engine is used by one command at a time.
#ifndef KNNCLUSTER_CLIENT_CLI_ENGINE_H_
#define KNNCLUSTER_CLIENT_CLI_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/data_source.h"
#include "client/cpp/cancel_token.h"
#include "core/base/thread_pool.h"
#include "core/estimators/model_io.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"
#include "core/model_selection/grid_search.h"
#include "knncluster/client.h"

namespace knncluster::cli {

// What a command needs to know of a fitted model.
struct ModelDesc {
  std::string model;  // file path (local) or name (cluster)
  Model::Task task = Model::Task::kClassifier;
  NeighborsParams params;
  size_t rows = 0, cols = 0;
  std::vector<double> classes;           // classifier: sorted labels (codes with class_names)
  std::vector<std::string> class_names;  // classifier with string labels
  std::optional<double> threshold;       // outlier detector
  double contamination = 0.1;
  std::string dataset;                   // what it was fitted on
};

// The rows a command works on: always loaded locally (to upload, and for their labels), plus, in
// cluster mode, the name of the same rows on the coordinator.
struct Selection {
  Dataset data;
  std::string remote_name;  // cluster engine only
};

struct FitSpec {
  Model::Task task = Model::Task::kClassifier;
  NeighborsParams params;
  double contamination = 0.1;
  std::optional<double> threshold;
};

// A grid search with cross-validation (scikit-learn's GridSearchCV), as the engines take it.
struct GridSearchSpec {
  bool classifier = true;  // else a regressor
  NeighborsParams base;    // the estimator's own parameters
  std::vector<ParamGrid> param_grid;
  int cv = 5;                           // StratifiedKFold / KFold(cv)
  bool shuffle = false;
  std::optional<uint32_t> random_state;
  std::vector<TrainTestIndices> folds;  // explicit folds (then cv / shuffle are unused)
  std::optional<Scoring> scoring;       // default: accuracy / r2
  bool refit = true;
  // The refit best model: a model file (local; no file, no refit there) or a model name
  // (cluster; empty: the coordinator's "<id>-best"). An existing one is replaced.
  std::string refit_model;
  std::string mode = "auto";  // cluster: auto | replicated | sharded
};

// A search's progress, as the coordinator reports it (the local engine reports the same fields).
struct GridSearchStatus {
  std::string id;     // "gs-" and 12 hex digits; "local" in-process
  std::string state;  // QUEUED, RUNNING, REFITTING, SUCCEEDED, FAILED, CANCELLED
  std::string dataset, task, mode, scoring, refit_model, error;
  uint32_t n_candidates = 0, n_splits = 0;
  uint32_t jobs_total = 0, jobs_done = 0, jobs_requeued = 0, neighbor_searches = 0;
  double elapsed_seconds = 0;
  double eta_seconds = -1;  // -1: unknown
  int64_t started_unix_millis = 0;

  bool finished() const {
    return state == "SUCCEEDED" || state == "FAILED" || state == "CANCELLED";
  }
};

struct GridSearchOutcome {
  GridSearchStatus status;  // the final one
  CvResults cv_results;     // best_*, scoring and neighbor_searches filled in
  std::string refit_model;  // empty without refit
};

// Called with every progress event of a search (the first one carries its id).
using GridSearchProgressFn = std::function<void(const GridSearchStatus&)>;

class Engine {
 public:
  virtual ~Engine() = default;
  // "local" or "cluster HOST:PORT".
  virtual std::string where() const = 0;
  // Loads the rows the options select (uploading and splitting on the cluster as needed).
  virtual absl::StatusOr<Selection> Select(const DataSourceOptions& options) = 0;
  // The split's indices (scikit-learn's train_test_split over the source's rows).
  virtual absl::StatusOr<TrainTestIndices> Split(const DataSourceOptions& options) = 0;
  virtual absl::StatusOr<ModelDesc> Fit(const std::string& model, const Selection& rows,
                                        const FitSpec& spec) = 0;
  virtual absl::StatusOr<ModelDesc> Describe(const std::string& model) = 0;
  // Predictions: labels (codes when the model has class_names), targets, or +1/-1.
  virtual absl::StatusOr<std::vector<double>> Predict(const ModelDesc& model,
                                                      const Selection& rows) = 0;
  virtual absl::StatusOr<Matrix> PredictProba(const ModelDesc& model, const Selection& rows) = 0;
  // Outlier detector: the distance of each row to its k-th nearest training sample.
  virtual absl::StatusOr<std::vector<double>> OutlierScores(const ModelDesc& model,
                                                            const Selection& rows) = 0;
  virtual absl::StatusOr<KNeighborsResult> KNeighbors(const ModelDesc& model, const Selection& rows,
                                                      std::optional<int> k) = 0;
  virtual absl::StatusOr<RadiusResult> RadiusNeighbors(const ModelDesc& model,
                                                       const Selection& rows, double radius) = 0;
  // The server's own score, where there is one (cluster), for cross-checking the client's.
  virtual std::optional<double> ServerScore(const ModelDesc& model, const Selection& rows) = 0;
  // Writes the model's file to `path` (cluster: export).
  virtual absl::Status Save(const ModelDesc& model, const std::string& path) = 0;
  // Reads a model file (cluster: import under `name`).
  virtual absl::StatusOr<ModelDesc> Load(const std::string& path, const std::string& name) = 0;
  // Deletes a model (the file, locally); NOT_FOUND when there is none.
  virtual absl::Status Delete(const std::string& model) = 0;

  // Runs a grid search over `rows` (labelled) and waits for its result, reporting progress.
  // When `detach` (may be null) is cancelled while waiting, returns CANCELLED and leaves a
  // cluster's search running (progress has told the caller its id).
  virtual absl::StatusOr<GridSearchOutcome> GridSearch(const Selection& rows,
                                                       const GridSearchSpec& spec,
                                                       const GridSearchProgressFn& progress,
                                                       client::CancelToken* detach) = 0;
  // Waits for the result of the search `id`, as GridSearch does (cluster only).
  virtual absl::StatusOr<GridSearchOutcome> AttachGridSearch(const std::string& id,
                                                             const GridSearchProgressFn& progress,
                                                             client::CancelToken* detach) = 0;
  virtual absl::StatusOr<GridSearchStatus> CancelGridSearch(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<GridSearchStatus>> ListGridSearches() = 0;
};

// Rows [0, n) of a selection (sent inline to a cluster), for --limit. n = 0 means all.
Selection Head(const Selection& rows, size_t n);

// In-process engine; searches run on `pool`.
std::unique_ptr<Engine> MakeLocalEngine(ThreadPool* pool);
// Engine backed by the coordinator at options.address (TLS and token as the options say).
std::unique_ptr<Engine> MakeClusterEngine(const client::ClientOptions& options);

// Shared helpers.
absl::StatusOr<NeighborsParams> ParseParams(int n_neighbors, const std::string& weights,
                                            const std::string& algorithm, int leaf_size,
                                            const std::string& p);
ModelDesc DescribeModelFile(const Model& model, const std::string& path);

}  // namespace knncluster::cli

#endif  // KNNCLUSTER_CLIENT_CLI_ENGINE_H_
