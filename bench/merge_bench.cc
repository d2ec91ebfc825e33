// merge_bench: the coordinator's merge cost (MergeKNeighbors, the one merge of partial answers)
// for a batch of queries against the number of parts N (one per worker), on one thread. An input
// of the scaling experiments' cost model (deploy/experiments/): merge(N).
//
//   merge_bench --batch B --k K --parts 1,2,4,8,... [--min-seconds S]
// Prints one JSON object per N on stdout: {"parts": N, "batch": B, "k": K, "seconds": s}, s
// being the median time of one merge of the whole batch.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/base/thread_pool.h"
#include "core/index/neighbor_index.h"

namespace {

using Clock = std::chrono::steady_clock;

// N sorted partial answers of k neighbours per query, with distinct ids across parts.
std::vector<knncluster::KNeighborsResult> MakeParts(size_t n, size_t batch, size_t k) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<knncluster::KNeighborsResult> parts(n);
  for (size_t p = 0; p < n; ++p) {
    auto& r = parts[p];
    r.num_queries = batch;
    r.k = k;
    r.distances.resize(batch * k);
    r.indices.resize(batch * k);
    for (size_t q = 0; q < batch; ++q) {
      double* d = &r.distances[q * k];
      for (size_t j = 0; j < k; ++j) d[j] = u(rng);
      std::sort(d, d + k);
      for (size_t j = 0; j < k; ++j) r.indices[q * k + j] = static_cast<int64_t>(j * n + p);
    }
  }
  return parts;
}

}  // namespace

int main(int argc, char** argv) {
  size_t batch = 100, k = 20;
  double min_seconds = 0.2;
  std::vector<size_t> counts = {1, 2, 4, 8, 16, 32, 64};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    bool ok = true;
    if (flag == "--batch") {
      ok = absl::SimpleAtoi(value, &batch) && batch > 0;
    } else if (flag == "--k") {
      ok = absl::SimpleAtoi(value, &k) && k > 0;
    } else if (flag == "--min-seconds") {
      ok = absl::SimpleAtod(value, &min_seconds);
    } else if (flag == "--parts") {
      counts.clear();
      for (absl::string_view s : absl::StrSplit(value, ',')) {
        size_t n = 0;
        ok = ok && absl::SimpleAtoi(s, &n) && n > 0;
        counts.push_back(n);
      }
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "merge_bench: bad flag %s %s\n", flag.c_str(), value);
      return 2;
    }
  }
  knncluster::ThreadPool pool(1);
  for (size_t n : counts) {
    const auto parts = MakeParts(n, batch, k);
    std::vector<const knncluster::KNeighborsResult*> ptrs;
    for (const auto& p : parts) ptrs.push_back(&p);
    std::vector<double> times;
    const auto start = Clock::now();
    while (times.size() < 5 ||
           std::chrono::duration<double>(Clock::now() - start).count() < min_seconds) {
      const auto t0 = Clock::now();
      auto merged = knncluster::MergeKNeighbors(ptrs, k, &pool);
      const auto t1 = Clock::now();
      if (!merged.ok() || merged->indices.size() != batch * k) {
        std::fprintf(stderr, "merge_bench: merge failed\n");
        return 1;
      }
      times.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    std::printf("{\"parts\": %zu, \"batch\": %zu, \"k\": %zu, \"seconds\": %.9g}\n", n, batch, k,
                times[times.size() / 2]);
  }
  return 0;
}
