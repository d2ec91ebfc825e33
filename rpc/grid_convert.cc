#include "rpc/grid_convert.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "rpc/convert.h"

namespace knncluster::rpc {

absl::StatusOr<ParamGrid> FromProto(const v1::ParamGrid& g, const std::string& field) {
  ParamGrid out;
  for (int i = 0; i < g.algorithm_size(); ++i) {
    KNN_ASSIGN_OR_RETURN(Algorithm a,
                         FromProto(g.algorithm(i), absl::StrCat(field, ".algorithm[", i, "]")));
    out.algorithm.push_back(AlgorithmName(a));
  }
  out.leaf_size.assign(g.leaf_size().begin(), g.leaf_size().end());
  out.n_neighbors.assign(g.n_neighbors().begin(), g.n_neighbors().end());
  out.p.assign(g.p().begin(), g.p().end());
  for (int i = 0; i < g.weights_size(); ++i) {
    switch (g.weights(i)) {
      case v1::WEIGHTS_UNIFORM:
        out.weights.push_back(WeightsName(Weights::kUniform));
        break;
      case v1::WEIGHTS_DISTANCE:
        out.weights.push_back(WeightsName(Weights::kDistance));
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".weights[", i, "]: unknown value ", g.weights(i)));
    }
  }
  return out;
}

absl::Status ToProto(const ParamGrid& g, v1::ParamGrid* out) {
  out->Clear();
  for (const std::string& name : g.algorithm) {
    KNN_ASSIGN_OR_RETURN(Algorithm a, ParseAlgorithm(name));
    out->add_algorithm(ToProto(a));
  }
  for (int v : g.leaf_size) out->add_leaf_size(v);
  for (int v : g.n_neighbors) out->add_n_neighbors(v);
  for (double v : g.p) out->add_p(v);
  for (const std::string& name : g.weights) {
    KNN_ASSIGN_OR_RETURN(Weights w, ParseWeights(name));
    out->add_weights(w == Weights::kDistance ? v1::WEIGHTS_DISTANCE : v1::WEIGHTS_UNIFORM);
  }
  return absl::OkStatus();
}

TrainTestIndices FromProto(const v1::Fold& f) {
  TrainTestIndices out;
  out.train.assign(f.train().begin(), f.train().end());
  out.test.assign(f.test().begin(), f.test().end());
  return out;
}

void ToProto(const TrainTestIndices& f, v1::Fold* out) {
  out->mutable_train()->Assign(f.train.begin(), f.train.end());
  out->mutable_test()->Assign(f.test.begin(), f.test.end());
}

absl::StatusOr<Scoring> ScoringFromName(const std::string& name, bool classifier,
                                        const std::string& field) {
  if (name.empty()) return classifier ? Scoring::kAccuracy : Scoring::kR2;
  auto s = ParseScoring(name);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected accuracy, balanced_accuracy, f1_macro, r2 or neg_mean_squared_error, "
               "got \"", name, "\""));
  }
  KNN_RETURN_IF_ERROR(CheckScoringForTask(*s, classifier, field));
  return *s;
}

absl::StatusOr<FoldJobWork> FromProto(const v1::FoldJobSpec& s, const std::string& field) {
  FoldJobWork w;
  w.classifier = s.classifier();
  w.fold = FromProto(s.fold());
  if (w.fold.train.empty() || w.fold.test.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".fold: train and test must both be non-empty"));
  }
  KNN_ASSIGN_OR_RETURN(NeighborsParams search, FromProto(s.search(), absl::StrCat(field, ".search")));
  w.job.algorithm = search.algorithm;
  w.job.leaf_size = search.leaf_size;
  w.job.p = search.p;
  if (s.max_neighbors() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".max_neighbors: must be >= 1, got 0"));
  }
  w.job.max_neighbors = static_cast<int>(std::min<uint32_t>(s.max_neighbors(), 1u << 30));
  if (s.candidates_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".candidates: empty"));
  }
  for (int i = 0; i < s.candidates_size(); ++i) {
    const std::string where = absl::StrCat(field, ".candidates[", i, "]");
    KNN_ASSIGN_OR_RETURN(NeighborsParams c, FromProto(s.candidates(i), where));
    if (c.n_neighbors > w.job.max_neighbors) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s.n_neighbors: %d exceeds max_neighbors %d", where, c.n_neighbors, w.job.max_neighbors));
    }
    w.candidates.push_back(c);
    w.job.candidates.push_back(static_cast<size_t>(i));
  }
  KNN_ASSIGN_OR_RETURN(w.scoring,
                       ScoringFromName(s.scoring(), w.classifier, absl::StrCat(field, ".scoring")));
  return w;
}

void ToProto(const FoldJob& job, const TrainTestIndices& fold,
             absl::Span<const NeighborsParams> all_candidates, bool classifier, Scoring scoring,
             v1::FoldJobSpec* out) {
  out->Clear();
  out->set_classifier(classifier);
  ToProto(fold, out->mutable_fold());
  NeighborsParams search;
  search.algorithm = job.algorithm;
  search.leaf_size = job.leaf_size;
  search.p = job.p;
  search.n_neighbors = job.max_neighbors;
  ToProto(search, out->mutable_search());
  out->set_max_neighbors(static_cast<uint32_t>(job.max_neighbors));
  for (size_t c : job.candidates) ToProto(all_candidates[c], out->add_candidates());
  out->set_scoring(ScoringName(scoring));
}

