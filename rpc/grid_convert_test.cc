#include "rpc/grid_convert.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace knncluster::rpc {
namespace {

TEST(GridConvertTest, FoldJobRoundTrips) {
  std::vector<NeighborsParams> all(3);
  all[0].n_neighbors = 3;
  all[1].n_neighbors = 7;
  all[1].weights = Weights::kDistance;
  all[2].n_neighbors = 9;
  FoldJob job;
  job.algorithm = Algorithm::kBallTree;
  job.leaf_size = 11;
  job.p = std::numeric_limits<double>::infinity();
  job.max_neighbors = 7;
  job.candidates = {1, 0};
  TrainTestIndices fold{{0, 1, 2, 5}, {3, 4}};
  v1::FoldJobSpec spec;
  ToProto(job, fold, all, true, Scoring::kF1Macro, &spec);
  auto w = FromProto(spec, "job");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->classifier);
  EXPECT_EQ(w->fold.train, fold.train);
  EXPECT_EQ(w->fold.test, fold.test);
  EXPECT_EQ(w->job.algorithm, Algorithm::kBallTree);
  EXPECT_EQ(w->job.leaf_size, 11);
  EXPECT_TRUE(std::isinf(w->job.p));
  EXPECT_EQ(w->job.max_neighbors, 7);
  ASSERT_EQ(w->candidates.size(), 2u);
  EXPECT_EQ(w->candidates[0].n_neighbors, 7);
  EXPECT_EQ(w->candidates[0].weights, Weights::kDistance);
  EXPECT_EQ(w->candidates[1].n_neighbors, 3);
  EXPECT_EQ(w->job.candidates, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(w->scoring, Scoring::kF1Macro);
}

TEST(GridConvertTest, BadFoldJobsNameTheField) {
  v1::FoldJobSpec spec;
  spec.mutable_fold()->add_train(0);
  spec.mutable_fold()->add_test(1);
  spec.set_max_neighbors(2);
  spec.add_candidates()->set_n_neighbors(3);
  auto w = FromProto(spec, "job");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().message(), "job.candidates[0].n_neighbors: 3 exceeds max_neighbors 2");
  spec.mutable_candidates(0)->set_n_neighbors(1);
  spec.set_scoring("r2");
  spec.set_classifier(true);
  w = FromProto(spec, "job");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().message(),
            "job.scoring: r2 is a regression scorer, but the estimator is a classifier");
}

TEST(GridConvertTest, ParamGridAndCvResultsRoundTrip) {
  ParamGrid g;
  g.algorithm = {"kd_tree", "brute"};
  g.n_neighbors = {2, 4};
  g.p = {1, std::numeric_limits<double>::infinity()};
  g.weights = {"distance"};
  v1::ParamGrid pg;
  ASSERT_TRUE(ToProto(g, &pg).ok());
  auto back = FromProto(pg, "param_grid[0]");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->algorithm, g.algorithm);
  EXPECT_EQ(back->n_neighbors, g.n_neighbors);
  EXPECT_EQ(back->p, g.p);
  EXPECT_EQ(back->weights, g.weights);

  CvResults cv;
  cv.params.resize(2);
  cv.params[1].n_neighbors = 9;
  cv.param_keys = {{"n_neighbors"}, {"n_neighbors"}};
  cv.split_test_scores = {{0.5, 0.25, 1}, {0.75, 0.5, 0.125}};
  cv.mean_test_score = {0.5833333333333334, 0.4583333333333333};
  cv.std_test_score = {0.1, 0.2};
  cv.rank_test_score = {1, 2};
  cv.mean_fit_time = {1, 2};
  cv.std_fit_time = {0, 0};
  cv.mean_score_time = {3, 4};
  cv.std_score_time = {0, 0};
  v1::CvResults p;
  ToProto(cv, &p);
  ASSERT_EQ(p.split_test_scores_size(), 3);  // one entry per split, as split{i}_test_score
  EXPECT_EQ(p.split_test_scores(2).scores(1), 0.125);
  auto r = FromProto(p, "cv_results");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->split_test_scores, cv.split_test_scores);
  EXPECT_EQ(r->mean_test_score, cv.mean_test_score);
  EXPECT_EQ(r->rank_test_score, cv.rank_test_score);
  EXPECT_EQ(r->param_keys, cv.param_keys);
  EXPECT_EQ(r->params[1].n_neighbors, 9);
  EXPECT_EQ(r->best_index, 0u);
  p.add_mean_test_score(1);
  EXPECT_FALSE(FromProto(p, "cv_results").ok());
}

}  // namespace
}  // namespace knncluster::rpc
