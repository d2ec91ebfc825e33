// A strict CSV reader producing a Dataset: every feature field must be a number, and any
// problem is an InvalidArgument naming file:line:column (and the header name when there is one),
// e.g. `bad.csv:12:5 (column "pixel_4"): "abc" is not a number`. It never guesses a value: no
// empty field, no NaN/Inf unless allowed, no ragged row becomes a silent 0.
//
// Accepted syntax: one record per line, `\n` or `\r\n` line ends, a configurable one-character
// delimiter, spaces and tabs around a field ignored, RFC 4180 double-quoted fields ("a,b",
// "say ""hi""", line breaks inside quotes), a UTF-8 byte-order mark, and blank lines (skipped,
// but still counted in line numbers). Numbers are parsed with std::from_chars (locale
// independent) plus an optional leading '+'; the whole field must be consumed.
//
// Pure functions: thread-safe. The returned Dataset owns its data.
#ifndef KNNCLUSTER_CORE_DATASETS_CSV_H_
#define KNNCLUSTER_CORE_DATASETS_CSV_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "core/datasets/dataset.h"

namespace knncluster {

// Which column holds the labels (targets): none, a 0-based index (negative counts from the end,
// -1 = last), or a header name (which requires a header).
class LabelColumn {
 public:
  enum class Kind { kNone, kIndex, kName };

  LabelColumn() = default;  // none: every column is a feature
  static LabelColumn None() { return LabelColumn(); }
  static LabelColumn Index(int index) { return LabelColumn(Kind::kIndex, index, {}); }
  static LabelColumn Name(std::string name) { return LabelColumn(Kind::kName, 0, std::move(name)); }
  static LabelColumn Last() { return Index(-1); }

  Kind kind() const { return kind_; }
  int index() const { return index_; }               // meaningful for kIndex
  const std::string& name() const { return name_; }  // meaningful for kName

 private:
  LabelColumn(Kind kind, int index, std::string name)
      : kind_(kind), index_(index), name_(std::move(name)) {}
  Kind kind_ = Kind::kNone;
  int index_ = 0;
  std::string name_;
};

struct CsvOptions {
  // true: the first record is a header; false: it is data. nullopt (default) = detect: the first
  // record is a header when one of its feature fields is not a number, or when only its label
  // field is not a number while every later label is (so "5.1,3.5,setosa" is data, but
  // "x,y,label" over numeric labels is a header). A header of numeric-looking names
  // ("0,1,2") cannot be detected: pass true.
  std::optional<bool> header;
  // The label column; default none (unlabeled). Labels are numbers, or, when any label is not a
  // number, strings: then class_names holds the sorted distinct labels and targets their codes.
  LabelColumn label;
  char delimiter = ',';
  // Accept NaN and +-Inf ("nan", "inf", "infinity", any case) in feature and numeric label fields.
  bool allow_nonfinite = false;
};

// Reads and parses the CSV file at `path`; errors name `path`. NotFound when the file does not
// exist. The Dataset's name is the file name without directories and extension.
absl::StatusOr<Dataset> LoadCsv(const std::string& path, const CsvOptions& options = {});

// Parses CSV `text`; `source_name` is used in error messages and as the Dataset's name.
absl::StatusOr<Dataset> ParseCsv(std::string_view text, std::string_view source_name,
                                 const CsvOptions& options = {});

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_DATASETS_CSV_H_
