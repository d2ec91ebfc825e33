// Exact reduced distances from one query to a block of rows, vectorised where the CPU allows
// (AVX2, chosen at run time) and bit-identical to the metric policies' Rdist of metric.h on every
// CPU: the four vector lanes are exactly Rdist's four interleaved partial sums (lane l sums the
// terms of dimensions j ≡ l mod 4), combined as ((s0 + s1) + (s2 + s3)), then the tail in order;
// terms are computed with the same operations (|x| by clearing the sign bit, x·x, repeated
// multiplication for integer p), and this file is compiled with -ffp-contract=off like the rest
// of core, so no multiply-add is fused. Brute force uses them for its exact scan.
//
// Thread safety: pure functions.
#ifndef KNNCLUSTER_CORE_INDEX_EXACT_KERNELS_H_
#define KNNCLUSTER_CORE_INDEX_EXACT_KERNELS_H_

#include <cstddef>

#include "core/index/metric.h"

namespace knncluster::index_internal {

// out[i] = Rdist(query, rows + i * d, d) for i in [0, n), for metric `m`. Returns false (and
// writes nothing) when no vector kernel serves this metric on this CPU: the caller then uses the
// policy's scalar Rdist, which gives the same bits.
bool RdistRows(const Minkowski& m, const double* query, const double* rows, size_t n, size_t d,
               double* out);

// "avx2" or "scalar": what RdistRows uses on this CPU.
const char* ExactKernelName();

}  // namespace knncluster::index_internal

#endif  // KNNCLUSTER_CORE_INDEX_EXACT_KERNELS_H_
