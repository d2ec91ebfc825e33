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

// The id that fills a row holding fewer than k neighbours: a search given a distance bound
// (NeighborIndex::KNeighborsRdist's rdist_bounds) leaves out rows farther than the bound and pads
// the row with Neighbor{+inf, kNoNeighborId}, which sorts after every real neighbour. Training
// indices are never negative.
inline constexpr int64_t kNoNeighborId = -1;

// The ordering: (rdist, id) ascending.
inline bool NeighborLess(const Neighbor& a, const Neighbor& b) {
  return a.rdist < b.rdist || (a.rdist == b.rdist && a.id < b.id);
}

// Keeps the k smallest neighbours pushed so far under NeighborLess. Like scikit-learn's
// NeighborsHeap and nanoflann's KNNResultSet. For small k (the common case, k <= kMaxSortedK) the
// neighbours are kept as a sorted array with insertion from the back, which beats a binary heap
// there: most pushes land near the end and no sift-down is needed; for larger k it is a max-heap
// on the worst. Either way the kept set and the order TakeSorted returns are the same.
class TopK {
 public:
  // Up to this k the sorted-array representation is used (measured with bench/knn_bench).
  static constexpr size_t kMaxSortedK = 32;

  // REQUIRES: k >= 1.
  explicit TopK(size_t k) : k_(k), sorted_(k <= kMaxSortedK), items_(k) {}

  size_t k() const { return k_; }
  size_t size() const { return size_; }
  bool full() const { return size_ == k_; }
  void Clear() {
    size_ = 0;
    worst_ = std::numeric_limits<double>::infinity();
  }
  // Empties the heap and refuses, from now on, candidates farther than rdist_bound (a bounded
  // search: fewer than k may then be held; TakeSortedPadded fills the rest).
  void Clear(double rdist_bound) {
    size_ = 0;
    worst_ = rdist_bound;
  }

  // The reduced distance a candidate must not exceed to be kept: the bound (+inf unless Clear
  // set one) until k are held. Searches prune a region only when its lower bound is strictly
  // greater than this, so candidates tied with the worst are still examined (and win if their
  // id is smaller).
  double WorstRdist() const { return worst_; }

  // Offers a candidate; keeps it if it is among the k smallest so far.
  void Push(double rdist, int64_t id) {
    if (sorted_) {
      PushSorted({rdist, id});
    } else {
      PushHeap({rdist, id});
    }
  }

  // Writes the held neighbours to out[0, size()) in ascending order and clears the heap.
  void TakeSorted(Neighbor* out) {
    if (!sorted_) std::sort_heap(items_.begin(), items_.begin() + size_, Less());
    std::copy(items_.begin(), items_.begin() + size_, out);
    Clear();
  }
  // As TakeSorted, writing all k of out[0, k): the slots past size() get
  // Neighbor{+inf, kNoNeighborId}.
  void TakeSortedPadded(Neighbor* out) {
    const size_t held = size_;
    TakeSorted(out);
    std::fill(out + held, out + k_,
              Neighbor{std::numeric_limits<double>::infinity(), kNoNeighborId});
  }
  std::vector<Neighbor> TakeSorted() {
    std::vector<Neighbor> out(size_);
    TakeSorted(out.data());
    return out;
  }

 private:
  // NeighborLess as a function object, so the std:: heap algorithms inline it.
  struct Less {
    bool operator()(const Neighbor& a, const Neighbor& b) const { return NeighborLess(a, b); }
  };

  // Insertion from the back into items_[0, size_), kept ascending.
  void PushSorted(Neighbor n) {
    Neighbor* a = items_.data();
    size_t j = size_;
    if (j == k_) {
      if (!NeighborLess(n, a[j - 1])) return;
      --j;  // n replaces the worst
    } else {
      if (n.rdist > worst_) return;  // beyond Clear's bound
      ++size_;
    }
    while (j > 0 && NeighborLess(n, a[j - 1])) {
      a[j] = a[j - 1];
      --j;
    }
    a[j] = n;
    if (size_ == k_) worst_ = a[k_ - 1].rdist;
  }

  // A max-heap under NeighborLess in items_[0, size_).
  void PushHeap(Neighbor n) {
    const auto begin = items_.begin();
    if (size_ < k_) {
      if (n.rdist > worst_) return;  // beyond Clear's bound
      items_[size_++] = n;
      std::push_heap(begin, begin + size_, Less());
    } else if (NeighborLess(n, items_.front())) {
      std::pop_heap(begin, begin + size_, Less());
      items_[size_ - 1] = n;
      std::push_heap(begin, begin + size_, Less());
    } else {
      return;
    }
    if (size_ == k_) worst_ = items_.front().rdist;
  }

  size_t k_;
  bool sorted_;
  size_t size_ = 0;
  double worst_ = std::numeric_limits<double>::infinity();
  std::vector<Neighbor> items_;  // k_ slots; the first size_ are held
};

// Merges lists that are each sorted by NeighborLess into the k smallest overall, sorted.
// Ids are expected to be distinct across parts (each training row lives in one shard); if the
// same (rdist, id) appears in several parts (replicas, or a row in a shard's halo), it is kept
// once.
std::vector<Neighbor> MergeTopK(absl::Span<const absl::Span<const Neighbor>> parts, size_t k);
// The same merge into out[0, k); returns how many were written (< k when the parts hold fewer).
size_t MergeTopK(absl::Span<const absl::Span<const Neighbor>> parts, size_t k, Neighbor* out);

// Sorts a list of neighbours by NeighborLess (for radius queries, whose length is not bounded).
void SortNeighbors(std::vector<Neighbor>* neighbors);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_TOP_K_H_
