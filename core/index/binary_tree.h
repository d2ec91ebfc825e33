// BinaryTree<Bounds>: the one tree skeleton shared by the KD tree and the ball tree, after
// scikit-learn's _binary_tree.pxi. It owns a copy of the training rows reordered so that every
// node's points are contiguous, the matching ids, and flat node arrays (children of node i at
// 2i+1 and 2i+2, each node a [begin, end) range of rows).
//
// Build: split the dimension of widest spread at the median position (nth_element), until a node
// holds no more than leaf_size points; the node count follows scikit-learn's formula. Search:
// depth first, nearer child first (a loop with an explicit stack of farther children and their
// bounds), pruning a node only when its lower bound is strictly greater than the current k-th
// reduced distance, so ties at the k-th neighbour are still found and resolved by id (top_k.h).
// Leaf distances use the metric's Rdist, the same function as brute force, so distances are
// bit-identical across algorithms. For dimensions up to kMaxFixedDim the search is compiled for
// that dimension, so the distance and bound loops unroll (measured: ~10% on uniform3d).
// NeighborIndex::Search hands a tree its queries in a spatially coherent order when the dimension
// is small (neighbor_index.cc), so consecutive searches reuse cached nodes and leaves.
//
// A Bounds policy supplies only what differs between trees (scikit-learn's init_node/min_rdist):
//   static constexpr Algorithm kAlgorithm;
//   void Reset(size_t num_nodes, size_t dim);
//   template <class M> void InitNode(const M& m, size_t node, MatrixView points);
//   template <size_t D, class M> double MinRdist(const M& m, size_t node, const double* q) const;
// (D is the dimension when fixed at compile time, 0 when it is only known at run time.)
// MinRdist must never exceed the reduced distance from q to any point of the node, even after
// rounding: policies shrink their bounds by a tiny relative slack to guarantee this.
//
// Thread safety: immutable after construction; concurrent queries need no locks.
#ifndef KNNCLUSTER_CORE_INDEX_BINARY_TREE_H_
#define KNNCLUSTER_CORE_INDEX_BINARY_TREE_H_

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "core/index/float_filter.h"
#include "core/index/neighbor_index.h"

namespace knncluster {

namespace tree_internal {
// Relative slack applied to node lower bounds (see above). Rounding errors of a distance are
// about dim × 2^-53 relative; 1e-10 covers any dimension up to ~10^5 and costs no pruning that
// matters.
constexpr double kBoundSlack = 1e-10;
// Leaf scans use the float32 candidate filter (float_filter.h) for p = 2 from this dimension on;
// below it the exact distance is as cheap as the filter (measured with bench/knn_bench).
constexpr size_t kMinFilterDim = 8;
// Dimensions up to this one get a search compiled for that fixed dimension (unrolled distance and
// bound loops); larger ones use the run-time dimension.
constexpr size_t kMaxFixedDim = 4;

// m.Rdist(a, b, d) -- the metric's own function, so the value is the same bits -- with the
// dimension D when it is fixed at compile time (0: use d). The search is compiled with `flatten`,
// so this inlines there and the loop over a fixed D unrolls.
template <size_t D, typename M>
inline double Rdist(const M& m, const double* a, const double* b, size_t d) {
  return m.Rdist(a, b, D == 0 ? d : D);
}

// Calls f(std::integral_constant<size_t, D>) with D = d when 1 <= d <= kMaxFixedDim, else D = 0.
template <typename F>
decltype(auto) VisitDim(size_t d, F&& f) {
  switch (d) {
    case 1:
      return f(std::integral_constant<size_t, 1>());
    case 2:
      return f(std::integral_constant<size_t, 2>());
    case 3:
      return f(std::integral_constant<size_t, 3>());
    case 4:
      return f(std::integral_constant<size_t, 4>());
    default:
      break;
  }
  static_assert(kMaxFixedDim == 4, "VisitDim lists the fixed dimensions");
  return f(std::integral_constant<size_t, 0>());
}
}  // namespace tree_internal

template <typename Bounds>
class BinaryTree final : public NeighborIndex {
 public:
  // REQUIRES: data non-empty and finite, ids.size() == data.rows(), leaf_size >= 1.
  // Use BuildIndex().
  BinaryTree(const Matrix& data, std::vector<int64_t> ids, Minkowski metric, int leaf_size)
      : NeighborIndex(data.rows(), data.cols(), metric) {
    const size_t n = data.rows();
    const size_t leaf = static_cast<size_t>(leaf_size);
    // scikit-learn: n_levels = 1 + floor(log2(max(1, (n - 1) / leaf_size))).
    size_t levels = 1;
    for (size_t m = std::max<size_t>(1, (n - 1) / leaf); m > 1; m >>= 1) ++levels;
    nodes_.resize((size_t{1} << levels) - 1);
    assert(levels < kMaxDepth);

    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    BuildNode(data, 0, 0, n, &order);

    data_ = Matrix(n, dim());
    ids_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      std::copy(data.row(order[i]), data.row(order[i]) + dim(), data_.row(i));
      ids_[i] = ids[order[i]];
    }
    bounds_.Reset(nodes_.size(), dim());
    this->metric().Visit([&](auto m) {
      for (size_t node = 0; node < nodes_.size(); ++node) {
        const Node& nd = nodes_[node];
        if (nd.end > nd.begin) bounds_.InitNode(m, node, data_.view().Slice(nd.begin, nd.end));
      }
    });
    if (metric.kind() == Minkowski::Kind::kEuclidean && dim() >= tree_internal::kMinFilterDim) {
      // One filter range per non-empty leaf, each starting a fresh panel.
      std::vector<std::pair<size_t, size_t>> ranges;
      leaf_range_.assign(nodes_.size(), 0);
      for (size_t node = 0; node < nodes_.size(); ++node) {
        const Node& nd = nodes_[node];
        if (!nd.leaf || nd.end <= nd.begin) continue;
        leaf_range_[node] = ranges.size();
        ranges.push_back({nd.begin, nd.end});
        max_leaf_panels_ = std::max(max_leaf_panels_, (nd.end - nd.begin + index_internal::kPanelRows - 1) /
                                                          index_internal::kPanelRows);
      }
      filter_.Build(data_, ranges, /*pad_to_even=*/false);
    }
  }

