// Parity with a live scikit-learn: runs tests/parity/gen_split_refs.py under /usr/bin/python3
// (Debian's python3-sklearn, never a pyenv interpreter), then compares every split it prints
// with ours, index for index, including which calls must fail. Each test asks the script for one
// section only, because ctest runs every test in its own process.
// Without /usr/bin/python3 + sklearn the tests skip, unless CI=true, where they fail.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/model_selection/random_state.h"
#include "core/model_selection/split.h"
#include "gtest/gtest.h"
#include "tests/testing/sklearn_oracle.h"
#include "nlohmann/json.hpp"

namespace knncluster {
namespace {

using testing::InCi;
using testing::kPython;

// Runs the generator for `section` into a temp file and parses it. Sets *skip_reason when the
// Python side is unavailable.
std::optional<nlohmann::json> Generate(const std::string& section, std::string* skip_reason) {
  *skip_reason = testing::SklearnUnavailableReason();
  if (!skip_reason->empty()) return std::nullopt;
  const std::string out = absl::StrCat(::testing::TempDir(), "split_refs_", section, "_",
                                       static_cast<long>(getpid()), ".json");
  const std::string command = absl::StrCat(kPython, " ", KNN_SOURCE_DIR,
                                           "/tests/parity/gen_split_refs.py ", section, " > ", out);
  const int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << "generator failed: " << command;
  if (rc != 0) return std::nullopt;
  std::ifstream in(out);
  nlohmann::json json = nlohmann::json::parse(in);
  in.close();
  std::remove(out.c_str());
  return json;
}

// Fetches a section or skips/fails the calling test.
#define KNN_GENERATE_OR_SKIP(json, section)                                             \
  std::string skip_reason;                                                              \
  std::optional<nlohmann::json> json = Generate(section, &skip_reason);                 \
  if (!json.has_value()) {                                                              \
    if (skip_reason.empty()) return; /* generator failure already reported */           \
    if (InCi()) FAIL() << "CI=true and parity references unavailable: " << skip_reason; \
    GTEST_SKIP() << skip_reason;                                                        \
  }                                                                                     \
  ASSERT_TRUE(json->contains(section));                                                 \
  RecordProperty("sklearn", (*json)["versions"]["sklearn"].get<std::string>())

std::optional<uint32_t> SeedOf(const nlohmann::json& c) {
  if (c["seed"].is_null()) return std::nullopt;
  return c["seed"].get<uint32_t>();
}

// Compares a StatusOr<vector<TrainTestIndices>> with a case's "folds" or "error".
void ExpectFoldsMatch(const absl::StatusOr<std::vector<TrainTestIndices>>& got,
                      const nlohmann::json& c, const std::string& what) {
  if (c.contains("error")) {
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument)
        << what << ": scikit-learn raised \"" << c["error"].get<std::string>() << "\"";
    return;
  }
  ASSERT_TRUE(got.ok()) << what << ": " << got.status();
  ASSERT_EQ(got->size(), c["folds"].size()) << what;
  for (size_t i = 0; i < got->size(); ++i) {
    EXPECT_EQ((*got)[i].test, c["folds"][i]["test"].get<std::vector<int64_t>>())
        << what << " fold " << i << " test";
    EXPECT_EQ((*got)[i].train, c["folds"][i]["train"].get<std::vector<int64_t>>())
        << what << " fold " << i << " train";
  }
}

TEST(SplitParityTest, RandomStateMatchesNumpy) {
  KNN_GENERATE_OR_SKIP(json, "rng");
  const nlohmann::json& rng = (*json)["rng"];
  ASSERT_FALSE(rng["uint32"].empty());
  for (const auto& c : rng["uint32"]) {
    RandomState state(c["seed"].get<uint32_t>());
    for (const auto& expected : c["values"]) {
      ASSERT_EQ(state.NextUint32(), expected.get<uint32_t>()) << "seed " << c["seed"];
    }
  }
  ASSERT_FALSE(rng["permutation"].empty());
  for (const auto& c : rng["permutation"]) {
    EXPECT_EQ(RandomState(c["seed"].get<uint32_t>()).Permutation(c["n"].get<int64_t>()),
              c["perm"].get<std::vector<int64_t>>())
        << "seed " << c["seed"] << " n " << c["n"];
  }
  ASSERT_FALSE(rng["random_interval"].empty());
  for (const auto& c : rng["random_interval"]) {
    RandomState state(c["seed"].get<uint32_t>());
    std::vector<uint64_t> got;
    for (size_t i = 0; i < c["values"].size(); ++i) {
      got.push_back(state.RandomInterval(c["max"].get<uint64_t>()));
    }
    EXPECT_EQ(got, c["values"].get<std::vector<uint64_t>>())
        << "seed " << c["seed"] << " max " << c["max"];
  }
}

TEST(SplitParityTest, TrainTestSplitMatchesScikitLearn) {
  KNN_GENERATE_OR_SKIP(json, "tts");
  int checked = 0;
  int errors = 0;
  for (const auto& c : (*json)["tts"]) {
    const bool fraction = c.contains("fraction");
    const TestSize test_size = fraction ? TestSize::Fraction(c["fraction"].get<double>())
                                        : TestSize::Count(c["count"].get<int64_t>());
    const std::string what =
        c.contains("train") ? absl::StrCat("n=", c["n"].get<int64_t>()) : c.dump();
    const auto got =
        TrainTestSplit(c["n"].get<int64_t>(), test_size, SeedOf(c), c["shuffle"].get<bool>());
    if (c.contains("error")) {
      ++errors;
      EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument)
          << c.dump() << ": scikit-learn raised";
      continue;
    }
    ++checked;
    ASSERT_TRUE(got.ok()) << c.dump() << ": " << got.status();
    EXPECT_EQ(got->train, c["train"].get<std::vector<int64_t>>()) << what << " " << c["seed"];
    EXPECT_EQ(got->test, c["test"].get<std::vector<int64_t>>()) << what << " " << c["seed"];
  }
  EXPECT_GT(checked, 100);
  EXPECT_GT(errors, 10);
}

