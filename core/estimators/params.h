// NeighborsParams: the hyper-parameters shared by the k-NN estimators (KNeighborsClassifier,
// KNeighborsRegressor, OutlierDetector), with scikit-learn's defaults, and the Weights enum that
// selects the voting rule (see voting.h).
//
// Plain values: copy freely. Thread-safe as any const value.
#ifndef KNNCLUSTER_CORE_ESTIMATORS_PARAMS_H_
#define KNNCLUSTER_CORE_ESTIMATORS_PARAMS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/index/neighbor_index.h"

namespace knncluster {

// How the k neighbours of a query vote (scikit-learn's `weights`).
enum class Weights {
  kUniform,   // every neighbour counts 1
  kDistance,  // neighbour counts 1/distance; neighbours at distance 0 outvote all others
};

// "uniform", "distance".
std::string WeightsName(Weights w);
// Parses "uniform" / "distance"; InvalidArgument naming "weights" otherwise.
absl::StatusOr<Weights> ParseWeights(const std::string& name);

struct NeighborsParams {
  int n_neighbors = 5;                  // k, >= 1 (and <= the number of training samples)
  Weights weights = Weights::kUniform;  // the voting rule
  Algorithm algorithm = Algorithm::kAuto;
  int leaf_size = 30;  // >= 1; a tree's leaf size (ignored by brute force)
  double p = 2;        // Minkowski order, >= 1 or +inf (scikit-learn's p; inf is "chebyshev")

  // InvalidArgument naming the field: n_neighbors < 1, leaf_size < 1, p < 1 or NaN, or an
  // out-of-range enum value.
  absl::Status Validate() const;
  // The options the estimators build their NeighborIndex with.
  IndexOptions index_options() const;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_ESTIMATORS_PARAMS_H_