  Algorithm algorithm() const override { return Bounds::kAlgorithm; }
  // The tree's own copy of the rows, in node order, and their ids.
  MatrixView stored_rows() const override { return data_.view(); }
  absl::Span<const int64_t> stored_ids() const override { return ids_; }
  size_t num_nodes() const { return nodes_.size(); }

 protected:
  void SearchBlock(MatrixView queries, size_t k, const double* rdist_bounds,
                   Neighbor* out) const override {
    this->metric().Visit([&](auto m) {
      tree_internal::VisitDim(dim(), [&](auto fixed_dim) {
        constexpr size_t D = decltype(fixed_dim)::value;
        TopK heap(k);
        LeafScratch scratch;
        if (filter_.enabled()) {
          scratch.qf.resize(dim());
          scratch.masks.resize(max_leaf_panels_);
        }
        for (size_t q = 0; q < queries.rows(); ++q) {
          const double* query = queries.row(q);
          scratch.qnorm = filter_.enabled() ? filter_.PrepareQuery(query, scratch.qf.data()) : -1;
          if (rdist_bounds != nullptr) heap.Clear(rdist_bounds[q]);
          SearchOne<D>(m, query, &heap, &scratch);
          heap.TakeSortedPadded(out + q * k);
        }
      });
    });
  }

  void RadiusSearchOne(const double* query, double rdist_bound,
                       std::vector<Neighbor>* out) const override {
    this->metric().Visit([&](auto m) { RadiusNode(m, 0, query, rdist_bound, out); });
  }

 private:
  // Per-query state of the float32 leaf filter; qnorm < 0 means "scan leaves exactly".
  struct LeafScratch {
    std::vector<float> qf;
    std::vector<uint16_t> masks;
    double qnorm = -1;
  };

  struct Node {
    size_t begin = 0;
    size_t end = 0;
    bool leaf = true;
  };

