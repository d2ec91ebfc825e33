// GridSearchManager: grid searches with cross-validation as jobs on the coordinator (issue 4).
//
// Start() validates the request against the dataset (labels, folds, candidates, n_neighbors
// against every fold's training rows, scoring, the refit model's name) and returns the search's id
// at once; the search then runs on its own driver thread and outlives the client that started it.
// The core plans it (ExpandParamGrid, MakeFolds, PlanFoldJobs): one FoldJob per fold x distinct
// (algorithm, leaf_size, p), each one neighbour search at its largest n_neighbors, every
// candidate scored from it. Jobs wait in the search's queue; the results are aggregated by the
// core's AggregateCvResults, so they equal the single-process GridSearchCV bit for bit.
//
// Two modes (GridSearchMode):
//   * replicated: each live worker gets the whole dataset once (Worker.PutDataset, cached there by
//     content hash) and runs `slots` jobs at once (Worker.RunFoldJob); a runner thread per slot
//     takes the next job when its job ends. Chosen when twice the dataset (its cached copy plus a
//     fold's gathered rows) fits the smallest live worker's memory budget.
//   * sharded: the dataset is fitted as a temporary model "<id>.shards" (sharded as any model,
//     kept alive by the repair loop); a job reads its fold's validation rows from the store and
//     runs a sharded search through ScatterGather where each worker leaves out the fold's
//     non-training rows (SearchShardsRequest.subset); the merged neighbours are scored here with
//     the core's ScoreFoldCandidates. The temporary model is deleted when the search ends.
// A job whose worker dies, stops answering or loses its data goes back on the queue and runs
// again (counted in jobs_requeued); an error in the request itself fails the search.
// With refit, the best candidate is fitted on the whole dataset as a named model (ModelManager).
//
// Persistence (options.data_dir set, as the CoordinatorServer does): each search is a durable
// file <data_dir>/grid_searches/<id> (core/base/durable_file.h, magic "KNNGRID\n", version 1,
// payload a v1::GridSearchRecord from storage.proto: the spec, the progress, the error or the
// result), written at Start (before the id is returned), when it starts running and when it
// finishes. Recover(), called once at start, reads them back: finished searches answer List and
// Result exactly as before the restart; a search that was queued, running or refitting when the
// coordinator stopped (killed, or shut down: Shutdown's cancellation is not recorded) starts again
// from its spec under the same id, every job re-run (jobs_requeued grows by jobs_total), its refit
// allowed to replace the model of its own refit name. One that can no longer start (its dataset
// is gone) is marked failed, saying why. Unreadable records are moved to <data_dir>/quarantine
// and listed by recover_errors().
// The last `max_finished` finished searches are kept for List/Result; older ones are forgotten
// and their files deleted.
//
// Ownership: borrows the store, pool, models, search and registry (the CoordinatorServer owns
// them and destroys this manager first). Owns its driver and runner threads; Shutdown() cancels
// every search and joins them.
// Thread safety: every method may be called from any thread at once.
#ifndef KNNCLUSTER_COORDINATOR_GRID_SEARCH_MANAGER_H_
#define KNNCLUSTER_COORDINATOR_GRID_SEARCH_MANAGER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/dataset_store.h"
#include "coordinator/model_manager.h"
#include "coordinator/model_registry.h"
#include "coordinator/scatter_gather.h"
#include "coordinator/worker_pool.h"
#include "core/model_selection/grid_search.h"

namespace knncluster::coordinator {

enum class GridSearchMode { kAuto, kReplicated, kSharded };
enum class GridSearchState { kQueued, kRunning, kRefitting, kSucceeded, kFailed, kCancelled };
bool IsTerminal(GridSearchState s);

struct GridSearchSpec {
  std::string dataset;
  bool classifier = true;
  NeighborsParams base;
  std::vector<ParamGrid> param_grid;  // empty: the base parameters alone
  int cv = 5;
  bool shuffle = false;
  std::optional<uint32_t> random_state;
  std::vector<TrainTestIndices> folds;  // explicit; cv/shuffle unused when non-empty
  Scoring scoring = Scoring::kAccuracy;
  bool refit = true;
  std::string refit_model;  // empty: "<id>-best"
  bool replace_refit_model = false;
  GridSearchMode mode = GridSearchMode::kAuto;
};

// A search's progress, as Watch and List report it.
struct GridSearchProgress {
  std::string id;
  GridSearchState state = GridSearchState::kQueued;
  std::string dataset;
  bool classifier = true;
  GridSearchMode mode = GridSearchMode::kAuto;  // resolved once running
  Scoring scoring = Scoring::kAccuracy;
  uint32_t n_candidates = 0;
  uint32_t n_splits = 0;
  uint32_t jobs_total = 0;
  uint32_t jobs_done = 0;
  uint32_t jobs_requeued = 0;
  uint32_t neighbor_searches = 0;
  uint32_t dataset_transfers = 0;
  double elapsed_seconds = 0;
  double eta_seconds = -1;  // unknown until a job is done
  std::string refit_model;  // empty without refit
  absl::Status error;       // kFailed: why
  absl::Time started = absl::InfinitePast();
  uint64_t version = 0;     // increases with every change
};

struct GridSearchOutcome {
  GridSearchProgress progress;
  CvResults cv_results;
  std::vector<double> classes;  // classifier: sorted labels (codes with class_names)
  std::vector<std::string> class_names;
};

struct GridSearchManagerOptions {
  // Jobs a worker runs at once in replicated mode; 0: its cores (at least 2).
  int slots_per_worker = 0;
  // Jobs in flight at once in sharded mode (each fans out to every worker); 0: 2.
  int sharded_parallel_jobs = 0;
  absl::Duration job_deadline = absl::Minutes(30);
  absl::Duration put_deadline = absl::Minutes(10);
  size_t put_chunk_bytes = 1 << 20;
  // A search with no live worker (or whose shards stay unavailable) for this long fails.
  absl::Duration no_worker_timeout = absl::Seconds(60);
  // Validation rows per sharded search call batch.
  size_t sharded_batch_rows = 16384;
  size_t max_finished = 100;
  // Where searches are kept (<data_dir>/grid_searches); empty: in memory only.
  std::string data_dir;
};

class GridSearchManager {
 public:
  GridSearchManager(DatasetStore* store, WorkerPool* workers, ModelRegistry* registry,
                    ModelManager* models, ScatterGather* search, GridSearchManagerOptions options);
  ~GridSearchManager();
  GridSearchManager(const GridSearchManager&) = delete;
  GridSearchManager& operator=(const GridSearchManager&) = delete;

