// Minkowski metrics: the one place distances are computed.
//
// All internal work uses *reduced* distances ("rdist", as in scikit-learn): Σ|a_j − b_j|^p for
// finite p, max_j |a_j − b_j| for p = ∞. They order points exactly as true distances do and are
// converted once, at the output, by RdistToDist. Every algorithm (brute force, KD tree, ball tree,
// and later every worker of the cluster) calls the same Rdist function of the same policy on the
// same doubles, so their distances are bit-identical. The summation order of Rdist is fixed (four
// interleaved partial sums, then ((s0 + s1) + (s2 + s3)) + tail) and does not depend on the CPU;
// core is compiled with -ffp-contract=off so no compiler may fuse a multiply-add differently on
// another machine.
//
// Policies (ManhattanMetric, EuclideanMetric, IntegerPowerMetric, GeneralPowerMetric,
// ChebyshevMetric) are small values chosen once by `Minkowski::Visit` and used as template
// arguments in hot loops, so there is no virtual call or branch on p per distance. Integer p uses
// repeated multiplication; std::pow appears only for non-integer p.
//
// Thread safety: all types here are immutable values.
#ifndef KNNCLUSTER_CORE_INDEX_METRIC_H_
#define KNNCLUSTER_CORE_INDEX_METRIC_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>

#include "absl/status/statusor.h"

namespace knncluster {

namespace metric_internal {
// Σ f(|a_j − b_j|) with the fixed 4-lane order described above.
template <typename F>
inline double SumTerms(const double* a, const double* b, size_t d, F f) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t j = 0;
  for (; j + 4 <= d; j += 4) {
    s0 += f(a[j] - b[j]);
    s1 += f(a[j + 1] - b[j + 1]);
    s2 += f(a[j + 2] - b[j + 2]);
    s3 += f(a[j + 3] - b[j + 3]);
  }
  double s = (s0 + s1) + (s2 + s3);
  for (; j < d; ++j) s += f(a[j] - b[j]);
  return s;
}
}  // namespace metric_internal

// p = 1.
struct ManhattanMetric {
  static constexpr bool kIsMax = false;
  double Term(double diff) const { return std::fabs(diff); }
  double Rdist(const double* a, const double* b, size_t d) const {
    return metric_internal::SumTerms(a, b, d, [](double x) { return std::fabs(x); });
  }
  double RdistToDist(double r) const { return r; }
  double DistToRdist(double r) const { return r; }
};

// p = 2.
struct EuclideanMetric {
  static constexpr bool kIsMax = false;
  double Term(double diff) const { return diff * diff; }
  double Rdist(const double* a, const double* b, size_t d) const {
    return metric_internal::SumTerms(a, b, d, [](double x) { return x * x; });
  }
  double RdistToDist(double r) const { return std::sqrt(r); }
  double DistToRdist(double r) const { return r * r; }
};

// Integer p >= 3: |x|^p by repeated multiplication.
struct IntegerPowerMetric {
  static constexpr bool kIsMax = false;
  int p;
  double Term(double diff) const {
    const double x = std::fabs(diff);
    double t = x;
    for (int i = 1; i < p; ++i) t *= x;
    return t;
  }
  double Rdist(const double* a, const double* b, size_t d) const {
    return metric_internal::SumTerms(a, b, d, [this](double x) { return Term(x); });
  }
  double RdistToDist(double r) const { return std::pow(r, 1.0 / p); }
  double DistToRdist(double r) const { return Term(r); }
};

// Any other finite p >= 1.
struct GeneralPowerMetric {
  static constexpr bool kIsMax = false;
  double p;
  double Term(double diff) const { return std::pow(std::fabs(diff), p); }
  double Rdist(const double* a, const double* b, size_t d) const {
    return metric_internal::SumTerms(a, b, d, [this](double x) { return Term(x); });
  }
  double RdistToDist(double r) const { return std::pow(r, 1.0 / p); }
  double DistToRdist(double r) const { return std::pow(r, p); }
};

// p = ∞: the reduced distance is the distance.
struct ChebyshevMetric {
  static constexpr bool kIsMax = true;
  double Term(double diff) const { return std::fabs(diff); }
  double Rdist(const double* a, const double* b, size_t d) const {
    double m = 0;
    for (size_t j = 0; j < d; ++j) m = std::max(m, std::fabs(a[j] - b[j]));
    return m;
  }
  double RdistToDist(double r) const { return r; }
  double DistToRdist(double r) const { return r; }
};

// The Minkowski metric of order p (1 <= p <= ∞), as a value chosen at run time.
class Minkowski {
 public:
  enum class Kind { kManhattan, kEuclidean, kIntegerPower, kGeneralPower, kChebyshev };

  // p must be >= 1 (or +∞). InvalidArgument names "p" otherwise.
  static absl::StatusOr<Minkowski> Create(double p);
  // Parses "1", "2", "1.5", "inf" / "infinity".
  static absl::StatusOr<Minkowski> Parse(const std::string& text);

  Minkowski() : Minkowski(2.0) {}  // Euclidean

  double p() const { return p_; }
  Kind kind() const { return kind_; }
  bool is_chebyshev() const { return kind_ == Kind::kChebyshev; }
  // "1", "2", "1.5", "inf".
  std::string ToString() const;

  // Calls f(policy) with the concrete policy for this p; returns what f returns.
  template <typename F>
  decltype(auto) Visit(F&& f) const {
    switch (kind_) {
      case Kind::kManhattan:
        return f(ManhattanMetric{});
      case Kind::kEuclidean:
        return f(EuclideanMetric{});
      case Kind::kIntegerPower:
        return f(IntegerPowerMetric{static_cast<int>(p_)});
      case Kind::kChebyshev:
        return f(ChebyshevMetric{});
      case Kind::kGeneralPower:
        break;
    }
    return f(GeneralPowerMetric{p_});
  }

  double Rdist(const double* a, const double* b, size_t d) const {
    return Visit([&](auto m) { return m.Rdist(a, b, d); });
  }
  double RdistToDist(double r) const {
    return Visit([&](auto m) { return m.RdistToDist(r); });
  }
  double DistToRdist(double r) const {
    return Visit([&](auto m) { return m.DistToRdist(r); });
  }

 private:
  explicit Minkowski(double p);
  double p_;
  Kind kind_;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_INDEX_METRIC_H_