  void BuildNode(const Matrix& data, size_t node, size_t begin, size_t end,
                 std::vector<size_t>* order) {
    Node& nd = nodes_[node];
    nd.begin = begin;
    nd.end = end;
    nd.leaf = 2 * node + 1 >= nodes_.size() || end - begin < 2;
    if (nd.leaf) return;
    // The dimension of widest spread among this node's points.
    size_t split_dim = 0;
    double best_spread = -1;
    for (size_t j = 0; j < dim(); ++j) {
      double lo = data.at((*order)[begin], j), hi = lo;
      for (size_t i = begin + 1; i < end; ++i) {
        const double v = data.at((*order)[i], j);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      if (hi - lo > best_spread) {
        best_spread = hi - lo;
        split_dim = j;
      }
    }
    const size_t mid = begin + (end - begin) / 2;
    std::nth_element(order->begin() + begin, order->begin() + mid, order->begin() + end,
                     [&](size_t a, size_t b) { return data.at(a, split_dim) < data.at(b, split_dim); });
    BuildNode(data, 2 * node + 1, begin, mid, order);
    BuildNode(data, 2 * node + 2, mid, end, order);
  }

  template <size_t D, typename M>
  void ScanLeaf(const M& m, size_t node, const double* query, TopK* heap,
                LeafScratch* scratch) const {
    const Node& nd = nodes_[node];
    const size_t d = D == 0 ? dim() : D;
    const double* x = data_.data();
    double worst = heap->WorstRdist();
    if (D == 0 && scratch->qnorm >= 0) {
      // Candidates from the float32 filter, then exact Rdist (float_filter.h).
      const size_t p0 = filter_.first_panel(leaf_range_[node]);
      const size_t np = (nd.end - nd.begin + index_internal::kPanelRows - 1) / index_internal::kPanelRows;
      const float thr = filter_.Threshold(worst, scratch->qnorm);
      filter_.kernels().filter_one(scratch->qf.data(), d, filter_.panel(p0), np, filter_.bias(p0),
                                   thr, scratch->masks.data());
      for (size_t p = 0; p < np; ++p) {
        for (uint32_t mask = scratch->masks[p]; mask != 0; mask &= mask - 1) {
          const size_t i = nd.begin + p * index_internal::kPanelRows +
                           static_cast<size_t>(__builtin_ctz(mask));
          const double r = tree_internal::Rdist<D>(m, query, x + i * d, d);
          if (r <= worst) {
            heap->Push(r, ids_[i]);
            worst = heap->WorstRdist();
          }
        }
      }
      return;
    }
    for (size_t i = nd.begin; i < nd.end; ++i) {
      const double r = tree_internal::Rdist<D>(m, query, x + i * d, d);
      if (r <= worst) {
        heap->Push(r, ids_[i]);
        worst = heap->WorstRdist();
      }
    }
  }

  // Depth first with an explicit stack: descend into the nearer child, remember the farther one
  // with its bound, and drop any node whose bound is strictly greater than the current k-th
  // reduced distance when it is reached.
  // `flatten` inlines everything called here (bounds, leaf scan, Rdist, TopK::Push): the hot loop
  // of the search is this one function.
  template <size_t D, typename M>
  __attribute__((flatten)) void SearchOne(const M& m, const double* query, TopK* heap,
                                          LeafScratch* scratch) const {
    struct Pending {
      size_t node;
      double min_rdist;
    };
    std::array<Pending, kMaxDepth> stack;
    size_t top = 0;
    size_t node = 0;
    double node_min = bounds_.template MinRdist<D>(m, 0, query);
    double worst = heap->WorstRdist();
    for (;;) {
      if (node_min <= worst) {
        const Node& nd = nodes_[node];
        if (nd.leaf) {
          ScanLeaf<D>(m, node, query, heap, scratch);
          worst = heap->WorstRdist();
        } else {
          const size_t left = 2 * node + 1, right = left + 1;
          const double r_left = bounds_.template MinRdist<D>(m, left, query);
          const double r_right = bounds_.template MinRdist<D>(m, right, query);
          if (r_left <= r_right) {
            stack[top++] = {right, r_right};
            node = left;
            node_min = r_left;
          } else {
            stack[top++] = {left, r_left};
            node = right;
            node_min = r_right;
          }
          continue;
        }
      }
      if (top == 0) break;
      --top;
      node = stack[top].node;
      node_min = stack[top].min_rdist;
    }
  }

  template <typename M>
  void RadiusNode(const M& m, size_t node, const double* query, double bound,
                  std::vector<Neighbor>* out) const {
    if (bounds_.template MinRdist<0>(m, node, query) > bound) return;
    const Node& nd = nodes_[node];
    if (!nd.leaf) {
      RadiusNode(m, 2 * node + 1, query, bound, out);
      RadiusNode(m, 2 * node + 2, query, bound, out);
      return;
    }
    const size_t d = dim();
    for (size_t i = nd.begin; i < nd.end; ++i) {
      const double r = m.Rdist(query, data_.row(i), d);
      if (r <= bound) out->push_back({r, ids_[i]});
    }
  }

  // Bounds the tree depth (levels) and so the search stack; 2^64 nodes cannot be allocated.
  static constexpr size_t kMaxDepth = 64;

  Matrix data_;               // training rows in tree order
  std::vector<int64_t> ids_;  // ids_[i] is the id of data_.row(i)
  std::vector<Node> nodes_;
  Bounds bounds_;
  // The float32 leaf filter (p = 2, dim >= kMinFilterDim): leaf_range_[node] is the node's range.
  index_internal::FloatFilter filter_;
  std::vector<size_t> leaf_range_;
  size_t max_leaf_panels_ = 0;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_BINARY_TREE_H_
