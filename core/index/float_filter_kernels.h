// Float32 candidate-filter kernels for Euclidean search (internal to core/index).
//
// Rows are stored in *panels* of kPanelRows = 16 rows: panel p holds rows [16p, 16p + 16) as d x 16
// floats (element (j, r) at j * 16 + r), so one SIMD register holds one feature of 16 rows and the
// kernels vectorise across rows, whatever d is. Each kernel computes, for a query q (float32,
// d values) and every row r of its panels, t_r = bias[r] - 2 * <q, x_r> in float32 and sets bit r
// of a mask when t_r <= thr. The caller picks bias and thr so that the test is conservative
// (float_filter.h); the kernels only select candidates and never produce a reported distance.
//
// The kernels are compiled for AVX-512, AVX2+FMA and baseline x86-64, and SelectFloatKernels()
// picks the best one the running CPU supports, so the binary runs on any x86-64. Their rounding
// (FMA or not, summation order) differs between versions; the error bound of float_filter.h holds
// for all of them.
//
// Thread safety: pure functions.
#ifndef KNNCLUSTER_CORE_INDEX_FLOAT_FILTER_KERNELS_H_
#define KNNCLUSTER_CORE_INDEX_FLOAT_FILTER_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace knncluster {
namespace index_internal {

constexpr size_t kPanelRows = 16;

struct FloatKernels {
  // Queries handled together by filter_block (the register blocking of the ISA).
  size_t block_queries;
  // block_queries queries (rows of d floats at q) against two consecutive panels (32 rows):
  // masks[i] bit r <=> bias[r] - 2 <q_i, x_r> <= thr[i].
  void (*filter_block)(const float* q, size_t d, const float* panels, const float* bias,
                       const float* thr, uint32_t* masks);
  // One query against num_panels consecutive panels: masks[p] bit r for row 16p + r.
  void (*filter_one)(const float* q, size_t d, const float* panels, size_t num_panels,
                     const float* bias, float thr, uint16_t* masks);
  const char* name;
};

// The fastest kernels this CPU runs.
FloatKernels SelectFloatKernels();

}  // namespace index_internal
}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_FLOAT_FILTER_KERNELS_H_
