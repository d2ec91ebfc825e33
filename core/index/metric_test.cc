#include "core/index/metric.h"

#include <cmath>

#include "gtest/gtest.h"

namespace knncluster {
namespace {

TEST(MinkowskiTest, KindsAndValues) {
  const double a[] = {0, 3, 1, 2, 5}, b[] = {4, 0, 1, 0, 5};  // |diff| = 4 3 0 2 0
  struct Case {
    double p;
    Minkowski::Kind kind;
    double rdist, dist;
  } cases[] = {
      {1, Minkowski::Kind::kManhattan, 9, 9},
      {2, Minkowski::Kind::kEuclidean, 29, std::sqrt(29.0)},
      {3, Minkowski::Kind::kIntegerPower, 99, std::pow(99.0, 1.0 / 3)},
      {1.5, Minkowski::Kind::kGeneralPower, 8 + std::pow(3.0, 1.5) + std::pow(2.0, 1.5), 0},
      {HUGE_VAL, Minkowski::Kind::kChebyshev, 4, 4},
  };
  for (const Case& c : cases) {
    auto m = Minkowski::Create(c.p);
    ASSERT_TRUE(m.ok()) << c.p;
    EXPECT_EQ(m->kind(), c.kind);
    EXPECT_DOUBLE_EQ(m->Rdist(a, b, 5), c.rdist) << c.p;
    if (c.dist > 0) {
      EXPECT_DOUBLE_EQ(m->RdistToDist(m->Rdist(a, b, 5)), c.dist) << c.p;
    }
    EXPECT_DOUBLE_EQ(m->DistToRdist(m->RdistToDist(c.rdist)), c.rdist) << c.p;
  }
}

TEST(MinkowskiTest, RejectsOrdersBelowOneAndParsesInf) {
  for (double p : {0.5, 0.0, -1.0, std::nan("")}) {
    auto m = Minkowski::Create(p);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find("p:"), std::string::npos);
  }
  EXPECT_TRUE(Minkowski::Parse("inf")->is_chebyshev());
  EXPECT_EQ(Minkowski::Parse("1.5")->p(), 1.5);
  EXPECT_EQ(Minkowski::Parse("inf")->ToString(), "inf");
  EXPECT_FALSE(Minkowski::Parse("two").ok());
  EXPECT_FALSE(Minkowski::Parse("2x").ok());
}

}  // namespace
}  // namespace knncluster
