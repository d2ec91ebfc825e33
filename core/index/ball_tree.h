// BallTree: BinaryTree with bounding balls (the centroid of a node's points and the largest
// distance from it to any of them).
// Thread safety: immutable after construction.
#ifndef KNNCLUSTER_CORE_INDEX_BALL_TREE_H_
#define KNNCLUSTER_CORE_INDEX_BALL_TREE_H_

#include <algorithm>
#include <vector>

#include "core/index/binary_tree.h"

namespace knncluster {

class BallBounds {
 public:
  static constexpr Algorithm kAlgorithm = Algorithm::kBallTree;

  void Reset(size_t num_nodes, size_t dim) {
    dim_ = dim;
    centroid_.assign(num_nodes * dim, 0);
    radius_.assign(num_nodes, 0);
  }

  template <typename M>
  void InitNode(const M& m, size_t node, MatrixView points) {
    double* c = &centroid_[node * dim_];
    for (size_t i = 0; i < points.rows(); ++i) {
      for (size_t j = 0; j < dim_; ++j) c[j] += points.at(i, j);
    }
    for (size_t j = 0; j < dim_; ++j) c[j] /= static_cast<double>(points.rows());
    double max_rdist = 0;
    for (size_t i = 0; i < points.rows(); ++i) {
      max_rdist = std::max(max_rdist, m.Rdist(c, points.row(i), dim_));
    }
    radius_[node] = m.RdistToDist(max_rdist);
  }

  // Triangle inequality: no point of the ball is closer than dist(q, centroid) - radius.
  // D is the dimension if fixed at compile time (0: dim_).
  template <size_t D, typename M>
  double MinRdist(const M& m, size_t node, const double* q) const {
    const size_t d = D == 0 ? dim_ : D;
    const double dist = m.RdistToDist(tree_internal::Rdist<D>(m, q, &centroid_[node * d], d));
    const double r = radius_[node];
    const double gap = dist - r - tree_internal::kBoundSlack * (dist + r);
    return gap > 0 ? m.DistToRdist(gap) : 0.0;
  }

 private:
  size_t dim_ = 0;
  std::vector<double> centroid_;
  std::vector<double> radius_;
};

using BallTree = BinaryTree<BallBounds>;

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_BALL_TREE_H_
