// WorkerPool: the coordinator's view of its workers. One entry per worker: its stable id, the
// address its Worker service listens on, a channel + Worker::Stub to it, liveness, and what it
// last reported (cores, resident memory, shard ids).
//
// Workers arrive two ways: Register() (the Membership service; the id is the worker's stable id,
// and a new address replaces the channel) and AddStatic() (the --workers list; id = address).
// Liveness: a worker is alive from its registration (or first successful probe) until it has
// not been heard from (heartbeat, probe or successful call) for `dead_after_intervals` heartbeat
// intervals (CheckLiveness), or until a call to it fails with UNAVAILABLE or DEADLINE_EXCEEDED
// (ReportCallFailure). A heartbeat or probe that succeeds revives a dead worker.
//
// Ownership: owns the channels and stubs; hands out shared_ptr snapshots (WorkerHandle), so a
// call in flight keeps its stub alive even if the worker's address changes meanwhile.
// Thread safety: every method may be called from any thread (one absl::Mutex).
#ifndef KNNCLUSTER_COORDINATOR_WORKER_POOL_H_
#define KNNCLUSTER_COORDINATOR_WORKER_POOL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "knncluster/v1/worker.grpc.pb.h"

namespace knncluster::coordinator {

struct WorkerPoolOptions {
  // How often workers heartbeat (sent to them on Register).
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // A worker silent for this many intervals is dead.
  int dead_after_intervals = 3;
  // Max send/receive message size on the channels to workers.
  int max_message_bytes = 64 << 20;
};

// An immutable snapshot of one worker, safe to use after the pool's lock is released.
struct WorkerHandle {
  std::string id;
  std::string address;
  std::shared_ptr<v1::Worker::Stub> stub;
  // "worker w3 (127.0.0.1:4567)", for error messages.
  std::string Describe() const;
};

// What the pool knows of a worker, for cluster status and the maintenance loop.
struct WorkerSnapshot {
  std::string id;
  std::string address;
  bool alive = false;
  bool is_static = false;
  absl::Time last_contact = absl::InfinitePast();  // heartbeat, probe or successful call
  uint32_t cores = 0;
  uint64_t rss_bytes = 0;
  uint64_t memory_bytes = 0;
  // What the worker may use for data (--memory-budget-mb); 0 when it has not said.
  uint64_t memory_budget_bytes = 0;
  // Shard ids the worker reported (heartbeat or probe) at `shards_reported_at`.
  std::optional<std::vector<std::string>> reported_shards;
  absl::Time shards_reported_at = absl::InfinitePast();
};

class WorkerPool {
 public:
  explicit WorkerPool(WorkerPoolOptions options);
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  const WorkerPoolOptions& options() const { return options_; }

  // A worker from the static list: id = address. It starts dead until a probe answers (the
  // maintenance loop probes it at once). InvalidArgument for an empty address.
  absl::Status AddStatic(const std::string& address);

  // Membership.Register: adds the worker or updates it (a new address gets a new channel). The
  // worker is alive from now and holds `shard_ids` (a worker restarted on its data directory
  // reports the shards it restored; ModelManager::Repair then finds them where they are placed
  // and re-sends nothing). InvalidArgument naming the field for an empty id or address.
  absl::Status Register(const std::string& id, const std::string& address, uint32_t cores,
                        uint64_t memory_bytes, absl::Time now, uint64_t memory_budget_bytes = 0,
                        std::vector<std::string> shard_ids = {});

  // Membership.Heartbeat: false when the worker is unknown (it must register again).
  bool Heartbeat(const std::string& id, std::vector<std::string> shard_ids, uint64_t rss_bytes,
                 absl::Time now);

  // A successful GetWorkerStatus probe (the maintenance loop's liveness check).
  void ProbeSucceeded(const std::string& id, const v1::WorkerStatus& status, absl::Time now);

  // A call to the worker failed: UNAVAILABLE and DEADLINE_EXCEEDED mark it dead at once (it is
  // revived by its next heartbeat or probe); other codes are the request's problem, not the
  // worker's.
  void ReportCallFailure(const std::string& id, const absl::Status& status);
  // A call succeeded: counts as contact.
  void ReportCallSuccess(const std::string& id, absl::Time now);

  // Marks dead every worker silent for dead_after_intervals * heartbeat_interval. Returns the
  // ids newly marked dead.
  std::vector<std::string> CheckLiveness(absl::Time now);

  // Dead workers and workers not heard from within 1.5 intervals (candidates for a
  // GetWorkerStatus probe).
  std::vector<WorkerHandle> WorkersToProbe(absl::Time now) const;

  // The worker with this id, alive or not. NotFound when unknown.
  absl::StatusOr<WorkerHandle> Get(const std::string& id) const;
  bool IsAlive(const std::string& id) const;
  // Live workers, ordered by id.
  std::vector<WorkerHandle> LiveWorkers() const;
  // Everything, ordered by id.
  std::vector<WorkerSnapshot> Snapshot() const;

 private:
  struct Entry {
    WorkerSnapshot info;
    std::shared_ptr<v1::Worker::Stub> stub;
  };
  std::shared_ptr<v1::Worker::Stub> MakeStub(const std::string& address) const;
  static WorkerHandle HandleOf(const Entry& e) { return {e.info.id, e.info.address, e.stub}; }

  const WorkerPoolOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_WORKER_POOL_H_
