// knn-coordinator: serves the Coordinator service (datasets, models, queries) and the Membership
// service (worker registration and heartbeats). Flags → CoordinatorOptions → CoordinatorServer.
// Prints "listening on HOST:PORT" as the first line of stdout once serving; logs go to stderr.
// SIGINT / SIGTERM shut down gracefully (exit 0).
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/coordinator_server.h"
#include "rpc/credentials.h"
#include "rpc/server_main.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "HOST:PORT to serve on; port 0 picks a free port (the chosen address is printed on "
          "the first line of stdout as \"listening on HOST:PORT\")");
ABSL_FLAG(std::string, advertise, "",
          "HOST:PORT clients and workers should use to reach this coordinator (default: the "
          "bound address)");
ABSL_FLAG(std::string, data_dir, "",
          "Required. Directory where uploaded datasets and split parts are kept (the cluster's "
          "source of truth; shards are re-sent from it)");
ABSL_FLAG(std::vector<std::string>, workers, {},
          "Comma-separated HOST:PORT list of workers to use without registration (their id is "
          "their address); workers started with --coordinator register themselves");
ABSL_FLAG(int, threads, 0, "Threads for merging and loading shards (0: all cores)");
ABSL_FLAG(int, heartbeat_interval_ms, 1000,
          "Heartbeat interval told to workers; a worker silent for 3 intervals is marked dead");
ABSL_FLAG(int, rpc_deadline_ms, 60000, "Deadline of each search call to a worker, in ms");
ABSL_FLAG(int, max_message_mb, 64, "Max gRPC message size in MiB, both directions");
ABSL_FLAG(int, max_concurrent_requests, 256,
          "Calls that do work (uploads, fits, queries, imports, exports, splits, deletes, grid "
          "search starts) in flight at once; beyond it a call is refused at once with "
          "RESOURCE_EXHAUSTED (0: no limit)");
ABSL_FLAG(int, max_inflight_request_mb, 512,
          "MiB of requests (queries, and the rows of queried datasets) in flight at once; beyond "
          "it a call is refused at once with RESOURCE_EXHAUSTED (0: no limit)");
ABSL_FLAG(int, replication, 1,
          "Copies of every shard, each on a different worker: searches go on through the "
          "other copies when a worker dies (the Kubernetes manifests use 2)");
ABSL_FLAG(int, grid_search_slots, 0,
          "Grid-search fold jobs each worker runs at once (0: the worker's cores, at least 2)");
ABSL_FLAG(int, grid_search_job_deadline_s, 1800,
          "Deadline of one grid-search fold job on a worker, in seconds");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain) of this process, from the cluster's CA (scripts/make-certs.sh); "
          "with --tls-key and --tls-ca: serve TLS; clients need no certificate, workers must show "
          "theirs (CN knn-worker-*) to register");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM certificate of the cluster's CA: workers' certificates are verified against it, and "
          "so are workers when this coordinator calls them");
ABSL_FLAG(int, http_port, -1,
          "Port of the plaintext HTTP server on the --listen host: GET /healthz, /readyz, /metrics "
          "(Prometheus) and, with --status-page, the status page at /; read-only (other methods get 405), no data. 0 picks a free port (printed "
          "on the second line of stdout as \"http listening on HOST:PORT\"); -1 (default): none");
ABSL_FLAG(bool, status_page, false,
          "With --http-port: serve a read-only HTML status page at / (workers and their health, "
          "datasets, models with their shards' replicas, grid searches with progress and score "
          "heatmaps; names only, never data). Off by default: the HTTP port has no "
          "authentication");
ABSL_FLAG(bool, insecure, false,
          "Serve plaintext (no TLS): allowed only on a loopback --listen address unless "
          "--allow-insecure-remote. Without TLS flags or --insecure the server refuses to start");
ABSL_FLAG(bool, allow_insecure_remote, false,
          "With --insecure: allow plaintext on a non-loopback address (anyone who reaches it can "
          "call it)");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding a bearer token: every client call must then carry \"authorization: "
          "Bearer <token>\" (knnctl --token-file, the clients' token option), else "
          "UNAUTHENTICATED");

