// knn_bench: build time and query throughput of every index algorithm on the benchmark datasets.
//
// Data: <dir>/<name>_base.npy and <dir>/<name>_query.npy (float64, from make_bench_data.py), with
// <dir> from --data_dir=DIR or the KNN_BENCH_DATA environment variable. Datasets whose files are
// missing are skipped. Benchmarks:
//   build/<dataset>/<algorithm>                 BuildIndex on the whole base set (single thread)
//   query/<dataset>/<algorithm>/threads:<t>     KNeighbors(k=10) on a ThreadPool(t); counter
//                                               "qps" = queries per second (wall clock)
// Each query iteration searches one batch of queries (cycling through the query set); the batch is
// sized from a short calibration run so that an iteration takes about --batch_seconds (default
// 0.25 s), so slow cases use fewer queries. qps is per query either way.
// --check: before timing, verify that every algorithm returns the same neighbours and the same
// distances as brute force on the first 256 queries of each dataset (exits 1 otherwise).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/datasets/npy.h"
#include "core/base/matrix.h"
#include "core/base/thread_pool.h"
#include "core/index/neighbor_index.h"

namespace knncluster {
namespace bench {
namespace {

constexpr int kK = 10;
const char* const kDatasets[] = {"digits", "uniform3d", "blobs16d", "gauss784d"};
const Algorithm kAlgorithms[] = {Algorithm::kKdTree, Algorithm::kBallTree, Algorithm::kBrute,
                                 Algorithm::kAuto};

struct Dataset {
  std::shared_ptr<const Matrix> base;
  Matrix queries;
};

struct Config {
  std::string data_dir;
  double batch_seconds = 0.25;
  bool check = false;
};

// Benchmark state that outlives registration (the benchmark library calls back into it).
struct Context {
  Config config;
  std::map<std::string, Dataset> datasets;
  // Built indexes, shared by the thread-count variants of one (dataset, algorithm).
  std::map<std::string, std::shared_ptr<const NeighborIndex>> indexes;
};

std::shared_ptr<const NeighborIndex> GetIndex(Context* ctx, const std::string& name, Algorithm a) {
  const std::string key = name + "/" + AlgorithmName(a);
  auto it = ctx->indexes.find(key);
  if (it != ctx->indexes.end()) return it->second;
  // Keep one big index alive at a time: the float copies of the large sets are not small.
  ctx->indexes.clear();
  auto index = BuildIndex(ctx->datasets.at(name).base, {}, IndexOptions{a, 30, 2});
  if (!index.ok()) {
    std::fprintf(stderr, "BuildIndex(%s): %s\n", key.c_str(), index.status().ToString().c_str());
    std::exit(1);
  }
  std::shared_ptr<const NeighborIndex> shared = *std::move(index);
  ctx->indexes[key] = shared;
  return shared;
}

void BM_Build(benchmark::State& state, Context* ctx, std::string name, Algorithm a) {
  const Dataset& ds = ctx->datasets.at(name);
  ctx->indexes.clear();
  for (auto _ : state) {
    auto index = BuildIndex(ds.base, {}, IndexOptions{a, 30, 2});
    if (!index.ok()) {
      state.SkipWithError(index.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(index->get());
  }
  auto index = BuildIndex(ds.base, {}, IndexOptions{a, 30, 2});
  state.SetLabel(AlgorithmName((*index)->algorithm()));
}

void BM_Query(benchmark::State& state, Context* ctx, std::string name, Algorithm a, int threads) {
  const Dataset& ds = ctx->datasets.at(name);
  std::shared_ptr<const NeighborIndex> index = GetIndex(ctx, name, a);
  ThreadPool pool(threads);
  const size_t nq = ds.queries.rows();
  // Calibrate: time a small batch, then size the timed batch to about batch_seconds.
  size_t probe = std::min<size_t>(nq, 128);
  auto t0 = std::chrono::steady_clock::now();
  auto warm = index->KNeighbors(ds.queries.view().Slice(0, probe), kK, &pool);
  const double probe_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!warm.ok()) {
    state.SkipWithError(warm.status().ToString().c_str());
    return;
  }
  const double per_query = std::max(probe_s / static_cast<double>(probe), 1e-9);
  size_t batch = static_cast<size_t>(ctx->config.batch_seconds / per_query);
  batch = std::max<size_t>(64, std::min(batch, nq));
  batch = std::min(batch, nq);
  size_t offset = 0, done = 0;
  for (auto _ : state) {
    if (offset + batch > nq) offset = 0;
    auto r = index->KNeighbors(ds.queries.view().Slice(offset, offset + batch), kK, &pool);
    benchmark::DoNotOptimize(r);
    offset += batch;
    done += batch;
  }
  state.counters["qps"] = benchmark::Counter(static_cast<double>(done), benchmark::Counter::kIsRate);
  state.counters["batch"] = static_cast<double>(batch);
  state.SetLabel(AlgorithmName(index->algorithm()));
}

// Every algorithm against brute force on the first queries of each dataset.
bool CheckAgreement(Context* ctx) {
  ThreadPool pool(2);
  bool ok = true;
  for (auto& [name, ds] : ctx->datasets) {
    const size_t nq = std::min<size_t>(ds.queries.rows(), 256);
    const MatrixView q = ds.queries.view().Slice(0, nq);
    std::vector<KNeighborsResult> results;
    for (Algorithm a : {Algorithm::kBrute, Algorithm::kKdTree, Algorithm::kBallTree}) {
      auto index = BuildIndex(ds.base, {}, IndexOptions{a, 30, 2});
      auto r = (*index)->KNeighbors(q, kK, &pool);
      if (!r.ok()) {
        std::fprintf(stderr, "check %s: %s\n", name.c_str(), r.status().ToString().c_str());
        return false;
      }
      results.push_back(*std::move(r));
      const bool same = results.back().indices == results[0].indices &&
                        results.back().distances == results[0].distances;
      std::fprintf(stderr, "check %s %s: %s\n", name.c_str(), AlgorithmName(a).c_str(),
                   same ? "identical to brute" : "MISMATCH");
      ok = ok && same;
    }
  }
  return ok;
}

}  // namespace
}  // namespace bench
}  // namespace knncluster

int main(int argc, char** argv) {
  using knncluster::bench::Context;
  auto ctx = std::make_unique<Context>();
  if (const char* env = std::getenv("KNN_BENCH_DATA")) ctx->config.data_dir = env;
  // Our own flags, removed before the benchmark library parses the rest.
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--data_dir=", 11) == 0) {
      ctx->config.data_dir = argv[i] + 11;
    } else if (std::strncmp(argv[i], "--batch_seconds=", 16) == 0) {
      ctx->config.batch_seconds = std::atof(argv[i] + 16);
    } else if (std::strcmp(argv[i], "--check") == 0) {
      ctx->config.check = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (ctx->config.data_dir.empty()) {
    std::fprintf(stderr, "knn_bench: set KNN_BENCH_DATA or --data_dir to the directory written by "
                         "bench/make_bench_data.py --write DIR\n");
    return 2;
  }
  for (const char* name : knncluster::bench::kDatasets) {
    knncluster::bench::Dataset ds;
    const std::string prefix = ctx->config.data_dir + "/" + name;
    auto base = knncluster::LoadNpy(prefix + "_base.npy");
    auto queries = knncluster::LoadNpy(prefix + "_query.npy");
    if (!base.ok() || !queries.ok()) {
      std::fprintf(stderr, "knn_bench: skipping %s (%s)\n", name,
                   std::string((base.ok() ? queries.status() : base.status()).message()).c_str());
      continue;
    }
    ds.queries = *std::move(queries);
    ds.base = std::make_shared<const knncluster::Matrix>(*std::move(base));
    ctx->datasets.emplace(name, std::move(ds));
  }
  if (ctx->config.check && !knncluster::bench::CheckAgreement(ctx.get())) return 1;
  Context* c = ctx.get();
  for (const char* name : knncluster::bench::kDatasets) {
    if (!c->datasets.count(name)) continue;
    for (knncluster::Algorithm a : knncluster::bench::kAlgorithms) {
      const std::string an = knncluster::AlgorithmName(a);
      benchmark::RegisterBenchmark(("build/" + std::string(name) + "/" + an).c_str(),
                                   knncluster::bench::BM_Build, c, std::string(name), a)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MinTime(0.3);
      for (int t : {1, 2}) {
        benchmark::RegisterBenchmark(
            ("query/" + std::string(name) + "/" + an + "/threads:" + std::to_string(t)).c_str(),
            knncluster::bench::BM_Query, c, std::string(name), a, t)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->MinTime(0.5);
      }
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
