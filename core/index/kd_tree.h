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
    lo_.assign(num_nodes * dim, 0);
    hi_.assign(num_nodes * dim, 0);
  }

  template <typename M>
  void InitNode(const M&, size_t node, MatrixView points) {
    double* lo = &lo_[node * dim_];
    double* hi = &hi_[node * dim_];
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
  template <typename M>
  double MinRdist(const M& m, size_t node, const double* q) const {
    const double* lo = &lo_[node * dim_];
    const double* hi = &hi_[node * dim_];
    double acc = 0;
    for (size_t j = 0; j < dim_; ++j) {
      const double gap = std::max(0.0, std::max(lo[j] - q[j], q[j] - hi[j]));
      if constexpr (M::kIsMax) {
        acc = std::max(acc, gap);
      } else {
        acc += m.Term(gap);
      }
    }
    return acc * (1 - tree_internal::kBoundSlack);
  }

 private:
  size_t dim_ = 0;
  std::vector<double> lo_, hi_;
};

using KdTree = BinaryTree<KdBounds>;

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_KD_TREE_H_
