#include "rpc/metrics.h"

#include <unistd.h>

#include <cassert>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace knncluster::rpc {

namespace {

[[maybe_unused]] bool ValidName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// HELP text escapes only backslash and line feed.
std::string EscapeHelp(absl::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="x",b="y"} plus an optional extra label (le for histogram buckets); "" when empty.
std::string LabelSet(const MetricLabels& labels, const char* extra_name = nullptr,
                     const std::string& extra_value = "") {
  if (labels.empty() && extra_name == nullptr) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [name, value] : labels) {
    assert(ValidName(name));
    absl::StrAppend(&out, first ? "" : ",", name, "=\"", EscapeLabelValue(value), "\"");
    first = false;
  }
  if (extra_name != nullptr) {
    absl::StrAppend(&out, first ? "" : ",", extra_name, "=\"", EscapeLabelValue(extra_value),
                    "\"");
  }
  out += "}";
  return out;
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrFormat("%.0f", value);
  }
  for (int precision = 6; precision < 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, value);
    if (std::strtod(s.c_str(), nullptr) == value) return s;
  }
  return absl::StrFormat("%.17g", value);
}

std::vector<double> LatencyBucketsSeconds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

uint64_t ProcessResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

void MetricsRegistry::DeclareCounter(const std::string& name, const std::string& help) {
  assert(ValidName(name));
  absl::MutexLock lock(&mu_);
  if (families_.count(name)) return;
  Family& f = families_[name];
  f.type = Family::Type::kCounter;
  f.help = help;
}

void MetricsRegistry::DeclareHistogram(const std::string& name, const std::string& help,
                                       std::vector<double> bounds) {
  assert(ValidName(name));
  absl::MutexLock lock(&mu_);
  if (families_.count(name)) return;
  Family& f = families_[name];
  f.type = Family::Type::kHistogram;
  f.help = help;
  f.bounds = std::move(bounds);
}

void MetricsRegistry::DeclareGauge(const std::string& name, const std::string& help,
                                   std::function<std::vector<GaugeSample>()> read) {
  assert(ValidName(name));
  absl::MutexLock lock(&mu_);
  if (families_.count(name)) return;
  Family& f = families_[name];
  f.type = Family::Type::kGauge;
  f.help = help;
  f.read = std::move(read);
}

void MetricsRegistry::Increment(const std::string& name, const MetricLabels& labels,
                                double delta) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  assert(it != families_.end() && it->second.type == Family::Type::kCounter);
  if (it == families_.end() || it->second.type != Family::Type::kCounter) return;
  it->second.counters[labels] += delta;
}

void MetricsRegistry::Observe(const std::string& name, const MetricLabels& labels,
                              double value) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  assert(it != families_.end() && it->second.type == Family::Type::kHistogram);
  if (it == families_.end() || it->second.type != Family::Type::kHistogram) return;
  Family& f = it->second;
  Histogram& h = f.histograms[labels];
  if (h.buckets.empty()) h.buckets.assign(f.bounds.size() + 1, 0);
  size_t b = 0;
  while (b < f.bounds.size() && value > f.bounds[b]) ++b;
  ++h.buckets[b];
  h.sum += value;
  ++h.count;
}

double MetricsRegistry::CounterValue(const std::string& name, const MetricLabels& labels) const {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto c = it->second.counters.find(labels);
  return c == it->second.counters.end() ? 0 : c->second;
}

std::string MetricsRegistry::Render() const {
  // Copy under the lock; call the gauge callbacks after releasing it.
  std::map<std::string, Family> families;
  {
    absl::MutexLock lock(&mu_);
    families = families_;
  }
  std::string out;
  for (const auto& [name, f] : families) {
    absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(f.help), "\n");
    switch (f.type) {
      case Family::Type::kCounter:
        absl::StrAppend(&out, "# TYPE ", name, " counter\n");
        for (const auto& [labels, value] : f.counters) {
          absl::StrAppend(&out, name, LabelSet(labels), " ", FormatMetricValue(value), "\n");
        }
        break;
      case Family::Type::kGauge:
        absl::StrAppend(&out, "# TYPE ", name, " gauge\n");
        for (const GaugeSample& s : f.read()) {
          absl::StrAppend(&out, name, LabelSet(s.labels), " ", FormatMetricValue(s.value), "\n");
        }
        break;
      case Family::Type::kHistogram:
        absl::StrAppend(&out, "# TYPE ", name, " histogram\n");
        for (const auto& [labels, h] : f.histograms) {
          uint64_t cumulative = 0;
          for (size_t b = 0; b <= f.bounds.size(); ++b) {
            cumulative += h.buckets[b];
            const std::string le = b < f.bounds.size() ? FormatMetricValue(f.bounds[b]) : "+Inf";
            absl::StrAppend(&out, name, "_bucket", LabelSet(labels, "le", le), " ", cumulative,
                            "\n");
          }
          absl::StrAppend(&out, name, "_sum", LabelSet(labels), " ", FormatMetricValue(h.sum),
                          "\n");
          absl::StrAppend(&out, name, "_count", LabelSet(labels), " ", h.count, "\n");
        }
        break;
    }
  }
  return out;
}

}  // namespace knncluster::rpc
