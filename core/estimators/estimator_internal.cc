#include "core/estimators/estimator_internal.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"

namespace knncluster {
namespace estimator_internal {

absl::StatusOr<std::shared_ptr<const NeighborIndex>> CheckAndBuildIndex(
    const std::shared_ptr<const Matrix>& X, const NeighborsParams& params) {
  KNN_RETURN_IF_ERROR(params.Validate());
  if (X == nullptr || X->rows() == 0) {
    return absl::InvalidArgumentError("X: the training data has no rows");
  }
  // scikit-learn raises this at query time ("Expected n_neighbors <= n_samples"); failing at Fit
  // reports it before any work is spent on the index.
  if (static_cast<size_t>(params.n_neighbors) > X->rows()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "n_neighbors: expected n_neighbors <= n_samples, but n_samples = %d, n_neighbors = %d",
        X->rows(), params.n_neighbors));
  }
  KNN_ASSIGN_OR_RETURN(std::unique_ptr<const NeighborIndex> index,
                       BuildIndex(X, {}, params.index_options()));
  return std::shared_ptr<const NeighborIndex>(std::move(index));
}

absl::Status CheckLabelCount(const Matrix& X, size_t y_size, const char* what) {
  if (y_size != X.rows()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("y: expected %d %s (one per row of X), got %d", X.rows(), what, y_size));
  }
  return absl::OkStatus();
}

absl::Status NotFitted(const char* estimator) {
  return absl::FailedPreconditionError(absl::StrCat(estimator, ": not fitted; call Fit first"));
}

absl::Status CheckTask(const Model& model, Model::Task want) {
  if (model.task != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.task: the model is a ", TaskName(model.task), ", expected a ", TaskName(want)));
  }
  return absl::OkStatus();
}

std::shared_ptr<const Matrix> ShareMatrix(Matrix m) {
  return std::make_shared<const Matrix>(std::move(m));
}

}  // namespace estimator_internal
}  // namespace knncluster
