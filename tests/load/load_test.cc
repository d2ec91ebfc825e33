// A bounded load test of a real cluster on loopback (issue 6): starts knn-coordinator and two
// knn-workers as processes, uploads the digits and fits a classifier through the public C++ client
// (<knncluster/client.h>), warms up, records every server's resident memory, then runs N
// concurrent clients (each its own knncluster::Client) for S seconds issuing a mix of predict,
// kneighbors and score batches. Prints throughput, p50 / p99 latency per kind and the RSS of
// every process after the warm-up and after the run.
//
// Fails (exit 1) on any failed call, or when a process's RSS after the run exceeds its RSS after
// the warm-up by more than --max-rss-growth (10%).
//
//   load_test --bin build/bin [--clients 32] [--seconds 60] [--warmup-seconds 10]
// Environment: KNN_LOAD_SECONDS / KNN_LOAD_WARMUP_SECONDS / KNN_LOAD_CLIENTS override the flags
// (to shorten a local run).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/datasets/dataset.h"
#include "knncluster/client.h"

ABSL_FLAG(std::string, bin, "", "Directory holding knn-coordinator and knn-worker");
ABSL_FLAG(int, clients, 32, "Concurrent clients");
ABSL_FLAG(int, seconds, 60, "Length of the measured run");
ABSL_FLAG(int, warmup_seconds, 10, "Length of the warm-up (same load, not measured)");
ABSL_FLAG(int, workers, 2, "Worker processes");
ABSL_FLAG(double, max_rss_growth, 0.10, "Largest allowed RSS growth after the warm-up");
ABSL_FLAG(int, batch_rows, 16, "Query rows per predict / kneighbors / score call");

