#include "core/estimators/kneighbors_classifier.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/estimators/estimator_internal.h"
#include "core/estimators/metrics.h"
#include "core/estimators/voting.h"

namespace knncluster {

namespace {
constexpr char kName[] = "KNeighborsClassifier";
}  // namespace

absl::Status KNeighborsClassifier::Fit(std::shared_ptr<const Matrix> X, std::vector<double> y,
                                       std::vector<std::string> class_names) {
  KNN_RETURN_IF_ERROR(params_.Validate());
  if (X == nullptr || X->rows() == 0) {
    return absl::InvalidArgumentError("X: the training data has no rows");
  }
  KNN_RETURN_IF_ERROR(estimator_internal::CheckLabelCount(*X, y.size(), "labels"));
  KNN_ASSIGN_OR_RETURN(EncodedLabels encoded, EncodeClassLabels(y, class_names.size()));
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const NeighborIndex> index,
                       estimator_internal::CheckAndBuildIndex(X, params_));
  X_ = std::move(X);
  y_ = std::move(y);
  classes_ = std::move(encoded.classes);
  codes_ = std::move(encoded.codes);
  class_names_ = std::move(class_names);
  index_ = std::move(index);
  return absl::OkStatus();
}

absl::StatusOr<KNeighborsResult> KNeighborsClassifier::KNeighbors(MatrixView X,
                                                                  std::optional<int> k,
                                                                  ThreadPool* pool) const {
  if (!fitted()) return estimator_internal::NotFitted(kName);
  return index_->KNeighbors(X, k.value_or(params_.n_neighbors), pool);
}

absl::StatusOr<std::vector<double>> KNeighborsClassifier::Predict(MatrixView X,
                                                                  ThreadPool* pool) const {
  KNN_ASSIGN_OR_RETURN(KNeighborsResult neighbors, KNeighbors(X, std::nullopt, pool));
  KNN_ASSIGN_OR_RETURN(std::vector<int32_t> codes,
                       VoteClassBatch(neighbors, codes_, static_cast<int32_t>(classes_.size()),
                                      params_.weights, pool));
  std::vector<double> labels(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) labels[i] = classes_[static_cast<size_t>(codes[i])];
  return labels;
}

absl::StatusOr<Matrix> KNeighborsClassifier::PredictProba(MatrixView X, ThreadPool* pool) const {
  KNN_ASSIGN_OR_RETURN(KNeighborsResult neighbors, KNeighbors(X, std::nullopt, pool));
  return ClassProbabilitiesBatch(neighbors, codes_, static_cast<int32_t>(classes_.size()),
                                 params_.weights, pool);
}

absl::StatusOr<double> KNeighborsClassifier::Score(MatrixView X, absl::Span<const double> y,
                                                   ThreadPool* pool) const {
  if (!fitted()) return estimator_internal::NotFitted(kName);
  if (y.size() != X.rows()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("y: expected %d labels (one per row of X), got %d", X.rows(), y.size()));
  }
  KNN_ASSIGN_OR_RETURN(std::vector<double> predicted, Predict(X, pool));
  return AccuracyScore(y, predicted);
}

absl::StatusOr<Model> KNeighborsClassifier::ToModel() const {
  if (!fitted()) return estimator_internal::NotFitted(kName);
  Model model;
  model.task = Model::Task::kClassifier;
  model.params = params_;
  model.X = *X_;
  model.y = y_;
  model.class_names = class_names_;
  return model;
}

absl::StatusOr<KNeighborsClassifier> KNeighborsClassifier::FromModel(Model model) {
  KNN_RETURN_IF_ERROR(estimator_internal::CheckTask(model, Model::Task::kClassifier));
  KNeighborsClassifier classifier(model.params);
  KNN_RETURN_IF_ERROR(classifier.Fit(estimator_internal::ShareMatrix(std::move(model.X)),
                                     std::move(model.y), std::move(model.class_names)));
  return classifier;
}

}  // namespace knncluster
