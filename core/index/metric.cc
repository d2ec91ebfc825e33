#include "core/index/metric.h"

#include <cerrno>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace knncluster {

namespace {
// Integer orders up to this use repeated multiplication; larger ones use std::pow.
constexpr double kMaxIntegerPower = 16;
}  // namespace

Minkowski::Minkowski(double p) : p_(p) {
  if (std::isinf(p)) {
    kind_ = Kind::kChebyshev;
  } else if (p == 1) {
    kind_ = Kind::kManhattan;
  } else if (p == 2) {
    kind_ = Kind::kEuclidean;
  } else if (p == std::floor(p) && p <= kMaxIntegerPower) {
    kind_ = Kind::kIntegerPower;
  } else {
    kind_ = Kind::kGeneralPower;
  }
}

absl::StatusOr<Minkowski> Minkowski::Create(double p) {
  if (std::isnan(p) || p < 1 || (std::isinf(p) && p < 0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("p: the Minkowski order must be >= 1 or inf, got %g", p));
  }
  return Minkowski(p);
}

absl::StatusOr<Minkowski> Minkowski::Parse(const std::string& text) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (t == "inf" || t == "infinity" || t == "+inf") return Minkowski(HUGE_VAL);
  char* end = nullptr;
  errno = 0;
  double p = std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || errno != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("p: expected a number >= 1 or \"inf\", got \"", text, "\""));
  }
  return Create(p);
}

std::string Minkowski::ToString() const {
  if (kind_ == Kind::kChebyshev) return "inf";
  return absl::StrFormat("%g", p_);
}

}  // namespace knncluster