namespace {

namespace fs = std::filesystem;
namespace kc = knncluster::client;

int EnvOr(const char* name, int fallback) {
  const char* v = std::getenv(name);
  int out = 0;
  return v != nullptr && absl::SimpleAtoi(v, &out) && out > 0 ? out : fallback;
}

// A server process with stdout / stderr in files under `dir`.
struct Process {
  std::string name;
  pid_t pid = -1;
  std::string address;
  std::string out_path, err_path;
};

bool Spawn(const std::string& dir, const std::string& name, std::vector<std::string> argv,
           Process* p) {
  p->name = name;
  p->out_path = absl::StrCat(dir, "/", name, ".out");
  p->err_path = absl::StrCat(dir, "/", name, ".err");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, p->out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, p->err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const int rc = posix_spawn(&p->pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    absl::FPrintF(stderr, "cannot start %s: %s\n", argv[0], strerror(rc));
    return false;
  }
  for (int i = 0; i < 1500; ++i) {  // 30 s
    std::ifstream in(p->out_path);
    std::string line;
    if (std::getline(in, line) && line.rfind("listening on ", 0) == 0 && !in.eof()) {
      p->address = line.substr(std::string("listening on ").size());
      return true;
    }
    int status = 0;
    if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
      absl::FPrintF(stderr, "%s exited at start; see %s\n", name, p->err_path);
      p->pid = -1;
      return false;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::FPrintF(stderr, "%s did not print its address\n", name);
  return false;
}

void Stop(std::vector<Process>* procs) {
  for (Process& p : *procs) {
    if (p.pid > 0) kill(p.pid, SIGTERM);
  }
  for (Process& p : *procs) {
    if (p.pid <= 0) continue;
    for (int i = 0; i < 500; ++i) {
      if (waitpid(p.pid, nullptr, WNOHANG) == p.pid) {
        p.pid = -1;
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (p.pid > 0) {
      kill(p.pid, SIGKILL);
      waitpid(p.pid, nullptr, 0);
      p.pid = -1;
    }
  }
}

// VmRSS of a process in bytes (0 if unreadable).
uint64_t RssBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      uint64_t kb = 0;
      fields >> kb;
      return kb << 10;
    }
  }
  return 0;
}

enum Kind { kPredict = 0, kKNeighbors = 1, kScore = 2, kKinds = 3 };
const char* const kKindNames[kKinds] = {"predict", "kneighbors", "score"};

struct Stats {
  std::vector<double> latencies_ms[kKinds];
  uint64_t errors = 0;
  uint64_t rows = 0;
  std::map<std::string, int> error_messages;
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  return v[i];
}

// One client's loop until `end`: kinds in turn, batches at random offsets of the digits.
void RunClient(const std::string& address, const kc::Dataset& digits, int seed,
               size_t batch_rows, absl::Time end, Stats* stats) {
  kc::ClientOptions options;
  options.address = address;
  options.deadline = std::chrono::milliseconds(30'000);
  auto client = kc::Client::Create(options);
  if (!client.ok()) {
    ++stats->errors;
    stats->error_messages[std::string(client.status().message())]++;
    return;
  }
  std::mt19937 rng(seed);
  const size_t cols = digits.cols;
  std::uniform_int_distribution<size_t> offset(0, digits.rows - batch_rows);
  for (uint64_t i = seed; absl::Now() < end; ++i) {
    const size_t begin = offset(rng);
    const absl::Span<const double> rows(digits.features.data() + begin * cols, batch_rows * cols);
    const auto queries = kc::Queries::Inline(cols, rows);
    const Kind kind = static_cast<Kind>(i % kKinds);
    const absl::Time start = absl::Now();
    absl::Status st;
    switch (kind) {
      case kPredict: {
        auto r = (*client)->Predict("load-knn", queries);
        st = r.status();
        if (st.ok() && r->predictions.size() != batch_rows) st = absl::InternalError("predict: size");
        break;
      }
      case kKNeighbors: {
        auto r = (*client)->KNeighbors("load-knn", queries, 5);
        st = r.status();
        if (st.ok() && r->indices.size() != batch_rows * 5) {
          st = absl::InternalError("kneighbors: size");
        }
        break;
      }
      case kScore: {
        auto r = (*client)->Score(
            "load-knn", queries,
            absl::Span<const double>(digits.targets.data() + begin, batch_rows));
        st = r.status();
        if (st.ok() && r->n_samples != batch_rows) st = absl::InternalError("score: size");
        break;
      }
      case kKinds:
        break;
    }
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    if (!st.ok()) {
      ++stats->errors;
      stats->error_messages[st.ToString()]++;
    } else {
      stats->latencies_ms[kind].push_back(ms);
      stats->rows += batch_rows;
    }
  }
}

// Runs `clients` clients until `seconds` have passed; merges their stats.
Stats RunLoad(const std::string& address, const kc::Dataset& digits, int clients,
              int seconds, size_t batch_rows, int seed_base) {
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  std::vector<Stats> per(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back(RunClient, address, std::cref(digits), seed_base + c, batch_rows, end,
                         &per[c]);
  }
  for (auto& t : threads) t.join();
  Stats all;
  for (Stats& s : per) {
    for (int k = 0; k < kKinds; ++k) {
      all.latencies_ms[k].insert(all.latencies_ms[k].end(), s.latencies_ms[k].begin(),
                                 s.latencies_ms[k].end());
    }
    all.errors += s.errors;
    all.rows += s.rows;
    for (const auto& [m, n] : s.error_messages) all.error_messages[m] += n;
  }
  return all;
}

int Run() {
  const std::string bin = absl::GetFlag(FLAGS_bin);
  const int clients = EnvOr("KNN_LOAD_CLIENTS", absl::GetFlag(FLAGS_clients));
  const int seconds = EnvOr("KNN_LOAD_SECONDS", absl::GetFlag(FLAGS_seconds));
  const int warmup = EnvOr("KNN_LOAD_WARMUP_SECONDS", absl::GetFlag(FLAGS_warmup_seconds));
  const size_t batch_rows = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_batch_rows)));
  if (bin.empty()) {
    absl::FPrintF(stderr, "load_test: --bin DIR is required\n");
    return 2;
  }
  char tmpl[] = "/tmp/knn-load-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    absl::FPrintF(stderr, "load_test: mkdtemp failed\n");
    return 1;
  }
  const std::string dir = tmpl;
  setenv("GRPC_VERBOSITY", "ERROR", 1);

  std::vector<Process> procs(1 + absl::GetFlag(FLAGS_workers));
  auto cleanup = [&] {
    Stop(&procs);
    std::error_code ec;
    fs::remove_all(dir, ec);
  };
  if (!Spawn(dir, "coordinator",
             {bin + "/knn-coordinator", "--listen", "127.0.0.1:0", "--data-dir",
              dir + "/coordinator", "--heartbeat-interval-ms", "500", "--insecure"},
             &procs[0])) {
    cleanup();
    return 1;
  }
  for (size_t w = 1; w < procs.size(); ++w) {
    if (!Spawn(dir, absl::StrCat("worker", w),
               {bin + "/knn-worker", "--listen", "127.0.0.1:0", "--data-dir",
                absl::StrCat(dir, "/w", w), "--coordinator", procs[0].address, "--insecure"},
               &procs[w])) {
      cleanup();
      return 1;
    }
  }
  const std::string address = procs[0].address;

  kc::ClientOptions options;
  options.address = address;
  auto client = kc::Client::Create(options);
  if (!client.ok()) {
    absl::FPrintF(stderr, "load_test: %s\n", client.status().ToString());
    cleanup();
    return 1;
  }
  // Both workers registered.
  for (int i = 0;; ++i) {
    auto status = (*client)->GetClusterStatus();
    size_t alive = 0;
    if (status.ok()) {
      for (const auto& w : status->workers) alive += w.state == kc::WorkerState::kAlive;
    }
    if (alive == procs.size() - 1) break;
    if (i == 600) {
      absl::FPrintF(stderr, "load_test: workers did not register\n");
      cleanup();
      return 1;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }

  // The digits, through the public client.
  auto core_digits = knncluster::LoadDigits();
  if (!core_digits.ok()) {
    absl::FPrintF(stderr, "load_test: %s\n", core_digits.status().ToString());
    cleanup();
    return 1;
  }
  kc::Dataset digits;
  digits.name = "digits";
  digits.rows = core_digits->size();
  digits.cols = core_digits->dim();
  digits.features.assign(core_digits->features.data(),
                         core_digits->features.data() + digits.rows * digits.cols);
  digits.class_names.clear();
  digits.targets = core_digits->targets;
  if (auto up = (*client)->UploadDataset("digits", digits); !up.ok()) {
    absl::FPrintF(stderr, "load_test: upload: %s\n", up.status().ToString());
    cleanup();
    return 1;
  }
  kc::FitRequest fit;
  fit.model = "load-knn";
  fit.dataset = "digits";
  fit.params.n_neighbors = 5;
  fit.params.algorithm = kc::Algorithm::kKdTree;
  auto model = (*client)->Fit(fit);
  if (!model.ok()) {
    absl::FPrintF(stderr, "load_test: fit: %s\n", model.status().ToString());
    cleanup();
    return 1;
  }
  absl::PrintF("cluster: coordinator %s + %d workers; model load-knn (%d rows, %d shards)\n",
               address, procs.size() - 1, model->rows, model->shards.size());
  absl::PrintF("load: %d clients, batches of %d rows (predict / kneighbors k=5 / score in turn)\n",
               clients, batch_rows);

  absl::PrintF("warm-up: %d s\n", warmup);
  std::fflush(stdout);
  const Stats warm = RunLoad(address, digits, clients, warmup, batch_rows, 1000);
  std::vector<uint64_t> rss_warm;
  for (const Process& p : procs) rss_warm.push_back(RssBytes(p.pid));

  absl::PrintF("run: %d s\n", seconds);
  std::fflush(stdout);
  const absl::Time start = absl::Now();
  // RSS every 10 s during the run, printed as a series (to tell a plateau from a leak).
  std::vector<std::vector<uint64_t>> samples;
  absl::Notification run_done;
  std::thread sampler([&] {
    while (!run_done.WaitForNotificationWithTimeout(absl::Seconds(10))) {
      std::vector<uint64_t> now;
      for (const Process& p : procs) now.push_back(RssBytes(p.pid));
      samples.push_back(std::move(now));
    }
  });
  const Stats run = RunLoad(address, digits, clients, seconds, batch_rows, 2000);
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  run_done.Notify();
  sampler.join();
  std::vector<uint64_t> rss_after;
  for (const Process& p : procs) rss_after.push_back(RssBytes(p.pid));

  uint64_t calls = 0;
  for (int k = 0; k < kKinds; ++k) calls += run.latencies_ms[k].size();
  absl::PrintF("\n%-11s %9s %9s %9s %9s\n", "kind", "calls", "p50 ms", "p99 ms", "max ms");
  for (int k = 0; k < kKinds; ++k) {
    const auto& v = run.latencies_ms[k];
    absl::PrintF("%-11s %9d %9.2f %9.2f %9.2f\n", kKindNames[k], v.size(), Percentile(v, 0.5),
                 Percentile(v, 0.99), v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()));
  }
  absl::PrintF("throughput: %.1f calls/s, %.0f query rows/s over %.1f s; errors: %d (warm-up "
               "errors: %d)\n",
               calls / elapsed, run.rows / elapsed, elapsed, run.errors, warm.errors);
  for (const auto& [m, n] : run.error_messages) absl::PrintF("  error x%d: %s\n", n, m);
  for (const auto& [m, n] : warm.error_messages) absl::PrintF("  warm-up error x%d: %s\n", n, m);

  bool ok = run.errors == 0 && warm.errors == 0 && calls > 0;
  const double max_growth = absl::GetFlag(FLAGS_max_rss_growth);
  absl::PrintF("\n%-12s %14s %14s %8s\n", "process", "RSS warm MiB", "RSS after MiB", "growth");
  for (size_t i = 0; i < procs.size(); ++i) {
    const double growth =
        rss_warm[i] == 0 ? 0.0 : (static_cast<double>(rss_after[i]) - rss_warm[i]) / rss_warm[i];
    const bool within = rss_warm[i] > 0 && growth <= max_growth;
    ok = ok && within;
    absl::PrintF("%-12s %14.1f %14.1f %+7.1f%%%s\n", procs[i].name, rss_warm[i] / 1048576.0,
                 rss_after[i] / 1048576.0, 100 * growth, within ? "" : "  OVER THE LIMIT");
  }
  absl::PrintF("RSS MiB every 10 s of the run:");
  for (size_t i = 0; i < procs.size(); ++i) {
    absl::PrintF("\n  %-12s", procs[i].name);
    for (const auto& sample : samples) absl::PrintF(" %6.1f", sample[i] / 1048576.0);
  }
  absl::PrintF("\n");
  absl::PrintF("\n%s\n", ok ? "PASS" : "FAIL");
  std::fflush(stdout);
  cleanup();
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  return Run();
}
