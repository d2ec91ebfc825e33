// Evaluation metrics with scikit-learn 1.2.1's formulas, floating-point order and edge cases:
// accuracy_score, balanced_accuracy_score, f1_score(average="macro"), confusion_matrix,
// r2_score and mean_squared_error (no sample weights, single output). Sums use numpy's pairwise
// order (NumpySum, voting.h), so results match scikit-learn to the last bit.
//
// Classification metrics take labels as doubles that must be finite integers (as the classifier
// predicts them); scikit-learn rejects a continuous y_true/y_pred too. Their label set is the
// sorted union of y_true and y_pred (sklearn.utils.multiclass.unique_labels).
//
// Errors (InvalidArgument, naming the argument): y_pred's length differs from y_true's; empty
// inputs; a non-integer label; a non-finite regression value.
//
// Thread safety: pure functions.
#ifndef KNNCLUSTER_CORE_ESTIMATORS_METRICS_H_
#define KNNCLUSTER_CORE_ESTIMATORS_METRICS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace knncluster {

// Fraction of exact matches: correct / n.
absl::StatusOr<double> AccuracyScore(absl::Span<const double> y_true,
                                     absl::Span<const double> y_pred);

// Mean over the classes present in y_true of recall (diag / row sum of the confusion matrix);
// classes only predicted are skipped, as scikit-learn does (with a warning there).
absl::StatusOr<double> BalancedAccuracyScore(absl::Span<const double> y_true,
                                             absl::Span<const double> y_pred);

// Unweighted mean over all labels of F1 = 2PR / (P + R); an undefined precision, recall or F1
// counts as 0 (scikit-learn's zero_division="warn" value).
absl::StatusOr<double> F1ScoreMacro(absl::Span<const double> y_true,
                                    absl::Span<const double> y_pred);

struct ConfusionMatrixResult {
  std::vector<double> labels;   // sorted union of y_true and y_pred
  std::vector<int64_t> counts;  // labels.size()^2, row-major: [true label][predicted label]

  size_t size() const { return labels.size(); }
  int64_t at(size_t true_index, size_t pred_index) const {
    return counts[true_index * labels.size() + pred_index];
  }
};
absl::StatusOr<ConfusionMatrixResult> ConfusionMatrix(absl::Span<const double> y_true,
                                                      absl::Span<const double> y_pred);

// Coefficient of determination, 1 - SS_res / SS_tot. As scikit-learn (force_finite=True): 1.0
// when SS_res == 0; 0.0 when SS_res != 0 but y_true is constant; NaN with fewer than 2 samples.
absl::StatusOr<double> R2Score(absl::Span<const double> y_true, absl::Span<const double> y_pred);

// mean((y_true - y_pred)^2).
absl::StatusOr<double> MeanSquaredError(absl::Span<const double> y_true,
                                        absl::Span<const double> y_pred);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_ESTIMATORS_METRICS_H_