void ToProto(const FoldJobResult& r, v1::FoldJobResult* out) {
  out->mutable_scores()->Assign(r.scores.begin(), r.scores.end());
  out->set_fit_seconds(r.fit_seconds);
  out->set_score_seconds(r.score_seconds);
}

FoldJobResult FromProto(const v1::FoldJobResult& r) {
  FoldJobResult out;
  out.scores.assign(r.scores().begin(), r.scores().end());
  out.fit_seconds = r.fit_seconds();
  out.score_seconds = r.score_seconds();
  return out;
}

void ToProto(const CvResults& r, v1::CvResults* out) {
  out->Clear();
  const size_t n = r.params.size();
  for (const NeighborsParams& p : r.params) ToProto(p, out->add_params());
  const size_t folds = n == 0 ? 0 : r.split_test_scores[0].size();
  for (size_t f = 0; f < folds; ++f) {
    v1::SplitScores* s = out->add_split_test_scores();
    for (size_t c = 0; c < n; ++c) s->add_scores(r.split_test_scores[c][f]);
  }
  out->mutable_mean_test_score()->Assign(r.mean_test_score.begin(), r.mean_test_score.end());
  out->mutable_std_test_score()->Assign(r.std_test_score.begin(), r.std_test_score.end());
  out->mutable_rank_test_score()->Assign(r.rank_test_score.begin(), r.rank_test_score.end());
  out->mutable_mean_fit_time()->Assign(r.mean_fit_time.begin(), r.mean_fit_time.end());
  out->mutable_std_fit_time()->Assign(r.std_fit_time.begin(), r.std_fit_time.end());
  out->mutable_mean_score_time()->Assign(r.mean_score_time.begin(), r.mean_score_time.end());
  out->mutable_std_score_time()->Assign(r.std_score_time.begin(), r.std_score_time.end());
  for (const auto& keys : r.param_keys) {
    v1::ParamKeys* k = out->add_param_keys();
    for (const std::string& key : keys) k->add_keys(key);
  }
}

absl::StatusOr<CvResults> FromProto(const v1::CvResults& r, const std::string& field) {
  CvResults out;
  const int n = r.params_size();
  for (int c = 0; c < n; ++c) {
    KNN_ASSIGN_OR_RETURN(NeighborsParams p,
                         FromProto(r.params(c), absl::StrCat(field, ".params[", c, "]")));
    out.params.push_back(p);
  }
  auto check = [&](int size, const char* name) -> absl::Status {
    if (size != n && size != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s.%s: expected %d values (one per candidate), got %d", field, name, n, size));
    }
    return absl::OkStatus();
  };
  KNN_RETURN_IF_ERROR(check(r.mean_test_score_size(), "mean_test_score"));
  KNN_RETURN_IF_ERROR(check(r.std_test_score_size(), "std_test_score"));
  KNN_RETURN_IF_ERROR(check(r.rank_test_score_size(), "rank_test_score"));
  KNN_RETURN_IF_ERROR(check(r.mean_fit_time_size(), "mean_fit_time"));
  KNN_RETURN_IF_ERROR(check(r.std_fit_time_size(), "std_fit_time"));
  KNN_RETURN_IF_ERROR(check(r.mean_score_time_size(), "mean_score_time"));
  KNN_RETURN_IF_ERROR(check(r.std_score_time_size(), "std_score_time"));
  KNN_RETURN_IF_ERROR(check(r.param_keys_size(), "param_keys"));
  out.split_test_scores.assign(n, std::vector<double>(r.split_test_scores_size()));
  for (int f = 0; f < r.split_test_scores_size(); ++f) {
    KNN_RETURN_IF_ERROR(check(r.split_test_scores(f).scores_size(),
                              absl::StrCat("split_test_scores[", f, "]").c_str()));
    for (int c = 0; c < r.split_test_scores(f).scores_size(); ++c) {
      out.split_test_scores[c][f] = r.split_test_scores(f).scores(c);
    }
  }
  out.mean_test_score.assign(r.mean_test_score().begin(), r.mean_test_score().end());
  out.std_test_score.assign(r.std_test_score().begin(), r.std_test_score().end());
  out.rank_test_score.assign(r.rank_test_score().begin(), r.rank_test_score().end());
  out.mean_fit_time.assign(r.mean_fit_time().begin(), r.mean_fit_time().end());
  out.std_fit_time.assign(r.std_fit_time().begin(), r.std_fit_time().end());
  out.mean_score_time.assign(r.mean_score_time().begin(), r.mean_score_time().end());
  out.std_score_time.assign(r.std_score_time().begin(), r.std_score_time().end());
  for (const auto& k : r.param_keys()) out.param_keys.emplace_back(k.keys().begin(), k.keys().end());
  if (!out.rank_test_score.empty()) {
    out.best_index = static_cast<size_t>(
        std::min_element(out.rank_test_score.begin(), out.rank_test_score.end()) -
        out.rank_test_score.begin());
    if (out.best_index < out.mean_test_score.size()) {
      out.best_score = out.mean_test_score[out.best_index];
    }
    if (out.best_index < out.params.size()) out.best_params = out.params[out.best_index];
  }
  return out;
}

}  // namespace knncluster::rpc
