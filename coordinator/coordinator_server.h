// CoordinatorServer: the knn-coordinator process minus its flags. Owns everything: the
// DatasetStore (its data directory), the WorkerPool, the ModelRegistry, the ThreadPool, the
// ScatterGather, the ModelManager, the GridSearchManager, the two services, the grpc::Server
// (with the standard health service, per-service status for "knncluster.v1.Coordinator" and
// "knncluster.v1.Membership", and server reflection), and two maintenance threads: liveness (probes silent workers and
// marks dead ones, every heartbeat interval) and repair (re-sends shards of dead workers, drops
// orphans); and the plaintext HTTP port (health, readiness, Prometheus metrics, the optional
// status page: coordinator/README.md) with the metrics registry behind it.
//
// Usage:
//   CoordinatorServer server(options);
//   KNN_RETURN_IF_ERROR(server.Start());
//   ... server.bound_address() ...
//   server.Shutdown();  // from any thread
//   server.Wait();
//
// Thread safety: Start once; then bound_address from any thread; Shutdown and Wait from any
// thread (Shutdown is idempotent). The destructor shuts down.
#ifndef KNNCLUSTER_COORDINATOR_COORDINATOR_SERVER_H_
#define KNNCLUSTER_COORDINATOR_COORDINATOR_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "coordinator/grid_search_manager.h"
#include "coordinator/sharder.h"
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

namespace knncluster::coordinator {

class CoordinatorService;
class DatasetStore;
class GridSearchManager;
class MembershipService;
class ModelManager;
class ModelRegistry;
class ScatterGather;
class WorkerPool;

// Threads gRPC may run beyond max_concurrent_requests, for the calls admission does not count.
inline constexpr int kAdmissionFreeThreads = 128;

struct CoordinatorOptions {
  // HOST:PORT to listen on; port 0 lets the OS choose (see bound_address()).
  std::string listen_address = "127.0.0.1:0";
  // HOST:PORT clients and workers should use; empty: bound_address(). Informational.
  std::string advertise_address;
  // Required: where datasets live (the DatasetStore's directory).
  std::string data_dir;
  // Static workers (HOST:PORT each; id = address), in addition to those that register.
  std::vector<std::string> workers;
  // ThreadPool size for merges and parallel shard loads (0: all cores).
  int threads = 0;
  // Workers heartbeat at this interval; one silent for 3 intervals is dead.
  int heartbeat_interval_ms = 1000;
  // Deadline of each SearchShards call (capped by the client's deadline).
  absl::Duration rpc_deadline = absl::Seconds(60);
  // Deadline of one whole LoadShard stream.
  absl::Duration load_deadline = absl::Minutes(10);
  // A training set quarantined at start is rebuilt from a model's shards once the workers
  // holding them register; how long to wait for them (ModelManagerOptions::rebuild_wait).
  absl::Duration rebuild_wait = absl::Minutes(5);
  // Where the coordinator reports what it does on its own (a dataset rebuilt from shards);
  // null: one line on stderr (rpc::LogLine).
  std::function<void(const std::string&)> log;
  // Max message size, both directions, on the server and on channels to workers.
  int max_message_bytes = 64 << 20;
  // Admission (rpc/admission.h): Coordinator calls that do work (uploads, fits, queries, imports,
  // exports, splits, deletes, starting a grid search) in flight at once, and the bytes of their
  // requests (queries naming a dataset count its rows); beyond either the call is refused with
  // RESOURCE_EXHAUSTED at once. 0: no limit. gRPC's thread quota is set this plus
  // kAdmissionFreeThreads (for health checks, membership, listings and watches).
  int max_concurrent_requests = 256;
  uint64_t max_inflight_request_bytes = uint64_t{512} << 20;
  ShardingOptions sharding;
  // Copies of every shard, each on a different worker (--replication): with R copies a search
  // survives R - 1 dead workers without a failed call.
  int replication = 1;
  // Grid searches: slots per worker, deadlines, how many finished searches are kept.
  GridSearchManagerOptions grid_search;
  // Run the liveness and repair threads (tests may drive ModelManager directly instead).
  bool run_maintenance = true;
  // How long Shutdown lets calls in flight finish before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Transport security and the clients' bearer token (rpc/credentials.h). Default: plaintext,
  // loopback only. With TLS the port requests (not requires) client certificates: the
  // Coordinator service serves anyone with the token, the Membership service only peers with
  // a worker's certificate; channels to workers present this coordinator's certificate.
  rpc::SecurityOptions security;
  // Port of the plaintext HTTP server (GET /healthz, /readyz, /metrics; rpc/ops_http.h) on the
  // host of listen_address; 0: the OS picks one (see http_port()); -1: none.
  int http_port = -1;
  // Serve the read-only status page (GET / and /status; coordinator/status_page.h) on the HTTP
  // port: names of workers, datasets, models and grid searches, never their data.
  bool status_page = false;
};

class CoordinatorServer {
 public:
  explicit CoordinatorServer(CoordinatorOptions options);
  ~CoordinatorServer();
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  // Opens the data directory, adds the static workers, starts serving and the maintenance
  // threads. InvalidArgument for bad options (empty data_dir, bad addresses); the store's errors
  // (e.g. FailedPrecondition when another process has the directory open); Unavailable when the
  // port cannot be bound.
  absl::Status Start();
  // "HOST:PORT" actually bound (the chosen port when listening on port 0).
  const std::string& bound_address() const { return bound_address_; }
  // Stops accepting calls, lets calls in flight finish (up to shutdown_grace), stops the
  // maintenance threads. Idempotent.
  void Shutdown();
  // Blocks until the server has shut down.
  void Wait();

