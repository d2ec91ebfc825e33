// <knncluster/client.h>: the C++ client library of a knncluster coordinator (CMake:
// find_package(knncluster CONFIG) and target_link_libraries(... knncluster::client)).
//
// A Client is a synchronous connection to one coordinator. Every call carries a deadline
// (ClientOptions::deadline) and returns absl::Status / absl::StatusOr with the server's code and
// message: INVALID_ARGUMENT names the offending field ("queries: expected 64 features, got 63"),
// NOT_FOUND is an unknown dataset, model or search, ALREADY_EXISTS a name in use without
// `replace`, FAILED_PRECONDITION right data in the wrong state, UNAVAILABLE an unreachable
// coordinator or worker (retryable). What may be large travels in chunks: dataset uploads in rows,
// model files in bytes.
//
// This header uses only std and Abseil types: the wire format (protobuf, gRPC) stays inside the
// library. Values are plain structs; copy them freely.
//
// Thread safety: a Client may be used from several threads at once.
#ifndef KNNCLUSTER_CLIENT_H_
#define KNNCLUSTER_CLIENT_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "knncluster/cancel_token.h"

namespace knncluster::client {

// ---- Connecting ---------------------------------------------------------------------------------

// TLS for the channel. Each PEM is given either by its contents (`*_pem`) or by a file (`*_file`),
// never both. Files are read once, by Client::Create.
struct TlsOptions {
  // The CA certificates that sign the coordinator's certificate; neither set: gRPC's default
  // roots.
  std::string root_ca_pem, root_ca_file;
  // The client's certificate chain and private key, for mutual TLS; both or neither.
  std::string cert_pem, cert_file;
  std::string key_pem, key_file;
  // The name the coordinator's certificate is checked against, when not the address's host (for
  // example, when connecting by IP address to a certificate issued for a DNS name).
  std::string server_name;
};

struct ClientOptions {
  std::string address;                          // the coordinator's HOST:PORT
  std::chrono::milliseconds deadline{120'000};  // per call (a grid-search watch re-opens)
  size_t chunk_bytes = 1 << 20;                 // upload and model-import chunk size
  std::optional<TlsOptions> tls;                // unset: plaintext (loopback and tests)
  // Sent on every call as "authorization: Bearer <token>"; empty: none. Printable ASCII without
  // spaces. Without TLS the token travels in clear text: use one without TLS on loopback only.
  std::string token;
  // Queries (KNeighbors, Predict, PredictProba, Score) accept a partial answer when a shard has
  // no live copy: the answer then covers the other shards and lists the missing ones in
  // `missing_shards`. Default: such a call fails UNAVAILABLE naming the shard.
  bool allow_partial = false;
};

// ---- Parameters ---------------------------------------------------------------------------------

enum class Task { kClassifier, kRegressor, kOutlier };
// scikit-learn's `algorithm` and `weights`.
enum class Algorithm { kAuto, kKdTree, kBallTree, kBrute };
enum class Weights { kUniform, kDistance };

// scikit-learn's names: "classifier" / "regressor" / "outlier"; "auto", "kd_tree", "ball_tree",
// "brute"; "uniform", "distance".
std::string TaskName(Task task);
std::string AlgorithmName(Algorithm algorithm);
std::string WeightsName(Weights weights);

// The k-NN estimators' hyper-parameters, with scikit-learn's defaults.
struct NeighborsParams {
  int n_neighbors = 5;  // k >= 1, at most the training rows
  Weights weights = Weights::kUniform;
  Algorithm algorithm = Algorithm::kAuto;
  int leaf_size = 30;  // >= 1; trees only
  double p = 2;        // Minkowski order >= 1; +infinity is Chebyshev
};

// ---- Data ---------------------------------------------------------------------------------------

enum class Labels { kNone, kNumeric, kString };

// A dataset held by the caller. With string class labels, targets[i] is an index into
// class_names (sorted ascending).
struct Dataset {
  std::string name;
  size_t rows = 0, cols = 0;
  std::vector<double> features;  // rows x cols, row-major
  std::vector<double> targets;   // one per row (labels, targets or class-name codes); may be empty
  std::vector<std::string> class_names;
  std::vector<std::string> feature_names;  // cols names, or empty
};

// The same, borrowed for the length of a call (no copy of the caller's rows).
struct DatasetView {
  size_t cols = 0;
  absl::Span<const double> features;  // a multiple of cols values, row-major
  absl::Span<const double> targets;   // empty, or one per row
  absl::Span<const std::string> class_names;
  absl::Span<const std::string> feature_names;

