// MembershipClient: keeps a worker known to its coordinator. On one thread of its own it calls
// Membership.Register (stable worker id, advertise address, cores, memory, memory budget), then
// Heartbeat every heartbeat_interval_ms the coordinator returned (default 1000 ms) with the
// worker's shard ids and RSS. When a heartbeat fails or the coordinator answers `reregister` (it
// restarted and forgot us), the client registers again; failed registrations are retried with
// exponential backoff, so a worker may start before its coordinator. Every RPC carries a
// deadline.
//
// Ownership: owned by the WorkerServer; the ShardStore is borrowed and outlives the client.
// Thread safety: Start and Stop are called by the owner (not concurrently with each other);
// Stop wakes the thread, cancels an RPC in flight and joins, so it returns promptly.
#ifndef KNNCLUSTER_WORKER_MEMBERSHIP_CLIENT_H_
#define KNNCLUSTER_WORKER_MEMBERSHIP_CLIENT_H_

#include <cstdint>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "knncluster/v1/coordinator.grpc.pb.h"

namespace grpc {
class ChannelCredentials;
class ClientContext;
}  // namespace grpc

namespace knncluster::worker {

class ShardStore;

struct MembershipOptions {
  std::string coordinator_address;  // HOST:PORT of the coordinator's Membership service
  std::string worker_id;            // stable id (worker_internal.h)
  std::string advertise_address;    // where the coordinator reaches our Worker service
  uint32_t cores = 0;
  uint64_t memory_bytes = 0;         // physical memory of the machine
  uint64_t memory_budget_bytes = 0;  // what the worker may use for data (--memory-budget-mb)
  // Deadline of each Register / Heartbeat call.
  absl::Duration rpc_deadline = absl::Seconds(2);
  // Used when the coordinator returns heartbeat_interval_ms = 0.
  absl::Duration default_heartbeat_interval = absl::Milliseconds(1000);
  // Retry delays of a failing registration: doubling from min to max.
  absl::Duration min_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  // Channel credentials; REQUIRES: non-null (the server chooses them, worker_server.cc).
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Receives one line per state change (registered, contact lost); null: silent.
  std::function<void(const std::string&)> log;
};

class MembershipClient {
 public:
  // `store` is borrowed, non-null, and outlives the client.
  MembershipClient(MembershipOptions options, const ShardStore* store);
  ~MembershipClient();  // Stop()
  MembershipClient(const MembershipClient&) = delete;
  MembershipClient& operator=(const MembershipClient&) = delete;

  // Starts the thread. REQUIRES: not started yet.
  void Start();
  // Stops and joins the thread; idempotent.
  void Stop();
  // Whether the last Register or Heartbeat succeeded (the worker's readiness, /readyz).
  bool registered() const { return registered_.load(std::memory_order_relaxed); }

 private:
  void Run();
  // Register: on success, the heartbeat interval to use.
  absl::StatusOr<absl::Duration> Register();
  // Heartbeat: on success, whether the coordinator asks us to register again.
  absl::StatusOr<bool> Heartbeat();
  // Runs `call` with a context carrying the deadline, cancellable by Stop.
  grpc::Status Call(const std::function<grpc::Status(grpc::ClientContext*)>& call);
  // Sleeps for `d` or until Stop; returns false when stopping.
  bool SleepFor(absl::Duration d);
  void Log(const std::string& line) const;

  const MembershipOptions options_;
  const ShardStore* const store_;
  std::unique_ptr<v1::Membership::Stub> stub_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* in_flight_ ABSL_GUARDED_BY(mu_) = nullptr;  // cancelled by Stop
  std::thread thread_;
  std::atomic<bool> registered_{false};
};

}  // namespace knncluster::worker

#endif  // KNNCLUSTER_WORKER_MEMBERSHIP_CLIENT_H_
