// Unit tests for RandomState and the splitters, against fixed scikit-learn 1.2.1 / NumPy 1.24
// outputs (tests/data/reference/splits/ and small literals printed by /usr/bin/python3).
#include "core/model_selection/split.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/model_selection/random_state.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace knncluster {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

nlohmann::json ReadReference(const std::string& name) {
  const std::string path = std::string(KNN_TEST_DATA_DIR) + "/reference/splits/" + name;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return nlohmann::json::parse(in);
}

// Asserts that every sample is in exactly one of train/test.
void ExpectPartition(const TrainTestIndices& split, int64_t n) {
  std::set<int64_t> all(split.train.begin(), split.train.end());
  all.insert(split.test.begin(), split.test.end());
  EXPECT_EQ(all.size(), split.train.size() + split.test.size()) << "train and test overlap";
  EXPECT_EQ(static_cast<int64_t>(all.size()), n);
  if (!all.empty()) {
    EXPECT_EQ(*all.begin(), 0);
    EXPECT_EQ(*all.rbegin(), n - 1);
  }
}

TEST(RandomStateTest, FirstTenUint32MatchNumpy) {
  const nlohmann::json ref = ReadReference("rng_test_vectors.json");
  ASSERT_FALSE(ref["mt19937_first10_uint32"].empty());
  for (const auto& [seed, expected] : ref["mt19937_first10_uint32"].items()) {
    RandomState rng(static_cast<uint32_t>(std::stoul(seed)));
    std::vector<uint32_t> got;
    for (size_t i = 0; i < expected.size(); ++i) got.push_back(rng.NextUint32());
    EXPECT_EQ(got, expected.get<std::vector<uint32_t>>()) << "seed " << seed;
  }
}

TEST(RandomStateTest, SmallPermutationsMatchNumpy) {
  const nlohmann::json ref = ReadReference("rng_test_vectors.json");
  ASSERT_FALSE(ref["permutation_small"].empty());
  for (const auto& [key, expected] : ref["permutation_small"].items()) {
    // Keys look like "seed42_n17".
    const size_t n_pos = key.find("_n");
    const uint32_t seed = static_cast<uint32_t>(std::stoul(key.substr(4, n_pos - 4)));
    const int64_t n = std::stoll(key.substr(n_pos + 2));
    EXPECT_EQ(RandomState(seed).Permutation(n), expected.get<std::vector<int64_t>>()) << key;
  }
}

TEST(RandomStateTest, ShuffleIsPermutationOfTheValues) {
  // permutation(n) == shuffle(arange(n)) for the same seed, whatever the values are.
  std::vector<int64_t> values = {10, 11, 12, 13, 14, 15, 16};
  RandomState(2024).Shuffle(absl::MakeSpan(values));
  const std::vector<int64_t> perm = RandomState(2024).Permutation(7);
  for (size_t i = 0; i < perm.size(); ++i) EXPECT_EQ(values[i], 10 + perm[i]);
}

TEST(RandomStateTest, RandomIntervalZeroDrawsNothingAndStaysInRange) {
  RandomState a(7);
  RandomState b(7);
  EXPECT_EQ(a.RandomInterval(0), 0u);
  EXPECT_EQ(a.NextUint32(), b.NextUint32());  // max == 0 consumed no output
  for (uint64_t max :
       {1ull, 2ull, 5ull, 1000ull, 0xffffffffull, 0x100000000ull, 0x3ffffffffffull}) {
    for (int i = 0; i < 200; ++i) EXPECT_LE(a.RandomInterval(max), max);
  }
  EXPECT_EQ(RandomState(0).Permutation(0).size(), 0u);
  EXPECT_EQ(RandomState(0).Permutation(-3).size(), 0u);
}

TEST(RandomStateTest, NextUint64PutsFirstDrawHigh) {
  RandomState a(42);
  RandomState b(42);
  const uint64_t high = b.NextUint32();
  const uint64_t low = b.NextUint32();
  EXPECT_EQ(a.NextUint64(), (high << 32) | low);
}

