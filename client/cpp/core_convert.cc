#include "client/cpp/core_convert.h"

namespace knncluster::client {

Task FromCore(Model::Task task) {
  switch (task) {
    case Model::Task::kClassifier:
      return Task::kClassifier;
    case Model::Task::kRegressor:
      return Task::kRegressor;
    case Model::Task::kOutlier:
      return Task::kOutlier;
  }
  return Task::kClassifier;
}

Model::Task ToCore(Task task) {
  switch (task) {
    case Task::kClassifier:
      return Model::Task::kClassifier;
    case Task::kRegressor:
      return Model::Task::kRegressor;
    case Task::kOutlier:
      return Model::Task::kOutlier;
  }
  return Model::Task::kClassifier;
}

namespace {

Algorithm FromCore(::knncluster::Algorithm a) {
  switch (a) {
    case ::knncluster::Algorithm::kAuto:
      return Algorithm::kAuto;
    case ::knncluster::Algorithm::kKdTree:
      return Algorithm::kKdTree;
    case ::knncluster::Algorithm::kBallTree:
      return Algorithm::kBallTree;
    case ::knncluster::Algorithm::kBrute:
      return Algorithm::kBrute;
  }
  return Algorithm::kAuto;
}

::knncluster::Algorithm ToCore(Algorithm a) {
  switch (a) {
    case Algorithm::kAuto:
      return ::knncluster::Algorithm::kAuto;
    case Algorithm::kKdTree:
      return ::knncluster::Algorithm::kKdTree;
    case Algorithm::kBallTree:
      return ::knncluster::Algorithm::kBallTree;
    case Algorithm::kBrute:
      return ::knncluster::Algorithm::kBrute;
  }
  return ::knncluster::Algorithm::kAuto;
}

}  // namespace

NeighborsParams FromCore(const ::knncluster::NeighborsParams& p) {
  NeighborsParams out;
  out.n_neighbors = p.n_neighbors;
  out.weights =
      p.weights == ::knncluster::Weights::kDistance ? Weights::kDistance : Weights::kUniform;
  out.algorithm = FromCore(p.algorithm);
  out.leaf_size = p.leaf_size;
  out.p = p.p;
  return out;
}

::knncluster::NeighborsParams ToCore(const NeighborsParams& p) {
  ::knncluster::NeighborsParams out;
  out.n_neighbors = p.n_neighbors;
  out.weights = p.weights == Weights::kDistance ? ::knncluster::Weights::kDistance
                                                : ::knncluster::Weights::kUniform;
  out.algorithm = ToCore(p.algorithm);
  out.leaf_size = p.leaf_size;
  out.p = p.p;
  return out;
}

Neighbors FromCore(const KNeighborsResult& r) {
  Neighbors out;
  out.num_queries = r.num_queries;
  out.k = r.k;
  out.distances = r.distances;
  out.indices = r.indices;
  return out;
}

KNeighborsResult ToCore(const Neighbors& n) {
  KNeighborsResult out;
  out.num_queries = n.num_queries;
  out.k = n.k;
  out.distances = n.distances;
  out.indices = n.indices;
  return out;
}

ParamGrid FromCore(const ::knncluster::ParamGrid& g) {
  return ParamGrid{g.algorithm, g.leaf_size, g.n_neighbors, g.p, g.weights};
}

::knncluster::ParamGrid ToCore(const ParamGrid& g) {
  return ::knncluster::ParamGrid{g.algorithm, g.leaf_size, g.n_neighbors, g.p, g.weights};
}

Fold FromCore(const TrainTestIndices& f) { return Fold{f.train, f.test}; }
TrainTestIndices ToCore(const Fold& f) { return TrainTestIndices{f.train, f.test}; }

CvResults FromCore(const ::knncluster::CvResults& r) {
  CvResults out;
  for (const auto& p : r.params) out.params.push_back(FromCore(p));
  out.param_keys = r.param_keys;
  out.split_test_scores = r.split_test_scores;
  out.mean_test_score = r.mean_test_score;
  out.std_test_score = r.std_test_score;
  out.rank_test_score = r.rank_test_score;
  out.mean_fit_time = r.mean_fit_time;
  out.std_fit_time = r.std_fit_time;
  out.mean_score_time = r.mean_score_time;
  out.std_score_time = r.std_score_time;
  return out;
}

::knncluster::CvResults ToCore(const CvResults& r, size_t best_index, double best_score,
                               const NeighborsParams& best_params) {
  ::knncluster::CvResults out;
  for (const auto& p : r.params) out.params.push_back(ToCore(p));
  out.param_keys = r.param_keys;
  out.split_test_scores = r.split_test_scores;
  out.mean_test_score = r.mean_test_score;
  out.std_test_score = r.std_test_score;
  out.rank_test_score = r.rank_test_score;
  out.mean_fit_time = r.mean_fit_time;
  out.std_fit_time = r.std_fit_time;
  out.mean_score_time = r.mean_score_time;
  out.std_score_time = r.std_score_time;
  out.best_index = best_index;
  out.best_score = best_score;
  out.best_params = ToCore(best_params);
  return out;
}

Dataset FromCore(const ::knncluster::Dataset& d) {
  Dataset out;
  out.name = d.name;
  out.rows = d.size();
  out.cols = d.dim();
  out.features = d.features.values();
  out.targets = d.targets;
  out.class_names = d.class_names;
  out.feature_names = d.feature_names;
  return out;
}

DatasetView ViewOf(const ::knncluster::Dataset& d) {
  DatasetView v;
  v.cols = d.dim();
  v.features = absl::Span<const double>(d.features.data(), d.size() * d.dim());
  v.targets = d.targets;
  v.class_names = d.class_names;
  v.feature_names = d.feature_names;
  return v;
}

}  // namespace knncluster::client
