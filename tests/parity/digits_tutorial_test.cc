// The digits tutorial's acceptance numbers: load digits, split 80/20 with random_state 1337
// exactly as scikit-learn's train_test_split, fit KNeighborsClassifier(n_neighbors=20, p=2) with
// each algorithm, and score 349/360 correct on the test set, which is what scikit-learn 1.2.1
// scores. A model saved and loaded through a real file predicts the same labels.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/thread_pool.h"
#include "core/datasets/dataset.h"
#include "core/estimators/kneighbors_classifier.h"
#include "core/estimators/metrics.h"
#include "core/estimators/model_io.h"
#include "core/model_selection/split.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

struct DigitsSplit {
  std::shared_ptr<const Matrix> X_train;
  std::vector<double> y_train;
  Matrix X_test;
  std::vector<double> y_test;
};

DigitsSplit LoadSplit() {
  absl::StatusOr<Dataset> digits = LoadDigits();
  EXPECT_TRUE(digits.ok()) << digits.status();
  if (!digits.ok()) return {};
  EXPECT_EQ(digits->size(), 1797u);
  absl::StatusOr<TrainTestIndices> split = TrainTestSplit(1797, TestSize::Fraction(0.2), 1337u);
  EXPECT_TRUE(split.ok()) << split.status();
  if (!split.ok()) return {};
  DigitsSplit s;
  s.X_train = std::make_shared<const Matrix>(Matrix::Gather(digits->features, split->train));
  s.X_test = Matrix::Gather(digits->features, split->test);
  for (int64_t i : split->train) s.y_train.push_back(digits->targets[static_cast<size_t>(i)]);
  for (int64_t i : split->test) s.y_test.push_back(digits->targets[static_cast<size_t>(i)]);
  return s;
}

TEST(DigitsTutorialTest, AccuracyIs349Of360WithEveryAlgorithm) {
  const DigitsSplit s = LoadSplit();
  ASSERT_EQ(s.y_train.size(), 1437u);
  ASSERT_EQ(s.y_test.size(), 360u);
  ThreadPool pool(4);
  std::vector<double> first;
  for (Algorithm a : {Algorithm::kKdTree, Algorithm::kBallTree, Algorithm::kBrute}) {
    NeighborsParams params;
    params.n_neighbors = 20;
    params.p = 2;
    params.algorithm = a;
    KNeighborsClassifier clf(params);
    ASSERT_TRUE(clf.Fit(s.X_train, s.y_train).ok());
    absl::StatusOr<double> score = clf.Score(s.X_test, s.y_test, &pool);
    ASSERT_TRUE(score.ok()) << score.status();
    EXPECT_EQ(*score, 349.0 / 360) << AlgorithmName(a);
    EXPECT_EQ(*score, 0.9694444444444444) << AlgorithmName(a);
    absl::StatusOr<std::vector<double>> predicted = clf.Predict(s.X_test, &pool);
    ASSERT_TRUE(predicted.ok());
    if (first.empty()) first = *predicted;
    EXPECT_EQ(*predicted, first) << AlgorithmName(a) << " disagrees with kd_tree";
  }
}

TEST(DigitsTutorialTest, SavedModelPredictsIdentically) {
  const DigitsSplit s = LoadSplit();
  ASSERT_EQ(s.y_train.size(), 1437u);
  ThreadPool pool(4);
  NeighborsParams params;
  params.n_neighbors = 20;
  params.weights = Weights::kDistance;
  KNeighborsClassifier clf(params);
  ASSERT_TRUE(clf.Fit(s.X_train, s.y_train).ok());
  absl::StatusOr<Model> model = clf.ToModel();
  ASSERT_TRUE(model.ok());
  model->dataset_name = "digits";
  const std::string path =
      absl::StrCat(::testing::TempDir(), "digits_tutorial_", static_cast<long>(getpid()), ".knn");
  ASSERT_TRUE(SaveModel(path, *model).ok());
  absl::StatusOr<Model> loaded = LoadModel(path);
  std::remove(path.c_str());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->dataset_name, "digits");
  absl::StatusOr<KNeighborsClassifier> clf2 = KNeighborsClassifier::FromModel(*std::move(loaded));
  ASSERT_TRUE(clf2.ok()) << clf2.status();
  EXPECT_EQ(*clf2->Predict(s.X_test, &pool), *clf.Predict(s.X_test, &pool));
  EXPECT_EQ(clf2->PredictProba(s.X_test, &pool)->values(),
            clf.PredictProba(s.X_test, &pool)->values());
}

}  // namespace
}  // namespace knncluster
