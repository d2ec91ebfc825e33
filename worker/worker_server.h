// WorkerServer: one knncluster worker. Owns the ThreadPool that searches and fold jobs run on
// (all cores by default), the ShardStore, the DatasetCache and SubsetIndexCache of grid search,
// the WorkerService, the membership client (when a coordinator is configured) and the
// grpc::Server, which also serves the standard health service (per-service status for
// "knncluster.v1.Worker") and server reflection, and the plaintext HTTP port (health, readiness,
// Prometheus metrics: worker/README.md lists them) with the metrics registry behind it.
//
// Usage:
//   WorkerOptions options;
//   options.data_dir = "/var/lib/knn-worker";
//   WorkerServer server(options);
//   KNN_RETURN_IF_ERROR(server.Start());
//   ... server.bound_address() ...
//   server.Shutdown();  // from any thread, e.g. a signal handler's thread
//   server.Wait();
//
// Thread safety: Start once, then bound_address / advertise_address / worker_id from any thread;
// Shutdown and Wait may be called from any thread (Shutdown is idempotent). The destructor shuts
// down.
#ifndef KNNCLUSTER_WORKER_WORKER_SERVER_H_
#define KNNCLUSTER_WORKER_WORKER_SERVER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rpc/credentials.h"
#include "rpc/http_server.h"
#include "rpc/metrics.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace knncluster {
class ThreadPool;
namespace rpc {
class AdmissionControl;
}  // namespace rpc
}  // namespace knncluster

namespace knncluster::worker {

class DatasetCache;
class MembershipClient;
class ShardFiles;
class ShardStore;
class SubsetIndexCache;
class WorkerService;

struct WorkerOptions {
  // HOST:PORT to listen on; port 0 lets the OS choose (see bound_address()).
  std::string listen_address = "127.0.0.1:0";
  // HOST:PORT the coordinator should use to reach this worker; empty: bound_address().
  std::string advertise_address;
  // Directory that keeps the worker's stable id (file `worker_id`) and its shards (shards/, see
  // shard_files.h); created if missing. Required: two workers must never share one. A worker
  // restarted on it holds every shard it held (those whose files read back intact).
  std::string data_dir;
  // The coordinator's HOST:PORT to register with and heartbeat to; empty: none (a static
  // worker list on the coordinator).
  std::string coordinator_address;
  // Search threads; 0: all cores.
  int threads = 0;
  // What the worker may use for data: the datasets it caches for grid search plus its shards.
  // Sent to the coordinator when registering and reported by GetWorkerStatus. 0: half of the
  // machine's physical memory (1 GiB if that is unknown).
  uint64_t memory_budget_bytes = 0;
  // Indexes over fold subsets (SearchShards.subset) kept for a job's next chunk.
  size_t subset_index_cache_entries = 8;
  // For tests: every fold job (RunFoldJob) first sleeps this long, returning CANCELLED if the call
  // is cancelled meanwhile. Zero in production.
  absl::Duration testing_job_delay = absl::ZeroDuration();
  // Deadline of each call to the coordinator (Register, Heartbeat).
  absl::Duration membership_rpc_deadline = absl::Seconds(2);
  // Largest message the server accepts (a LoadShard chunk, a batch of queries) and sends.
  int max_receive_message_bytes = 64 << 20;
  // Admission (rpc/admission.h): LoadShard, SearchShards, DropShard, PutDataset and RunFoldJob
  // calls in flight at once, and the bytes of their requests; beyond either, RESOURCE_EXHAUSTED
  // at once. 0: no limit. Above the coordinator's own limit, since each coordinator query
  // makes one SearchShards call per worker. gRPC's thread quota is this plus 64.
  int max_concurrent_requests = 512;
  uint64_t max_inflight_request_bytes = uint64_t{1} << 30;
  // For tests: every SearchShards first sleeps this long. Zero in production.
  absl::Duration testing_search_delay = absl::ZeroDuration();
  // How long Shutdown lets calls in flight finish before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Transport security (rpc/credentials.h). Default: plaintext, loopback only. With TLS the
  // port requires a client certificate from the CA and serves only the coordinator's
  // (CN knn-coordinator); the channel to the coordinator presents this worker's certificate
  // (which must be a worker's, CN knn-worker-*, for Membership to accept it).
  // auth_token_file is not used by workers.
  rpc::SecurityOptions security;
  // Port of the plaintext HTTP server (GET /healthz, /readyz, /metrics; rpc/ops_http.h) on the
  // host of listen_address; 0: the OS picks one (see http_port()); -1: none.
  int http_port = -1;
  // Receives occasional status lines (membership state changes); null: silent.
  std::function<void(const std::string&)> log;
};

// Threads gRPC may run beyond max_concurrent_requests (health checks, GetWorkerStatus).
inline constexpr int kWorkerAdmissionFreeThreads = 64;

class WorkerServer {
 public:
  explicit WorkerServer(WorkerOptions options);
  ~WorkerServer();
  WorkerServer(const WorkerServer&) = delete;
  WorkerServer& operator=(const WorkerServer&) = delete;

