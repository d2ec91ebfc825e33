#include "core/index/exact_kernels.h"

#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace knncluster::index_internal {
namespace {

// Every metric the kernels serve, every width around the 4-lane blocks, values that make
// rounding matter: the kernel's distances equal the policy's Rdist bit for bit.
TEST(ExactKernelsTest, BitIdenticalToThePolicyRdist) {
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> u(-1e3, 1e3);
  for (double p : {1.0, 2.0, 3.0, 4.0, 7.0, std::numeric_limits<double>::infinity()}) {
    auto m = Minkowski::Create(p);
    ASSERT_TRUE(m.ok());
    for (size_t d : {1, 3, 4, 5, 8, 13, 64, 67}) {
      const size_t n = 37;
      std::vector<double> rows(n * d), q(d), got(n);
      for (double& v : rows) v = u(gen) / 3;
      for (double& v : q) v = u(gen) / 7;
      if (!RdistRows(*m, q.data(), rows.data(), n, d, got.data())) {
        GTEST_SKIP() << "no vector kernel on this CPU (" << ExactKernelName() << ")";
      }
      m->Visit([&](auto policy) {
        for (size_t i = 0; i < n; ++i) {
          const double want = policy.Rdist(q.data(), rows.data() + i * d, d);
          EXPECT_EQ(std::memcmp(&want, &got[i], sizeof(double)), 0)
              << "p=" << p << " d=" << d << " row " << i << ": " << want << " vs " << got[i];
        }
      });
    }
  }
}

TEST(ExactKernelsTest, GeneralPowerFallsBackToTheScalarPolicy) {
  auto m = Minkowski::Create(1.5);
  ASSERT_TRUE(m.ok());
  double q[4] = {1, 2, 3, 4}, out[1];
  EXPECT_FALSE(RdistRows(*m, q, q, 1, 4, out));
}

}  // namespace
}  // namespace knncluster::index_internal