  DatasetView() = default;
  DatasetView(const Dataset& d)  // NOLINT: implicit, so a Dataset passes where a view is taken
      : cols(d.cols),
        features(d.features),
        targets(d.targets),
        class_names(d.class_names),
        feature_names(d.feature_names) {}
};

// A dataset (or a split part) as the coordinator holds it.
struct DatasetInfo {
  std::string name;
  uint64_t rows = 0, cols = 0;
  Labels labels = Labels::kNone;
  std::vector<std::string> class_names;  // string labels: sorted; labels are codes into them
  std::string view_of;                   // a split part: the dataset whose rows it lists
  std::vector<std::string> feature_names;
};

// scikit-learn's train_test_split on the coordinator; the parts are stored as views (row indices)
// of the dataset, named train_name / test_name.
struct SplitRequest {
  std::string dataset;
  // The test part: a fraction in (0, 1), or a count of rows; neither: 0.25.
  std::optional<double> test_fraction;
  std::optional<uint64_t> test_count;
  std::optional<uint32_t> random_state;  // unset: a random seed
  bool shuffle = true;
  std::string train_name, test_name;  // defaults "<dataset>-train" / "<dataset>-test"
  bool return_indices = false;        // fill SplitResult's index lists
  bool replace = false;               // replace existing parts of those names
  bool dry_run = false;               // compute the indices only; store no parts
};

struct SplitResult {
  DatasetInfo train, test;
  std::vector<int64_t> train_indices, test_indices;  // with return_indices; scikit-learn's order
};

// Rows to query: a dataset already on the coordinator, or rows sent with the call.
struct Queries {
  std::string dataset;
  size_t cols = 0;
  absl::Span<const double> rows;  // inline: row-major, borrowed for the call

  static Queries OfDataset(std::string name) {
    Queries q;
    q.dataset = std::move(name);
    return q;
  }
  static Queries Inline(size_t cols, absl::Span<const double> rows) {
    Queries q;
    q.cols = cols;
    q.rows = rows;
    return q;
  }
};

// ---- Models -------------------------------------------------------------------------------------

struct FitRequest {
  std::string model;    // the name to fit under, [A-Za-z0-9_.-]{1,128}
  std::string dataset;  // the training rows (a dataset or a split part)
  Task task = Task::kClassifier;
  NeighborsParams params;
  std::optional<double> contamination;  // outlier: fraction in (0, 0.5], default 0.1
  std::optional<double> threshold;      // outlier: explicit distance threshold
  bool replace = false;                 // replace a model of that name
};

struct ShardPlacement {
  std::string shard_id, worker_id;  // worker_id: the first live copy's worker
  uint64_t rows = 0;
  int64_t first_global_index = 0;
  std::vector<std::string> replica_worker_ids;  // every copy that is not lost, in search order
};

struct ModelInfo {
  std::string name;
  Task task = Task::kClassifier;
  NeighborsParams params;
  std::string dataset;  // what it was fitted on
  uint64_t rows = 0, cols = 0;
  std::vector<ShardPlacement> shards;
  uint32_t replication = 1;              // copies wanted of every shard
  std::vector<double> classes;           // classifier: sorted labels (codes with class_names)
  std::vector<std::string> class_names;  // classifier with string labels
  std::optional<double> threshold;       // outlier detector
};

struct Predictions {
  // One per query: labels (codes when the model has class_names), targets, or +1 / -1 (outlier).
  std::vector<double> predictions;
  std::vector<std::string> labels;  // classifier with string classes: the names
  std::vector<double> scores;       // outlier: the distance to the k-th neighbour
  std::optional<double> threshold;  // outlier
  std::vector<std::string> missing_shards;  // allow_partial: the shards left out
};

struct Probabilities {
  std::vector<double> classes;
  std::vector<std::string> class_names;
  size_t rows = 0, cols = 0;   // queries x classes
  std::vector<double> values;  // row-major
  std::vector<std::string> missing_shards;  // allow_partial: the shards left out

  double at(size_t query, size_t c) const { return values[query * cols + c]; }
};

// The k nearest training rows of each query, ordered by (distance, index) ascending.
struct Neighbors {
  size_t num_queries = 0, k = 0;
  std::vector<double> distances;  // num_queries x k, row-major; true distances
  std::vector<int64_t> indices;   // training row indices
  std::vector<std::string> missing_shards;  // allow_partial: the shards left out