  // The HTTP port actually bound; -1 without one.
  int http_port() const { return http_port_; }
  // What GET /metrics renders. For tests. REQUIRES: Start() ok.
  const rpc::MetricsRegistry& metrics() const { return *metrics_; }

  // For tests: the parts.
  ModelManager* models_for_testing() { return models_.get(); }
  WorkerPool* workers_for_testing() { return workers_.get(); }
  rpc::AdmissionControl* admission_for_testing() { return admission_.get(); }
  // What Start found in the data directory and could not use (datasets, models, grid searches),
  // one line each naming the file and where it was moved. For the log.
  const std::vector<std::string>& load_errors() const { return load_errors_; }

 private:
  // The coordinator's gauges (README.md), read at every scrape.
  void DeclareGauges();
  // GET / and /status (with options_.status_page); nullopt for other paths.
  std::optional<rpc::HttpResponse> StatusPage(const rpc::HttpRequest& request);
  void LivenessLoop();
  void RepairLoop();

  const CoordinatorOptions options_;
  std::string bound_address_;
  int http_port_ = -1;
  // Data directory loaded and serving: what /readyz reports.
  std::atomic<bool> serving_{false};
  std::vector<std::string> load_errors_;
  // Outlives the grpc::Server (its interceptor counts into it) and the HTTP server.
  std::unique_ptr<rpc::MetricsRegistry> metrics_;
  std::unique_ptr<DatasetStore> store_;
  std::unique_ptr<WorkerPool> workers_;
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<rpc::AdmissionControl> admission_;
  std::unique_ptr<ScatterGather> search_;
  std::unique_ptr<ModelCatalog> catalog_;
  std::unique_ptr<ModelManager> models_;
  std::unique_ptr<GridSearchManager> grid_searches_;
  std::unique_ptr<CoordinatorService> coordinator_service_;
  std::unique_ptr<MembershipService> membership_service_;
  std::unique_ptr<grpc::Server> server_;
  absl::Notification stop_;
  std::thread liveness_thread_;
  std::thread repair_thread_;
  // Last: stopped (and destroyed) first, as its gauges and page read the members above.
  std::unique_ptr<rpc::HttpServer> http_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_COORDINATOR_SERVER_H_
