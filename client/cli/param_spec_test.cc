#include "client/cli/param_spec.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace knncluster::cli {
namespace {

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(ParamSpecTest, ArangeIsNumpys) {
  EXPECT_EQ(*ArangeInt("f", 2, 20, 2), (std::vector<int>{2, 4, 6, 8, 10, 12, 14, 16, 18}));
  EXPECT_EQ(*ArangeInt("f", 10, 0, -3), (std::vector<int>{10, 7, 4, 1}));
  EXPECT_TRUE(ArangeInt("f", 5, 2, 1)->empty());
  EXPECT_FALSE(ArangeInt("f", 1, 5, 0).ok());
  EXPECT_EQ(*ArangeDouble("f", 1, 4, 1), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(*ArangeDouble("f", 1, 2, 0.25), (std::vector<double>{1, 1.25, 1.5, 1.75}));
  // numpy.arange(1, 1.35, 0.1) and arange(0.3, 1.0, 0.1), exactly (repr of numpy's values).
  EXPECT_EQ(*ArangeDouble("f", 1, 1.35, 0.1),
            (std::vector<double>{1.0, 1.1, 1.2000000000000002, 1.3000000000000003}));
  EXPECT_EQ(*ArangeDouble("f", 0.3, 1.0, 0.1),
            (std::vector<double>{0.3, 0.4, 0.5, 0.6000000000000001, 0.7000000000000002,
                                 0.8000000000000003, 0.9000000000000001}));
  auto huge = ArangeInt("--param n_neighbors", 1, 2000000000, 1);
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(Message(huge.status()).find("at most 100000"), std::string::npos) << huge.status();
}

TEST(ParamSpecTest, ValuesListsAndRanges) {
  ParamGrid g;
  ASSERT_TRUE(ParseParamAssignment("--param", "n_neighbors=2:20:2", &g).ok());
  ASSERT_TRUE(ParseParamAssignment("--param", "p=1:4", &g).ok());
  ASSERT_TRUE(ParseParamAssignment("--param", "weights=uniform,distance", &g).ok());
  ASSERT_TRUE(ParseParamAssignment("--param", "leaf_size=10:30:10,50", &g).ok());
  ASSERT_TRUE(ParseParamAssignment("--param", " algorithm = kd_tree,brute", &g).ok());
  EXPECT_EQ(g.n_neighbors, (std::vector<int>{2, 4, 6, 8, 10, 12, 14, 16, 18}));
  EXPECT_EQ(g.p, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(g.weights, (std::vector<std::string>{"uniform", "distance"}));
  EXPECT_EQ(g.leaf_size, (std::vector<int>{10, 20, 50}));
  EXPECT_EQ(g.algorithm, (std::vector<std::string>{"kd_tree", "brute"}));
  EXPECT_EQ(GridKeys(g),
            (std::vector<std::string>{"algorithm", "leaf_size", "n_neighbors", "p", "weights"}));

  ParamGrid h;
  ASSERT_TRUE(ParseParamAssignment("--param", "p=1,1.5:2.5:0.5,inf", &h).ok());
  ASSERT_EQ(h.p.size(), 4u);
  EXPECT_EQ(h.p[1], 1.5);
  EXPECT_EQ(h.p[2], 2);
  EXPECT_TRUE(std::isinf(h.p[3]));

  auto grid = ParseGridSpec("--grid", "n_neighbors=1:4; p=1,2");
  ASSERT_TRUE(grid.ok()) << grid.status();
  EXPECT_EQ(grid->n_neighbors, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(grid->p, (std::vector<double>{1, 2}));
  EXPECT_TRUE(ParseGridSpec("--grid", "")->n_neighbors.empty());
}

TEST(ParamSpecTest, ErrorsNameTheFlagAndKey) {
  struct Case {
    std::string assignment, want;
  } cases[] = {
      {"n_neighbors=x", "--param n_neighbors: \"x\" is not an integer"},
      {"n_neighbors=2.5", "--param n_neighbors: \"2.5\" is not an integer"},
      {"n_neighbors=0,1", "--param n_neighbors: values must be >= 1, got 0"},
      {"n_neighbors=-2:3", "--param n_neighbors: values must be >= 1, but -2:3 gives -2"},
      {"n_neighbors=5:2", "--param n_neighbors: the range 5:2 is empty (numpy's arange(5, 2) has "
                          "no values)"},
      {"n_neighbors=1:5:0", "--param n_neighbors: a range's step must not be 0"},
      {"n_neighbors=1:2:3:4", "--param n_neighbors: \"1:2:3:4\" is not a range start:stop[:step]"},
      {"n_neighbors=1,,2", "--param n_neighbors: empty value in \"1,,2\""},
      {"n_neighbors=", "--param n_neighbors: no values"},
      {"p=0.5", "--param p: p must be >= 1 or inf, got 0.5"},
      {"p=1:inf", "--param p: \"inf\": a range needs finite numbers"},
      {"p=nan", "--param p: \"nan\" is not a number"},
      {"p=0:3", "--param p: p must be >= 1 or inf, but 0:3 gives 0"},
      {"weights=uniform,heavy", "--param weights: \"heavy\" is not one of uniform, distance"},
      {"algorithm=kdtree", "--param algorithm: \"kdtree\" is not one of auto, ball_tree, "
                           "kd_tree, brute"},
      {"metric=euclidean", "--param metric: unknown parameter \"metric\" (expected n_neighbors, "
                           "p, weights, algorithm, leaf_size)"},
      {"n_neighbors", "--param: expected KEY=VALUES (e.g. n_neighbors=2:20:2), got "
                      "\"n_neighbors\""},
  };
  for (const Case& c : cases) {
    ParamGrid g;
    absl::Status s = ParseParamAssignment("--param", c.assignment, &g);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.assignment;
    EXPECT_EQ(Message(s), c.want) << c.assignment;
  }
  ParamGrid g;
  ASSERT_TRUE(ParseParamAssignment("--param", "p=1", &g).ok());
  EXPECT_EQ(Message(SetParamValues("--p", "p", "2", &g)), "--p: p is given twice for the same grid");
  EXPECT_EQ(Message(ParseGridSpec("--grid #2", "k=1").status()),
            "--grid #2 k: unknown parameter \"k\" (expected n_neighbors, p, weights, algorithm, "
            "leaf_size)");
}

class CvTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text) {
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("knnctl_cv_test_" + std::to_string(files_.size()) + ".json"))
                                 .string();
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  ~CvTest() override {
    for (const auto& f : files_) std::remove(f.c_str());
  }
  std::vector<std::string> files_;
};

TEST_F(CvTest, NumberOrFoldsFile) {
  EXPECT_EQ(ParseCv("5")->n_splits, 5);
  EXPECT_TRUE(ParseCv("5")->folds.empty());
  EXPECT_EQ(Message(ParseCv("1").status()), "--cv: the number of folds must be at least 2, got 1");
  EXPECT_EQ(Message(ParseCv("five").status()),
            "--cv: expected a number of folds (>= 2) or a JSON file of folds; cannot open "
            "\"five\"");
  auto objects = ParseCv(Write(R"([{"train": [2, 3], "test": [0, 1]},
                                   {"train": [0, 1], "test": [2, 3]}])"));
  ASSERT_TRUE(objects.ok()) << objects.status();
  ASSERT_EQ(objects->folds.size(), 2u);
  EXPECT_EQ(objects->n_splits, 2);
  EXPECT_EQ(objects->folds[0].train, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(objects->folds[1].test, (std::vector<int64_t>{2, 3}));
  auto pairs = ParseCv(Write("[[[1, 2], [0]], [[0, 2], [1]], [[0, 1], [2]]]"));
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  EXPECT_EQ(pairs->folds.size(), 3u);
  EXPECT_EQ(pairs->folds[2].test, (std::vector<int64_t>{2}));

  const std::string bad = Write(R"([{"train": [1, -1], "test": [0]}])");
  EXPECT_EQ(Message(ParseCv(bad).status()),
            "--cv: " + bad + ": fold 0.train[1]: expected a row index (an integer >= 0), got -1");
  const std::string empty = Write(R"([{"train": [1], "test": []}])");
  EXPECT_EQ(Message(ParseCv(empty).status()),
            "--cv: " + empty + ": fold 0: train and test must both be non-empty");
  const std::string junk = Write("{not json");
  EXPECT_EQ(Message(ParseCv(junk).status()), "--cv: " + junk + ": not valid JSON");
}

}  // namespace
}  // namespace knncluster::cli
