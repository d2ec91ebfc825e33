// Engine: where knnctl's models live and run. The local engine fits in-process and keeps a model
// in a model file (--model FILE); the cluster engine sends the work to a coordinator (--model is a
// model name there, data is uploaded once and referred to by name). Commands (commands.cc) are
// written once against this interface and compute every metric client-side from predictions, so
// both engines print the same figures in the same format.
//
// Thread safety: an engine is used by one command at a time.
#ifndef KNNCLUSTER_CLIENT_CLI_ENGINE_H_
#define KNNCLUSTER_CLIENT_CLI_ENGINE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/data_source.h"
#include "core/base/thread_pool.h"
#include "core/estimators/model_io.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"

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
};

// Rows [0, n) of a selection (sent inline to a cluster), for --limit. n = 0 means all.
Selection Head(const Selection& rows, size_t n);

// In-process engine; searches run on `pool`.
std::unique_ptr<Engine> MakeLocalEngine(ThreadPool* pool);
// Engine backed by the coordinator at `address`.
std::unique_ptr<Engine> MakeClusterEngine(const std::string& address);

// Shared helpers.
absl::StatusOr<NeighborsParams> ParseParams(int n_neighbors, const std::string& weights,
                                            const std::string& algorithm, int leaf_size,
                                            const std::string& p);
ModelDesc DescribeModelFile(const Model& model, const std::string& path);

}  // namespace knncluster::cli

#endif  // KNNCLUSTER_CLIENT_CLI_ENGINE_H_
