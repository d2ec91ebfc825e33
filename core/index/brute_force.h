// BruteForceIndex: exact search by computing every distance. Shares the training data.
// Thread safety: immutable after construction; concurrent queries need no locks.
#ifndef KNNCLUSTER_CORE_INDEX_BRUTE_FORCE_H_
#define KNNCLUSTER_CORE_INDEX_BRUTE_FORCE_H_

#include <memory>
#include <vector>

#include "core/index/neighbor_index.h"

namespace knncluster {

class BruteForceIndex final : public NeighborIndex {
 public:
  // REQUIRES: data non-empty and finite, ids.size() == data->rows(). Use BuildIndex().
  BruteForceIndex(std::shared_ptr<const Matrix> data, std::vector<int64_t> ids, Minkowski metric);

  Algorithm algorithm() const override { return Algorithm::kBrute; }

 protected:
  void SearchBlock(MatrixView queries, size_t k, Neighbor* out) const override;
  void RadiusSearchOne(const double* query, double rdist_bound,
                       std::vector<Neighbor>* out) const override;

 private:
  std::shared_ptr<const Matrix> data_;
  std::vector<int64_t> ids_;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_BRUTE_FORCE_H_
