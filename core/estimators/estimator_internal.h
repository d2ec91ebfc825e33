// Helpers private to core/estimators, shared by KNeighborsClassifier, KNeighborsRegressor and
// OutlierDetector so that fitting checks, index building and error messages are written once.
// Thread safety: pure functions.
#ifndef KNNCLUSTER_CORE_ESTIMATORS_ESTIMATOR_INTERNAL_H_
#define KNNCLUSTER_CORE_ESTIMATORS_ESTIMATOR_INTERNAL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/matrix.h"
#include "core/estimators/model_io.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"

namespace knncluster {
namespace estimator_internal {

// Validates params and X (non-null, at least one row, finite) and that n_neighbors <= rows; then
// builds the index. Errors are InvalidArgument naming the field.
absl::StatusOr<std::shared_ptr<const NeighborIndex>> CheckAndBuildIndex(
    const std::shared_ptr<const Matrix>& X, const NeighborsParams& params);

// InvalidArgument "y: expected <rows> <what> (one per row of X), got <y_size>" on a mismatch.
absl::Status CheckLabelCount(const Matrix& X, size_t y_size, const char* what);

// FailedPrecondition: "<estimator>: not fitted; call Fit first".
absl::Status NotFitted(const char* estimator);

// InvalidArgument when model.task != want.
absl::Status CheckTask(const Model& model, Model::Task want);

// Copies the training data into a shared matrix (Model owns its X; estimators share theirs).
std::shared_ptr<const Matrix> ShareMatrix(Matrix m);

}  // namespace estimator_internal
}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_ESTIMATORS_ESTIMATOR_INTERNAL_H_
