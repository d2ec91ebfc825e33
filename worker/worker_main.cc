// knn-worker: serves the Worker service (shards, local indexes, partial top-k searches; cached
// datasets and fold jobs for grid search).
// Flags → WorkerOptions → WorkerServer. Prints "listening on HOST:PORT" as the first line of
// stdout once serving; logs go to stderr. SIGINT / SIGTERM shut down gracefully (exit 0).
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rpc/credentials.h"
#include "rpc/server_main.h"
#include "worker/worker_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "HOST:PORT to serve on; port 0 picks a free port (the chosen address is printed on "
          "the first line of stdout as \"listening on HOST:PORT\")");
ABSL_FLAG(std::string, advertise, "",
          "HOST:PORT the coordinator should use to reach this worker (default: the bound "
          "address)");
ABSL_FLAG(std::string, data_dir, "",
          "Required. Directory that keeps this worker's stable id (file worker_id, created on "
          "first start); a worker restarted on the same directory is the same worker, at any "
          "address. Each worker needs its own.");
ABSL_FLAG(std::string, coordinator, "",
          "HOST:PORT of the coordinator to register with and send heartbeats to (optional: "
          "without it the coordinator must list this worker in its --workers)");
ABSL_FLAG(int, threads, 0, "Search threads (0: all cores)");
ABSL_FLAG(std::optional<int64_t>, memory_budget_mb, std::nullopt,
          "MiB this worker may use for data: the datasets it caches for grid search plus its "
          "shards; sent to the coordinator when registering (default: half of the machine's "
          "physical memory; must be >= 1)");
ABSL_FLAG(int, testing_job_delay_ms, 0,
          "for tests: sleep N ms at the start of every fold job");
ABSL_FLAG(int, max_concurrent_requests, 512,
          "LoadShard / SearchShards / DropShard / PutDataset / RunFoldJob calls in flight at once; "
          "beyond it a call is refused at once with RESOURCE_EXHAUSTED (0: no limit). Keep it "
          "above the coordinator's --max-concurrent-requests");
ABSL_FLAG(int, max_inflight_request_mb, 1024,
          "MiB of requests (query batches) in flight at once; beyond it a call is refused at "
          "once with RESOURCE_EXHAUSTED (0: no limit)");
ABSL_FLAG(int, max_message_mb, 64, "Max gRPC message size in MiB, both directions");
ABSL_FLAG(int, testing_search_delay_ms, 0,
          "for tests: sleep N ms at the start of every SearchShards call");
ABSL_FLAG(int, membership_deadline_ms, 2000,
          "Deadline of each Register / Heartbeat call to the coordinator, in milliseconds");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain) of this process, from the cluster's CA (scripts/make-certs.sh); "
          "with --tls-key and --tls-ca: serve TLS and accept calls only from the coordinator's "
          "certificate (CN knn-coordinator)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM certificate of the cluster's CA: callers' certificates are verified against it, and "
          "so is the coordinator's when registering");
ABSL_FLAG(int, http_port, -1,
          "Port of the plaintext HTTP server on the --listen host: GET /healthz, /readyz, /metrics "
          "(Prometheus); read-only (other methods get 405), no data. 0 picks a free port (printed "
          "on the second line of stdout as \"http listening on HOST:PORT\"); -1 (default): none");
ABSL_FLAG(bool, insecure, false,
          "Serve plaintext (no TLS): allowed only on a loopback --listen address unless "
          "--allow-insecure-remote. Without TLS flags or --insecure the server refuses to start");
ABSL_FLAG(bool, allow_insecure_remote, false,
          "With --insecure: allow plaintext on a non-loopback address (anyone who reaches it can "
          "call it)");

