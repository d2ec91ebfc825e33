// KNeighborsClassifier: scikit-learn 1.2's KNeighborsClassifier over an exact NeighborIndex.
// Fit stores the training data and builds the index; Predict / PredictProba find each query's
// k nearest training rows (ties broken by the smaller training index, top_k.h) and vote with the
// rules of voting.h, which reproduce scikit-learn's bit for bit.
//
// Labels: any integer-valued doubles (negative allowed). classes() is their sorted unique set;
// PredictProba's columns follow it, and Predict returns values from it. When Fit is given
// class_names, labels are codes into class_names (0 <= y[i] < class_names.size()), as
// core/datasets encodes string labels; class_names() then names code c, and classes() holds the
// codes actually present.
//
// Ownership: shares the training matrix (shared_ptr<const Matrix>) with the index and with the
// caller; owns its labels. Copies are cheap and share the immutable index.
// Thread safety: after Fit, the const methods may be called from any number of threads at once.
// Fit (and assignment) need exclusive access.
#ifndef KNNCLUSTER_CORE_ESTIMATORS_KNEIGHBORS_CLASSIFIER_H_
#define KNNCLUSTER_CORE_ESTIMATORS_KNEIGHBORS_CLASSIFIER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
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

class KNeighborsClassifier {
 public:
  explicit KNeighborsClassifier(NeighborsParams params = {}) : params_(params) {}

  // Fits on X (n x d, finite) and labels y (n integer-valued doubles). Errors (InvalidArgument,
  // naming the field): invalid params; X null or empty or non-finite; y.size() != n; a label
  // that is not an integer ("y[3]: ..."); a label outside class_names when those are given;
  // n_neighbors > n. On error the estimator is left as it was.
  absl::Status Fit(std::shared_ptr<const Matrix> X, std::vector<double> y,
                   std::vector<std::string> class_names = {});

  // The predicted label (a value of classes()) of each row of X.
  // FailedPrecondition when not fitted; InvalidArgument when X has the wrong number of features
  // or non-finite values.
  absl::StatusOr<std::vector<double>> Predict(MatrixView X, ThreadPool* pool) const;
  // n x classes().size() class probabilities, columns in classes() order.
  absl::StatusOr<Matrix> PredictProba(MatrixView X, ThreadPool* pool) const;
  // Mean accuracy of Predict(X) against y. InvalidArgument when y.size() != X.rows().
  absl::StatusOr<double> Score(MatrixView X, absl::Span<const double> y, ThreadPool* pool) const;
  // The k nearest training rows of each row of X (k defaults to n_neighbors); InvalidArgument
  // naming n_neighbors when k < 1 or k > the number of training rows.
  absl::StatusOr<KNeighborsResult> KNeighbors(MatrixView X, std::optional<int> k,
                                              ThreadPool* pool) const;

  const NeighborsParams& params() const { return params_; }
  bool fitted() const { return index_ != nullptr; }
  // Sorted unique training labels (empty until fitted).
  const std::vector<double>& classes() const { return classes_; }
  const std::vector<std::string>& class_names() const { return class_names_; }
  // The training data and labels as given to Fit.
  const std::shared_ptr<const Matrix>& training_data() const { return X_; }
  const std::vector<double>& training_labels() const { return y_; }
  // training_labels() encoded as indices into classes().
  const std::vector<int32_t>& encoded_labels() const { return codes_; }
  const std::shared_ptr<const NeighborIndex>& index() const { return index_; }

  // The model to save (task kClassifier, params, a copy of X, y, class_names). Callers may add
  // feature_names and dataset_name. FailedPrecondition when not fitted.
  absl::StatusOr<Model> ToModel() const;
  // Refits from a model (rebuilding the index). InvalidArgument when the model is not a
  // classifier or does not fit (same checks as Fit).
  static absl::StatusOr<KNeighborsClassifier> FromModel(Model model);

 private:
  NeighborsParams params_;
  std::shared_ptr<const Matrix> X_;
  std::vector<double> y_;
  std::vector<double> classes_;
  std::vector<int32_t> codes_;
  std::vector<std::string> class_names_;
  std::shared_ptr<const NeighborIndex> index_;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_ESTIMATORS_KNEIGHBORS_CLASSIFIER_H_
