#include "core/estimators/outlier_detector.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/estimators/estimator_internal.h"
#include "core/estimators/voting.h"

namespace knncluster {

namespace {
constexpr char kName[] = "OutlierDetector";
}  // namespace

absl::Status OutlierParams::Validate() const {
  KNN_RETURN_IF_ERROR(neighbors.Validate());
  if (!(contamination > 0 && contamination <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("contamination: must be in (0, 0.5], got %g", contamination));
  }
  if (threshold.has_value() && !(std::isfinite(*threshold) && *threshold >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("threshold: must be a finite distance >= 0, got %g", *threshold));
  }
  return absl::OkStatus();
}

double NumpyPercentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  // np.percentile: q = true_divide(q, 100); method "linear": virtual index (n - 1) * q.
  const double quantile = q / 100;
  const double virtual_index = static_cast<double>(n - 1) * quantile;
  // _get_indexes: at or beyond the last index both neighbours are the last value.
  if (virtual_index >= static_cast<double>(n - 1)) return values[n - 1];
  const double previous_index = std::floor(virtual_index);
  const double a = values[static_cast<size_t>(previous_index)];
  const double b = values[static_cast<size_t>(previous_index) + 1];
  const double gamma = virtual_index - previous_index;
  // _lerp: a + (b - a) * t, or b - (b - a) * (1 - t) where t >= 0.5.
  const double diff_b_a = b - a;
  if (gamma >= 0.5) return b - diff_b_a * (1 - gamma);
  return a + diff_b_a * gamma;
}

absl::Status OutlierDetector::Fit(std::shared_ptr<const Matrix> X, ThreadPool* pool) {
  KNN_RETURN_IF_ERROR(params_.Validate());
  const int k = params_.neighbors.n_neighbors;
  if (X != nullptr && !params_.threshold.has_value() && static_cast<size_t>(k) >= X->rows() &&
      X->rows() > 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "n_neighbors: fitting the threshold from contamination needs n_neighbors < n_samples "
        "(each training row's own distance is left out), but n_samples = %d, n_neighbors = %d",
        X->rows(), k));
  }
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const NeighborIndex> index,
                       estimator_internal::CheckAndBuildIndex(X, params_.neighbors));
  double threshold = params_.threshold.value_or(0.0);
  std::vector<double> scores;
  if (!params_.threshold.has_value()) {
    KNN_ASSIGN_OR_RETURN(KNeighborsResult neighbors, index->KNeighbors(*X, k + 1, pool));
    scores.resize(X->rows());
    for (size_t i = 0; i < X->rows(); ++i) {
      scores[i] =
          LeaveSelfOutDistance(neighbors, i, static_cast<int64_t>(i), static_cast<size_t>(k));
    }
    threshold = NumpyPercentile(scores, 100 * (1 - params_.contamination));
  }
  X_ = std::move(X);
  index_ = std::move(index);
  threshold_ = threshold;
  training_scores_ = std::move(scores);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> OutlierDetector::ScoreSamples(MatrixView X,
                                                                  ThreadPool* pool) const {
  if (!fitted()) return estimator_internal::NotFitted(kName);
  const int k = params_.neighbors.n_neighbors;
  KNN_ASSIGN_OR_RETURN(KNeighborsResult neighbors, index_->KNeighbors(X, k, pool));
  std::vector<double> scores(X.rows());
  for (size_t i = 0; i < X.rows(); ++i)
    scores[i] = neighbors.distance(i, static_cast<size_t>(k) - 1);
  return scores;
}

absl::StatusOr<std::vector<int>> OutlierDetector::Predict(MatrixView X, ThreadPool* pool) const {
  KNN_ASSIGN_OR_RETURN(std::vector<double> scores, ScoreSamples(X, pool));
  std::vector<int> labels(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) labels[i] = scores[i] > threshold_ ? -1 : 1;
  return labels;
}

absl::StatusOr<Model> OutlierDetector::ToModel() const {
  if (!fitted()) return estimator_internal::NotFitted(kName);
  Model model;
  model.task = Model::Task::kOutlier;
  model.params = params_.neighbors;
  model.contamination = params_.contamination;
  model.threshold = threshold_;
  model.X = *X_;
  return model;
}

absl::StatusOr<OutlierDetector> OutlierDetector::FromModel(Model model, ThreadPool* pool) {
  KNN_RETURN_IF_ERROR(estimator_internal::CheckTask(model, Model::Task::kOutlier));
  if (!model.y.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("model.y: an outlier detector has no labels, got %d", model.y.size()));
  }
  OutlierParams params;
  params.neighbors = model.params;
  params.contamination = model.contamination;
  params.threshold = model.threshold;
  OutlierDetector detector(params);
  KNN_RETURN_IF_ERROR(detector.Fit(estimator_internal::ShareMatrix(std::move(model.X)), pool));
  return detector;
}

}  // namespace knncluster
