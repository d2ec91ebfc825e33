#include "core/base/matrix.h"

#include "gtest/gtest.h"

namespace knncluster {
namespace {

TEST(MatrixTest, RowMajorLayoutAndGather) {
  Matrix m(3, 2, {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(m.at(1, 0), 3);
  MatrixView v = m;
  EXPECT_EQ(v.row(2)[1], 6);
  EXPECT_EQ(v.Slice(1, 3).at(0, 1), 4);
  const int64_t rows[] = {2, 0};
  Matrix g = Matrix::Gather(v, rows);
  EXPECT_EQ(g.values(), (std::vector<double>{5, 6, 1, 2}));
}

}  // namespace
}  // namespace knncluster
