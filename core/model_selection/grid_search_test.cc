#include "core/model_selection/grid_search.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/datasets/dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

struct CanonicalRow {
  int n_neighbors;
  double p;
  double mean;
  std::vector<double> splits;
};

// tests/data/reference/digits_gridsearch_canonical.csv: scikit-learn 1.2.1's cv_results_ for the
// tutorial grid on digits, with scores under the (distance, training index) tie rule.
std::vector<CanonicalRow> ReadCanonical() {
  std::ifstream in(std::string(KNN_TEST_DATA_DIR) + "/reference/digits_gridsearch_canonical.csv");
  std::vector<CanonicalRow> rows;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<std::string> f = absl::StrSplit(line, ',');
    CanonicalRow r;
    double v;
    EXPECT_TRUE(absl::SimpleAtoi(f[0], &r.n_neighbors));
    EXPECT_TRUE(absl::SimpleAtod(f[1], &r.p));
    EXPECT_TRUE(absl::SimpleAtod(f[2], &r.mean));
    for (int i = 3; i < 8; ++i) {
      EXPECT_TRUE(absl::SimpleAtod(f[i], &v));
      r.splits.push_back(v);
    }
    rows.push_back(r);
  }
  return rows;
}

GridSearchOptions TutorialGrid() {
  GridSearchOptions o;
  o.base.algorithm = Algorithm::kKdTree;
  ParamGrid g;
  for (int k = 2; k < 20; k += 2) g.n_neighbors.push_back(k);
  g.p = {1, 2, 3};
  o.param_grid = {g};
  o.cv = 5;
  return o;
}

TEST(GridSearchTest, TutorialGridMatchesScikitLearnCvResultsExactly) {
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  auto X = std::make_shared<const Matrix>(digits->features);
  ThreadPool pool(2);
  auto result = GridSearchCV(X, digits->targets, TutorialGrid(), &pool);
  ASSERT_TRUE(result.ok()) << result.status();
  const CvResults& cv = result->cv_results;
  const std::vector<CanonicalRow> want = ReadCanonical();
  ASSERT_EQ(want.size(), 27u);
  ASSERT_EQ(cv.params.size(), 27u);
  for (size_t c = 0; c < want.size(); ++c) {
    SCOPED_TRACE(c);
    EXPECT_EQ(cv.params[c].n_neighbors, want[c].n_neighbors);
    EXPECT_EQ(cv.params[c].p, want[c].p);
    EXPECT_EQ(cv.split_test_scores[c], want[c].splits);  // exact doubles
    EXPECT_EQ(cv.mean_test_score[c], want[c].mean);
  }
  EXPECT_EQ(cv.best_index, 1u);
  EXPECT_EQ(cv.best_params.n_neighbors, 2);
  EXPECT_EQ(cv.best_params.p, 2);
  EXPECT_EQ(cv.best_score, 0.9671711544413494);
  EXPECT_EQ(cv.rank_test_score[1], 1);
  // 5 folds x 3 values of p: one neighbour search each, scoring all 9 n_neighbors from it.
  EXPECT_EQ(cv.neighbor_searches, 15);

  // The refit best estimator, scored on the tutorial's test split (as the tutorial does).
  ASSERT_TRUE(result->best_classifier.has_value());
  auto split = TrainTestSplit(1797, TestSize::Fraction(0.2), 1337);
  ASSERT_TRUE(split.ok());
  Matrix X_test = Matrix::Gather(*X, split->test);
  std::vector<double> y_test;
  for (int64_t i : split->test) y_test.push_back(digits->targets[i]);
  auto acc = result->best_classifier->Score(X_test, y_test, &pool);
  ASSERT_TRUE(acc.ok());
  EXPECT_EQ(*acc, 0.9833333333333333);
}

TEST(GridSearchTest, ParameterGridOrderIsSortedKeysLastFastest) {
  ParamGrid g;
  g.weights = {"uniform", "distance"};
  g.n_neighbors = {3, 1};
  g.algorithm = {"brute"};
  ParamGrid g2;
  g2.p = {1};
  auto c = ExpandParamGrid(std::vector<ParamGrid>{g, g2}, NeighborsParams{});
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->size(), 5u);
  EXPECT_EQ((*c)[0].n_neighbors, 3);
  EXPECT_EQ((*c)[0].weights, Weights::kUniform);
  EXPECT_EQ((*c)[1].n_neighbors, 3);
  EXPECT_EQ((*c)[1].weights, Weights::kDistance);
  EXPECT_EQ((*c)[2].n_neighbors, 1);
  EXPECT_EQ((*c)[4].p, 1);
  EXPECT_EQ((*c)[4].n_neighbors, 5);  // the base value
  ParamGrid bad;
  bad.n_neighbors = {0};
  auto e = ExpandParamGrid(std::vector<ParamGrid>{bad}, NeighborsParams{});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("param_grid[0]"), std::string::npos) << e.status();
}

