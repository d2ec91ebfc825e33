// Expected values are scikit-learn 1.2.1's, printed with float.hex() and compared exactly.
#include "core/estimators/metrics.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Label 4 is only predicted: it is in the confusion matrix and the F1 macro average, and skipped
// by balanced accuracy.
const std::vector<double> kTrueA = {0, 1, 2, 2, 1, 0, 3, 3, 3, 1};
const std::vector<double> kPredA = {0, 2, 2, 2, 1, 0, 3, 1, 3, 4};

TEST(MetricsTest, ClassificationMatchesScikitLearnOnASmallCase) {
  EXPECT_EQ(*AccuracyScore(kTrueA, kPredA), 0x1.6666666666666p-1);
  EXPECT_EQ(*BalancedAccuracyScore(kTrueA, kPredA), 0x1.7ffffffffffffp-1);
  EXPECT_EQ(*F1ScoreMacro(kTrueA, kPredA), 0x1.3333333333333p-1);
  absl::StatusOr<ConfusionMatrixResult> cm = ConfusionMatrix(kTrueA, kPredA);
  ASSERT_TRUE(cm.ok()) << cm.status();
  EXPECT_THAT(cm->labels, ElementsAre(0, 1, 2, 3, 4));
  EXPECT_THAT(cm->counts, ElementsAre(2, 0, 0, 0, 0,  //
                                      0, 1, 1, 0, 1,  //
                                      0, 0, 2, 0, 0,  //
                                      0, 1, 0, 2, 0,  //
                                      0, 0, 0, 0, 0));
  EXPECT_EQ(cm->at(1, 4), 1);
}

// 13 labels (-3..9, 9 only predicted), so the means over labels use numpy's pairwise order.
TEST(MetricsTest, ClassificationMatchesScikitLearnWithManyNegativeLabels) {
  std::vector<double> y_true, y_pred;
  for (int64_t i = 0; i < 500; ++i) {
    const int64_t t = (i * 7 + i * i) % 12 - 3;
    int64_t p = i % 5 == 0 ? (i * 3) % 12 - 3 : t;
    if (i % 7 == 0) p = (i * 11 + 5) % 13 - 3;
    y_true.push_back(static_cast<double>(t));
    y_pred.push_back(static_cast<double>(p));
  }
  EXPECT_EQ(*AccuracyScore(y_true, y_pred), 0x1.7df3b645a1cacp-1);
  EXPECT_EQ(*BalancedAccuracyScore(y_true, y_pred), 0x1.769fc3bebb650p-1);
  EXPECT_EQ(*F1ScoreMacro(y_true, y_pred), 0x1.000e0246256b1p-2);
  absl::StatusOr<ConfusionMatrixResult> cm = ConfusionMatrix(y_true, y_pred);
  ASSERT_TRUE(cm.ok());
  EXPECT_THAT(cm->labels, ElementsAre(-3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
  EXPECT_EQ(std::vector<int64_t>(cm->counts.begin(), cm->counts.begin() + 13),
            std::vector<int64_t>({128, 1, 2, 16, 1, 2, 2, 3, 2, 2, 3, 2, 2}));
}

TEST(MetricsTest, RegressionMatchesScikitLearn) {
  EXPECT_EQ(*R2Score({3, -0.5, 2, 7}, {2.5, 0.0, 2, 8}), 0x1.e5aff73aa7be4p-1);
  EXPECT_EQ(*MeanSquaredError({3, -0.5, 2, 7}, {2.5, 0.0, 2, 8}), 0.375);
  // Generated data; at n = 20000 numpy sums in 8192-element chunks.
  struct Case {
    int64_t n;
    double r2, mse;
  };
  for (const Case& c : {Case{10, 0x1.ffd376d0e4fd5p-1, 0x1.0a9cbc14e5e25p+5},
                        Case{1000, 0x1.ffe527ba9f743p-1, 0x1.130f41691de26p+4},
                        Case{20000, 0x1.ffe4d80d4abf6p-1, 0x1.15ecceac2626cp+4}}) {
    std::vector<double> y_true, y_pred;
    for (int64_t i = 0; i < c.n; ++i) {
      const double t = static_cast<double>((i * 2654435761LL) % 1000003) / 997.0;
      y_true.push_back(t);
      y_pred.push_back(t + static_cast<double>((i * 40503) % 101) / 7.0 - 7.0);
    }
    EXPECT_EQ(*R2Score(y_true, y_pred), c.r2) << c.n;
    EXPECT_EQ(*MeanSquaredError(y_true, y_pred), c.mse) << c.n;
  }
}

TEST(MetricsTest, R2EdgeCasesFollowScikitLearn) {
  EXPECT_EQ(*R2Score({2, 2, 2}, {2, 2, 2}), 1.0);         // constant and perfect
  EXPECT_EQ(*R2Score({2, 2, 2}, {2, 2, 2 + 1e-8}), 0.0);  // constant, imperfect
  EXPECT_TRUE(std::isnan(*R2Score({1.0}, {2.0})));        // fewer than two samples
}

TEST(MetricsTest, BadInputsNameTheArgument) {
  absl::Status s = AccuracyScore({1, 2, 3}, {1, 2}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("y_pred: expected 3 values"));
  s = R2Score({1, 2, 3}, {1, 2, 3, 4}).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("y_pred: expected 3 values"));
  EXPECT_EQ(F1ScoreMacro({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  s = BalancedAccuracyScore({1, 2.5}, {1, 2}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("y_true[1]"));
  s = ConfusionMatrix({1, 2}, {1, NAN}).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("y_pred[1]"));
  s = MeanSquaredError({1, INFINITY}, {1, 2}).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("y_true[1]"));
}

}  // namespace
}  // namespace knncluster