TEST(TrainTestSplitTest, DigitsMatchesScikitLearn) {
  const nlohmann::json ref = ReadReference("tts_digits_n1797_test0.2_rs1337.json");
  const auto split = TrainTestSplit(ref["n_samples"].get<int64_t>(),
                                    TestSize::Fraction(ref["test_size"].get<double>()),
                                    ref["random_state"].get<uint32_t>());
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->test.size(), ref["n_test"].get<size_t>());
  EXPECT_EQ(split->train.size(), ref["n_train"].get<size_t>());
  EXPECT_EQ(split->test, ref["test"].get<std::vector<int64_t>>());
  EXPECT_EQ(split->train, ref["train"].get<std::vector<int64_t>>());
  EXPECT_EQ(RandomState(1337).Permutation(1797), ref["permutation"].get<std::vector<int64_t>>());
}

TEST(TrainTestSplitTest, CountMatchesScikitLearn) {
  // train_test_split(np.arange(10), test_size=3, random_state=2024)
  const auto split = TrainTestSplit(10, TestSize::Count(3), 2024);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_THAT(split->train, ElementsAre(6, 1, 4, 3, 9, 0, 8));
  EXPECT_THAT(split->test, ElementsAre(2, 7, 5));
}

TEST(TrainTestSplitTest, NoShuffleIsContiguousAndIgnoresSeed) {
  // train_test_split(np.arange(10), test_size=0.25, shuffle=False): n_test = ceil(2.5) = 3.
  for (std::optional<uint32_t> seed : {std::optional<uint32_t>(), std::optional<uint32_t>(5)}) {
    const auto split = TrainTestSplit(10, TestSize::Fraction(0.25), seed, /*shuffle=*/false);
    ASSERT_TRUE(split.ok()) << split.status();
    EXPECT_THAT(split->train, ElementsAre(0, 1, 2, 3, 4, 5, 6));
    EXPECT_THAT(split->test, ElementsAre(7, 8, 9));
  }
}

TEST(TrainTestSplitTest, FractionRoundsTestSizeUp) {
  for (int64_t n : {2, 3, 7, 10, 11, 1797}) {
    const auto split = TrainTestSplit(n, TestSize::Fraction(0.3), std::nullopt);
    ASSERT_TRUE(split.ok()) << split.status();
    EXPECT_EQ(static_cast<int64_t>(split->test.size()),
              static_cast<int64_t>(std::ceil(0.3 * static_cast<double>(n))));
    ExpectPartition(*split, n);
  }
}