// Regression (fuzz_requests): a 4 KB StartGridSearch request whose grid multiplies 400 values of
// three parameters asked for 64 million candidates, and the coordinator ran out of memory making
// them. The count is checked before any candidate is made.
TEST(GridSearchTest, RefusesMoreCandidatesThanTheLimitBeforeMakingThem) {
  ParamGrid at_limit;  // 100 x 1000 = kMaxGridCandidates
  for (int i = 1; i <= 100; ++i) at_limit.n_neighbors.push_back(i);
  for (int i = 1; i <= 1000; ++i) at_limit.leaf_size.push_back(i);
  auto ok = ExpandParamGrid(std::vector<ParamGrid>{at_limit}, NeighborsParams{});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), kMaxGridCandidates);

  ParamGrid one;  // one more candidate, in a second grid
  one.p = {1};
  auto over = ExpandParamGrid(std::vector<ParamGrid>{at_limit, one}, NeighborsParams{});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(over.status().message(),
            "param_grid: 100001 candidates, more than the 100000 one search may have");

  ParamGrid huge;  // 400^3 (the fuzzer's input), and a product that overflows 64 bits
  huge.n_neighbors.assign(400, 1);
  huge.leaf_size.assign(400, 1);
  huge.p.assign(400, 1.0);
  EXPECT_FALSE(ExpandParamGrid(std::vector<ParamGrid>{huge}, NeighborsParams{}).ok());
  ParamGrid overflow;
  overflow.n_neighbors.assign(1 << 16, 1);
  overflow.leaf_size.assign(1 << 16, 1);
  overflow.p.assign(1 << 16, 1.0);
  overflow.algorithm.assign(1 << 16, "brute");
  auto o = ExpandParamGrid(std::vector<ParamGrid>{overflow}, NeighborsParams{});
  ASSERT_FALSE(o.ok());
  EXPECT_THAT(std::string(o.status().message()), testing::HasSubstr("too many candidates"));
}

TEST(GridSearchTest, JobsShareOneSearchPerFoldAndSearchSetting) {
  std::vector<NeighborsParams> candidates(4);
  candidates[0].n_neighbors = 3;
  candidates[1].n_neighbors = 9;
  candidates[2].p = 1;
  candidates[3].weights = Weights::kDistance;
  auto jobs = PlanFoldJobs(candidates, 3);
  ASSERT_EQ(jobs.size(), 6u);  // 3 folds x {p=2, p=1}
  EXPECT_EQ(jobs[0].max_neighbors, 9);
  EXPECT_EQ(jobs[0].candidates, (std::vector<size_t>{0, 1, 3}));
  EXPECT_EQ(jobs[1].candidates, (std::vector<size_t>{2}));
  EXPECT_EQ(jobs[5].fold, 2u);
}

TEST(GridSearchTest, ClearErrors) {
  auto X = std::make_shared<const Matrix>(10, 2);
  std::vector<double> y(10, 0);
  for (int i = 5; i < 10; ++i) y[i] = 1;
  GridSearchOptions o = TutorialGrid();
  o.param_grid[0].n_neighbors = {20};
  o.cv = 2;
  auto r = GridSearchCV(X, y, o, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("n_neighbors"), std::string::npos) << r.status();
  o.scoring = Scoring::kR2;
  r = GridSearchCV(X, y, o, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("scoring"), std::string::npos) << r.status();
  y.pop_back();
  r = GridSearchCV(X, y, TutorialGrid(), nullptr);
  EXPECT_FALSE(r.ok());
}

