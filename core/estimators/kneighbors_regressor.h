// KNeighborsRegressor: scikit-learn 1.2's KNeighborsRegressor over an exact NeighborIndex.
// Predict averages the targets of each query's k nearest training rows (ties broken by the smaller
// training index, top_k.h) with the rule of voting.h: the mean for uniform weights, the
// 1/distance-weighted mean for distance weights (exact training matches outweigh everything).
//
// Ownership: shares the training matrix with the index and the caller; owns its targets. Copies
// are cheap and share the immutable index.
// Thread safety: after Fit, the const methods may be called from any number of threads at once.
// Fit (and assignment) need exclusive access.
#ifndef KNNCLUSTER_CORE_ESTIMATORS_KNEIGHBORS_REGRESSOR_H_
#define KNNCLUSTER_CORE_ESTIMATORS_KNEIGHBORS_REGRESSOR_H_

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

class KNeighborsRegressor {
 public:
  explicit KNeighborsRegressor(NeighborsParams params = {}) : params_(params) {}

  // Fits on X (n x d, finite) and targets y (n finite doubles). Errors (InvalidArgument, naming
  // the field): invalid params; X null, empty or non-finite; y.size() != n; a non-finite target;
  // n_neighbors > n. On error the estimator is left as it was.
  absl::Status Fit(std::shared_ptr<const Matrix> X, std::vector<double> y);

  // The predicted target of each row of X. FailedPrecondition when not fitted; InvalidArgument
  // when X has the wrong number of features or non-finite values.
  absl::StatusOr<std::vector<double>> Predict(MatrixView X, ThreadPool* pool) const;
  // R² of Predict(X) against y (R2Score, metrics.h). InvalidArgument when y.size() != X.rows().
  absl::StatusOr<double> Score(MatrixView X, absl::Span<const double> y, ThreadPool* pool) const;
  // The k nearest training rows of each row of X (k defaults to n_neighbors).
  absl::StatusOr<KNeighborsResult> KNeighbors(MatrixView X, std::optional<int> k,
                                              ThreadPool* pool) const;

  const NeighborsParams& params() const { return params_; }
  bool fitted() const { return index_ != nullptr; }
  const std::shared_ptr<const Matrix>& training_data() const { return X_; }
  const std::vector<double>& training_targets() const { return y_; }
  const std::shared_ptr<const NeighborIndex>& index() const { return index_; }

  // The model to save (task kRegressor). FailedPrecondition when not fitted.
  absl::StatusOr<Model> ToModel() const;
  // Refits from a model; InvalidArgument when it is not a regressor or does not fit.
  static absl::StatusOr<KNeighborsRegressor> FromModel(Model model);

 private:
  NeighborsParams params_;
  std::shared_ptr<const Matrix> X_;
  std::vector<double> y_;
  std::shared_ptr<const NeighborIndex> index_;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_ESTIMATORS_KNEIGHBORS_REGRESSOR_H_