namespace {

void Log(const std::string& line) {
  knncluster::rpc::LogLine("knn-worker", knncluster::rpc::LogLevel::kInfo, line);
}
void LogError(const std::string& line) {
  knncluster::rpc::LogLine("knn-worker", knncluster::rpc::LogLevel::kError, line);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "knn-worker --data-dir DIR [--listen HOST:PORT] [--advertise HOST:PORT] "
      "[--coordinator HOST:PORT] [--threads N] [--memory-budget-mb N] [--http-port P]\n"
      "  (--tls-cert F --tls-key F --tls-ca F | --insecure [--allow-insecure-remote])\n"
      "Holds shards of training sets, builds KD-tree / ball-tree / brute-force indexes over them "
      "and answers partial top-k searches for the knncluster coordinator; for grid search it "
      "also caches whole datasets (within --memory-budget-mb) and runs fold jobs on them.\n"
      "Flag names accept '-' or '_' (--data-dir and --data_dir are the same flag).");
  absl::FlagsUsageConfig usage;
  // --help lists this file's flags (absl matches the binary's name by default, and ours is not
  // the file's).
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "worker_main");
  };
  absl::SetFlagsUsageConfig(usage);
  std::vector<std::string> storage;
  std::vector<char*> args = knncluster::rpc::NormalizeFlagNames(argc, argv, &storage);
  absl::ParseCommandLine(static_cast<int>(args.size()) - 1, args.data());

  knncluster::worker::WorkerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.advertise_address = absl::GetFlag(FLAGS_advertise);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.coordinator_address = absl::GetFlag(FLAGS_coordinator);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.membership_rpc_deadline = absl::Milliseconds(absl::GetFlag(FLAGS_membership_deadline_ms));
  options.log = Log;
  options.security.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.security.key_file = absl::GetFlag(FLAGS_tls_key);
  options.security.ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.security.insecure = absl::GetFlag(FLAGS_insecure);
  options.security.allow_insecure_remote = absl::GetFlag(FLAGS_allow_insecure_remote);
  if (absl::Status status =
          knncluster::rpc::CheckSecurityOptions(options.security, options.listen_address);
      !status.ok()) {
    LogError(std::string(status.message()));
    return 2;
  }
  if (options.data_dir.empty()) {
    absl::FPrintF(stderr,
                  "knn-worker: --data-dir is required (the directory that keeps this worker's "
                  "stable id; each worker needs its own). See --help.\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_membership_deadline_ms) < 1) {
    absl::FPrintF(stderr, "knn-worker: --membership_deadline_ms must be >= 1\n");
    return 2;
  }
  if (const std::optional<int64_t> mb = absl::GetFlag(FLAGS_memory_budget_mb); mb.has_value()) {
    constexpr int64_t kMaxMb = int64_t{1} << 43;  // 8 EiB in bytes: the most uint64 can count
    if (*mb < 1 || *mb >= kMaxMb) {
      absl::FPrintF(stderr, "knn-worker: --memory-budget-mb must be in [1, %d), got %d\n", kMaxMb,
                    *mb);
      return 2;
    }
    options.memory_budget_bytes = static_cast<uint64_t>(*mb) << 20;
  }
  if (absl::GetFlag(FLAGS_testing_job_delay_ms) < 0) {
    absl::FPrintF(stderr, "knn-worker: --testing-job-delay-ms must be >= 0\n");
    return 2;
  }
  options.testing_job_delay = absl::Milliseconds(absl::GetFlag(FLAGS_testing_job_delay_ms));
  options.http_port = absl::GetFlag(FLAGS_http_port);
  if (options.http_port < -1 || options.http_port > 65535) {
    absl::FPrintF(stderr, "knn-worker: --http-port must be in [0, 65535] (or -1: none)\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_max_concurrent_requests) < 0 ||
      absl::GetFlag(FLAGS_max_inflight_request_mb) < 0 ||
      absl::GetFlag(FLAGS_max_message_mb) < 4 || absl::GetFlag(FLAGS_max_message_mb) > 1024 ||
      absl::GetFlag(FLAGS_testing_search_delay_ms) < 0) {
    absl::FPrintF(stderr,
                  "knn-worker: --max-concurrent-requests, --max-inflight-request-mb and "
                  "--testing-search-delay-ms must be >= 0, --max-message-mb in [4, 1024]\n");
    return 2;
  }
  options.max_concurrent_requests = absl::GetFlag(FLAGS_max_concurrent_requests);
  options.max_inflight_request_bytes =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_max_inflight_request_mb)) << 20;
  options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_message_mb) << 20;
  options.testing_search_delay =
      absl::Milliseconds(absl::GetFlag(FLAGS_testing_search_delay_ms));

  knncluster::rpc::LimitMallocArenas();  // before any thread starts: see server_main.h
  const sigset_t signals = knncluster::rpc::BlockTerminationSignals();

  knncluster::worker::WorkerServer server(options);
  if (absl::Status status = server.Start(); !status.ok()) {
    LogError(status.ToString());
    return 1;
  }
  std::printf("listening on %s\n", server.bound_address().c_str());
  if (server.http_port() >= 0) {
    const std::string http = absl::StrCat(
        server.bound_address().substr(0, server.bound_address().rfind(':')), ":",
        server.http_port());
    std::printf("http listening on %s\n", http.c_str());
    Log(absl::StrCat("HTTP (plaintext, read-only: /healthz /readyz /metrics",
                     "", ") on ", http));
  }
  std::fflush(stdout);
  Log(absl::StrFormat(
      "worker %s serving %s on %s (advertised as %s), search threads: %s, "
      "memory budget %d MiB%s%s",
      server.worker_id(),
      options.security.tls() ? "mutual TLS (the coordinator only)" : "plaintext",
      server.bound_address(), server.advertise_address(),
      options.threads == 0 ? "all cores" : absl::StrCat(options.threads),
      server.memory_budget_bytes() >> 20,
      options.testing_job_delay > absl::ZeroDuration()
          ? absl::StrCat(", testing job delay ", absl::FormatDuration(options.testing_job_delay))
          : "",
      options.coordinator_address.empty()
          ? ""
          : absl::StrCat(", coordinator ", options.coordinator_address)));

  const int signal_number = knncluster::rpc::WaitForTerminationSignal(signals);
  Log(absl::StrFormat("signal %d: shutting down", signal_number));
  server.Shutdown();
  server.Wait();
  Log("stopped");
  return 0;
}
