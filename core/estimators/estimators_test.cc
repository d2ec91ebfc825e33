#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/estimators/kneighbors_classifier.h"
#include "core/estimators/kneighbors_regressor.h"
#include "core/estimators/model_io.h"
#include "core/estimators/outlier_detector.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::shared_ptr<const Matrix> Column(std::vector<double> v) {
  const size_t n = v.size();
  return std::make_shared<const Matrix>(n, 1, std::move(v));
}

Matrix Queries(std::vector<double> v) {
  const size_t n = v.size();
  return Matrix(n, 1, std::move(v));
}

NeighborsParams Params(int k, Weights w = Weights::kUniform, Algorithm a = Algorithm::kAuto) {
  NeighborsParams p;
  p.n_neighbors = k;
  p.weights = w;
  p.algorithm = a;
  p.leaf_size = 2;
  return p;
}

// 1-D data with distance ties: 1.5 is 0.5 from rows 1 and 2 and 1.5 from rows 0 and 3.
const std::vector<double> kX = {0, 1, 2, 3, 10, 11, 12};
const std::vector<double> kY = {5, 5, -1, -1, 7, 7, 7};

TEST(KNeighborsClassifierTest, VotesWithTiesBrokenByTrainingIndex) {
  for (Algorithm a : {Algorithm::kBrute, Algorithm::kKdTree, Algorithm::kBallTree}) {
    KNeighborsClassifier clf(Params(3, Weights::kUniform, a));
    ASSERT_TRUE(clf.Fit(Column(kX), kY).ok());
    EXPECT_THAT(clf.classes(), ElementsAre(-1, 5, 7));
    EXPECT_THAT(clf.encoded_labels(), ElementsAre(1, 1, 0, 0, 2, 2, 2));
    // Query 1.5: rows 1 and 2 (0.5), then row 0 beats row 3 at 1.5 by its smaller index.
    absl::StatusOr<KNeighborsResult> nb = clf.KNeighbors(Queries({1.5}), std::nullopt, nullptr);
    ASSERT_TRUE(nb.ok());
    EXPECT_THAT(nb->indices, ElementsAre(1, 2, 0));
    EXPECT_THAT(nb->distances, ElementsAre(0.5, 0.5, 1.5));
    ThreadPool pool(2);
    absl::StatusOr<std::vector<double>> pred = clf.Predict(Queries({1.5, 2.6, 9, -4}), &pool);
    ASSERT_TRUE(pred.ok()) << pred.status();
    EXPECT_THAT(*pred, ElementsAre(5, -1, 7, 5));
    absl::StatusOr<Matrix> proba = clf.PredictProba(Queries({1.5, 9}), &pool);
    ASSERT_TRUE(proba.ok());
    EXPECT_THAT(proba->values(), ElementsAre(1.0 / 3, 2.0 / 3, 0.0, 0.0, 0.0, 1.0));
    EXPECT_EQ(*clf.Score(Queries({1.5, 2.6, 9, -4}), {5, 5, 7, 5}, &pool), 0.75);
    EXPECT_EQ(clf.index()->algorithm(), a);
  }
}

TEST(KNeighborsClassifierTest, DistanceWeightsAndExactMatches) {
  KNeighborsClassifier clf(Params(3, Weights::kDistance));
  ASSERT_TRUE(clf.Fit(Column(kX), kY).ok());
  // Query 2.9: row 3 (0.1, label -1), row 2 (0.9, -1), row 1 (1.9, 5).
  // Query 11: exactly row 5; only it votes.
  absl::StatusOr<Matrix> proba = clf.PredictProba(Queries({2.9, 11}), nullptr);
  ASSERT_TRUE(proba.ok());
  const double w0 = 1 / 0.1 + 1 / 0.9, w1 = 1 / (2.9 - 1);
  EXPECT_DOUBLE_EQ(proba->at(0, 0), w0 / (w0 + w1));
  EXPECT_THAT(std::vector<double>(proba->row(1), proba->row(1) + 3), ElementsAre(0, 0, 1));
  EXPECT_THAT(*clf.Predict(Queries({2.9, 11}), nullptr), ElementsAre(-1, 7));
}

