#include "core/estimators/voting.h"

#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

using ::testing::ElementsAre;

std::vector<double> Proba(const std::vector<double>& d, const std::vector<int64_t>& idx,
                          const std::vector<int32_t>& labels, int n_classes, Weights w) {
  std::vector<double> out(static_cast<size_t>(n_classes));
  ClassProbabilities(d, idx, labels, w, absl::MakeSpan(out));
  return out;
}

TEST(VotingTest, UniformProbabilitiesAreCountsOverK) {
  const std::vector<int32_t> labels = {0, 1, 1, 2};
  EXPECT_THAT(Proba({1, 2, 3}, {0, 1, 2}, labels, 3, Weights::kUniform),
              ElementsAre(1.0 / 3, 2.0 / 3, 0.0));
  EXPECT_EQ(VoteClass({1, 2, 3}, {0, 1, 2}, labels, 3, Weights::kUniform), 1);
  // Uniform weights ignore distances, which may then be absent.
  EXPECT_EQ(VoteClass({}, {3, 0, 1, 2}, labels, 3, Weights::kUniform), 1);
}

TEST(VotingTest, DistanceWeightsAreInverseDistances) {
  const std::vector<int32_t> labels = {0, 1, 1};
  // weights 1, 1/2, 1/4: class 0 has 1, class 1 has 0.75, so distance voting overturns the count.
  EXPECT_THAT(Proba({1, 2, 4}, {0, 1, 2}, labels, 2, Weights::kDistance),
              ElementsAre(1 / 1.75, 0.75 / 1.75));
  EXPECT_EQ(VoteClass({1, 2, 4}, {0, 1, 2}, labels, 2, Weights::kDistance), 0);
  EXPECT_EQ(VoteClass({1, 2, 4}, {0, 1, 2}, labels, 2, Weights::kUniform), 1);
}

TEST(VotingTest, ZeroDistanceNeighboursAloneVoteWithWeightOne) {
  const std::vector<int32_t> labels = {1, 2, 0, 0};
  // Two neighbours at distance 0 (classes 1 and 2) outvote the rest, however many and near.
  EXPECT_THAT(Proba({0, 0, 1e-300, 1e-300}, {0, 1, 2, 3}, labels, 3, Weights::kDistance),
              ElementsAre(0.0, 0.5, 0.5));
  // ...and tie; the smaller class code wins.
  EXPECT_EQ(VoteClass({0, 0, 1e-300, 1e-300}, {0, 1, 2, 3}, labels, 3, Weights::kDistance), 1);
  std::vector<double> w(4);
  NeighborWeights({0, 0, 0.5, 2}, Weights::kDistance, absl::MakeSpan(w));
  EXPECT_THAT(w, ElementsAre(1.0, 1.0, 0.0, 0.0));
  NeighborWeights({0.5, 2}, Weights::kDistance, absl::MakeSpan(w.data(), 2));
  EXPECT_THAT(std::vector<double>(w.begin(), w.begin() + 2), ElementsAre(2.0, 0.5));
  // 1/d overflowing to inf counts as distance 0, as in scikit-learn (which tests isinf(1/d)).
  NeighborWeights({1e-310, 1}, Weights::kDistance, absl::MakeSpan(w.data(), 2));
  EXPECT_THAT(std::vector<double>(w.begin(), w.begin() + 2), ElementsAre(1.0, 0.0));
}

TEST(VotingTest, TiedVotesGoToTheSmallestClassCode) {
  const std::vector<int32_t> labels = {2, 0, 1, 2};
  EXPECT_EQ(VoteClass({1, 1}, {0, 1}, labels, 3, Weights::kUniform), 0);
  EXPECT_EQ(VoteClass({1, 1}, {0, 2}, labels, 3, Weights::kUniform), 1);
  EXPECT_EQ(VoteClass({2, 2}, {3, 2}, labels, 3, Weights::kDistance), 1);
  EXPECT_EQ(VoteClass({1, 2, 3, 4}, {0, 1, 2, 3}, labels, 3, Weights::kUniform), 2);
}

// Exact ties in real arithmetic where scikit-learn's predict (weighted_mode: one numpy pairwise
// sum per class over all k weights) and the argmax of predict_proba (weights added in neighbour
// order) disagree. Found by search against scikit-learn 1.2.1; predict must follow weighted_mode.
// The uniform vote counts instead of summing weighted_mode's template rows; both rules must pick
// the same class: against a count spelled out here, and against the summing path itself (distance
// weights with every distance 1 give every neighbour weight 1), over random codes with many ties.
TEST(VotingTest, UniformVoteIsTheMostFrequentClassSmallestFirst) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    const int32_t n_classes = 1 + static_cast<int32_t>(rng() % 6);
    const size_t n_train = 1 + rng() % 40, k = 1 + rng() % 100;  // both sides of 64
    std::vector<int32_t> labels(n_train);
    for (int32_t& c : labels) c = static_cast<int32_t>(rng() % n_classes);
    std::vector<int64_t> idx(k);
    for (int64_t& i : idx) i = static_cast<int64_t>(rng() % n_train);
    std::map<int32_t, int> count;
    for (int64_t i : idx) ++count[labels[static_cast<size_t>(i)]];
    int32_t expected = -1;
    int best = 0;
    for (const auto& [c, n] : count) {  // ascending codes; strictly more to win
      if (n > best) {
        expected = c;
        best = n;
      }
    }
    const std::vector<double> ones(k, 1.0);
    SCOPED_TRACE(trial);
    EXPECT_EQ(VoteClass(ones, idx, labels, n_classes, Weights::kUniform), expected);
    EXPECT_EQ(VoteClass(ones, idx, labels, n_classes, Weights::kDistance), expected);
  }
}

