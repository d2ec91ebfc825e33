#include "core/index/top_k.h"

namespace knncluster {

size_t MergeTopK(absl::Span<const absl::Span<const Neighbor>> parts, size_t k, Neighbor* out) {
  // A k-way merge with a cursor per part; the number of parts (shards) is small, so a linear
  // scan for the smallest head beats a heap.
  constexpr size_t kStackParts = 16;
  size_t stack_pos[kStackParts] = {};
  std::vector<size_t> heap_pos(parts.size() > kStackParts ? parts.size() : 0, 0);
  size_t* pos = parts.size() > kStackParts ? heap_pos.data() : stack_pos;
  size_t n = 0;
  while (n < k) {
    int best = -1;
    for (size_t p = 0; p < parts.size(); ++p) {
      if (pos[p] < parts[p].size() &&
          (best < 0 || NeighborLess(parts[p][pos[p]], parts[best][pos[best]]))) {
        best = static_cast<int>(p);
      }
    }
    if (best < 0) break;
    const Neighbor next = parts[best][pos[best]++];
    if (n > 0 && out[n - 1] == next) continue;  // the same row from a replica
    out[n++] = next;
  }
  return n;
}

std::vector<Neighbor> MergeTopK(absl::Span<const absl::Span<const Neighbor>> parts, size_t k) {
  std::vector<Neighbor> out(k);
  out.resize(MergeTopK(parts, k, out.data()));
  return out;
}

void SortNeighbors(std::vector<Neighbor>* neighbors) {
  std::sort(neighbors->begin(), neighbors->end(), NeighborLess);
}

}  // namespace knncluster
