#include "rpc/convert.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "rpc/status.h"

namespace knncluster::rpc {
namespace {

TEST(ConvertTest, MatrixRoundTripAndShapeErrors) {
  Matrix m(2, 3, {1, 2, 3, 4, 5, 6});
  v1::Matrix p;
  ToProto(m, &p);
  auto back = FromProto(p, "queries");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->values(), m.values());
  p.add_values(7);
  auto bad = FromProto(p, "queries");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "queries.values: expected rows * cols = 2 * 3 values, got 7");
  p.mutable_values()->RemoveLast();
  p.set_values(4, std::nan(""));
  bad = FromProto(p, "queries");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("queries.row[1][1]"), std::string::npos) << bad.status();
  p.set_rows(uint64_t{1} << 62);
  EXPECT_FALSE(FromProto(p, "queries").ok());
}

TEST(ConvertTest, ParamsDefaultsChebyshevAndErrors) {
  v1::NeighborsParams p;
  auto d = FromProto(p, "params");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->n_neighbors, 5);
  EXPECT_EQ(d->p, 2);
  p.set_metric(v1::METRIC_CHEBYSHEV);
  auto c = FromProto(p, "params");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(std::isinf(c->p));
  v1::NeighborsParams round;
  ToProto(*c, &round);
  EXPECT_EQ(round.metric(), v1::METRIC_CHEBYSHEV);
  p.set_metric(v1::METRIC_MINKOWSKI);
  p.set_p(0.5);
  auto bad = FromProto(p, "params");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("params.p"), std::string::npos) << bad.status();
  p.set_p(2);
  p.set_n_neighbors(0);
  bad = FromProto(p, "params");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("params.n_neighbors"), std::string::npos) << bad.status();
  p.set_n_neighbors(3);
  p.set_algorithm(static_cast<v1::Algorithm>(42));
  EXPECT_FALSE(FromProto(p, "params").ok());
}

TEST(ConvertTest, NamesAndStatus) {
  EXPECT_TRUE(ValidateName("digits-train_1.v2", "dataset").ok());
  EXPECT_FALSE(ValidateName("", "dataset").ok());
  EXPECT_FALSE(ValidateName("../etc", "dataset").ok());
  EXPECT_FALSE(ValidateName("..", "dataset").ok());
  auto g = ToGrpcStatus(absl::NotFoundError("model: no model named \"x\""));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(FromGrpcStatus(g), absl::NotFoundError("model: no model named \"x\""));
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace knncluster::rpc

namespace knncluster::rpc {
namespace {

TEST(NeighborsSinkTest, WritesStraightIntoTheMessage) {
  v1::Neighbors out;
  NeighborsSink sink = NeighborsSinkInto(&out);
  auto arrays = sink(3, 2);
  ASSERT_TRUE(arrays.ok());
  for (int i = 0; i < 6; ++i) {
    arrays->first[i] = 0.5 * i;
    arrays->second.Set(i, 10 + i);
  }
  EXPECT_EQ(out.indices_size(), 6);
  EXPECT_EQ(out.indices32_size(), 0);
  auto back = FromProto(out, "neighbors");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->num_queries, 3u);
  EXPECT_EQ(back->k, 2u);
  EXPECT_EQ(back->distances, (std::vector<double>{0, 0.5, 1, 1.5, 2, 2.5}));
  EXPECT_EQ(back->indices, (std::vector<int64_t>{10, 11, 12, 13, 14, 15}));
  // More values than a field can hold: refused naming k.
  v1::Neighbors huge;
  auto refused = NeighborsSinkInto(&huge)(size_t{1} << 31, 4);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("k:"), std::string::npos);
}

// The compact form: the same values through indices32, read back alike; a reader refuses a
// message with indices in both fields or in neither.
TEST(NeighborsSinkTest, CompactIndicesTravelAs32BitValues) {
  EXPECT_TRUE(CompactIndices(true, uint64_t{1} << 31));
  EXPECT_FALSE(CompactIndices(true, (uint64_t{1} << 31) + 1));
  EXPECT_FALSE(CompactIndices(false, 10));
  v1::Neighbors out;
  auto arrays = NeighborsSinkInto(&out, /*compact=*/true)(2, 2);
  ASSERT_TRUE(arrays.ok());
  const std::vector<int64_t> ids = {0, 7, (int64_t{1} << 31) - 1, 3};
  for (int i = 0; i < 4; ++i) {
    arrays->first[i] = i;
    arrays->second.Set(i, ids[i]);
  }
  EXPECT_EQ(out.indices_size(), 0);
  ASSERT_EQ(out.indices32_size(), 4);
  EXPECT_EQ(out.indices32(2), std::numeric_limits<int32_t>::max());
  auto back = FromProto(out, "neighbors");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->indices, ids);
  const IdsIn in = IndicesOf(out);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(in[i], ids[i]);
  EXPECT_EQ(IndexRange(out), (std::pair<int64_t, int64_t>{0, (int64_t{1} << 31) - 1}));
  v1::Neighbors wide;
  for (int64_t id : {5, -1, 9}) wide.add_indices(id);
  EXPECT_EQ(IndexRange(wide), (std::pair<int64_t, int64_t>{-1, 9}));
  EXPECT_EQ(IndexRange(v1::Neighbors()), (std::pair<int64_t, int64_t>{0, -1}));

  v1::Neighbors both = out;
  both.add_indices(0);
  both.add_indices(7);
  both.add_indices(9);
  both.add_indices(3);
  EXPECT_EQ(CheckShape(both, "n").code(), absl::StatusCode::kInvalidArgument);
  v1::Neighbors neither = out;
  neither.clear_indices32();
  absl::Status st = CheckShape(neither, "n");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("indices32"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace knncluster::rpc
