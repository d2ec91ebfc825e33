// FloatFilter: a conservative float32 pre-filter for exact Euclidean (p = 2) k-NN search.
// Internal to core/index: used by brute force (whole data) and by both trees (leaf scans).
//
// At build time the training rows are centred (minus their column means), scaled by a power of 2
// so that every value is at most 1 in magnitude, rounded to float32 and stored in panels
// (float_filter_kernels.h), with per-row bias b_i = round_down((1 - C) ||x_i||^2). A query is
// transformed the same way. The kernels then compute, in float32 (any order, FMA or not),
// t_i = b_i - 2 <q, x_i> and keep row i as a candidate when t_i <= thr, where
//   thr = round_up(W s^2 (1 + eps64) + e_abs - (1 - C) ||q||^2),
// W is the current k-th smallest *exact* reduced distance (TopK::WorstRdist) and s the scale.
//
// Why nothing that belongs to the answer is dropped: with u = 2^-24, the squared distance of the
// rounded, centred vectors a, b computed as ||a||^2 + ||b||^2 - 2 fl(<a, b>) differs from the true
// scaled squared distance by at most C0 (||a||^2 + ||b||^2) + e_abs, where C0 covers rounding the
// inputs (4u), the dot product (gamma_d ~ d u, any summation order, with or without FMA), and the
// norms (double); e_abs covers float32 underflow. Rounding b_i down and the one float32
// subtraction cost at most another 2.2u (||a||^2 + ||b||^2), folded into C = C0 + 2.2u (with
// margin: C = (1.02 d + 10) u). And Rdist in double is within (d + 4) 2^-53 relative of the true
// value, so eps64 = (d + 8) 2^-50. Hence a row whose exact Rdist is <= W always has t_i <= thr;
// candidates are then recomputed with the metric's exact Rdist and pushed into TopK, so reported
// distances are the exact ones and ties are resolved by id as everywhere else.
//
// The filter is disabled (callers use the exact scan) when d is so large that C would not be
// small (d > 100,000) or when the data is so large in magnitude that centring could overflow. A
// query far outside the data (scaled values beyond 2^40) is searched exactly.
//
// Thread safety: immutable after Build.
#ifndef KNNCLUSTER_CORE_INDEX_FLOAT_FILTER_H_
#define KNNCLUSTER_CORE_INDEX_FLOAT_FILTER_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "core/base/matrix.h"
#include "core/index/float_filter_kernels.h"

namespace knncluster {
namespace index_internal {

class FloatFilter {
 public:
  // Lays out rows [ranges[r].first, ranges[r].second) of `data` so that each range starts a new
  // panel; `pad_to_even` adds an empty panel when the total count is odd (for filter_block).
  // REQUIRES: data finite.
  void Build(MatrixView data, const std::vector<std::pair<size_t, size_t>>& ranges,
             bool pad_to_even) {
    const size_t n = data.rows(), d = data.cols();
    d_ = d;
    enabled_ = false;
    if (d == 0 || d > 100000 || n == 0) return;
    double max_abs = 0;
    for (size_t i = 0; i < n * d; ++i) max_abs = std::max(max_abs, std::fabs(data.data()[i]));
    if (max_abs > 1e150) return;
    center_.assign(d, 0.0);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < d; ++j) center_[j] += data.at(i, j);
    }
    for (double& c : center_) c /= static_cast<double>(n);
    double max_centered = 0;
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < d; ++j) {
        max_centered = std::max(max_centered, std::fabs(data.at(i, j) - center_[j]));
      }
    }
    int e = 0;
    if (max_centered > 0) std::frexp(max_centered, &e);  // max_centered < 2^e
    scale_ = std::ldexp(1.0, -e);
    const double u = std::ldexp(1.0, -24);
    one_minus_c_ = 1.0 - (1.02 * static_cast<double>(d) + 10) * u;
    eps64_ = (static_cast<double>(d) + 8) * std::ldexp(1.0, -50);
    e_abs_ = (static_cast<double>(d) + 8) * std::ldexp(1.0, -100);

    first_panel_.clear();
    size_t panels = 0;
    for (const auto& [begin, end] : ranges) {
      first_panel_.push_back(panels);
      panels += (end - begin + kPanelRows - 1) / kPanelRows;
    }
    if (pad_to_even && panels % 2 == 1) ++panels;
    panels_.assign(panels * d * kPanelRows, 0.0f);
    bias_.assign(panels * kPanelRows, std::numeric_limits<float>::quiet_NaN());  // NaN: never kept
    std::vector<float> xf(d);
    for (size_t r = 0; r < ranges.size(); ++r) {
      for (size_t i = ranges[r].first; i < ranges[r].second; ++i) {
        const size_t slot = first_panel_[r] * kPanelRows + (i - ranges[r].first);
        const double norm = Transform(data.row(i), xf.data());
        float* panel = &panels_[(slot / kPanelRows) * d * kPanelRows];
        for (size_t j = 0; j < d; ++j) panel[j * kPanelRows + slot % kPanelRows] = xf[j];
        bias_[slot] = RoundDown(one_minus_c_ * norm);
      }
    }
    kernels_ = SelectFloatKernels();
    enabled_ = true;
  }

  bool enabled() const { return enabled_; }
  const FloatKernels& kernels() const { return kernels_; }
  size_t first_panel(size_t range) const { return first_panel_[range]; }
  size_t num_panels() const { return bias_.size() / kPanelRows; }
  const float* panel(size_t p) const { return &panels_[p * d_ * kPanelRows]; }
  const float* bias(size_t p) const { return &bias_[p * kPanelRows]; }

  // Transforms a query into qf (d floats) and returns its squared norm, or a negative value when
  // the query is too far outside the data for float32 and must be searched exactly.
  double PrepareQuery(const double* q, float* qf) const {
    const double norm = Transform(q, qf);
    for (size_t j = 0; j < d_; ++j) {
      if (!(std::fabs(qf[j]) <= 0x1p40f)) return -1;
    }
    return norm;
  }

  // The threshold for a query of squared norm `qnorm` when the k-th exact rdist is `worst`.
  float Threshold(double worst, double qnorm) const {
    if (!(worst < std::numeric_limits<double>::infinity())) {
      return std::numeric_limits<float>::infinity();
    }
    const double w = worst * scale_ * scale_;
    double t = w * (1 + eps64_) + e_abs_ - one_minus_c_ * qnorm;
    t += std::ldexp(std::fabs(w) + std::fabs(qnorm), -50);  // this expression's double rounding
    return RoundUp(t);
  }

 private:
  // (x - center) * scale in float32; returns the squared norm of the float32 vector in double.
  double Transform(const double* x, float* out) const {
    double norm = 0;
    for (size_t j = 0; j < d_; ++j) {
      out[j] = static_cast<float>((x[j] - center_[j]) * scale_);
      norm += static_cast<double>(out[j]) * out[j];
    }
    return norm;
  }
  static float RoundDown(double v) {
    float f = static_cast<float>(v);
    if (static_cast<double>(f) > v) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
    return f;
  }
  static float RoundUp(double v) {
    float f = static_cast<float>(v);
    if (static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
    return f;
  }

  bool enabled_ = false;
  size_t d_ = 0;
  std::vector<double> center_;
  double scale_ = 1;
  double one_minus_c_ = 1;
  double eps64_ = 0;
  double e_abs_ = 0;
  std::vector<size_t> first_panel_;
  std::vector<float> panels_;
  std::vector<float> bias_;
  FloatKernels kernels_{};
};

}  // namespace index_internal
}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_FLOAT_FILTER_H_
