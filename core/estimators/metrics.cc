#include "core/estimators/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/estimators/voting.h"

namespace knncluster {

namespace {

absl::Status CheckLengths(absl::Span<const double> y_true, absl::Span<const double> y_pred) {
  if (y_true.empty()) return absl::InvalidArgumentError("y_true: no samples");
  if (y_pred.size() != y_true.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("y_pred: expected %d values (one per element of y_true), got %d",
                        y_true.size(), y_pred.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckIntegerLabels(absl::Span<const double> y, const char* name) {
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i]) || y[i] != std::floor(y[i])) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s[%d]: classification metrics need integer class labels, got %g", name, i, y[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckFiniteValues(absl::Span<const double> y, const char* name) {
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s[%d]: value %g is not finite", name, i, y[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckClassification(absl::Span<const double> y_true, absl::Span<const double> y_pred) {
  KNN_RETURN_IF_ERROR(CheckLengths(y_true, y_pred));
  KNN_RETURN_IF_ERROR(CheckIntegerLabels(y_true, "y_true"));
  return CheckIntegerLabels(y_pred, "y_pred");
}

absl::Status CheckRegression(absl::Span<const double> y_true, absl::Span<const double> y_pred) {
  KNN_RETURN_IF_ERROR(CheckLengths(y_true, y_pred));
  KNN_RETURN_IF_ERROR(CheckFiniteValues(y_true, "y_true"));
  return CheckFiniteValues(y_pred, "y_pred");
}

// ConfusionMatrix without input checks.
ConfusionMatrixResult Confusion(absl::Span<const double> y_true, absl::Span<const double> y_pred) {
  ConfusionMatrixResult cm;
  cm.labels.assign(y_true.begin(), y_true.end());
  cm.labels.insert(cm.labels.end(), y_pred.begin(), y_pred.end());
  std::sort(cm.labels.begin(), cm.labels.end());
  cm.labels.erase(std::unique(cm.labels.begin(), cm.labels.end()), cm.labels.end());
  const size_t c = cm.labels.size();
  cm.counts.assign(c * c, 0);
  auto code = [&](double v) {
    return static_cast<size_t>(std::lower_bound(cm.labels.begin(), cm.labels.end(), v) -
                               cm.labels.begin());
  };
  for (size_t i = 0; i < y_true.size(); ++i) ++cm.counts[code(y_true[i]) * c + code(y_pred[i])];
  return cm;
}

// np.mean of a vector: the numpy sum divided by the count.
double NumpyMean(absl::Span<const double> v) { return NumpySum(v) / static_cast<double>(v.size()); }

// Σ (a_i - b_i)^2 in numpy's order.
double SumSquaredDiff(absl::Span<const double> a, absl::Span<const double> b) {
  std::vector<double> sq(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - b[i];
    sq[i] = d * d;
  }
  return NumpySum(sq);
}

}  // namespace

absl::StatusOr<double> AccuracyScore(absl::Span<const double> y_true,
                                     absl::Span<const double> y_pred) {
  KNN_RETURN_IF_ERROR(CheckClassification(y_true, y_pred));
  size_t correct = 0;
  for (size_t i = 0; i < y_true.size(); ++i) correct += y_true[i] == y_pred[i] ? 1 : 0;
  return static_cast<double>(correct) / static_cast<double>(y_true.size());
}

absl::StatusOr<double> BalancedAccuracyScore(absl::Span<const double> y_true,
                                             absl::Span<const double> y_pred) {
  KNN_RETURN_IF_ERROR(CheckClassification(y_true, y_pred));
  const ConfusionMatrixResult cm = Confusion(y_true, y_pred);
  const size_t c = cm.size();
  // per_class = diag(C) / C.sum(axis=1), dropping the NaNs of classes absent from y_true.
  std::vector<double> per_class;
  for (size_t i = 0; i < c; ++i) {
    int64_t row = 0;
    for (size_t j = 0; j < c; ++j) row += cm.at(i, j);
    if (row == 0) continue;
    per_class.push_back(static_cast<double>(cm.at(i, i)) / static_cast<double>(row));
  }
  return NumpyMean(per_class);
}

absl::StatusOr<double> F1ScoreMacro(absl::Span<const double> y_true,
                                    absl::Span<const double> y_pred) {
  KNN_RETURN_IF_ERROR(CheckClassification(y_true, y_pred));
  const ConfusionMatrixResult cm = Confusion(y_true, y_pred);
  const size_t c = cm.size();
  std::vector<double> f1(c);
  for (size_t l = 0; l < c; ++l) {
    int64_t true_sum = 0, pred_sum = 0;
    for (size_t j = 0; j < c; ++j) {
      true_sum += cm.at(l, j);
      pred_sum += cm.at(j, l);
    }
    const double tp = static_cast<double>(cm.at(l, l));
    // _prf_divide: 0 where the denominator is 0.
    const double precision = pred_sum == 0 ? 0.0 : tp / static_cast<double>(pred_sum);
    const double recall = true_sum == 0 ? 0.0 : tp / static_cast<double>(true_sum);
    // beta = 1: denom = beta2 * precision + recall; f = (1 + beta2) * precision * recall / denom.
    double denom = 1.0 * precision + recall;
    if (denom == 0.0) denom = 1;
    f1[l] = 2.0 * precision * recall / denom;
  }
  return NumpyMean(f1);
}

absl::StatusOr<ConfusionMatrixResult> ConfusionMatrix(absl::Span<const double> y_true,
                                                      absl::Span<const double> y_pred) {
  KNN_RETURN_IF_ERROR(CheckClassification(y_true, y_pred));
  return Confusion(y_true, y_pred);
}

absl::StatusOr<double> R2Score(absl::Span<const double> y_true, absl::Span<const double> y_pred) {
  KNN_RETURN_IF_ERROR(CheckRegression(y_true, y_pred));
  if (y_true.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  const double numerator = SumSquaredDiff(y_true, y_pred);
  const std::vector<double> mean(y_true.size(), NumpyMean(y_true));
  const double denominator = SumSquaredDiff(y_true, mean);
  if (numerator == 0) return 1.0;    // perfect predictions, even for a constant y_true
  if (denominator == 0) return 0.0;  // imperfect predictions of a constant y_true
  return 1 - numerator / denominator;
}

absl::StatusOr<double> MeanSquaredError(absl::Span<const double> y_true,
                                        absl::Span<const double> y_pred) {
  KNN_RETURN_IF_ERROR(CheckRegression(y_true, y_pred));
  return SumSquaredDiff(y_true, y_pred) / static_cast<double>(y_true.size());
}

}  // namespace knncluster
