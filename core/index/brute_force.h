// BruteForceIndex: exact search by computing every distance. Shares the training data.
//
// For p = 2 the scan runs in two stages (float_filter.h): a float32 matrix-product kernel over
// blocks of queries x panels of rows selects candidates with a provably conservative test, and
// only candidates get their exact Rdist and enter TopK, so the answer and its distances are those
// of the plain exact scan, bit for bit. The float32 panels (half the size of the data) are built
// once, at construction. Other p use the exact scan of every row.
//
// Thread safety: immutable after construction; concurrent queries need no locks.
#ifndef KNNCLUSTER_CORE_INDEX_BRUTE_FORCE_H_
#define KNNCLUSTER_CORE_INDEX_BRUTE_FORCE_H_

#include <memory>
#include <vector>

#include "core/index/float_filter.h"
#include "core/index/neighbor_index.h"

namespace knncluster {

class BruteForceIndex final : public NeighborIndex {
 public:
  // REQUIRES: data non-empty and finite, ids.size() == data->rows(). Use BuildIndex().
  BruteForceIndex(std::shared_ptr<const Matrix> data, std::vector<int64_t> ids, Minkowski metric);

  Algorithm algorithm() const override { return Algorithm::kBrute; }
  // The shared training data and ids, in the order given.
  MatrixView stored_rows() const override { return data_->view(); }
  absl::Span<const int64_t> stored_ids() const override { return ids_; }

 protected:
  void SearchBlock(MatrixView queries, size_t k, const double* rdist_bounds,
                   Neighbor* out) const override;
  void RadiusSearchOne(const double* query, double rdist_bound,
                       std::vector<Neighbor>* out) const override;

 private:
  // The plain scan: every row's exact Rdist.
  void ExactSearch(const double* query, TopK* heap) const;
  // The two-stage p = 2 scan for a block of queries.
  void FilteredSearchBlock(MatrixView queries, size_t k, const double* rdist_bounds,
                           Neighbor* out) const;

  std::shared_ptr<const Matrix> data_;
  std::vector<int64_t> ids_;
  index_internal::FloatFilter filter_;  // enabled for p = 2 only
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_BRUTE_FORCE_H_
