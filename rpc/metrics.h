// MetricsRegistry: the counters, histograms and gauges a server exposes on its HTTP port, in the
// Prometheus text exposition format 0.0.4 (what `GET /metrics` returns). gRPC-free (std + Abseil),
// so both servers, their HTTP port and the unit tests share it without a transport.
//
// Counters and histograms are pushed (Increment, Observe) by whoever sees the event; gauges are
// pulled: a gauge family is a callback the registry calls at each Render, so a gauge is read from
// the structure that owns the state (WorkerPool, ModelRegistry, ...) at scrape time and can never
// drift from it. Histograms have fixed bucket bounds, given when the family is declared.
//
// Names and label names must match [a-zA-Z_:][a-zA-Z0-9_:]* (checked with assert: they are ours);
// label values may be anything and are escaped (\\, \", \n) on output.
//
// Thread-safe: every method may be called from any thread. Render calls the gauge callbacks
// without holding the registry's lock, so a callback may take locks of its own.
#ifndef KNNCLUSTER_RPC_METRICS_H_
#define KNNCLUSTER_RPC_METRICS_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace knncluster::rpc {

// Label name → value, in the order the family declared its label names.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

struct GaugeSample {
  MetricLabels labels;
  double value = 0;
};

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Declares a family once; declaring a name twice keeps the first declaration.
  void DeclareCounter(const std::string& name, const std::string& help);
  // `bounds`: the buckets' upper bounds, ascending (+Inf is implicit).
  void DeclareHistogram(const std::string& name, const std::string& help,
                        std::vector<double> bounds);
  // `read` is called at every Render and returns the family's current samples.
  void DeclareGauge(const std::string& name, const std::string& help,
                    std::function<std::vector<GaugeSample>()> read);

  // REQUIRES: `name` declared as a counter (resp. histogram); otherwise a no-op (asserts).
  void Increment(const std::string& name, const MetricLabels& labels, double delta = 1);
  void Observe(const std::string& name, const MetricLabels& labels, double value);

  // The current value of one counter series (0 when it has none). For tests.
  double CounterValue(const std::string& name, const MetricLabels& labels) const;

  // Every family, in name order, as Prometheus text format 0.0.4.
  std::string Render() const;

 private:
  struct Histogram {
    std::vector<uint64_t> buckets;  // per bound, not cumulative; +Inf last
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    enum class Type { kCounter, kHistogram, kGauge } type = Type::kCounter;
    std::string help;
    std::vector<double> bounds;
    std::map<MetricLabels, double> counters;
    std::map<MetricLabels, Histogram> histograms;
    std::function<std::vector<GaugeSample>()> read;
  };

  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

// A label value escaped for the text format: backslash, double quote and line feed.
std::string EscapeLabelValue(absl::string_view value);
// A sample value: integers without a fraction, +Inf / -Inf / NaN as Prometheus spells them,
// everything else as the shortest decimal that reads back exactly.
std::string FormatMetricValue(double value);

// Bounds for latencies in seconds: 1 ms .. 60 s.
std::vector<double> LatencyBucketsSeconds();

// This process's resident set size in bytes (/proc/self/statm), 0 when unknown.
uint64_t ProcessResidentBytes();

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_METRICS_H_