TEST(TrainTestSplitTest, RejectsBadTestSize) {
  struct Case {
    int64_t n;
    TestSize test_size;
    std::string message;
  };
  const Case cases[] = {
      {10, TestSize::Fraction(0.0), "test_size: must be in (0, 1)"},
      {10, TestSize::Fraction(1.0), "got 1"},
      {10, TestSize::Fraction(1.5), "as a count, got 1.5"},
      {10, TestSize::Fraction(-0.1), "got -0.1"},
      {10, TestSize::Fraction(std::nan("")), "test_size"},
      {10, TestSize::Count(0), "in [1, 10) as a count, got 0"},
      {10, TestSize::Count(10), "got 10"},
      {10, TestSize::Count(11), "got 11"},
      {1, TestSize::Count(1), "in [1, 1)"},
      {10, TestSize::Fraction(0.99), "train set would be empty"},  // ceil(9.9) = 10
      {0, TestSize::Fraction(0.5), "train set would be empty"},
      {-1, TestSize::Fraction(0.5), "n_samples: must be non-negative"},
  };
  for (const Case& c : cases) {
    for (bool shuffle : {true, false}) {
      const auto split = TrainTestSplit(c.n, c.test_size, 0, shuffle);
      EXPECT_EQ(split.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
      EXPECT_THAT(split.status().message(), HasSubstr(c.message));
    }
  }
}

TEST(KFoldTest, ShuffleMatchesScikitLearn) {
  // KFold(3, shuffle=True, random_state=0).split(np.zeros(10))
  const auto splits = KFold(3, /*shuffle=*/true, 0).Split(10);
  ASSERT_TRUE(splits.ok()) << splits.status();
  ASSERT_EQ(splits->size(), 3u);
  EXPECT_THAT((*splits)[0].test, ElementsAre(2, 4, 8, 9));
  EXPECT_THAT((*splits)[0].train, ElementsAre(0, 1, 3, 5, 6, 7));
  EXPECT_THAT((*splits)[1].test, ElementsAre(1, 6, 7));
  EXPECT_THAT((*splits)[1].train, ElementsAre(0, 2, 3, 4, 5, 8, 9));
  EXPECT_THAT((*splits)[2].test, ElementsAre(0, 3, 5));
  EXPECT_THAT((*splits)[2].train, ElementsAre(1, 2, 4, 6, 7, 8, 9));
}

TEST(KFoldTest, NoShuffleFoldsAreContiguousWithLargerFirstFolds) {
  const auto splits = KFold(4).Split(10);
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_THAT((*splits)[0].test, ElementsAre(0, 1, 2));
  EXPECT_THAT((*splits)[1].test, ElementsAre(3, 4, 5));
  EXPECT_THAT((*splits)[2].test, ElementsAre(6, 7));
  EXPECT_THAT((*splits)[3].test, ElementsAre(8, 9));
  for (const auto& split : *splits) ExpectPartition(split, 10);
}

TEST(KFoldTest, SeededSplitIsRepeatable) {
  const KFold kfold(5, /*shuffle=*/true, 4294967295u);
  const auto a = kfold.Split(101);
  const auto b = kfold.Split(101);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].test, (*b)[i].test);
    ExpectPartition((*a)[i], 101);
  }
}

