#include "rpc/metrics.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace knncluster::rpc {
namespace {

TEST(MetricsTest, RendersCountersGaugesAndHistogramsInTextFormat004) {
  MetricsRegistry m;
  m.DeclareCounter("calls_total", "Calls.\nSecond line \\ backslash");
  m.DeclareGauge("workers", "Workers by state.", [] {
    return std::vector<GaugeSample>{{{{"state", "alive"}}, 2}, {{{"state", "dead"}}, 0}};
  });
  m.DeclareHistogram("latency_seconds", "Latency.", {0.1, 1});
  m.Increment("calls_total", {{"method", "Fit"}, {"code", "OK"}});
  m.Increment("calls_total", {{"method", "Fit"}, {"code", "OK"}});
  m.Increment("calls_total", {{"method", "a\"b\\c\nd"}, {"code", "NOT_FOUND"}}, 3);
  m.Observe("latency_seconds", {{"method", "Fit"}}, 0.05);
  m.Observe("latency_seconds", {{"method", "Fit"}}, 0.1);  // le is inclusive
  m.Observe("latency_seconds", {{"method", "Fit"}}, 0.5);
  m.Observe("latency_seconds", {{"method", "Fit"}}, 7);
  EXPECT_EQ(m.CounterValue("calls_total", {{"method", "Fit"}, {"code", "OK"}}), 2);
  EXPECT_EQ(m.CounterValue("calls_total", {{"method", "Predict"}, {"code", "OK"}}), 0);
  EXPECT_EQ(m.Render(),
            "# HELP calls_total Calls.\\nSecond line \\\\ backslash\n"
            "# TYPE calls_total counter\n"
            "calls_total{method=\"Fit\",code=\"OK\"} 2\n"
            "calls_total{method=\"a\\\"b\\\\c\\nd\",code=\"NOT_FOUND\"} 3\n"
            "# HELP latency_seconds Latency.\n"
            "# TYPE latency_seconds histogram\n"
            "latency_seconds_bucket{method=\"Fit\",le=\"0.1\"} 2\n"
            "latency_seconds_bucket{method=\"Fit\",le=\"1\"} 3\n"
            "latency_seconds_bucket{method=\"Fit\",le=\"+Inf\"} 4\n"
            "latency_seconds_sum{method=\"Fit\"} 7.65\n"
            "latency_seconds_count{method=\"Fit\"} 4\n"
            "# HELP workers Workers by state.\n"
            "# TYPE workers gauge\n"
            "workers{state=\"alive\"} 2\n"
            "workers{state=\"dead\"} 0\n");
}

TEST(MetricsTest, GaugeCallbacksAreReadAtEveryRender) {
  MetricsRegistry m;
  int value = 1;
  m.DeclareGauge("g", "A gauge.", [&value] { return std::vector<GaugeSample>{{{}, double(value)}}; });
  EXPECT_NE(m.Render().find("\ng 1\n"), std::string::npos);
  value = 5;
  EXPECT_NE(m.Render().find("\ng 5\n"), std::string::npos);
}

TEST(MetricsTest, FormatsValues) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(-3), "-3");
  EXPECT_EQ(FormatMetricValue(0.25), "0.25");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(1e20), "1e+20");
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("q\"b\\n\n"), "q\\\"b\\\\n\\n");
}

TEST(MetricsTest, ProcessResidentBytesIsPositive) { EXPECT_GT(ProcessResidentBytes(), 0u); }

}  // namespace
}  // namespace knncluster::rpc
