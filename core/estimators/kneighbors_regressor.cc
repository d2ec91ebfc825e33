#include "core/estimators/kneighbors_regressor.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/estimators/estimator_internal.h"
#include "core/estimators/metrics.h"
#include "core/estimators/voting.h"

namespace knncluster {

namespace {
constexpr char kName[] = "KNeighborsRegressor";
}  // namespace

absl::Status KNeighborsRegressor::Fit(std::shared_ptr<const Matrix> X, std::vector<double> y) {
  KNN_RETURN_IF_ERROR(params_.Validate());
  if (X == nullptr || X->rows() == 0) {
    return absl::InvalidArgumentError("X: the training data has no rows");
  }
  KNN_RETURN_IF_ERROR(estimator_internal::CheckLabelCount(*X, y.size(), "targets"));
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) {
      return absl::InvalidArgumentError(absl::StrFormat("y[%d]: target %g is not finite", i, y[i]));
    }
  }
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const NeighborIndex> index,
                       estimator_internal::CheckAndBuildIndex(X, params_));
  X_ = std::move(X);
  y_ = std::move(y);
  index_ = std::move(index);
  return absl::OkStatus();
}

absl::StatusOr<KNeighborsResult> KNeighborsRegressor::KNeighbors(MatrixView X, std::optional<int> k,
                                                                 ThreadPool* pool) const {
  if (!fitted()) return estimator_internal::NotFitted(kName);
  return index_->KNeighbors(X, k.value_or(params_.n_neighbors), pool);
}

absl::StatusOr<std::vector<double>> KNeighborsRegressor::Predict(MatrixView X,
                                                                 ThreadPool* pool) const {
  KNN_ASSIGN_OR_RETURN(KNeighborsResult neighbors, KNeighbors(X, std::nullopt, pool));
  return RegressionBatch(neighbors, y_, params_.weights, pool);
}

absl::StatusOr<double> KNeighborsRegressor::Score(MatrixView X, absl::Span<const double> y,
                                                  ThreadPool* pool) const {
  if (!fitted()) return estimator_internal::NotFitted(kName);
  if (y.size() != X.rows()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("y: expected %d targets (one per row of X), got %d", X.rows(), y.size()));
  }
  KNN_ASSIGN_OR_RETURN(std::vector<double> predicted, Predict(X, pool));
  return R2Score(y, predicted);
}

absl::StatusOr<Model> KNeighborsRegressor::ToModel() const {
  if (!fitted()) return estimator_internal::NotFitted(kName);
  Model model;
  model.task = Model::Task::kRegressor;
  model.params = params_;
  model.X = *X_;
  model.y = y_;
  return model;
}

absl::StatusOr<KNeighborsRegressor> KNeighborsRegressor::FromModel(Model model) {
  KNN_RETURN_IF_ERROR(estimator_internal::CheckTask(model, Model::Task::kRegressor));
  KNeighborsRegressor regressor(model.params);
  KNN_RETURN_IF_ERROR(
      regressor.Fit(estimator_internal::ShareMatrix(std::move(model.X)), std::move(model.y)));
  return regressor;
}

}  // namespace knncluster
