// libFuzzer target: the CSV loader (core/datasets/csv.h) on arbitrary bytes.
//
// Every input is parsed as a file's contents under four option sets that reach different code
// (header detection, label by index / by name / last, another delimiter, non-finite values). An
// accepted file must give a consistent Dataset; any input may be refused, with InvalidArgument
// (bad data) or ResourceExhausted (too large), and nothing else.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/datasets/csv.h"
#include "fuzz/fuzz_check.h"

namespace {

using knncluster::CsvOptions;
using knncluster::Dataset;
using knncluster::LabelColumn;

void CheckDataset(const Dataset& ds, const CsvOptions& options) {
  const size_t rows = ds.features.rows();
  FUZZ_CHECK(rows >= 1);
  FUZZ_CHECK(ds.features.values().size() == rows * ds.features.cols());
  FUZZ_CHECK(ds.feature_names.empty() || ds.feature_names.size() == ds.features.cols());
  if (!options.allow_nonfinite) {
    for (double v : ds.features.values()) FUZZ_CHECK(std::isfinite(v));
  }
  if (options.label.kind() == LabelColumn::Kind::kNone) {
    FUZZ_CHECK(ds.targets.empty() && ds.class_names.empty());
    return;
  }
  FUZZ_CHECK(ds.targets.size() == rows);
  if (!ds.class_names.empty()) {
    for (size_t i = 1; i < ds.class_names.size(); ++i) {
      FUZZ_CHECK(ds.class_names[i - 1] < ds.class_names[i]);  // sorted, distinct
    }
    for (double t : ds.targets) {
      FUZZ_CHECK(t >= 0 && t < static_cast<double>(ds.class_names.size()) && t == std::floor(t));
    }
  }
}

void ParseAndCheck(std::string_view text, const CsvOptions& options) {
  absl::StatusOr<Dataset> ds = knncluster::ParseCsv(text, "fuzz.csv", options);
  if (ds.ok()) {
    CheckDataset(*ds, options);
  } else {
    FUZZ_CHECK(ds.status().code() == absl::StatusCode::kInvalidArgument ||
               ds.status().code() == absl::StatusCode::kResourceExhausted);
    FUZZ_CHECK(!ds.status().message().empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  CsvOptions detect;  // header detected, no label column
  ParseAndCheck(text, detect);

  CsvOptions last;  // header detected, label in the last column
  last.label = LabelColumn::Last();
  ParseAndCheck(text, last);

  CsvOptions named;  // header required by the label's name
  named.label = LabelColumn::Name("label");
  ParseAndCheck(text, named);

  CsvOptions other;  // no header, first column labels, ';' separated, NaN/Inf allowed
  other.header = false;
  other.label = LabelColumn::Index(0);
  other.delimiter = ';';
  other.allow_nonfinite = true;
  ParseAndCheck(text, other);
  return 0;
}
