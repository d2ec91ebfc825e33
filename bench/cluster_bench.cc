// cluster_bench: predict and kneighbors throughput (k = 10) through a coordinator against the
// in-process engine on the same data, in the same run, at batch sizes 1, 100 and 10,000; and the
// latency a cluster adds to a batch of one (p50). Run by bench/run_cluster_bench.py, which starts
// the cluster, uploads the data and fits the models first.
//
//   cluster_bench --coordinator HOST:PORT --data DIR --datasets uniform3d,blobs16d
//                 [--batches 1,100,10000] [--ops kneighbors,predict] [--inflight 1]
//                 [--budget SECONDS] [--rounds 3] [--cluster-only]
//                 [--coordinator-pid PID --worker-pids PID,PID]
//
// Each case alternates the two sides `rounds` times (budget / rounds seconds each), so that a
// machine that speeds up or slows down during the run (a shared VM) affects both alike; it
// reports each side's median over the rounds and the median of the per-round ratios.
// `--inflight N`: N callers at once, each issuing batches back to back (in-process: N threads on
// the same all-core pool; cluster: N threads on one client). 1 measures one caller waiting for
// each answer (latency-bound); more measures what the system sustains. --cluster-only skips the
// in-process side (for profiling the cluster).
// CPU: each side's CPU time per batch (core-milliseconds, median over the rounds): in-process, this
// process while it searches; through the cluster, this process (the client) plus, given their
// pids, the coordinator and the workers (utime + stime from /proc, 10 ms ticks: the rounds must
// last a second or more for a meaningful figure). Throughput on a shared machine is bounded by
// CPU per batch, so these say where the cluster's overhead lies.
// Prints one JSON object per case on stdout.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "client/cpp/knn_client.h"
#include "core/base/thread_pool.h"
#include "core/datasets/npy.h"
#include "core/estimators/kneighbors_classifier.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kK = 10;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Sample {
  double qps = 0;
  std::vector<double> per_call;  // seconds
  // CPU seconds over the measurement: this process, the coordinator, the workers.
  double self_cpu = 0, coordinator_cpu = 0, workers_cpu = 0;
};

