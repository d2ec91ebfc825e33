#include "core/index/exact_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

namespace knncluster::index_internal {
namespace {

enum class Term { kAbs, kSquare, kCube, kIntPower, kMax };

namespace avx2 {
#pragma GCC push_options
#pragma GCC target("avx2")

template <Term kTerm>
inline __m256d VecTerm(__m256d diff, int p) {
  const __m256d sign = _mm256_set1_pd(-0.0);
  if constexpr (kTerm == Term::kSquare) {
    return _mm256_mul_pd(diff, diff);
  } else {
    const __m256d a = _mm256_andnot_pd(sign, diff);
    if constexpr (kTerm == Term::kCube) {
      return _mm256_mul_pd(_mm256_mul_pd(a, a), a);
    } else if constexpr (kTerm == Term::kIntPower) {
      __m256d t = a;
      for (int e = 1; e < p; ++e) t = _mm256_mul_pd(t, a);
      return t;
    } else {
      return a;  // kAbs, kMax
    }
  }
}

template <Term kTerm>
inline double ScalarTerm(double diff, int p) {
  if constexpr (kTerm == Term::kSquare) {
    return diff * diff;
  } else {
    const double a = std::fabs(diff);
    if constexpr (kTerm == Term::kCube) {
      return (a * a) * a;
    } else if constexpr (kTerm == Term::kIntPower) {
      double t = a;
      for (int e = 1; e < p; ++e) t *= a;
      return t;
    } else {
      return a;
    }
  }
}

template <Term kTerm>
void Rows(const double* q, const double* rows, size_t n, size_t d, int p, double* out) {
  const size_t d4 = d & ~size_t{3};
  for (size_t i = 0; i < n; ++i) {
    const double* x = rows + i * d;
    __m256d acc = _mm256_setzero_pd();
    for (size_t j = 0; j < d4; j += 4) {
      const __m256d t =
          VecTerm<kTerm>(_mm256_sub_pd(_mm256_loadu_pd(q + j), _mm256_loadu_pd(x + j)), p);
      acc = kTerm == Term::kMax ? _mm256_max_pd(acc, t) : _mm256_add_pd(acc, t);
    }
    alignas(32) double s[4];
    _mm256_store_pd(s, acc);
    double r;
    if constexpr (kTerm == Term::kMax) {
      r = std::max(std::max(s[0], s[1]), std::max(s[2], s[3]));
      for (size_t j = d4; j < d; ++j) r = std::max(r, std::fabs(q[j] - x[j]));
    } else {
      r = (s[0] + s[1]) + (s[2] + s[3]);
      for (size_t j = d4; j < d; ++j) r += ScalarTerm<kTerm>(q[j] - x[j], p);
    }
    out[i] = r;
  }
}

#pragma GCC pop_options
}  // namespace avx2

bool HaveAvx2() {
  static const bool have = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return have;
}

}  // namespace

bool RdistRows(const Minkowski& m, const double* query, const double* rows, size_t n, size_t d,
               double* out) {
  if (!HaveAvx2()) return false;
  switch (m.kind()) {
    case Minkowski::Kind::kManhattan:
      avx2::Rows<Term::kAbs>(query, rows, n, d, 1, out);
      return true;
    case Minkowski::Kind::kEuclidean:
      avx2::Rows<Term::kSquare>(query, rows, n, d, 2, out);
      return true;
    case Minkowski::Kind::kIntegerPower: {
      const int p = static_cast<int>(m.p());
      if (p == 3) {
        avx2::Rows<Term::kCube>(query, rows, n, d, 3, out);
      } else {
        avx2::Rows<Term::kIntPower>(query, rows, n, d, p, out);
      }
      return true;
    }
    case Minkowski::Kind::kChebyshev:
      avx2::Rows<Term::kMax>(query, rows, n, d, 0, out);
      return true;
    case Minkowski::Kind::kGeneralPower:
      return false;
  }
  return false;
}

const char* ExactKernelName() { return HaveAvx2() ? "avx2" : "scalar"; }

}  // namespace knncluster::index_internal
