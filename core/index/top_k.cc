#include "core/index/top_k.h"

namespace knncluster {

std::vector<Neighbor> MergeTopK(absl::Span<const absl::Span<const Neighbor>> parts, size_t k) {
  // A k-way merge with a cursor per part; the number of parts (shards) is small, so a linear
  // scan for the smallest head beats a heap.
  std::vector<size_t> pos(parts.size(), 0);
  std::vector<Neighbor> out;
  out.reserve(k);
  while (out.size() < k) {
    int best = -1;
    for (size_t p = 0; p < parts.size(); ++p) {
      if (pos[p] < parts[p].size() &&
          (best < 0 || NeighborLess(parts[p][pos[p]], parts[best][pos[best]]))) {
        best = static_cast<int>(p);
      }
    }
    if (best < 0) break;
    const Neighbor n = parts[best][pos[best]++];
    if (!out.empty() && out.back() == n) continue;  // the same row from a replica
    out.push_back(n);
  }
  return out;
}

void SortNeighbors(std::vector<Neighbor>* neighbors) {
  std::sort(neighbors->begin(), neighbors->end(), NeighborLess);
}

}  // namespace knncluster