TEST(SplitParityTest, KFoldMatchesScikitLearn) {
  KNN_GENERATE_OR_SKIP(json, "kfold");
  ASSERT_GT((*json)["kfold"].size(), 100u);
  for (const auto& c : (*json)["kfold"]) {
    const std::string what =
        absl::StrCat("KFold(", c["n_splits"].get<int64_t>(), ", shuffle=", c["shuffle"].get<bool>(),
                     ", seed=", c["seed"].dump(), ").split(n=", c["n"].get<int64_t>(), ")");
    const KFold kfold(c["n_splits"].get<int64_t>(), c["shuffle"].get<bool>(), SeedOf(c));
    ExpectFoldsMatch(kfold.Split(c["n"].get<int64_t>()), c, what);
  }
}

TEST(SplitParityTest, StratifiedKFoldMatchesScikitLearn) {
  KNN_GENERATE_OR_SKIP(json, "skfold");
  ASSERT_GT((*json)["skfold"].size(), 100u);
  for (const auto& c : (*json)["skfold"]) {
    const auto labels = c["labels"].get<std::vector<int64_t>>();
    const std::string what = absl::StrCat(
        "StratifiedKFold(", c["n_splits"].get<int64_t>(), ", shuffle=", c["shuffle"].get<bool>(),
        ", seed=", c["seed"].dump(), ") on ", labels.size(), " labels");
    const StratifiedKFold skfold(c["n_splits"].get<int64_t>(), c["shuffle"].get<bool>(), SeedOf(c));
    ExpectFoldsMatch(skfold.Split(labels), c, what);
  }
}

}  // namespace
}  // namespace knncluster
