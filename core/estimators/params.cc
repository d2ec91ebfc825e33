#include "core/estimators/params.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/index/metric.h"

namespace knncluster {

std::string WeightsName(Weights w) {
  switch (w) {
    case Weights::kUniform:
      return "uniform";
    case Weights::kDistance:
      return "distance";
  }
  return "unknown";
}

absl::StatusOr<Weights> ParseWeights(const std::string& name) {
  for (Weights w : {Weights::kUniform, Weights::kDistance}) {
    if (name == WeightsName(w)) return w;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("weights: expected one of uniform, distance; got \"", name, "\""));
}

absl::Status NeighborsParams::Validate() const {
  if (n_neighbors < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("n_neighbors: must be >= 1, got %d", n_neighbors));
  }
  if (weights != Weights::kUniform && weights != Weights::kDistance) {
    return absl::InvalidArgumentError(
        absl::StrFormat("weights: unknown value %d", static_cast<int>(weights)));
  }
  if (algorithm != Algorithm::kAuto && algorithm != Algorithm::kKdTree &&
      algorithm != Algorithm::kBallTree && algorithm != Algorithm::kBrute) {
    return absl::InvalidArgumentError(
        absl::StrFormat("algorithm: unknown value %d", static_cast<int>(algorithm)));
  }
  if (leaf_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("leaf_size: must be >= 1, got %d", leaf_size));
  }
  return Minkowski::Create(p).status();
}

IndexOptions NeighborsParams::index_options() const {
  IndexOptions options;
  options.algorithm = algorithm;
  options.leaf_size = leaf_size;
  options.p = p;
  return options;
}

}  // namespace knncluster
