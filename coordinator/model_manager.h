// ModelManager: what the coordinator does with models, in core types (absl::Status, Matrix,
// KNeighborsResult) so the gRPC service stays a thin adapter. It fits (shards the training rows
// of a dataset over the live workers, streams each shard to its worker, keeps the labels here,
// fits an outlier threshold through the cluster), answers queries (ScatterGather, then the core's
// voting rules of voting.h on the merged neighbours, so predictions equal the single-process
// estimators'), exports and imports the core's model files, and keeps the cluster healthy
// (CheckWorkers: probes and liveness; Repair: re-sends the shards of dead workers, marks shards
// a worker lost, and drops orphan shards).
//
// Ownership: borrows everything (the CoordinatorServer owns the store, pool, registry, search
// and thread pool, which outlive the manager).
// Thread safety: every method may be called from any thread at once.
#ifndef KNNCLUSTER_COORDINATOR_MODEL_MANAGER_H_
#define KNNCLUSTER_COORDINATOR_MODEL_MANAGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/dataset_store.h"
#include "coordinator/model_catalog.h"
#include "coordinator/model_registry.h"
#include "coordinator/scatter_gather.h"
#include "coordinator/sharder.h"
#include "coordinator/worker_pool.h"
#include "core/base/matrix.h"
#include "core/base/thread_pool.h"
#include "core/estimators/model_io.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"

namespace knncluster::coordinator {

struct ModelManagerOptions {
  ShardingOptions sharding;
  // Copies of every shard (--replication), each on a different worker; a fit with fewer live
  // workers places one copy per worker and the repair loop adds the others as workers join.
  int replication = 1;
  // Deadline of one LoadShard stream (a whole shard) and of DropShard / GetWorkerStatus calls.
  absl::Duration load_deadline = absl::Minutes(10);
  absl::Duration control_deadline = absl::Seconds(5);
  // Bytes of rows per LoadShard message.
  size_t load_chunk_bytes = 1 << 20;
  // Training rows scored per batch when fitting an outlier threshold.
  size_t threshold_batch_rows = 16384;
  // Spatial shards and query routing (ScatterGather) for training sets of at most this many
  // features and bytes (the coordinator reads the set once to cut it), with at least this many
  // rows per shard; and the cells of the routing grid (its centres are searched once at fit):
  // one per kRowsPerRoutingCell training rows, at most max_routing_cells. A finer grid sends
  // fewer queries to two workers and gives the rest tighter bounds (uniform3d, 1,000,000 rows:
  // 32,768 cells -> 262,144 took the workers from 23.3 to 22.1-22.8 core-ms per batch of
  // 10,000 and the coordinator from 2.6 to 2.7-3.1, bench/run_cluster_bench.py); finer than the
  // rows' own spacing it gains nothing.
  size_t max_routed_dim = 8;
  uint64_t max_routed_bytes = uint64_t{256} << 20;
  uint64_t min_routed_rows_per_shard = 1024;
  size_t max_routing_cells = 262144;
  static constexpr uint64_t kRowsPerRoutingCell = 4;
  // Spatial shards get a halo (ShardLocation::halo: HaloWidth's, for the model's k) unless their
  // halos would hold more than this share of the training rows in all. uniform3d, 1,000,000
  // rows on 2 workers: without halos 4.3% of a batch's queries went to both workers (a whole
  // extra search each); with them each shard holds 8.6% more rows and the workers spend
  // 20.5-22.0 core-ms per batch of 10,000 instead of 22.0-22.9 (bench/run_cluster_bench.py).
  double max_halo_share = 0.25;
  // Rebuilding a damaged training set from a model's shards (dataset_rebuild.cc): how long after
  // the start to wait for the workers holding its shards to register before giving up.
  absl::Duration rebuild_wait = absl::Minutes(5);
  // Where the manager reports what it did on its own (a dataset rebuilt, or not); null: nowhere.
  std::function<void(const std::string&)> log;
};

struct FitSpec {
  std::string model;
  std::string dataset;
  Model::Task task = Model::Task::kClassifier;
  NeighborsParams params;  // validated by the caller (rpc::FromProto)
  double contamination = 0.1;
  std::optional<double> threshold;
  bool replace = false;
  // ImportModel: the class names recorded in the model file (its labels are codes into them),
  // instead of the dataset's.
  std::optional<std::vector<std::string>> class_names;
};

struct Predictions {
  std::vector<double> values;       // labels, targets, or +1 / -1
  std::vector<std::string> labels;  // classifier with class names
  std::vector<double> scores;       // outlier: distance to the k-th neighbour
};

struct ScoreResult {
  double score = 0;
  std::string metric;  // "accuracy", "r2", "outlier_fraction"
  uint64_t n_samples = 0;
  uint64_t n_correct = 0;
};

class ModelManager {
 public:
  // `catalog` may be null: models then live in memory only (tests).
  ModelManager(DatasetStore* store, WorkerPool* workers, ModelRegistry* registry,
               ScatterGather* search, ThreadPool* pool, ModelManagerOptions options,
               ModelCatalog* catalog = nullptr);

