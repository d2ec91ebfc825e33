#include "rpc/admission.h"

#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster::rpc {
namespace {

using ::testing::HasSubstr;

AdmissionOptions Options(int max_concurrent, uint64_t max_bytes) {
  AdmissionOptions o;
  o.server = "coordinator";
  o.max_concurrent = max_concurrent;
  o.max_inflight_bytes = max_bytes;
  return o;
}

TEST(AdmissionControlTest, RefusesBeyondTheConcurrencyLimitNamingTheFlag) {
  AdmissionControl admission(Options(2, 0));
  auto a = admission.Admit("Predict", 10);
  auto b = admission.Admit("Predict", 10);
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = admission.Admit("Predict", 10);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("--max-concurrent-requests=2"));
  EXPECT_THAT(c.status().message(), HasSubstr("Predict: coordinator overloaded: 2 calls"));
  EXPECT_EQ(admission.refused(), 1u);
  EXPECT_EQ(admission.in_flight(), 2);
  *a = AdmissionControl::Ticket();  // released
  EXPECT_EQ(admission.in_flight(), 1);
  EXPECT_TRUE(admission.Admit("Predict", 10).ok());
  EXPECT_EQ(admission.in_flight(), 1);  // that ticket died at the end of the statement
}

TEST(AdmissionControlTest, BoundsTheBytesInFlight) {
  AdmissionControl admission(Options(0, 3 << 20));
  auto a = admission.Admit("KNeighbors", 2 << 20);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(admission.in_flight_bytes(), uint64_t{2} << 20);
  auto b = admission.Admit("KNeighbors", 2 << 20);
  ASSERT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(b.status().message(), HasSubstr("--max-inflight-request-mb=3"));
  EXPECT_THAT(b.status().message(), HasSubstr("2.0 MiB in flight"));
  // Larger than the whole budget: refused even when idle, with advice.
  *a = AdmissionControl::Ticket();
  auto huge = admission.Admit("KNeighbors", 4 << 20);
  ASSERT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(huge.status().message(), HasSubstr("smaller batches"));
  EXPECT_TRUE(admission.Admit("KNeighbors", 3 << 20).ok());
  EXPECT_EQ(admission.in_flight_bytes(), 0u);
}

TEST(AdmissionControlTest, TicketsMoveWithoutDoubleRelease) {
  AdmissionControl admission(Options(1, 100));
  std::vector<AdmissionControl::Ticket> held;
  {
    auto t = admission.Admit("Fit", 40);
    ASSERT_TRUE(t.ok());
    held.push_back(std::move(*t));
  }
  EXPECT_EQ(admission.in_flight(), 1);
  EXPECT_EQ(admission.in_flight_bytes(), 40u);
  AdmissionControl::Ticket moved = std::move(held[0]);
  held.clear();
  EXPECT_EQ(admission.in_flight(), 1);
  moved = AdmissionControl::Ticket();
  EXPECT_EQ(admission.in_flight(), 0);
  EXPECT_EQ(admission.in_flight_bytes(), 0u);
}

TEST(AdmissionControlTest, ZeroMeansUnlimited) {
  AdmissionControl admission(Options(0, 0));
  std::vector<AdmissionControl::Ticket> held;
  for (int i = 0; i < 1000; ++i) {
    auto t = admission.Admit("Predict", uint64_t{1} << 40);
    ASSERT_TRUE(t.ok());
    held.push_back(std::move(*t));
  }
  EXPECT_EQ(admission.refused(), 0u);
}

}  // namespace
}  // namespace knncluster::rpc