  // Validates and starts a search. NotFound (dataset), InvalidArgument naming the field (grid
  // values, folds, n_neighbors larger than a fold's training rows, scoring for the task, refit
  // model name), FailedPrecondition (an unlabeled dataset), AlreadyExists (the refit model exists
  // without replace_refit_model), Unavailable (shutting down).
  // With a data_dir, Internal when the search cannot be saved (it is then not started).
  absl::StatusOr<GridSearchProgress> Start(GridSearchSpec spec);
  // Loads the searches kept in data_dir (see above); restarts the unfinished ones. Call once,
  // before serving. An error only when the directory cannot be read; no-op without data_dir.
  absl::Status Recover();
  // One line per record Recover could not use ("<quarantined path>: <reason>").
  std::vector<std::string> recover_errors() const;
  // The search's progress once its version exceeds `after_version` or `timeout` has passed
  // (whichever first). NotFound for an unknown id.
  absl::StatusOr<GridSearchProgress> Watch(const std::string& id, uint64_t after_version,
                                           absl::Duration timeout) const;
  // Cancels a queued or running search (jobs in flight are cancelled); a finished search is left
  // as it is. Returns its progress afterwards.
  absl::StatusOr<GridSearchProgress> Cancel(const std::string& id);
  std::vector<GridSearchProgress> List() const;
  // FailedPrecondition while the search runs; its error when it failed or was cancelled.
  absl::StatusOr<GridSearchOutcome> Result(const std::string& id) const;
  // Cancels every search and waits for their threads. Idempotent.
  void Shutdown();

 private:
  struct Search;

  // Start, or (with `recovered`) the restart of a search read back by Recover under its own id.
  absl::StatusOr<GridSearchProgress> StartSearch(GridSearchSpec spec,
                                                 const GridSearchProgress* recovered);
  // Writes the search's record (no-op without data_dir).
  absl::Status Save(const Search& s) const;
  std::string PathOf(const std::string& id) const;
  // Forgets the oldest finished searches beyond max_finished (never `keep`); returns their ids.
  std::vector<std::string> DropOldFinished(const Search* keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveFiles(const std::vector<std::string>& ids) const;

  void Drive(const std::shared_ptr<Search>& s);
  absl::Status RunReplicated(const std::shared_ptr<Search>& s);
  absl::Status RunSharded(const std::shared_ptr<Search>& s);
  absl::StatusOr<GridSearchMode> ResolveMode(const Search& s) const;
  // One replicated runner: jobs on `worker` until the queue is empty, the worker fails or the
  // search ends.
  void ReplicatedRunner(const std::shared_ptr<Search>& s, WorkerHandle worker);
  void ShardedRunner(const std::shared_ptr<Search>& s);
  // Runs job j in sharded mode: validation rows, sharded search, scoring.
  absl::StatusOr<FoldJobResult> RunShardedJob(Search& s, size_t j);
  // What the manager believes each worker caches (content hashes), across searches, so a dataset
  // goes to a worker once; a NOT_FOUND from the worker corrects it.
  // Sends the dataset unless the worker holds it (one transfer per worker and dataset at a time);
  // *sent tells whether this call sent it.
  absl::Status EnsureCached(Search& s, const WorkerHandle& worker, bool* sent);
  void ForgetCached(const std::string& worker_id, const std::string& hash);
  // Streams the search's dataset to a worker's cache.
  absl::Status PutDataset(Search& s, const WorkerHandle& worker) const;
  // Sets the final state, unpins the dataset, forgets the oldest finished searches beyond
  // max_finished.
  void Finish(const std::shared_ptr<Search>& s, absl::Status status);

  DatasetStore* const store_;
  WorkerPool* const workers_;
  ModelRegistry* const registry_;
  ModelManager* const models_;
  ScatterGather* const search_;
  const GridSearchManagerOptions options_;

  mutable absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::shared_ptr<Search>> searches_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);  // ids, oldest first
  std::map<std::string, std::set<std::string>> cached_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> sending_ ABSL_GUARDED_BY(mu_);  // "<worker id>/<hash>" in transfer
  // Driver threads, joined when their search has ended (at the next Start) or at Shutdown.
  std::vector<std::pair<std::shared_ptr<Search>, std::thread>> drivers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> recover_errors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_GRID_SEARCH_MANAGER_H_
