#include "rpc/content_hash.h"

#include <vector>

#include "gtest/gtest.h"

namespace knncluster::rpc {
namespace {

// Expected values from Python's hashlib over the documented byte layout (struct "<QQQ", "<d").
TEST(ContentHashTest, MatchesTheDocumentedLayout) {
  Matrix X(2, 3, {1, 2, 3, 4, 5, 6.5});
  EXPECT_EQ(DatasetContentHash(X, std::vector<double>{0, 1}),
            "a0252be3047cc480289480f6b8a9d5b1a4f9f25b23dda10919b2fef350e72dd1");
  EXPECT_EQ(DatasetContentHash(X, {}),
            "a080de28ad0b9159c6af6448259d74af8a1c2352aa6ae0b7cfaacfbac69a5cec");
}

TEST(ContentHashTest, AnyChangedValueOrShapeChangesTheHash) {
  Matrix X(2, 3, {1, 2, 3, 4, 5, 6.5});
  const std::string base = DatasetContentHash(X, std::vector<double>{0, 1});
  Matrix Y = X;
  Y.row(1)[2] = 6.500000000000001;
  EXPECT_NE(DatasetContentHash(Y, std::vector<double>{0, 1}), base);
  EXPECT_NE(DatasetContentHash(X, std::vector<double>{1, 0}), base);
  Matrix Z(3, 2, {1, 2, 3, 4, 5, 6.5});  // same values, other shape
  EXPECT_NE(DatasetContentHash(Z, std::vector<double>{0, 1, 2}),
            DatasetContentHash(X, std::vector<double>{0, 1, 2}));
}

}  // namespace
}  // namespace knncluster::rpc