namespace {

void Log(const std::string& line) {
  knncluster::rpc::LogLine("knn-coordinator", knncluster::rpc::LogLevel::kInfo, line);
}
void LogError(const std::string& line) {
  knncluster::rpc::LogLine("knn-coordinator", knncluster::rpc::LogLevel::kError, line);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "knn-coordinator --data-dir DIR [--listen HOST:PORT] [--advertise HOST:PORT] "
      "[--workers A,B,C] [--threads N] [--heartbeat-interval-ms MS] [--replication R]\n"
      "  [--http-port P [--status-page]]\n"
      "  (--tls-cert F --tls-key F --tls-ca F [--auth-token-file F] | --insecure "
      "[--allow-insecure-remote])\n"
      "Keeps the catalog of datasets and models, shards training sets over the workers, fans "
      "queries out and merges the workers' partial answers into the exact k nearest neighbours.\n"
      "Flag names accept '-' or '_' (--data-dir and --data_dir are the same flag).");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "coordinator_main");
  };
  absl::SetFlagsUsageConfig(usage);
  std::vector<std::string> storage;
  std::vector<char*> args = knncluster::rpc::NormalizeFlagNames(argc, argv, &storage);
  absl::ParseCommandLine(static_cast<int>(args.size()) - 1, args.data());

  knncluster::coordinator::CoordinatorOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.advertise_address = absl::GetFlag(FLAGS_advertise);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  for (const std::string& w : absl::GetFlag(FLAGS_workers)) {
    if (!w.empty()) options.workers.push_back(w);
  }
  options.threads = absl::GetFlag(FLAGS_threads);
  options.heartbeat_interval_ms = absl::GetFlag(FLAGS_heartbeat_interval_ms);
  options.rpc_deadline = absl::Milliseconds(absl::GetFlag(FLAGS_rpc_deadline_ms));
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_mb) << 20;
  options.max_concurrent_requests = absl::GetFlag(FLAGS_max_concurrent_requests);
  options.max_inflight_request_bytes =
      static_cast<uint64_t>(std::max(0, absl::GetFlag(FLAGS_max_inflight_request_mb))) << 20;
  if (options.max_concurrent_requests < 0 || absl::GetFlag(FLAGS_max_inflight_request_mb) < 0) {
    absl::FPrintF(stderr,
                  "knn-coordinator: --max-concurrent-requests and --max-inflight-request-mb must "
                  "be >= 0 (0: no limit)\n");
    return 2;
  }
  options.grid_search.slots_per_worker = absl::GetFlag(FLAGS_grid_search_slots);
  options.replication = absl::GetFlag(FLAGS_replication);
  options.grid_search.job_deadline =
      absl::Seconds(absl::GetFlag(FLAGS_grid_search_job_deadline_s));
  options.security.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.security.key_file = absl::GetFlag(FLAGS_tls_key);
  options.security.ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.security.insecure = absl::GetFlag(FLAGS_insecure);
  options.security.allow_insecure_remote = absl::GetFlag(FLAGS_allow_insecure_remote);
  options.security.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.status_page = absl::GetFlag(FLAGS_status_page);
  if (options.http_port < -1 || options.http_port > 65535) {
    absl::FPrintF(stderr, "knn-coordinator: --http-port must be in [0, 65535] (or -1: none)\n");
    return 2;
  }
  if (absl::Status status =
          knncluster::rpc::CheckSecurityOptions(options.security, options.listen_address);
      !status.ok()) {
    LogError(std::string(status.message()));
    return 2;
  }
  if (options.data_dir.empty()) {
    absl::FPrintF(stderr,
                  "knn-coordinator: --data-dir is required (the directory where uploaded "
                  "datasets are kept). See --help.\n");
    return 2;
  }
  if (options.heartbeat_interval_ms < 1 || absl::GetFlag(FLAGS_rpc_deadline_ms) < 1 ||
      absl::GetFlag(FLAGS_max_message_mb) < 4 || absl::GetFlag(FLAGS_max_message_mb) > 1024 ||
      options.grid_search.slots_per_worker < 0 || options.replication < 1 ||
      options.replication > 16 ||
      absl::GetFlag(FLAGS_grid_search_job_deadline_s) < 1) {
    absl::FPrintF(stderr,
                  "knn-coordinator: --heartbeat-interval-ms, --rpc-deadline-ms and "
                  "--grid-search-job-deadline-s must be >= 1, --grid-search-slots >= 0, "
                  "--max-message-mb in [4, 1024], --replication in [1, 16]\n");
    return 2;
  }

  knncluster::rpc::LimitMallocArenas();  // before any thread starts: see server_main.h
  const sigset_t signals = knncluster::rpc::BlockTerminationSignals();

  knncluster::coordinator::CoordinatorServer server(options);
  if (absl::Status status = server.Start(); !status.ok()) {
    LogError(status.ToString());
    return 1;
  }
  for (const std::string& e : server.load_errors()) knncluster::rpc::LogLine("knn-coordinator", knncluster::rpc::LogLevel::kWarning,
                             absl::StrCat("data directory: ", e));
  std::printf("listening on %s\n", server.bound_address().c_str());
  if (server.http_port() >= 0) {
    const std::string http = absl::StrCat(
        server.bound_address().substr(0, server.bound_address().rfind(':')), ":",
        server.http_port());
    std::printf("http listening on %s\n", http.c_str());
    Log(absl::StrCat("HTTP (plaintext, read-only: /healthz /readyz /metrics",
                     options.status_page ? ", status page /" : "", ") on ", http));
  }
  std::fflush(stdout);
  Log(absl::StrFormat(
      "serving %s on %s%s, data in %s, heartbeat interval %d ms, replication %d%s",
      options.security.tls()
          ? (options.security.auth_token_file.empty()
                 ? "TLS (workers: mutual TLS)"
                 : "TLS with a bearer token (workers: mutual TLS)")
          : (options.security.auth_token_file.empty() ? "plaintext"
                                                      : "plaintext with a bearer token"),
      server.bound_address(),
      options.advertise_address.empty()
          ? ""
          : absl::StrCat(" (advertised as ", options.advertise_address, ")"),
      options.data_dir, options.heartbeat_interval_ms, options.replication,
      options.workers.empty()
          ? ""
          : absl::StrCat(", static workers ", absl::StrJoin(options.workers, ","))));

  const int signal_number = knncluster::rpc::WaitForTerminationSignal(signals);
  Log(absl::StrFormat("signal %d: shutting down", signal_number));
  server.Shutdown();
  server.Wait();
  Log("stopped");
  return 0;
}