TEST(VotingTest, DistanceVoteSumsInNumpysOrderLikeWeightedMode) {
  struct Case {
    std::vector<double> distances;
    std::vector<int32_t> labels;
    int32_t sklearn_predict;
    int32_t proba_argmax;
  };
  const std::vector<Case> cases = {
      {{1, 2, 2, 3, 3, 7, 7, 13, 13}, {1, 0, 0, 0, 1, 1, 0, 0, 1}, 1, 0},
      {{2, 5, 7, 7, 10, 10, 10, 11, 11}, {0, 1, 1, 0, 1, 1, 1, 0, 1}, 1, 0},
      {{1, 1, 1, 1, 2, 6, 6, 6, 10, 10, 13, 13}, {0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0}, 0, 1},
      {{1, 2, 3, 5, 5, 6, 7, 7}, {1, 0, 0, 0, 1, 0, 1, 0}, 1, 0},
  };
  for (const Case& c : cases) {
    std::vector<int64_t> idx(c.labels.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
    EXPECT_EQ(VoteClass(c.distances, idx, c.labels, 2, Weights::kDistance), c.sklearn_predict);
    const std::vector<double> p = Proba(c.distances, idx, c.labels, 2, Weights::kDistance);
    EXPECT_EQ(p[1] > p[0] ? 1 : 0, c.proba_argmax);
  }
}

TEST(VotingTest, RegressionMeansAndWeightedMeans) {
  const std::vector<double> y = {1, 2, 3, 10};
  EXPECT_EQ(RegressionValue({1, 2, 3}, {0, 1, 2}, y, Weights::kUniform), 2.0);
  // weights 1, 1/2, 1/2 over targets 1, 2, 10: (1 + 1 + 5) / 2.
  EXPECT_EQ(RegressionValue({1, 2, 2}, {0, 1, 3}, y, Weights::kDistance), 3.5);
  // An exact match decides alone.
  EXPECT_EQ(RegressionValue({0, 1}, {3, 0}, y, Weights::kDistance), 10.0);
  EXPECT_EQ(RegressionValue({0, 0, 1}, {3, 1, 0}, y, Weights::kDistance), 6.0);
}

TEST(VotingTest, NumpySumMatchesNumpyBitForBit) {
  // a[i] = 1/(i+1), times 1e8 when i % 3 == 0; expected values are np.sum(a) from numpy 1.24.
  auto harmonic = [](size_t n) {
    std::vector<double> a(n);
    for (size_t i = 0; i < n; ++i)
      a[i] = 1.0 / static_cast<double>(i + 1) * (i % 3 == 0 ? 1e8 : 1.0);
    return a;
  };
  EXPECT_EQ(NumpySum(harmonic(5)), 0x1.dcd6504222222p+26);
  EXPECT_EQ(NumpySum(harmonic(9)), 0x1.09aa9a7719319p+27);
  EXPECT_EQ(NumpySum(harmonic(130)), 0x1.b77b53816f24bp+27);  // sequential: ...f246p+27
  EXPECT_EQ(NumpySum(harmonic(300)), 0x1.ebcff9809618cp+27);  // sequential: ...618bp+27
  // Beyond numpy's 8192-element buffer the pairwise sums of the chunks are added in order.
  auto mixed = [](int64_t n) {
    std::vector<double> a(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      a[static_cast<size_t>(i)] = static_cast<double>((i * 2654435761LL) % 1000003) / 997.0 *
                                  (i % 5 == 0 ? 1e5 : 1.0) * (i % 2 == 0 ? 1.0 : -1.0);
    }
    return a;
  };
  EXPECT_EQ(NumpySum(mixed(20000)), 0x1.18ad0f5db8840p+21);  // one pairwise pass: ...8fc0p+21
  EXPECT_EQ(NumpySum(mixed(100001)), 0x1.52f54ee7bc3a9p+26);
  EXPECT_EQ(NumpySum({}), 0.0);
}

TEST(VotingTest, BatchesCheckIndicesAndLabels) {
  KNeighborsResult n;
  n.num_queries = 2;
  n.k = 2;
  n.distances = {0.5, 1, 1, 2};
  n.indices = {0, 2, 1, 2};
  const std::vector<int32_t> labels = {0, 1, 1};
  ThreadPool pool(3);
  absl::StatusOr<std::vector<int32_t>> votes =
      VoteClassBatch(n, labels, 2, Weights::kDistance, &pool);
  ASSERT_TRUE(votes.ok()) << votes.status();
  EXPECT_THAT(*votes, ElementsAre(0, 1));
  absl::StatusOr<Matrix> proba = ClassProbabilitiesBatch(n, labels, 2, Weights::kUniform, nullptr);
  ASSERT_TRUE(proba.ok()) << proba.status();
  EXPECT_THAT(proba->values(), ElementsAre(0.5, 0.5, 0.0, 1.0));
  absl::StatusOr<std::vector<double>> reg =
      RegressionBatch(n, {4.0, 8.0, 2.0}, Weights::kUniform, nullptr);
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_THAT(*reg, ElementsAre(3.0, 5.0));

  KNeighborsResult bad = n;
  bad.indices[3] = 3;
  absl::Status s = VoteClassBatch(bad, labels, 2, Weights::kUniform, nullptr).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("neighbors.indices[1][1]"));
  s = RegressionBatch(bad, {4.0, 8.0, 2.0}, Weights::kUniform, nullptr).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = VoteClassBatch(n, {0, 1, 5}, 2, Weights::kUniform, nullptr).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("labels[2]"));
  bad = n;
  bad.distances.pop_back();
  EXPECT_EQ(ClassProbabilitiesBatch(bad, labels, 2, Weights::kUniform, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace knncluster
