// knnctl's commands in local mode: each runs in-process on the core library and returns its
// result twice, as JSON (stable field names, for --json and scripts) and as text for people.
// Every command runs against an Engine: in-process, or a coordinator.
// Thread-safe: no shared state beyond the engine passed in.
#ifndef KNNCLUSTER_CLIENT_CLI_COMMANDS_H_
#define KNNCLUSTER_CLIENT_CLI_COMMANDS_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/data_source.h"
#include "client/cli/engine.h"
#include "client/cpp/cancel_token.h"
#include "nlohmann/json.hpp"

namespace knncluster::cli {

struct Output {
  nlohmann::ordered_json json;
  std::string text;  // ends with a newline
  int exit_code = 0;  // 130 when the command was interrupted (Ctrl-C) but still reports
};

// Estimator choice and hyper-parameters, with scikit-learn's names and defaults.
struct ModelOptions {
  std::string task = "classifier";  // classifier | regressor | outlier
  int n_neighbors = 5;              // outlier detection defaults to 1 (see `fit --help`)
  bool n_neighbors_set = false;
  std::string weights = "uniform";
  std::string algorithm = "auto";
  int leaf_size = 30;
  std::string p = "2";  // a number >= 1 or "inf"
  double contamination = 0.1;
  std::optional<double> threshold;
};

// Commands run against an engine (engine.h): in-process, or a coordinator. `model` is a model
// file in local mode and a model name on a cluster.
absl::StatusOr<Output> RunSplit(Engine* engine, const DataSourceOptions& data);
absl::StatusOr<Output> RunFit(Engine* engine, const DataSourceOptions& data,
                              const ModelOptions& model_options, const std::string& model);
absl::StatusOr<Output> RunScore(Engine* engine, const std::string& model,
                                const DataSourceOptions& data);
// limit: at most this many rows (0 = all).
absl::StatusOr<Output> RunPredict(Engine* engine, const std::string& model,
                                  const DataSourceOptions& data, bool proba, size_t limit);
// With `radius`, every training row within that distance instead (radius_neighbors).
absl::StatusOr<Output> RunKNeighbors(Engine* engine, const std::string& model,
                                     const DataSourceOptions& data, std::optional<int> k,
                                     std::optional<double> radius, size_t limit);
// Writes the model's file to out_path (cluster: export).
absl::StatusOr<Output> RunSave(Engine* engine, const std::string& model,
                               const std::string& out_path);
// Reads and checks a model file; on a cluster, imports it as `name`.
absl::StatusOr<Output> RunLoad(Engine* engine, const std::string& path, const std::string& name);

// Grid search with cross-validation (scikit-learn's GridSearchCV), in-process or on a cluster.
// Parameter values are spelled as param_spec.h describes.
struct GridSearchCommandOptions {
  std::string task = "classifier";  // classifier | regressor
  // (flag, "KEY=VALUES") for the first grid: --param, and the shorthands -k/--p/... as
  // ("--n-neighbors", "n_neighbors=1,3").
  std::vector<std::pair<std::string, std::string>> params;
  std::vector<std::string> grids;   // --grid "n_neighbors=2:20:2;p=1,2,3": one more grid each
  ModelOptions base;                // values for the parameters a grid leaves out
  std::string cv = "5";             // a number of folds or a JSON file of folds
  bool shuffle = false;             // the seed is DataSourceOptions::random_state
  std::string scoring;              // empty: accuracy / r2
  bool refit = true;
  std::string refit_model;  // local: the file to save the refit model to; cluster: its name
  std::string mode = "auto";
  bool mode_set = false;    // --mode given (refused in local mode)
  // Another action instead of a new search: re-attach to, cancel, or list searches.
  std::string attach;
  std::string cancel;
  bool list = false;
  bool cancel_on_interrupt = false;  // Ctrl-C cancels the search instead of detaching
  std::string heatmap;               // SVG file to write
  std::string heatmap_x, heatmap_y;  // its axes (default: the two keys with most values)
  std::string program = "knnctl";    // how to spell the re-attach command
  std::string coordinator;           // ditto
};

// `progress` (may be null) sees every progress event; `interrupt` (may be null), once cancelled,
// stops the wait: the command then detaches from the search (or cancels it with
// cancel_on_interrupt) and returns exit_code 130 with the search's id.
absl::StatusOr<Output> RunGridSearch(Engine* engine, const DataSourceOptions& data,
                                     const GridSearchCommandOptions& options,
                                     const GridSearchProgressFn& progress,
                                     client::CancelToken* interrupt);

struct TutorialOptions {
  std::string model;  // model file (local; default a temp file) or name (cluster; "tutorial-knn")
  std::string algorithm = "kd_tree";
  int n_neighbors = 20;
  std::string p = "2";
  std::string test_size = "0.2";
  uint32_t random_state = 1337;
};
// scikit-learn's KNN tutorial on digits: split, fit, test accuracy, save and reload, grid search
// (on a cluster, the coordinator's distributed grid search).
absl::StatusOr<Output> RunTutorial(Engine* engine, const TutorialOptions& options);

// Workers, datasets and models of the cluster at `address` (GetClusterStatus).
absl::StatusOr<Output> RunClusterStatus(const client::ClientOptions& options);

// Writes the first `count` digits side by side as a grayscale PNG, each 8x8 image scaled up
// `scale` times, dark ink on white as the tutorial plots them (matplotlib cmap gray_r).
absl::StatusOr<Output> RunShowDigits(int count, int scale, const std::string& out_path);

}  // namespace knncluster::cli

#endif  // KNNCLUSTER_CLIENT_CLI_COMMANDS_H_
