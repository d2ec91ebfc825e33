#include "core/index/brute_force.h"

#include <algorithm>

#include "core/index/exact_kernels.h"

namespace knncluster {

using index_internal::kPanelRows;

BruteForceIndex::BruteForceIndex(std::shared_ptr<const Matrix> data, std::vector<int64_t> ids,
                                 Minkowski metric)
    : NeighborIndex(data->rows(), data->cols(), metric), data_(std::move(data)), ids_(std::move(ids)) {
  if (metric.kind() == Minkowski::Kind::kEuclidean) {
    filter_.Build(*data_, {{0, data_->rows()}}, /*pad_to_even=*/true);
  }
}

void BruteForceIndex::ExactSearch(const double* query, TopK* heap) const {
  const size_t n = data_->rows(), d = data_->cols();
  const double* x = data_->data();
  // Vectorised exact distances (same bits as the policy's Rdist), a block at a time.
  constexpr size_t kBlock = 256;
  double r[kBlock];
  if (n > 0 && index_internal::RdistRows(metric(), query, x, std::min(n, kBlock), d, r)) {
    for (size_t begin = 0; begin < n; begin += kBlock) {
      const size_t m = std::min(kBlock, n - begin);
      if (begin > 0) index_internal::RdistRows(metric(), query, x + begin * d, m, d, r);
      for (size_t i = 0; i < m; ++i) {
        if (r[i] <= heap->WorstRdist()) heap->Push(r[i], ids_[begin + i]);
      }
    }
    return;
  }
  metric().Visit([&](auto m) {
    for (size_t i = 0; i < n; ++i) {
      const double r = m.Rdist(query, x + i * d, d);
      if (r <= heap->WorstRdist()) heap->Push(r, ids_[i]);
    }
  });
}

void BruteForceIndex::SearchBlock(MatrixView queries, size_t k, const double* rdist_bounds,
                                  Neighbor* out) const {
  if (filter_.enabled()) {
    FilteredSearchBlock(queries, k, rdist_bounds, out);
    return;
  }
  TopK heap(k);
  for (size_t q = 0; q < queries.rows(); ++q) {
    if (rdist_bounds != nullptr) heap.Clear(rdist_bounds[q]);
    ExactSearch(queries.row(q), &heap);
    heap.TakeSortedPadded(out + q * k);
  }
}

void BruteForceIndex::FilteredSearchBlock(MatrixView queries, size_t k,
                                          const double* rdist_bounds, Neighbor* out) const {
  const EuclideanMetric m;
  const size_t nq = queries.rows(), d = dim(), n = data_->rows();
  const index_internal::FloatKernels& kern = filter_.kernels();
  const size_t qb = kern.block_queries;
  const size_t padded = (nq + qb - 1) / qb * qb;
  // Per-query state; padding queries (and queries searched exactly) get thr = -inf.
  std::vector<float> qf(padded * d, 0.0f);
  std::vector<double> qnorm(padded, -1);
  std::vector<float> thr(padded, -std::numeric_limits<float>::infinity());
  std::vector<TopK> heaps(nq, TopK(k));
  for (size_t q = 0; q < nq; ++q) {
    if (rdist_bounds != nullptr) heaps[q].Clear(rdist_bounds[q]);
    qnorm[q] = filter_.PrepareQuery(queries.row(q), &qf[q * d]);
    if (qnorm[q] >= 0) {
      thr[q] = filter_.Threshold(heaps[q].WorstRdist(), qnorm[q]);
    } else {
      std::fill(&qf[q * d], &qf[(q + 1) * d], 0.0f);
      ExactSearch(queries.row(q), &heaps[q]);
    }
  }
  const double* x = data_->data();
  std::vector<uint32_t> masks(qb);
  const size_t pairs = filter_.num_panels() / 2;
  for (size_t pp = 0; pp < pairs; ++pp) {
    const size_t row0 = pp * 2 * kPanelRows;
    const float* panels = filter_.panel(2 * pp);
    const float* bias = filter_.bias(2 * pp);
    for (size_t g = 0; g < padded; g += qb) {
      kern.filter_block(&qf[g * d], d, panels, bias, &thr[g], masks.data());
      for (size_t i = 0; i < qb; ++i) {
        for (uint32_t mask = masks[i]; mask != 0; mask &= mask - 1) {
          const size_t row = row0 + static_cast<size_t>(__builtin_ctz(mask));
          if (row >= n) break;  // padding (bias NaN never passes; kept as a guard)
          const size_t q = g + i;
          TopK& heap = heaps[q];
          const double r = m.Rdist(queries.row(q), x + row * d, d);
          if (r <= heap.WorstRdist()) {
            heap.Push(r, ids_[row]);
            thr[q] = filter_.Threshold(heap.WorstRdist(), qnorm[q]);
          }
        }
      }
    }
  }
  for (size_t q = 0; q < nq; ++q) heaps[q].TakeSortedPadded(out + q * k);
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