TEST(GridSearchTest, CvResultsCarryTimesAndTheKeysEachGridSets) {
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  GridSearchOptions o = TutorialGrid();
  ParamGrid w;
  w.weights = {"distance"};
  o.param_grid.push_back(w);
  auto r = GridSearchCV(std::make_shared<const Matrix>(digits->features), digits->targets, o,
                        nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  const CvResults& cv = r->cv_results;
  ASSERT_EQ(cv.params.size(), 28u);
  EXPECT_EQ(cv.param_keys[0], (std::vector<std::string>{"n_neighbors", "p"}));
  EXPECT_EQ(cv.param_keys[27], (std::vector<std::string>{"weights"}));
  ASSERT_EQ(cv.mean_fit_time.size(), 28u);
  ASSERT_EQ(cv.mean_score_time.size(), 28u);
  for (size_t c = 0; c < 28; ++c) {
    EXPECT_GT(cv.mean_fit_time[c], 0);
    EXPECT_GT(cv.mean_score_time[c], 0);
    EXPECT_GE(cv.std_fit_time[c], 0);
  }
  // 5 folds x 4 distinct (algorithm, leaf_size, p): p 1, 2, 3, and the base p=2 of the second
  // grid shares the first grid's p=2 search.
  EXPECT_EQ(cv.neighbor_searches, 15);
}

// The sharded grid search scores from neighbours found over global row indices; the same
// candidates scored that way equal RunFoldJob's (positions in the fold's sorted train list).
TEST(GridSearchTest, ScoringFromGlobalIndicesEqualsTheFoldJob) {
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  auto enc = EncodeClasses(digits->targets);
  ASSERT_TRUE(enc.ok());
  GridSearchOptions o = TutorialGrid();
  auto candidates = ExpandParamGrid(o.param_grid, o.base);
  ASSERT_TRUE(candidates.ok());
  auto folds = MakeFolds(o, enc->codes);
  ASSERT_TRUE(folds.ok());
  const auto jobs = PlanFoldJobs(*candidates, folds->size());
  for (size_t j : {size_t{0}, size_t{7}, jobs.size() - 1}) {
    const FoldJob& job = jobs[j];
    const TrainTestIndices& fold = (*folds)[job.fold];
    auto direct = RunFoldJob(digits->features, enc->codes, true, 10, fold, job, *candidates,
                             Scoring::kAccuracy, nullptr);
    ASSERT_TRUE(direct.ok()) << direct.status();
    // Brute force over the whole set less the validation rows, indices global.
    std::vector<int64_t> ids;
    auto train = std::make_shared<const Matrix>(Matrix::Gather(digits->features, fold.train));
    IndexOptions io;
    io.algorithm = Algorithm::kBrute;
    io.p = job.p;
    auto index = BuildIndex(train, fold.train, io);
    ASSERT_TRUE(index.ok()) << index.status();
    auto nb = (*index)->KNeighbors(Matrix::Gather(digits->features, fold.test), job.max_neighbors,
                                   nullptr);
    ASSERT_TRUE(nb.ok());
    auto scored = ScoreFoldCandidates(*nb, enc->codes, enc->codes, true, 10, fold, job,
                                      *candidates, Scoring::kAccuracy);
    ASSERT_TRUE(scored.ok()) << scored.status();
    EXPECT_EQ(*scored, direct->scores);
  }
}

TEST(GridSearchTest, ExplicitFoldsAreCheckedAndTheirTrainOrderDoesNotMatter) {
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  auto X = std::make_shared<const Matrix>(digits->features);
  GridSearchOptions o = TutorialGrid();
  auto folds = MakeFolds(o, digits->targets);
  ASSERT_TRUE(folds.ok());
  auto base = GridSearchCV(X, digits->targets, o, nullptr);
  ASSERT_TRUE(base.ok());
  o.folds = *folds;
  for (auto& f : o.folds) std::reverse(f.train.begin(), f.train.end());
  auto reversed = GridSearchCV(X, digits->targets, o, nullptr);
  ASSERT_TRUE(reversed.ok()) << reversed.status();
  EXPECT_EQ(reversed->cv_results.split_test_scores, base->cv_results.split_test_scores);
  o.folds[1].train.push_back(o.folds[1].train[0]);
  auto dup = GridSearchCV(X, digits->targets, o, nullptr);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("folds[1].train: row index"), std::string::npos)
      << dup.status();
  o.folds[1].train.pop_back();
  o.folds[2].test.push_back(5000);
  dup = GridSearchCV(X, digits->targets, o, nullptr);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("folds[2].test: row index 5000 out of range"),
            std::string::npos)
      << dup.status();
}

}  // namespace
}  // namespace knncluster