TEST(KFoldTest, RejectsBadArguments) {
  EXPECT_THAT(KFold(1).Split(10).status().message(), HasSubstr("n_splits: k-fold"));
  EXPECT_THAT(KFold(0).Split(10).status().message(), HasSubstr("got 0"));
  EXPECT_THAT(KFold(11).Split(10).status().message(),
              HasSubstr("got n_splits=11 with n_samples=10"));
  EXPECT_THAT(KFold(2).Split(0).status().message(), HasSubstr("n_splits: cannot be greater"));
  EXPECT_THAT(KFold(3, /*shuffle=*/false, 0).Split(10).status().message(),
              HasSubstr("random_state: has no effect"));
  EXPECT_EQ(KFold(11).Split(10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(KFold(10).Split(10).ok());
}

TEST(StratifiedKFoldTest, DigitsMatchesScikitLearn) {
  const nlohmann::json ref = ReadReference("skfold5_noshuffle_digits.json");
  const auto labels = ReadReference("digits_target.json")["target"].get<std::vector<int64_t>>();
  ASSERT_EQ(static_cast<int64_t>(labels.size()), ref["n_samples"].get<int64_t>());
  const auto splits = StratifiedKFold(5).Split(labels);
  ASSERT_TRUE(splits.ok()) << splits.status();
  ASSERT_EQ(splits->size(), ref["folds"].size());
  for (size_t i = 0; i < splits->size(); ++i) {
    EXPECT_EQ((*splits)[i].test, ref["folds"][i]["test"].get<std::vector<int64_t>>()) << i;
    EXPECT_EQ((*splits)[i].train, ref["folds"][i]["train"].get<std::vector<int64_t>>()) << i;
    std::vector<int64_t> class_counts(10, 0);
    for (int64_t s : (*splits)[i].test) ++class_counts[static_cast<size_t>(labels[s])];
    EXPECT_THAT(class_counts,
                ElementsAreArray(ref["test_class_counts_per_fold"][i].get<std::vector<int64_t>>()));
  }
}

TEST(StratifiedKFoldTest, ArbitraryLabelsMatchScikitLearn) {
  // Codes are numbered by first appearance (7, -3, 100), not by value.
  const std::vector<int64_t> y = {7, 7, -3, 7, 100, -3, 7, 100, -3, 7, 7, -3};
  // StratifiedKFold(3, shuffle=True, random_state=42).split(np.zeros(12), y)
  const auto shuffled = StratifiedKFold(3, /*shuffle=*/true, 42).Split(y);
  ASSERT_TRUE(shuffled.ok()) << shuffled.status();
  EXPECT_THAT((*shuffled)[0].test, ElementsAre(0, 1, 2, 11));
  EXPECT_THAT((*shuffled)[1].test, ElementsAre(4, 5, 6, 10));
  EXPECT_THAT((*shuffled)[2].test, ElementsAre(3, 7, 8, 9));
  EXPECT_THAT((*shuffled)[2].train, ElementsAre(0, 1, 2, 4, 5, 6, 10, 11));
  // StratifiedKFold(3).split(np.zeros(12), y)
  const auto plain = StratifiedKFold(3).Split(y);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_THAT((*plain)[0].test, ElementsAre(0, 1, 2, 5));
  EXPECT_THAT((*plain)[1].test, ElementsAre(3, 4, 6, 8));
  EXPECT_THAT((*plain)[2].test, ElementsAre(7, 9, 10, 11));
  EXPECT_THAT((*plain)[0].train, ElementsAre(3, 4, 6, 7, 8, 9, 10, 11));
}

TEST(StratifiedKFoldTest, SplitsDependOnlyOnThePartitionOfLabels) {
  // Relabelling bijectively (scikit-learn's "invariant to class label" property).
  const std::vector<int64_t> y = {3, 1, 1, 2, 3, 3, 1, 2, 2, 3, 1, 1, 3, 2, 1, 3, 3};
  std::vector<int64_t> relabelled;
  for (int64_t v : y) relabelled.push_back(v * -1000 + 17);
  for (bool shuffle : {false, true}) {
    const StratifiedKFold skf(4, shuffle, shuffle ? std::optional<uint32_t>(1) : std::nullopt);
    const auto a = skf.Split(y);
    const auto b = skf.Split(relabelled);
    ASSERT_TRUE(a.ok() && b.ok());
    for (size_t i = 0; i < a->size(); ++i) {
      EXPECT_EQ((*a)[i].test, (*b)[i].test);
      ExpectPartition((*a)[i], static_cast<int64_t>(y.size()));
    }
  }
}

TEST(StratifiedKFoldTest, SmallClassesAreAllowedWhileOneClassIsLargeEnough) {
  // scikit-learn only warns here ("least populated class has only 1 members").
  const auto splits = StratifiedKFold(3).Split(std::vector<int64_t>{0, 0, 0, 1, 2});
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_THAT((*splits)[0].test, ElementsAre(0, 3));
  EXPECT_THAT((*splits)[1].test, ElementsAre(1, 4));
  EXPECT_THAT((*splits)[2].test, ElementsAre(2));
}

TEST(StratifiedKFoldTest, RejectsBadArguments) {
  const auto too_few = StratifiedKFold(3).Split(std::vector<int64_t>{0, 0, 1, 1, 2});
  EXPECT_EQ(too_few.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_few.status().message(),
              HasSubstr("n_splits: cannot be greater than the number of members in each class"));
  EXPECT_THAT(StratifiedKFold(1).Split(std::vector<int64_t>{0, 1}).status().message(),
              HasSubstr("n_splits: k-fold"));
  EXPECT_THAT(StratifiedKFold(3).Split(std::vector<int64_t>{0, 0}).status().message(),
              HasSubstr("got n_splits=3 with n_samples=2"));
  EXPECT_THAT(StratifiedKFold(2).Split(std::vector<int64_t>{}).status().message(),
              HasSubstr("n_samples=0"));
  EXPECT_THAT(
      StratifiedKFold(2, false, 3).Split(std::vector<int64_t>{0, 0, 1, 1}).status().message(),
      HasSubstr("random_state"));
}

}  // namespace
}  // namespace knncluster
