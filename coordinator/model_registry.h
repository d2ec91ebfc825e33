// ModelRegistry: the coordinator's catalog of fitted models, name -> ModelEntry. An entry holds
// what the coordinator keeps of a model (task, parameters, the training set's name and shape,
// labels, classes, the outlier threshold) and where its shards live (placements).
//
// Entries are immutable and shared (shared_ptr<const ModelEntry>): a request takes a snapshot and
// uses it without locks while the registry moves on. The bulky part (labels) sits behind its own
// shared_ptr, so re-placing a shard copies only the placement list.
// Models live in memory in this increment; their training rows live in the DatasetStore.
//
// The registry also tracks "pending" shard ids (being loaded by a fit or a repair), so that the
// maintenance loop does not drop them as orphans from a worker's heartbeat report.
//
// Thread safety: every method may be called from any thread (one absl::Mutex).
#ifndef KNNCLUSTER_COORDINATOR_MODEL_REGISTRY_H_
#define KNNCLUSTER_COORDINATOR_MODEL_REGISTRY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/scatter_gather.h"
#include "core/estimators/model_io.h"
#include "core/estimators/params.h"

namespace knncluster::coordinator {

// What a model's predictions need besides its neighbours. Immutable once built.
struct ModelLabels {
  // Classifier: the training labels as fitted (codes into class_names when those are set),
  // their sorted unique set, and each row's index into classes (the voting.h encoding).
  std::vector<double> y;
  std::vector<double> classes;
  std::vector<int32_t> codes;
  std::vector<std::string> class_names;
  // Regressor: the targets (also in y).
};

// One copy of a shard on one worker.
struct Replica {
  std::string worker_id;
  // When the shard was loaded there (for telling a stale heartbeat report from a lost shard).
  absl::Time placed_at = absl::InfinitePast();
  // The worker said it no longer holds the shard (it restarted without it): not searched, and
  // the repair loop loads another copy.
  bool lost = false;
};

// A shard and where its copies live. location.worker_ids lists the replicas' workers that are
// not lost, in the order of `replicas` (the order a search tries them).
struct Placement {
  ShardLocation location;
  std::vector<Replica> replicas;

  // Rebuilds location.worker_ids from replicas.
  void SyncLocation();
};

struct ModelEntry {
  std::string name;
  Model::Task task = Model::Task::kClassifier;
  NeighborsParams params;
  double contamination = 0.1;       // outlier
  std::optional<double> threshold;  // outlier: the threshold in use
  std::string dataset;              // the training rows (a dataset or a split part)
  uint64_t rows = 0;
  uint64_t cols = 0;
  std::vector<std::string> feature_names;
  uint64_t generation = 0;          // unique per fit; part of every shard id
  // Copies wanted of every shard (--replication, at the fit); a shard may have fewer while
  // workers are missing (the repair loop adds copies as workers become available) or more for
  // a moment (a worker came back with its copy; the repair loop drops the extra one).
  int replication = 1;
  std::shared_ptr<const ModelLabels> labels;
  std::vector<Placement> shards;    // ordered by first_global_index (spatial: region order)
  // Spatial shards: the routing grid (null: every query goes to every shard).
  std::shared_ptr<const RoutingGrid> routing;

  std::vector<ShardLocation> Locations() const;
  // Every (shard id, worker id) copy, lost or not, for dropping them.
  std::vector<std::pair<std::string, std::string>> Copies() const;
};

class ModelRegistry {
 public:
  ModelRegistry() = default;
  ModelRegistry(const ModelRegistry&) = delete;
  ModelRegistry& operator=(const ModelRegistry&) = delete;

  // A fresh generation number (never reused in this process).
  uint64_t NextGeneration();
  // Makes every later NextGeneration() greater than `generation` (a restored model's).
  void AdvanceGeneration(uint64_t generation);

  // NotFound "model: no model named \"x\"".
  absl::StatusOr<std::shared_ptr<const ModelEntry>> Get(const std::string& name) const;
  bool Contains(const std::string& name) const;
  // Adds or (with replace) replaces; returns the replaced entry, if any. AlreadyExists without
  // replace when the name is taken.
  absl::StatusOr<std::shared_ptr<const ModelEntry>> Put(std::shared_ptr<const ModelEntry> entry,
                                                        bool replace);
  // Removes and returns the entry. NotFound when absent.
  absl::StatusOr<std::shared_ptr<const ModelEntry>> Remove(const std::string& name);
  // Every entry, ordered by name.
  std::vector<std::shared_ptr<const ModelEntry>> List() const;
  // Names of models fitted on `dataset`.
  std::vector<std::string> ModelsUsing(const std::string& dataset) const;

  // Adds a copy of a shard of (model, generation) on `worker_id` (after the repair loop loaded
  // it there); a lost copy on that worker becomes a live one. False when the model was replaced
  // or removed meanwhile.
  bool AddReplica(const std::string& model, uint64_t generation, const std::string& shard_id,
                  const std::string& worker_id, absl::Time placed_at);
  // Forgets the copy of a shard on `worker_id` (an extra copy the repair loop dropped).
  bool RemoveReplica(const std::string& model, uint64_t generation, const std::string& shard_id,
                     const std::string& worker_id);
  // Marks copies lost: (shard id, worker id) pairs whose worker no longer holds the shard.
  void MarkLost(const std::vector<std::pair<std::string, std::string>>& copies);

  // Shard ids being loaded right now.
  void AddPending(const std::vector<std::string>& shard_ids);
  void RemovePending(const std::vector<std::string>& shard_ids);
  bool IsPending(const std::string& shard_id) const;

  // Datasets a fit in progress reads (so they cannot be deleted under it).
  void PinDataset(const std::string& dataset);
  void UnpinDataset(const std::string& dataset);
  bool IsPinned(const std::string& dataset) const;

 private:
  mutable absl::Mutex mu_;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::shared_ptr<const ModelEntry>> models_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> pending_ ABSL_GUARDED_BY(mu_);
  std::multiset<std::string> pinned_ ABSL_GUARDED_BY(mu_);
};

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_MODEL_REGISTRY_H_