  double distance(size_t query, size_t j) const { return distances[query * k + j]; }
  int64_t index(size_t query, size_t j) const { return indices[query * k + j]; }
};

struct ScoreResult {
  double score = 0;    // accuracy, R², or the outlier fraction
  std::string metric;  // "accuracy", "r2", "outlier_fraction"
  uint64_t n_samples = 0;
  uint64_t n_correct = 0;  // classifier
  std::vector<std::string> missing_shards;  // allow_partial: the shards left out
};

// ---- Grid search --------------------------------------------------------------------------------

// One dict of scikit-learn's param_grid; an empty list leaves that parameter at the base value.
struct ParamGrid {
  std::vector<std::string> algorithm;  // "auto", "kd_tree", "ball_tree", "brute"
  std::vector<int> leaf_size;
  std::vector<int> n_neighbors;
  std::vector<double> p;             // +infinity: Chebyshev
  std::vector<std::string> weights;  // "uniform", "distance"
};

// One cross-validation split: row indices of the dataset.
struct Fold {
  std::vector<int64_t> train, test;
};

enum class GridSearchMode { kAuto, kReplicated, kSharded };
enum class GridSearchState { kQueued, kRunning, kRefitting, kSucceeded, kFailed, kCancelled };
// "auto", "replicated", "sharded"; "QUEUED", "RUNNING", "REFITTING", "SUCCEEDED", "FAILED",
// "CANCELLED".
std::string GridSearchModeName(GridSearchMode mode);
std::string GridSearchStateName(GridSearchState state);

// scikit-learn's GridSearchCV over KNeighborsClassifier / KNeighborsRegressor, run as a job on
// the coordinator.
struct GridSearchRequest {
  std::string dataset;            // labelled rows (a dataset or a split part)
  Task task = Task::kClassifier;  // classifier or regressor
  NeighborsParams base;           // the estimator's own parameters
  std::vector<ParamGrid> param_grid;
  int cv = 5;  // StratifiedKFold(cv) (classifier) / KFold(cv) (regressor), unless `folds`
  bool shuffle = false;
  std::optional<uint32_t> random_state;
  std::vector<Fold> folds;  // explicit folds: then cv / shuffle / random_state are unused
  // "accuracy" (classifier default), "balanced_accuracy", "f1_macro"; "r2" (regressor default),
  // "neg_mean_squared_error". Empty: the default.
  std::string scoring;
  bool refit = true;                 // fit the best candidate on the whole dataset
  std::string refit_model;           // its name; empty: "<search id>-best"
  bool replace_refit_model = false;  // replace a model of that name
  GridSearchMode mode = GridSearchMode::kAuto;
};

// A search's progress.
struct GridSearchInfo {
  std::string id;  // "gs-" and 12 hex digits
  GridSearchState state = GridSearchState::kQueued;
  std::string dataset;
  Task task = Task::kClassifier;
  GridSearchMode mode = GridSearchMode::kAuto;  // as resolved once started
  std::string scoring;
  uint32_t n_candidates = 0, n_splits = 0;
  uint32_t jobs_total = 0, jobs_done = 0, jobs_requeued = 0, neighbor_searches = 0;
  uint32_t dataset_transfers = 0;
  double elapsed_seconds = 0;
  double eta_seconds = -1;  // -1: unknown
  int64_t started_unix_millis = 0;
  std::string refit_model;  // empty without refit
  std::string error;        // FAILED: why