// CPU seconds (user + system, all threads) of this process.
double SelfCpu() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// CPU seconds of process `pid` (utime + stime of /proc/PID/stat); 0 when unreadable.
double ProcessCpu(int pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return 0;
  char buf[1024];
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces
  if (p == nullptr) return 0;
  // After ")": state (field 3) ... utime (14), stime (15).
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                  &stime) != 2) {
    return 0;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double ProcessesCpu(const std::vector<int>& pids) {
  double total = 0;
  for (int pid : pids) total += ProcessCpu(pid);
  return total;
}

// The processes whose CPU a measurement adds up (empty: not measured).
struct CpuPids {
  std::vector<int> coordinator, workers;
};

// `inflight` threads each run fn on consecutive batches of `batch` queries (starting at different
// offsets) until `budget` seconds have passed and `min_calls` calls were made in all; returns
// queries per second over the whole time and every call's duration. qps 0: a call failed.
Sample Measure(const knncluster::Matrix& queries, size_t batch, size_t inflight, double budget,
               int min_calls, const CpuPids& pids,
               const std::function<bool(knncluster::MatrixView)>& fn) {
  Sample out;
  const double self0 = SelfCpu(), coordinator0 = ProcessesCpu(pids.coordinator),
               workers0 = ProcessesCpu(pids.workers);
  std::mutex mu;
  std::atomic<size_t> done{0}, calls{0};
  std::atomic<bool> failed{false};
  const auto start = Clock::now();
  auto run = [&](size_t t) {
    size_t offset = (t * batch) % std::max<size_t>(1, queries.rows() - batch + 1);
    std::vector<double> mine;
    while (!failed && (Seconds(start, Clock::now()) < budget ||
                       calls.load() < static_cast<size_t>(min_calls))) {
      if (offset + batch > queries.rows()) offset = 0;
      const auto t0 = Clock::now();
      if (!fn(queries.view().Slice(offset, offset + batch))) {
        failed = true;
        break;
      }
      mine.push_back(Seconds(t0, Clock::now()));
      ++calls;
      done += batch;
      offset += batch * inflight;
    }
    std::lock_guard<std::mutex> lock(mu);
    out.per_call.insert(out.per_call.end(), mine.begin(), mine.end());
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < inflight; ++t) threads.emplace_back(run, t);
  run(0);
  for (auto& th : threads) th.join();
  out.qps = failed ? 0 : done / Seconds(start, Clock::now());
  out.self_cpu = SelfCpu() - self0;
  out.coordinator_cpu = ProcessesCpu(pids.coordinator) - coordinator0;
  out.workers_cpu = ProcessesCpu(pids.workers) - workers0;
  return out;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string coordinator, data_dir, datasets = "uniform3d,blobs16d";
  std::string batches = "1,100,10000", ops = "kneighbors,predict";
  bool cluster_only = false;
  double budget = 3;
  int rounds = 3;
  size_t inflight = 1;
  CpuPids pids;
  auto parse_pids = [](const std::string& text, std::vector<int>* out) {
    for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
      int pid = 0;
      if (absl::SimpleAtoi(part, &pid) && pid > 0) out->push_back(pid);
    }
  };
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--cluster-only")) {
      cluster_only = true;
      continue;
    }
    if (i + 1 >= argc) break;
    const std::string flag = argv[i], value = argv[i + 1];
    ++i;
    if (flag == "--coordinator") coordinator = value;
    else if (flag == "--data") data_dir = value;
    else if (flag == "--datasets") datasets = value;
    else if (flag == "--budget") budget = std::atof(value.c_str());
    else if (flag == "--batches") batches = value;
    else if (flag == "--ops") ops = value;
    else if (flag == "--rounds") rounds = std::max(1, std::atoi(value.c_str()));
    else if (flag == "--coordinator-pid") parse_pids(value, &pids.coordinator);
    else if (flag == "--worker-pids") parse_pids(value, &pids.workers);
    else if (flag == "--inflight") inflight = static_cast<size_t>(std::max(1, std::atoi(value.c_str())));
  }
  if (coordinator.empty() || data_dir.empty()) {
    std::fprintf(stderr, "usage: cluster_bench --coordinator HOST:PORT --data DIR [--datasets a,b] "
                         "[--batches 1,100,10000] [--ops kneighbors,predict] [--inflight N] "
                         "[--budget S] [--rounds R] [--cluster-only] "
                         "[--coordinator-pid PID --worker-pids PID,PID]\n");
    return 2;
  }
  knncluster::client::ClientOptions options;
  options.address = coordinator;
  auto client = knncluster::client::KnnClient::Create(options);
  knncluster::ThreadPool pool(0);
  for (absl::string_view part : absl::StrSplit(datasets, ',')) {
    const std::string name(part);
    auto base = knncluster::LoadNpy(data_dir + "/" + name + "_base.npy");
    auto queries = knncluster::LoadNpy(data_dir + "/" + name + "_query.npy");
    auto labels = knncluster::LoadNpyVector(data_dir + "/" + name + "_labels.npy");
    if (!base.ok() || !queries.ok() || !labels.ok()) {
      std::fprintf(stderr, "cluster_bench: cannot read %s data\n", name.c_str());
      return 1;
    }
    knncluster::NeighborsParams params;
    params.n_neighbors = kK;
    params.algorithm = knncluster::Algorithm::kKdTree;
    knncluster::KNeighborsClassifier local(params);
    if (!local.Fit(std::make_shared<const knncluster::Matrix>(*std::move(base)), *labels).ok()) {
      return 1;
    }
    const std::string model = name + "-kd";
    for (absl::string_view batch_text : absl::StrSplit(batches, ',')) {
      size_t batch = 0;
      if (!absl::SimpleAtoi(batch_text, &batch) || batch == 0 || batch > queries->rows()) {
        std::fprintf(stderr, "cluster_bench: --batches: bad batch size\n");
        return 2;
      }
      const int min_calls = batch == 1 ? 300 : 3;
      for (absl::string_view op_view : absl::StrSplit(ops, ',')) {
        const std::string op(op_view);
        const bool kn = op == "kneighbors";
        auto in_process = [&](knncluster::MatrixView q) {
          return kn ? local.KNeighbors(q, kK, &pool).ok() : local.Predict(q, &pool).ok();
        };
        auto through_cluster = [&](knncluster::MatrixView q) {
          auto inline_queries = knncluster::client::KnnClient::InlineQueries(q);
          absl::Status st = kn ? client->KNeighbors(model, inline_queries, kK).status()
                               : client->Predict(model, inline_queries).status();
          if (!st.ok()) std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
          return st.ok();
        };
        std::vector<double> local_qps, cluster_qps, ratios, local_calls, cluster_calls;
        // Core-milliseconds per batch, per round.
        std::vector<double> local_cpu, client_cpu, coordinator_cpu, workers_cpu;
        auto per_batch = [](double cpu_seconds, const Sample& s) {
          return s.per_call.empty() ? 0.0 : cpu_seconds * 1e3 / s.per_call.size();
        };
        for (int r = 0; r < rounds; ++r) {
          Sample a;
          if (!cluster_only) {
            a = Measure(*queries, batch, inflight, budget / rounds, min_calls / rounds + 1, {},
                        in_process);
          }
          Sample b = Measure(*queries, batch, inflight, budget / rounds, min_calls / rounds + 1,
                             pids, through_cluster);
          if (b.qps == 0 || (!cluster_only && a.qps == 0)) return 1;
          local_qps.push_back(a.qps);
          cluster_qps.push_back(b.qps);
          if (a.qps > 0) ratios.push_back(b.qps / a.qps);
          local_calls.insert(local_calls.end(), a.per_call.begin(), a.per_call.end());
          cluster_calls.insert(cluster_calls.end(), b.per_call.begin(), b.per_call.end());
          local_cpu.push_back(per_batch(a.self_cpu, a));
          client_cpu.push_back(per_batch(b.self_cpu, b));
          coordinator_cpu.push_back(per_batch(b.coordinator_cpu, b));
          workers_cpu.push_back(per_batch(b.workers_cpu, b));
        }
        std::printf(
            "{\"dataset\": \"%s\", \"op\": \"%s\", \"batch\": %zu, \"inflight\": %zu, "
            "\"in_process_qps\": %.1f, \"cluster_qps\": %.1f, \"ratio\": %.4f, "
            "\"in_process_p50_ms\": %.4f, \"cluster_p50_ms\": %.4f, "
            "\"in_process_cpu_ms\": %.3f, \"client_cpu_ms\": %.3f, \"coordinator_cpu_ms\": %.3f, "
            "\"workers_cpu_ms\": %.3f}\n",
            name.c_str(), op.c_str(), batch, inflight, Median(local_qps), Median(cluster_qps),
            Median(ratios), Median(local_calls) * 1e3, Median(cluster_calls) * 1e3,
            Median(local_cpu), Median(client_cpu), Median(coordinator_cpu), Median(workers_cpu));
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