  // Copies a new fit makes of every shard (--replication, at least 1).
  int replication() const { return options_.replication < 1 ? 1 : options_.replication; }

  // Loads the catalog's models into the registry (labels read back from their datasets), so a
  // restarted coordinator serves them without a re-upload or a refit. Call once at start. A
  // record that cannot be used is quarantined; returns one error per such model, naming it.
  // A record whose training set the store quarantined at Open (a base, not a view) and whose
  // shards cover every training row is not quarantined: it waits for RebuildDatasets.
  std::vector<absl::Status> Recover();

  // For each model waiting on a quarantined training set (see Recover): once a live worker
  // reports every one of its shards, reads them back (Worker.ReadShard), reassembles the rows in
  // training-index order with their labels, checks them against the record, writes the dataset
  // through the store's upload path and restores the model. A model whose shards are not all
  // reported within options.rebuild_wait of the start, or whose rebuild fails, is quarantined
  // (its dataset stays in quarantine). Called by Repair; returns how many datasets it rebuilt.
  int RebuildDatasets();
  // Models still waiting for RebuildDatasets.
  std::vector<std::string> PendingRebuilds() const;
  ModelManager(const ModelManager&) = delete;
  ModelManager& operator=(const ModelManager&) = delete;

  // Fits spec.model on spec.dataset. NotFound (dataset), InvalidArgument naming the field (no
  // rows, n_neighbors > rows, non-integer class labels, contamination), FailedPrecondition (a
  // classifier or regressor on an unlabeled dataset), AlreadyExists (without replace),
  // Unavailable ("no live workers", or a shard that could not be loaded).
  absl::StatusOr<std::shared_ptr<const ModelEntry>> Fit(const FitSpec& spec, absl::Time deadline);

  // The k nearest training rows (true distances, training indices) of each query.
  // REQUIRES: queries validated (finite). InvalidArgument for a wrong width ("queries: expected
  // 64 features, got 63") or k outside [1, rows] ("k: ...").
  // `missing_shards`, in these four: null requires every shard (UNAVAILABLE naming the shard
  // when one has no live copy); non-null allows a partial answer over the shards that answered
  // and receives the ids of those left out (ScatterGather's allow_partial).
  // The answer goes to `sink` (ScatterGather's), e.g. straight into a response message.
  absl::Status KNeighbors(const ModelEntry& model, MatrixView queries, int k, absl::Time deadline,
                          std::vector<std::string>* missing_shards,
                          const NeighborsSink& sink) const;
  absl::StatusOr<Predictions> Predict(const ModelEntry& model, MatrixView queries,
                                      absl::Time deadline,
                                      std::vector<std::string>* missing_shards = nullptr) const;
  // Classifier only (FailedPrecondition otherwise): n x classes, columns in classes order.
  absl::StatusOr<Matrix> PredictProba(const ModelEntry& model, MatrixView queries,
                                      absl::Time deadline,
                                      std::vector<std::string>* missing_shards = nullptr) const;
  // accuracy (classifier), R² (regressor) or the fraction predicted -1 (outlier; y_true unused).
  // `y_class_names`: the names of y_true's codes when they come from a string-labelled dataset
  // (remapped onto the model's names), else null.
  absl::StatusOr<ScoreResult> Score(const ModelEntry& model, MatrixView queries,
                                    std::vector<double> y_true,
                                    const std::vector<std::string>* y_class_names,
                                    absl::Time deadline,
                                    std::vector<std::string>* missing_shards = nullptr) const;

