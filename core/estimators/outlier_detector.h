// OutlierDetector: the digits tutorial's distance-based outlier detection. A sample's score is
// its distance to its k-th nearest training sample (k = n_neighbors, default 1); it is an outlier
// iff score > threshold.
//
// Decisions:
//   * The threshold is given explicitly (OutlierParams::threshold), or fitted from
//     `contamination`, the expected fraction of outliers in the training data (default 0.1, in
//     (0, 0.5], as scikit-learn's outlier detectors accept). Fitting scores every training row
//     against the *other* training rows: the rows are queried with k + 1 neighbours and the entry
//     whose index is the row itself is removed (if the row is not among them, because more than
//     k other rows coincide with it, the last entry is removed instead); an exact duplicate of the
//     row, at distance 0, stays. The threshold is then
//     numpy.percentile(train_scores, 100 * (1 - contamination)) with numpy's default linear
//     interpolation, computed in numpy's order of operations, so about a `contamination` share of
//     the training rows score above it.
//   * Scores of new samples (ScoreSamples) are plain k-th neighbour distances against all training
//     rows: larger means more abnormal. (scikit-learn's score_samples has the opposite sign
//     convention; we return the distance because that is what the threshold is compared with.)
//   * Predict follows scikit-learn's convention: +1 inlier, -1 outlier. A score equal to the
//     threshold is an inlier.
//   * A saved model (ToModel) records the threshold in use; FromModel restores it as an explicit
//     threshold, so a loaded detector predicts identically without re-scoring the training data.
//
// Ownership: shares the training matrix with the index and the caller.
// Thread safety: after Fit, the const methods may be called from any number of threads at once.
// Fit (and assignment) need exclusive access.
#ifndef KNNCLUSTER_CORE_ESTIMATORS_OUTLIER_DETECTOR_H_
#define KNNCLUSTER_CORE_ESTIMATORS_OUTLIER_DETECTOR_H_

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/matrix.h"
#include "core/base/thread_pool.h"
#include "core/estimators/model_io.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"

namespace knncluster {

struct OutlierParams {
  OutlierParams() { neighbors.n_neighbors = 1; }

  // n_neighbors (default 1 here), algorithm, leaf_size and p; weights is not used.
  NeighborsParams neighbors;
  // Expected fraction of outliers among the training rows, in (0, 0.5]. Validated even when an
  // explicit threshold makes it unused.
  double contamination = 0.1;
  // An explicit threshold (finite, >= 0); when set, Fit does not score the training data.
  std::optional<double> threshold;

  // InvalidArgument naming the field.
  absl::Status Validate() const;
};

// numpy.percentile(values, q) with the default method="linear", in numpy 1.24's order of
// floating-point operations. REQUIRES: values non-empty, 0 <= q <= 100. Sorts a copy.
double NumpyPercentile(std::vector<double> values, double q);

class OutlierDetector {
 public:
  explicit OutlierDetector(OutlierParams params = {}) : params_(params) {}

  // Builds the index over X and, unless the threshold is explicit, fits it from contamination
  // (querying the training rows on `pool`). Errors (InvalidArgument): invalid params; X null,
  // empty or non-finite; n_neighbors > n (explicit threshold) or n_neighbors >= n (fitted
  // threshold: every row needs k neighbours besides itself). On error the detector is unchanged.
  absl::Status Fit(std::shared_ptr<const Matrix> X, ThreadPool* pool);

  // Distance from each row of X to its n_neighbors-th nearest training row.
  // FailedPrecondition when not fitted; InvalidArgument for a wrong feature count.
  absl::StatusOr<std::vector<double>> ScoreSamples(MatrixView X, ThreadPool* pool) const;
  // +1 (inlier: score <= threshold) or -1 (outlier) for each row of X.
  absl::StatusOr<std::vector<int>> Predict(MatrixView X, ThreadPool* pool) const;

  const OutlierParams& params() const { return params_; }
  bool fitted() const { return index_ != nullptr; }
  // The threshold in use (explicit or fitted); 0 until fitted.
  double threshold() const { return threshold_; }
  // Leave-self-out scores of the training rows, in row order (empty for an explicit threshold).
  const std::vector<double>& training_scores() const { return training_scores_; }
  const std::shared_ptr<const Matrix>& training_data() const { return X_; }
  const std::shared_ptr<const NeighborIndex>& index() const { return index_; }

  // The model to save (task kOutlier, threshold = the threshold in use). FailedPrecondition when
  // not fitted.
  absl::StatusOr<Model> ToModel() const;
  // Rebuilds from a model; a recorded threshold is used as is. InvalidArgument when the model is
  // not an outlier detector or does not fit. `pool` serves a threshold refit if none is recorded.
  static absl::StatusOr<OutlierDetector> FromModel(Model model, ThreadPool* pool);

 private:
  OutlierParams params_;
  std::shared_ptr<const Matrix> X_;
  std::shared_ptr<const NeighborIndex> index_;
  double threshold_ = 0;
  std::vector<double> training_scores_;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_ESTIMATORS_OUTLIER_DETECTOR_H_