  bool finished() const {
    return state == GridSearchState::kSucceeded || state == GridSearchState::kFailed ||
           state == GridSearchState::kCancelled;
  }
};

// scikit-learn's cv_results_, one entry per candidate in ParameterGrid order.
struct CvResults {
  std::vector<NeighborsParams> params;
  std::vector<std::vector<std::string>> param_keys;    // the keys each candidate's grid set
  std::vector<std::vector<double>> split_test_scores;  // [candidate][fold]
  std::vector<double> mean_test_score, std_test_score;
  std::vector<int> rank_test_score;
  std::vector<double> mean_fit_time, std_fit_time, mean_score_time, std_score_time;
};

struct GridSearchResult {
  GridSearchInfo info;
  CvResults cv_results;
  size_t best_index = 0;
  double best_score = 0;
  NeighborsParams best_params;
  std::string refit_model;  // the fitted best model; empty without refit
  std::vector<double> classes;
  std::vector<std::string> class_names;
};

// ---- The cluster --------------------------------------------------------------------------------

enum class WorkerState { kAlive, kDead };

struct WorkerInfo {
  std::string worker_id, address;
  WorkerState state = WorkerState::kAlive;
  int64_t millis_since_heartbeat = 0;
  std::vector<std::string> shard_ids;
  uint64_t rows = 0, rss_bytes = 0, memory_budget_bytes = 0;
  uint32_t cores = 0;
};

struct ClusterStatus {
  std::vector<WorkerInfo> workers;
  std::vector<DatasetInfo> datasets;
  std::vector<ModelInfo> models;
};

// The status in protobuf's JSON mapping of knncluster.v1.ClusterStatus, field names as in the
// .proto (what `knnctl --json status` prints).
std::string ClusterStatusToJson(const ClusterStatus& status);

// ---- The client ---------------------------------------------------------------------------------

class Client {
 public:
  // Creates the channel; does not wait for the coordinator (the first call does). Fails only on
  // bad options: INVALID_ARGUMENT naming the field (an unreadable or non-PEM TLS file, a key
  // without a certificate, a token that cannot be sent).
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Datasets. Upload sends `data` under `name` in row chunks; string class labels travel as
  // names.
  absl::StatusOr<DatasetInfo> UploadDataset(const std::string& name, const DatasetView& data,
                                            bool replace = false);
  absl::StatusOr<DatasetInfo> DescribeDataset(const std::string& name);
  absl::StatusOr<std::vector<DatasetInfo>> ListDatasets();
  absl::Status DeleteDataset(const std::string& name);
  absl::StatusOr<SplitResult> SplitDataset(const SplitRequest& request);

  // Models.
  absl::StatusOr<ModelInfo> Fit(const FitRequest& request);
  absl::StatusOr<Predictions> Predict(const std::string& model, const Queries& queries);
  absl::StatusOr<Probabilities> PredictProba(const std::string& model, const Queries& queries);
  // k: default the model's n_neighbors.
  absl::StatusOr<Neighbors> KNeighbors(const std::string& model, const Queries& queries,
                                       std::optional<int> k = std::nullopt);
  // `labels`: one per inline query row; a dataset brings its own.
  absl::StatusOr<ScoreResult> Score(const std::string& model, const Queries& queries,
                                    absl::Span<const double> labels = {});
  // The model file's bytes (the format knnctl's local mode reads), and back under a name.
  absl::StatusOr<std::string> ExportModel(const std::string& model);
  absl::StatusOr<ModelInfo> ImportModel(const std::string& model, const std::string& bytes);
  absl::StatusOr<ModelInfo> DescribeModel(const std::string& model);
  absl::StatusOr<std::vector<ModelInfo>> ListModels();
  absl::Status DeleteModel(const std::string& model);

  // Grid search. Start returns at once; the search goes on without the client.
  absl::StatusOr<GridSearchInfo> StartGridSearch(const GridSearchRequest& request);
  // Calls `on_info` with the search's state, then on every change (at least every `interval`),
  // until the search ends: then returns OK. A search may outlive one call's deadline: the watch
  // re-opens. Returns CANCELLED as soon as `cancel` (may be null) is cancelled; the search goes on.
  absl::Status WatchGridSearch(const std::string& id, std::chrono::milliseconds interval,
                               const std::function<void(const GridSearchInfo&)>& on_info,
                               CancelToken* cancel = nullptr);
  // Cancels a queued or running search; returns its state afterwards.
  absl::StatusOr<GridSearchInfo> CancelGridSearch(const std::string& id);
  absl::StatusOr<std::vector<GridSearchInfo>> ListGridSearches();  // oldest first
  // FAILED_PRECONDITION while the search runs; the search's error when it failed.
  absl::StatusOr<GridSearchResult> GetGridSearchResult(const std::string& id);

  absl::StatusOr<ClusterStatus> GetClusterStatus();

 private:
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The handwritten digits (1797 x 64 pixel values in 0..16, labels 0..9, scikit-learn's
// load_digits), embedded in the library.
absl::StatusOr<Dataset> LoadDigits();

}  // namespace knncluster::client

#endif  // KNNCLUSTER_CLIENT_H_
