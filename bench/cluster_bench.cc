// cluster_bench: predict and kneighbors throughput (k = 10) through a coordinator against the
// in-process engine on the same data, in the same run, at batch sizes 1, 100 and 10,000; and the
// latency a cluster adds to a batch of one (p50). Run by bench/run_cluster_bench.py, which starts
// the cluster, uploads the data and fits the models first.
//
//   cluster_bench --coordinator HOST:PORT --data DIR --datasets uniform3d,blobs16d
// Prints one JSON object per case on stdout.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

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

// Runs fn on consecutive batches of `batch` queries until `budget` seconds have passed (at least
// `min_calls` calls); returns queries per second and the median seconds per call.
template <typename F>
std::pair<double, double> Measure(const knncluster::Matrix& queries, size_t batch, double budget,
                                  int min_calls, F fn) {
  std::vector<double> per_call;
  size_t done = 0, offset = 0;
  const auto start = Clock::now();
  while (Seconds(start, Clock::now()) < budget || static_cast<int>(per_call.size()) < min_calls) {
    if (offset + batch > queries.rows()) offset = 0;
    const auto t0 = Clock::now();
    if (!fn(queries.view().Slice(offset, offset + batch))) return {0, 0};
    per_call.push_back(Seconds(t0, Clock::now()));
    done += batch;
    offset += batch;
  }
  const double total = Seconds(start, Clock::now());
  std::sort(per_call.begin(), per_call.end());
  return {done / total, per_call[per_call.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  std::string coordinator, data_dir, datasets = "uniform3d,blobs16d";
  double budget = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--coordinator")) coordinator = argv[i + 1];
    if (!std::strcmp(argv[i], "--data")) data_dir = argv[i + 1];
    if (!std::strcmp(argv[i], "--datasets")) datasets = argv[i + 1];
    if (!std::strcmp(argv[i], "--budget")) budget = std::atof(argv[i + 1]);
  }
  if (coordinator.empty() || data_dir.empty()) {
    std::fprintf(stderr, "usage: cluster_bench --coordinator HOST:PORT --data DIR [--datasets a,b]\n");
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
    for (size_t batch : {size_t{1}, size_t{100}, size_t{10000}}) {
      const int min_calls = batch == 1 ? 300 : 3;
      for (const char* op : {"kneighbors", "predict"}) {
        const bool kn = !std::strcmp(op, "kneighbors");
        auto in_process = Measure(*queries, batch, budget, min_calls, [&](knncluster::MatrixView q) {
          return kn ? local.KNeighbors(q, kK, &pool).ok() : local.Predict(q, &pool).ok();
        });
        auto cluster = Measure(*queries, batch, budget, min_calls, [&](knncluster::MatrixView q) {
          auto inline_queries = knncluster::client::KnnClient::InlineQueries(q);
          if (kn) {
            auto r = client->KNeighbors(model, inline_queries, kK);
            if (!r.ok()) std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str());
            return r.ok();
          }
          auto r = client->Predict(model, inline_queries);
          if (!r.ok()) std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str());
          return r.ok();
        });
        std::printf(
            "{\"dataset\": \"%s\", \"op\": \"%s\", \"batch\": %zu, \"in_process_qps\": %.1f, "
            "\"cluster_qps\": %.1f, \"in_process_p50_ms\": %.4f, \"cluster_p50_ms\": %.4f}\n",
            name.c_str(), op, batch, in_process.first, cluster.first, in_process.second * 1e3,
            cluster.second * 1e3);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