  // Loads (or creates) the worker id, checks the data directory's FORMAT (FailedPrecondition for a
  // newer or foreign one), restores the shards kept there (unreadable files are quarantined and
  // logged), starts serving, and starts the membership client when a
  // coordinator is configured (registration is retried in the background, so the coordinator
  // may come up later). InvalidArgument for bad options, Unavailable when the address cannot be
  // bound, FailedPrecondition when called twice.
  absl::Status Start();

  // "HOST:PORT" actually bound (the OS's port when the listen port was 0). REQUIRES: Start() ok.
  const std::string& bound_address() const { return bound_address_; }
  // What the worker registers as its address.
  const std::string& advertise_address() const { return advertise_address_; }
  // The HTTP port actually bound; -1 without one. REQUIRES: Start() ok.
  int http_port() const { return http_port_; }
  // What GET /metrics renders. For tests. REQUIRES: Start() ok.
  const rpc::MetricsRegistry& metrics() const { return *metrics_; }
  // The stable id from the data directory. REQUIRES: Start() ok.
  const std::string& worker_id() const { return worker_id_; }
  // The memory budget in effect (options.memory_budget_bytes, or its default). REQUIRES: Start()
  // ok.
  uint64_t memory_budget_bytes() const { return memory_budget_bytes_; }
  // Subset indexes built so far for SearchShards.subset (their reuse is not visible over the
  // wire). REQUIRES: Start() ok.
  uint64_t SubsetIndexBuildsForTesting() const;

  // Stops the membership client, marks the health status NOT_SERVING, then stops the server,
  // letting calls in flight finish for up to shutdown_grace. Idempotent; no-op before Start.
  void Shutdown();
  // Blocks until the server has shut down. REQUIRES: Start() ok.
  void Wait();

 private:
  // The worker's gauges (README.md), read at every scrape.
  void DeclareGauges();

  const WorkerOptions options_;
  std::string worker_id_;
  std::string bound_address_;
  std::string advertise_address_;
  uint64_t memory_budget_bytes_ = 0;
  int http_port_ = -1;
  // Serving (and, with a coordinator, registered): what /readyz reports.
  std::atomic<bool> serving_{false};
  // Outlives the grpc::Server (its interceptor counts into it) and the HTTP server.
  std::unique_ptr<rpc::MetricsRegistry> metrics_;
  // Destroyed in reverse order: the server first, so no handler runs once the rest goes.
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<rpc::AdmissionControl> admission_;
  std::unique_ptr<ShardStore> store_;
  std::unique_ptr<ShardFiles> files_;
  std::unique_ptr<DatasetCache> datasets_;
  std::unique_ptr<SubsetIndexCache> subset_indexes_;
  std::unique_ptr<WorkerService> service_;
  std::unique_ptr<MembershipClient> membership_;
  std::unique_ptr<grpc::Server> server_;
  // Last: stopped (and destroyed) first, as its gauges read the members above.
  std::unique_ptr<rpc::HttpServer> http_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace knncluster::worker

#endif  // KNNCLUSTER_WORKER_WORKER_SERVER_H_
