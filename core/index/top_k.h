// The one neighbour ordering, the bounded top-k heap, and the merge of sorted partial lists.
//
// Ordering contract (the tie rule of the whole project): neighbours are sorted ascending by
// (reduced distance, id), where id is the training index (for a shard: the global row id).
// Equal distances are broken by the smaller id. Brute force, both trees, the worker's search
// over its shards and the coordinator's gather all use NeighborLess, TopK and MergeTopK; nobody
// sorts neighbours by hand. This makes a merge of per-shard answers equal a single search.
//
// Thread safety: TopK is a plain value owned by one thread; MergeTopK is a pure function.
#ifndef KNNCLUSTER_CORE_INDEX_TOP_K_H_
#define KNNCLUSTER_CORE_INDEX_TOP_K_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/types/span.h"

namespace knncluster {

struct Neighbor {
  double rdist;  // reduced distance (see metric.h)
  int64_t id;    // training index / global row id

  friend bool operator==(const Neighbor& a, const Neighbor& b) {
    return a.rdist == b.rdist && a.id == b.id;
  }
};

// The ordering: (rdist, id) ascending.
inline bool NeighborLess(const Neighbor& a, const Neighbor& b) {
  return a.rdist < b.rdist || (a.rdist == b.rdist && a.id < b.id);
}

// Keeps the k smallest neighbours pushed so far under NeighborLess (a max-heap on the worst).
// Like scikit-learn's NeighborsHeap and nanoflann's KNNResultSet.
class TopK {
 public:
  // REQUIRES: k >= 1.
  explicit TopK(size_t k) : k_(k) { heap_.reserve(k); }

  size_t k() const { return k_; }
  size_t size() const { return heap_.size(); }
  bool full() const { return heap_.size() == k_; }
  void Clear() { heap_.clear(); }

  // The reduced distance a candidate must not exceed to be kept: +inf until k are held.
  // Searches prune a region only when its lower bound is strictly greater than this, so
  // candidates tied with the worst are still examined (and win if their id is smaller).
  double WorstRdist() const {
    return full() ? heap_.front().rdist : std::numeric_limits<double>::infinity();
  }

  // Offers a candidate; keeps it if it is among the k smallest so far.
  void Push(double rdist, int64_t id) {
    const Neighbor n{rdist, id};
    if (heap_.size() < k_) {
      heap_.push_back(n);
      std::push_heap(heap_.begin(), heap_.end(), NeighborLess);
    } else if (NeighborLess(n, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), NeighborLess);
      heap_.back() = n;
      std::push_heap(heap_.begin(), heap_.end(), NeighborLess);
    }
  }

  // Writes the held neighbours to out[0, size()) in ascending order and clears the heap.
  void TakeSorted(Neighbor* out) {
    std::sort_heap(heap_.begin(), heap_.end(), NeighborLess);
    std::copy(heap_.begin(), heap_.end(), out);
    heap_.clear();
  }
  std::vector<Neighbor> TakeSorted() {
    std::vector<Neighbor> out(heap_.size());
    TakeSorted(out.data());
    return out;
  }

 private:
  size_t k_;
  std::vector<Neighbor> heap_;
};

// Merges lists that are each sorted by NeighborLess into the k smallest overall, sorted.
// Ids are expected to be distinct across parts (each training row lives in one shard); if the
// same (rdist, id) appears in several parts (replicas), it is kept once.
std::vector<Neighbor> MergeTopK(absl::Span<const absl::Span<const Neighbor>> parts, size_t k);

// Sorts a list of neighbours by NeighborLess (for radius queries, whose length is not bounded).
void SortNeighbors(std::vector<Neighbor>* neighbors);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_TOP_K_H_
