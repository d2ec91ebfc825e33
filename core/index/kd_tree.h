// KdTree: BinaryTree with axis-aligned bounding boxes (a per-dimension [lo, hi] per node).
// Thread safety: immutable after construction.
#ifndef KNNCLUSTER_CORE_INDEX_KD_TREE_H_
#define KNNCLUSTER_CORE_INDEX_KD_TREE_H_

#include <algorithm>
#include <vector>

#include "core/index/binary_tree.h"

namespace knncluster {

class KdBounds {
 public:
  static constexpr Algorithm kAlgorithm = Algorithm::kKdTree;

  void Reset(size_t num_nodes, size_t dim) {
    dim_ = dim;
    box_.assign(num_nodes * 2 * dim, 0);
  }

  template <typename M>
  void InitNode(const M&, size_t node, MatrixView points) {
    double* lo = &box_[node * 2 * dim_];
    double* hi = lo + dim_;
    std::copy(points.row(0), points.row(0) + dim_, lo);
    std::copy(points.row(0), points.row(0) + dim_, hi);
    for (size_t i = 1; i < points.rows(); ++i) {
      const double* x = points.row(i);
      for (size_t j = 0; j < dim_; ++j) {
        lo[j] = std::min(lo[j], x[j]);
        hi[j] = std::max(hi[j], x[j]);
      }
    }
  }

  // Reduced distance from q to the box: per dimension, how far q lies outside [lo, hi].
  // D is the dimension if fixed at compile time (0: dim_). Four independent partial sums keep the
  // adds from forming one long dependency chain; the order changes the result by far less than
  // kBoundSlack, so the bound stays conservative.
  template <size_t D, typename M>
  double MinRdist(const M& m, size_t node, const double* q) const {
    const size_t d = D == 0 ? dim_ : D;
    const double* lo = &box_[node * 2 * d];
    const double* hi = lo + d;
    const auto term = [&](size_t j) {
      const double gap = std::max(0.0, std::max(lo[j] - q[j], q[j] - hi[j]));
      return M::kIsMax ? gap : m.Term(gap);
    };
    const auto add = [](double acc, double t) { return M::kIsMax ? std::max(acc, t) : acc + t; };
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t j = 0;
    for (; j + 4 <= d; j += 4) {
      a0 = add(a0, term(j));
      a1 = add(a1, term(j + 1));
      a2 = add(a2, term(j + 2));
      a3 = add(a3, term(j + 3));
    }
    double acc = add(add(a0, a1), add(a2, a3));
    for (; j < d; ++j) acc = add(acc, term(j));
    return acc * (1 - tree_internal::kBoundSlack);
  }

 private:
  size_t dim_ = 0;
  // Per node, lo[0, dim) then hi[0, dim): one node's box is contiguous, and so are a node's two
  // children (2i+1, 2i+2), which the search bounds together.
  std::vector<double> box_;
};

using KdTree = BinaryTree<KdBounds>;

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_KD_TREE_H_