  // The core's Model (training rows read back from the store), for SerializeModel.
  absl::StatusOr<Model> ToModel(const ModelEntry& model) const;
  // Stores model.X (and labels) as the dataset "<name>.data" and fits `name` on it with the
  // file's parameters and threshold. AlreadyExists when the model exists; FailedPrecondition
  // when "<name>.data" is another model's training set.
  absl::StatusOr<std::shared_ptr<const ModelEntry>> Import(const std::string& name, Model model,
                                                           absl::Time deadline);

  // Removes the model and drops its shards on the workers (best effort). NotFound when absent.
  absl::Status Delete(const std::string& name);

  // FailedPrecondition when `dataset` is the training set of a model or of a fit in progress
  // (deleting or replacing it would strand the model's shards without their source).
  absl::Status CheckDatasetFree(const std::string& dataset) const;

  // Liveness: probes workers not heard from within an interval (GetWorkerStatus, callback API,
  // all at once) and marks silent ones dead.
  void CheckWorkers();
  // Keeps every shard at its model's replication: marks copies that live workers no longer
  // report as lost, drops orphan shards, loads a new copy of every shard with fewer live copies
  // than wanted on the live worker holding the fewest rows among those without one (from the
  // coordinator's dataset: workers never call each other), and drops extra copies (a worker
  // that came back with its copies after they were replaced) from the busiest workers.
  void Repair();

 private:
  // Streams rows [first, first + rows) of `dataset` to `worker` as shard `shard_id`; or, with
  // `ids` (may be null; ascending), the rows with those global indices, gathered from
  // `training_rows` (the whole training set; may be null: read from the store).
  absl::Status LoadShard(const WorkerHandle& worker, const std::string& shard_id,
                         const std::string& dataset, int64_t first, uint64_t rows, uint64_t cols,
                         const NeighborsParams& params,
                         const std::vector<int64_t>* ids, const Matrix* training_rows) const;
  // Recover's work for one record: the entry, its labels from the dataset, into the registry.
  absl::Status RestoreRecord(const v1::ModelRecord& record);
  // Rebuilds record.dataset from the shards of record, read from `holders` (shard id -> live
  // workers reporting it). In dataset_rebuild.cc.
  absl::Status RebuildDataset(const v1::ModelRecord& record,
                              const std::map<std::string, std::vector<WorkerHandle>>& holders);
  void Log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }
  // Writes the registry's entry of `name` to the catalog (or removes it); OK without a catalog.
  absl::Status Persist(const std::string& name) const;
  // What a model's predictions need from its training dataset's labels; `class_names`: the
  // names the label codes index (a string-labelled dataset's, or an imported model's).
  absl::StatusOr<std::shared_ptr<const ModelLabels>> ReadModelLabels(
      Model::Task task, const std::string& dataset, uint64_t rows,
      const std::vector<std::string>& class_names) const;
  // Drops (shard id, worker id) copies: best effort, all at once; errors are ignored (a missing
  // shard is not an error) and dead workers are skipped.
  void DropShards(const std::vector<std::pair<std::string, std::string>>& copies) const;
  absl::StatusOr<double> FitThreshold(const ModelEntry& entry, absl::Time deadline) const;
  // The routing grid of a model with spatial shards (every shard has a box).
  absl::StatusOr<std::shared_ptr<const RoutingGrid>> BuildRoutingGrid(const ModelEntry& entry,
                                                                      absl::Time deadline) const;
  // KNeighbors into a KNeighborsResult.
  absl::StatusOr<KNeighborsResult> Neighbors(const ModelEntry& model, MatrixView queries, int k,
                                             absl::Time deadline,
                                             std::vector<std::string>* missing_shards) const;

  DatasetStore* const store_;
  WorkerPool* const workers_;
  ModelRegistry* const registry_;
  ScatterGather* const search_;
  ThreadPool* const pool_;
  const ModelManagerOptions options_;
  ModelCatalog* const catalog_;
  // Until then Repair does not replace copies on workers that have not registered since the
  // start (they re-register within a heartbeat or two with the shards they kept).
  const absl::Time restore_until_;
  const absl::Time start_;
  // Models waiting for their training set to be rebuilt (Recover, RebuildDatasets).
  mutable absl::Mutex rebuild_mu_;
  std::vector<v1::ModelRecord> rebuilds_ ABSL_GUARDED_BY(rebuild_mu_);
};

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_MODEL_MANAGER_H_
