#include "core/index/brute_force.h"

namespace knncluster {

BruteForceIndex::BruteForceIndex(std::shared_ptr<const Matrix> data, std::vector<int64_t> ids,
                                 Minkowski metric)
    : NeighborIndex(data->rows(), data->cols(), metric), data_(std::move(data)), ids_(std::move(ids)) {}

void BruteForceIndex::SearchBlock(MatrixView queries, size_t k, Neighbor* out) const {
  const size_t n = data_->rows(), d = data_->cols();
  const double* x = data_->data();
  metric().Visit([&](auto m) {
    TopK heap(k);
    for (size_t q = 0; q < queries.rows(); ++q) {
      const double* query = queries.row(q);
      for (size_t i = 0; i < n; ++i) {
        const double r = m.Rdist(query, x + i * d, d);
        if (r <= heap.WorstRdist()) heap.Push(r, ids_[i]);
      }
      heap.TakeSorted(out + q * k);
    }
  });
}

void BruteForceIndex::RadiusSearchOne(const double* query, double rdist_bound,
                                      std::vector<Neighbor>* out) const {
  const size_t n = data_->rows(), d = data_->cols();
  const double* x = data_->data();
  metric().Visit([&](auto m) {
    for (size_t i = 0; i < n; ++i) {
      const double r = m.Rdist(query, x + i * d, d);
      if (r <= rdist_bound) out->push_back({r, ids_[i]});
    }
  });
}

}  // namespace knncluster
