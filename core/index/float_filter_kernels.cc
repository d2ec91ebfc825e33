// Compiled with -O3 -ffp-contract=fast (core/index/CMakeLists.txt): these kernels only select
// candidates, and the error bound of float_filter.h allows fused multiply-adds.
#include "core/index/float_filter_kernels.h"

#include <immintrin.h>

namespace knncluster {
namespace index_internal {

typedef float V16 __attribute__((vector_size(64)));

namespace avx512 {
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
constexpr size_t kBlockQueries = 8;  // 16 accumulators of the 32 zmm registers
inline uint32_t LeMask(V16 t, float thr) {
  __m512 v;
  __builtin_memcpy(&v, &t, sizeof(v));
  return _mm512_cmp_ps_mask(v, _mm512_set1_ps(thr), _CMP_LE_OQ);
}
#include "core/index/float_filter_kernels_impl.inc"
#pragma GCC pop_options
}  // namespace avx512

namespace avx2 {
#pragma GCC push_options
#pragma GCC target("avx2,fma")
constexpr size_t kBlockQueries = 3;  // 12 accumulators of the 16 ymm registers
inline uint32_t LeMask(V16 t, float thr) {
  __m256 lo, hi;
  __builtin_memcpy(&lo, &t, sizeof(lo));
  __builtin_memcpy(&hi, reinterpret_cast<const char*>(&t) + 32, sizeof(hi));
  const __m256 th = _mm256_set1_ps(thr);
  const uint32_t a = _mm256_movemask_ps(_mm256_cmp_ps(lo, th, _CMP_LE_OQ));
  const uint32_t b = _mm256_movemask_ps(_mm256_cmp_ps(hi, th, _CMP_LE_OQ));
  return a | (b << 8);
}
#include "core/index/float_filter_kernels_impl.inc"
#pragma GCC pop_options
}  // namespace avx2

namespace sse2 {
constexpr size_t kBlockQueries = 1;
inline uint32_t LeMask(V16 t, float thr) {
  uint32_t m = 0;
  for (int r = 0; r < 16; ++r) m |= static_cast<uint32_t>(t[r] <= thr) << r;
  return m;
}
#include "core/index/float_filter_kernels_impl.inc"
}  // namespace sse2

FloatKernels SelectFloatKernels() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) {
    return {avx512::kBlockQueries, avx512::FilterBlock, avx512::FilterOne, "avx512"};
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return {avx2::kBlockQueries, avx2::FilterBlock, avx2::FilterOne, "avx2"};
  }
  return {sse2::kBlockQueries, sse2::FilterBlock, sse2::FilterOne, "sse2"};
}

}  // namespace index_internal
}  // namespace knncluster