TEST(KNeighborsClassifierTest, ClassNamesAreCodes) {
  KNeighborsClassifier clf(Params(1));
  ASSERT_TRUE(clf.Fit(Column({0, 1, 2}), {2, 0, 2}, {"ant", "bee", "cow"}).ok());
  EXPECT_THAT(clf.classes(), ElementsAre(0, 2));
  EXPECT_THAT(clf.class_names(), ElementsAre("ant", "bee", "cow"));
  absl::Status s = clf.Fit(Column({0, 1, 2}), {2, 0, 3}, {"ant", "bee", "cow"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("y[2]"));
  EXPECT_THAT(clf.classes(), ElementsAre(0, 2));  // a failed Fit changes nothing
}

TEST(KNeighborsClassifierTest, Errors) {
  KNeighborsClassifier clf(Params(3));
  const Matrix q = Queries({1});
  EXPECT_EQ(clf.Predict(q, nullptr).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(clf.PredictProba(q, nullptr).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(clf.Score(q, {1}, nullptr).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(clf.KNeighbors(q, 1, nullptr).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(clf.ToModel().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(clf.fitted());

  absl::Status s = clf.Fit(Column(kX), {5, 5, -1, -1, 7, 7});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "y: expected 7 labels (one per row of X), got 6");
  s = clf.Fit(Column(kX), {5, 5, -1.5, -1, 7, 7, 7});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("y[2]: class labels must be integers"));
  s = clf.Fit(Column(kX), {5, 5, NAN, -1, 7, 7, 7});
  EXPECT_THAT(std::string(s.message()), HasSubstr("y[2]"));
  s = clf.Fit(nullptr, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = KNeighborsClassifier(Params(8)).Fit(Column(kX), kY);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("n_neighbors"));
  s = KNeighborsClassifier(Params(0)).Fit(Column(kX), kY);
  EXPECT_THAT(std::string(s.message()), HasSubstr("n_neighbors"));
  NeighborsParams bad_p = Params(1);
  bad_p.p = 0.5;
  EXPECT_THAT(std::string(KNeighborsClassifier(bad_p).Fit(Column(kX), kY).message()),
              HasSubstr("p:"));
  EXPECT_THAT(std::string(KNeighborsClassifier(Params(1)).Fit(Column({0, NAN}), {0, 1}).message()),
              HasSubstr("X"));
  EXPECT_FALSE(clf.fitted());

  ASSERT_TRUE(clf.Fit(Column(kX), kY).ok());
  s = clf.KNeighbors(q, 8, nullptr).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("n_neighbors"));
  s = clf.Predict(Matrix(1, 2), nullptr).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("expected 1 features, got 2"));
  s = clf.Score(Queries({1, 2}), {5}, nullptr).status();
  EXPECT_EQ(s.message(), "y: expected 2 labels (one per row of X), got 1");
  s = clf.Predict(Queries({INFINITY}), nullptr).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST(KNeighborsRegressorTest, UniformAndDistanceWeightedMeans) {
  KNeighborsRegressor uniform(Params(3));
  ASSERT_TRUE(uniform.Fit(Column(kX), {1, 2, 3, 4, 10, 20, 30}).ok());
  // 1.5 -> rows 1, 2, 0: (2 + 3 + 1) / 3.
  EXPECT_THAT(*uniform.Predict(Queries({1.5, 11}), nullptr), ElementsAre(2.0, 20.0));
  KNeighborsRegressor distance(Params(2, Weights::kDistance));
  ASSERT_TRUE(distance.Fit(Column(kX), {1, 2, 3, 4, 10, 20, 30}).ok());
  // 2.75 -> row 3 (0.25, w 4, y 4), row 2 (0.75, w 4/3, y 3): (16 + 4) / (16/3).
  absl::StatusOr<std::vector<double>> pred = distance.Predict(Queries({2.75, 12}), nullptr);
  ASSERT_TRUE(pred.ok());
  EXPECT_DOUBLE_EQ((*pred)[0], 20 / (4 + 4.0 / 3));
  EXPECT_EQ((*pred)[1], 30.0);
  // Score is R^2; perfect on the training rows with k = 1.
  KNeighborsRegressor one(Params(1));
  ASSERT_TRUE(one.Fit(Column(kX), {1, 2, 3, 4, 10, 20, 30}).ok());
  EXPECT_EQ(*one.Score(*Column(kX), {1, 2, 3, 4, 10, 20, 30}, nullptr), 1.0);
}

TEST(KNeighborsRegressorTest, Errors) {
  KNeighborsRegressor reg(Params(2));
  EXPECT_EQ(reg.Predict(Queries({1}), nullptr).status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::Status s = reg.Fit(Column({1, 2, 3}), {1, 2});
  EXPECT_EQ(s.message(), "y: expected 3 targets (one per row of X), got 2");
  s = reg.Fit(Column({1, 2, 3}), {1, INFINITY, 2});
  EXPECT_THAT(std::string(s.message()), HasSubstr("y[1]"));
  s = KNeighborsRegressor(Params(4)).Fit(Column({1, 2, 3}), {1, 2, 3});
  EXPECT_THAT(std::string(s.message()), HasSubstr("n_neighbors"));
  ASSERT_TRUE(reg.Fit(Column({1, 2, 3}), {1.5, 2, 3}).ok());  // non-integer targets are fine
  EXPECT_EQ(reg.Score(Queries({1}), {1, 2}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(OutlierDetectorTest, ThresholdFromContaminationLeavesEachRowOut) {
  OutlierDetector det;  // n_neighbors = 1, contamination = 0.1
  ASSERT_TRUE(det.Fit(Column({0, 0, 1, 2, 10}), nullptr).ok());
  // Rows 0 and 1 are duplicates: each is the other's neighbour at distance 0.
  EXPECT_THAT(det.training_scores(), ElementsAre(0, 0, 1, 1, 8));
  // numpy.percentile([0, 0, 1, 1, 8], 100 * (1 - 0.1)).
  EXPECT_EQ(det.threshold(), 0x1.4cccccccccccep+2);
  EXPECT_THAT(*det.ScoreSamples(Queries({0.5, 5, 20}), nullptr), ElementsAre(0.5, 3, 10));
  EXPECT_THAT(*det.Predict(Queries({0.5, 5, 20, 10 + 0x1.4cccccccccccep+2}), nullptr),
              ElementsAre(1, 1, -1, 1));
}

TEST(OutlierDetectorTest, RowAbsentFromItsOwnNeighboursDropsTheLastEntry) {
  // Row 3's two nearest are rows 0 and 1 (distance 0, smaller indices): it is not among its own
  // k + 1 = 2 neighbours, and its score is still the distance to another copy, 0.
  OutlierParams params;
  params.contamination = 0.1;
  OutlierDetector det(params);
  ASSERT_TRUE(det.Fit(Column({0, 0, 0, 0, 5}), nullptr).ok());
  EXPECT_THAT(det.training_scores(), ElementsAre(0, 0, 0, 0, 5));
  EXPECT_EQ(det.threshold(), 0x1.8000000000001p+1);
  // k = 2 with a p = inf metric on 2-D data.
  params.neighbors.n_neighbors = 2;
  params.neighbors.p = std::numeric_limits<double>::infinity();
  params.contamination = 0.3;
  OutlierDetector det2(params);
  auto X = std::make_shared<const Matrix>(4, 2, std::vector<double>{0, 0, 1, 3, 4, 1, 9, 9});
  ASSERT_TRUE(det2.Fit(X, nullptr).ok());
  // Chebyshev distances: 0-1: 3, 0-2: 4, 0-3: 9, 1-2: 3, 1-3: 8, 2-3: 8.
  EXPECT_THAT(det2.training_scores(), ElementsAre(4, 3, 4, 8));
}

TEST(OutlierDetectorTest, ExplicitThresholdAndErrors) {
  OutlierParams params;
  params.threshold = 2.0;
  OutlierDetector det(params);
  EXPECT_EQ(det.Predict(Queries({1}), nullptr).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(det.Fit(Column({0, 10}), nullptr).ok());
  EXPECT_TRUE(det.training_scores().empty());
  EXPECT_THAT(*det.Predict(Queries({2, 2.5, 8}), nullptr), ElementsAre(1, -1, 1));

  for (double c : {0.0, -0.1, 0.5000001, 1.0, static_cast<double>(NAN)}) {
    OutlierParams bad;
    bad.contamination = c;
    absl::Status s = OutlierDetector(bad).Fit(Column({0, 1, 2}), nullptr);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c;
    EXPECT_THAT(std::string(s.message()), HasSubstr("contamination")) << c;
  }
  OutlierParams half;
  half.contamination = 0.5;
  EXPECT_TRUE(OutlierDetector(half).Fit(Column({0, 1, 2}), nullptr).ok());
  OutlierParams neg;
  neg.threshold = -1;
  EXPECT_THAT(std::string(OutlierDetector(neg).Fit(Column({0, 1}), nullptr).message()),
              HasSubstr("threshold"));
  OutlierParams k2;
  k2.neighbors.n_neighbors = 2;
  absl::Status s = OutlierDetector(k2).Fit(Column({0, 1}), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("n_neighbors"));
}

TEST(ModelRoundTripTest, EveryEstimatorRebuildsFromItsModelBytes) {
  ThreadPool pool(2);
  const Matrix q = Queries({-3, 0.4, 1.5, 2.6, 6.5, 11.2, 40});

  KNeighborsClassifier clf(Params(3, Weights::kDistance, Algorithm::kBallTree));
  ASSERT_TRUE(clf.Fit(Column(kX), kY, {}).ok());
  absl::StatusOr<Model> model = clf.ToModel();
  ASSERT_TRUE(model.ok());
  absl::StatusOr<Model> parsed = ParseModel(SerializeModel(*model), "<memory>");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<KNeighborsClassifier> clf2 = KNeighborsClassifier::FromModel(*parsed);
  ASSERT_TRUE(clf2.ok()) << clf2.status();
  EXPECT_EQ(clf2->index()->algorithm(), Algorithm::kBallTree);
  EXPECT_EQ(*clf2->Predict(q, &pool), *clf.Predict(q, &pool));
  EXPECT_EQ(clf2->PredictProba(q, &pool)->values(), clf.PredictProba(q, &pool)->values());
  EXPECT_EQ(KNeighborsRegressor::FromModel(*parsed).status().code(),
            absl::StatusCode::kInvalidArgument);

  KNeighborsRegressor reg(Params(2, Weights::kDistance));
  ASSERT_TRUE(reg.Fit(Column(kX), {0.1, 0.2, 0.3, 0.4, 1, 2, 3}).ok());
  parsed = ParseModel(SerializeModel(*reg.ToModel()), "<memory>");
  ASSERT_TRUE(parsed.ok());
  absl::StatusOr<KNeighborsRegressor> reg2 = KNeighborsRegressor::FromModel(*parsed);
  ASSERT_TRUE(reg2.ok());
  EXPECT_EQ(*reg2->Predict(q, &pool), *reg.Predict(q, &pool));

  OutlierDetector det;
  ASSERT_TRUE(det.Fit(Column(kX), &pool).ok());
  parsed = ParseModel(SerializeModel(*det.ToModel()), "<memory>");
  ASSERT_TRUE(parsed.ok());
  ASSERT_TRUE(parsed->threshold.has_value());
  EXPECT_EQ(*parsed->threshold, det.threshold());
  absl::StatusOr<OutlierDetector> det2 = OutlierDetector::FromModel(*parsed, &pool);
  ASSERT_TRUE(det2.ok()) << det2.status();
  EXPECT_EQ(det2->threshold(), det.threshold());
  EXPECT_EQ(*det2->Predict(q, &pool), *det.Predict(q, &pool));
  EXPECT_EQ(KNeighborsClassifier::FromModel(*parsed).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace knncluster
