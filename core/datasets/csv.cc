#include "core/datasets/csv.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/datasets/io_internal.h"

namespace knncluster {
namespace {

using datasets_internal::QuoteForMessage;

// One field of a record. `text` is the unquoted content: trimmed when the field was not quoted,
// exact (with "" unescaped) when it was.
struct Field {
  std::string text;
  bool quoted = false;
};

// Splits CSV text into records. Owns nothing; `text` must outlive it.
class Tokenizer {
 public:
  Tokenizer(std::string_view text, std::string_view source, char delimiter)
      : text_(text), source_(source), delim_(delimiter) {
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") text_.remove_prefix(3);  // UTF-8 byte-order mark
  }

  // Reads the next non-blank record into `fields` and the 1-based line it starts on into `line`.
  // Returns false at the end of the text.
  absl::StatusOr<bool> Next(std::vector<Field>* fields, int* line) {
    SkipBlankLines();
    if (pos_ >= text_.size()) return false;
    *line = line_;
    size_t count = 0;
    while (true) {
      if (fields->size() <= count) fields->emplace_back();
      Field& f = (*fields)[count++];
      f.text.clear();
      f.quoted = false;
      SkipBlanks();
      if (pos_ < text_.size() && text_[pos_] == '"') {
        KNN_RETURN_IF_ERROR(ReadQuoted(&f, static_cast<int>(count)));
      } else {
        const size_t begin = pos_;
        while (pos_ < text_.size() && text_[pos_] != delim_ && text_[pos_] != '\n') ++pos_;
        std::string_view raw = text_.substr(begin, pos_ - begin);
        if (!raw.empty() && raw.back() == '\r' && AtLineEnd()) raw.remove_suffix(1);
        f.text.assign(Trim(raw));
      }
      if (pos_ < text_.size() && text_[pos_] == delim_) {
        ++pos_;
        continue;
      }
      if (pos_ < text_.size()) {  // at '\n'
        ++pos_;
        ++line_;
      }
      break;
    }
    fields->resize(count);
    return true;
  }

  // Spaces and tabs that are not the delimiter are insignificant around a field.
  bool IsBlank(char c) const { return (c == ' ' || c == '\t') && c != delim_; }

  std::string_view Trim(std::string_view s) const {
    while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
    while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
    return s;
  }

 private:
  bool AtLineEnd() const { return pos_ >= text_.size() || text_[pos_] == '\n'; }

  void SkipBlanks() {
    while (pos_ < text_.size() && IsBlank(text_[pos_])) ++pos_;
  }

  // Skips lines holding nothing but blanks (and a '\r'), counting them.
  void SkipBlankLines() {
    while (pos_ < text_.size()) {
      size_t p = pos_;
      while (p < text_.size() && (IsBlank(text_[p]) || text_[p] == '\r')) ++p;
      if (p < text_.size() && text_[p] != '\n') return;
      pos_ = p < text_.size() ? p + 1 : p;
      if (p < text_.size()) ++line_;
    }
  }

  // At an opening quote: reads an RFC 4180 quoted field, then the blanks up to the delimiter or
  // line end.
  absl::Status ReadQuoted(Field* f, int column) {
    const int start_line = line_;
    f->quoted = true;
    ++pos_;
    while (true) {
      if (pos_ >= text_.size()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s:%d:%d: unterminated quoted field (no closing '\"')", source_, start_line, column));
      }
      const char c = text_[pos_++];
      if (c == '"') {
        if (pos_ < text_.size() && text_[pos_] == '"') {
          f->text.push_back('"');
          ++pos_;
          continue;
        }
        break;
      }
      if (c == '\n') ++line_;
      f->text.push_back(c);
    }
    SkipBlanks();
    if (pos_ < text_.size() && text_[pos_] == '\r' &&
        (pos_ + 1 == text_.size() || text_[pos_ + 1] == '\n')) {
      ++pos_;
    }
    if (pos_ < text_.size() && text_[pos_] != delim_ && text_[pos_] != '\n') {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s:%d:%d: unexpected %s after a closing quote", source_, line_, column,
                          QuoteForMessage(text_.substr(pos_, 1))));
    }
    return absl::OkStatus();
  }

  std::string_view text_;
  std::string_view source_;
  char delim_;
  size_t pos_ = 0;
  int line_ = 1;
};

enum class NumberKind { kOk, kEmpty, kNotANumber, kOutOfRange };

// Parses the whole of `s` (blanks already trimmed) as a double: std::from_chars, locale
// independent, decimal or scientific, "nan"/"inf"/"infinity" in any case, optional sign.
NumberKind ParseNumber(std::string_view s, double* out) {
  if (s.empty()) return NumberKind::kEmpty;
  // from_chars rejects a leading '+'; accept one, but not "+-1" or "++1".
  if (s.front() == '+' && s.size() > 1 && s[1] != '+' && s[1] != '-') s.remove_prefix(1);
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, *out, std::chars_format::general);
  if (ec == std::errc::result_out_of_range && ptr == end) return NumberKind::kOutOfRange;
  if (ec != std::errc() || ptr != end) return NumberKind::kNotANumber;
  return NumberKind::kOk;
}

bool LooksNumeric(std::string_view s) {
  double unused;
  const NumberKind k = ParseNumber(s, &unused);
  return k == NumberKind::kOk || k == NumberKind::kOutOfRange;
}

// A label as read, with where it came from, kept until we know whether labels are numbers.
struct LabelCell {
  std::string text;
  std::string number_text;  // `text` trimmed, for parsing as a number
  int line;
};

class CsvParser {
 public:
  CsvParser(std::string_view text, std::string_view source, const CsvOptions& options)
      : tok_(text, source, options.delimiter), source_(source), options_(options) {}

  absl::StatusOr<Dataset> Parse() {
    if (options_.delimiter == '"' || options_.delimiter == '\n' || options_.delimiter == '\r') {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: invalid CSV delimiter %s", source_,
                          QuoteForMessage(std::string_view(&options_.delimiter, 1))));
    }
    std::vector<Field> first;
    int first_line = 0;
    KNN_ASSIGN_OR_RETURN(bool any, tok_.Next(&first, &first_line));
    if (!any) return absl::InvalidArgumentError(absl::StrFormat("%s: file is empty", source_));
    ncols_ = first.size();
    KNN_RETURN_IF_ERROR(ResolveLabel(first, first_line));

    // header: true/false when known; unset while it depends on the labels below.
    std::optional<bool> header = options_.header;
    if (label_by_name_) header = true;  // the name was found in the first record
    if (!header.has_value()) {
      bool feature_text = false;
      for (size_t c = 0; c < ncols_; ++c) {
        if (c != label_col_ && !LooksNumeric(first[c].text)) feature_text = true;
      }
      if (feature_text) {
        header = true;
      } else if (!has_label_ || LooksNumeric(first[label_col_].text)) {
        header = false;
      }
    }
    if (header == true) {
      for (const Field& f : first) names_.push_back(f.text);
    } else if (header == false) {
      KNN_RETURN_IF_ERROR(AddRecord(first, first_line));
    }

    std::vector<Field> fields;
    int line = 0;
    while (true) {
      KNN_ASSIGN_OR_RETURN(bool more, tok_.Next(&fields, &line));
      if (!more) break;
      KNN_RETURN_IF_ERROR(AddRecord(fields, line));
    }

    if (!header.has_value()) {
      // Only the first record's label was not a number: it names the column if every later
      // label is a number; otherwise the labels are strings and the first record is data.
      const bool later_numeric =
          !labels_.empty() && std::all_of(labels_.begin(), labels_.end(), [](const LabelCell& l) {
            return LooksNumeric(l.number_text);
          });
      if (later_numeric) {
        for (const Field& f : first) names_.push_back(f.text);
      } else {
        std::vector<double> rest = std::move(values_);
        std::vector<LabelCell> rest_labels = std::move(labels_);
        values_.clear();
        labels_.clear();
        rows_ = 0;
        KNN_RETURN_IF_ERROR(AddRecord(first, first_line));
        values_.insert(values_.end(), rest.begin(), rest.end());
        labels_.insert(labels_.end(), std::make_move_iterator(rest_labels.begin()),
                       std::make_move_iterator(rest_labels.end()));
        rows_ += rest_labels.size();
      }
    }
    if (rows_ == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: no data rows after the header", source_));
    }

    Dataset ds;
    ds.name = std::string(source_);
    const size_t dim = ncols_ - (has_label_ ? 1 : 0);
    ds.features = Matrix(rows_, dim, std::move(values_));
    for (size_t c = 0; c < names_.size(); ++c) {
      if (!(has_label_ && c == label_col_)) ds.feature_names.push_back(names_[c]);
    }
    if (has_label_) KNN_RETURN_IF_ERROR(BuildTargets(&ds));
    return ds;
  }

 private:
  // Sets has_label_ / label_col_ from the options and the first record.
  absl::Status ResolveLabel(const std::vector<Field>& first, int first_line) {
    const LabelColumn& label = options_.label;
    switch (label.kind()) {
      case LabelColumn::Kind::kNone:
        break;
      case LabelColumn::Kind::kIndex: {
        const long long n = static_cast<long long>(ncols_);
        const long long i = label.index() < 0 ? n + label.index() : label.index();
        if (i < 0 || i >= n) {
          return absl::InvalidArgumentError(
              absl::StrFormat("%s: label column index %d is out of range for %d columns", source_,
                              label.index(), ncols_));
        }
        has_label_ = true;
        label_col_ = static_cast<size_t>(i);
        break;
      }
      case LabelColumn::Kind::kName: {
        label_by_name_ = true;
        if (options_.header == false) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "%s: label column \"%s\" given by name, but CsvOptions.header is false", source_,
              label.name()));
        }
        std::vector<size_t> hits;
        std::vector<std::string> all;  // for the message: the first few names
        constexpr size_t kMaxListed = 16;
        for (size_t c = 0; c < first.size(); ++c) {
          if (first[c].text == label.name()) hits.push_back(c);
          if (c < kMaxListed) all.push_back(absl::StrCat("\"", first[c].text, "\""));
        }
        if (first.size() > kMaxListed) all.push_back(absl::StrCat("... ", first.size(), " in all"));
        if (hits.empty()) {
          return absl::InvalidArgumentError(
              absl::StrFormat("%s:%d: label column \"%s\" not found in the header (columns: %s)",
                              source_, first_line, label.name(), absl::StrJoin(all, ", ")));
        }
        if (hits.size() > 1) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "%s:%d: label column \"%s\" is ambiguous: columns %d and %d both have that name",
              source_, first_line, label.name(), hits[0] + 1, hits[1] + 1));
        }
        has_label_ = true;
        label_col_ = hits[0];
        break;
      }
    }
    if (has_label_ && ncols_ == 1) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: no feature columns: the only column is the label column", source_));
    }
    return absl::OkStatus();
  }

  // "file:line:col" plus the column's header name when there is one.
  std::string Where(int line, size_t col) const {
    if (col < names_.size()) {
      return absl::StrFormat("%s:%d:%d (column \"%s\")", source_, line, col + 1, names_[col]);
    }
    return absl::StrFormat("%s:%d:%d", source_, line, col + 1);
  }

  // Parses a numeric field or explains why it is not one.
  absl::Status ParseField(const Field& f, int line, size_t col, double* out) const {
    switch (ParseNumber(tok_.Trim(f.text), out)) {
      case NumberKind::kOk:
        break;
      case NumberKind::kEmpty:
        return absl::InvalidArgumentError(absl::StrCat(Where(line, col), ": empty field"));
      case NumberKind::kNotANumber:
        return absl::InvalidArgumentError(
            absl::StrCat(Where(line, col), ": ", QuoteForMessage(f.text), " is not a number"));
      case NumberKind::kOutOfRange:
        return absl::InvalidArgumentError(absl::StrCat(
            Where(line, col), ": ", QuoteForMessage(f.text), " is out of range for a double"));
    }
    if (!options_.allow_nonfinite && !std::isfinite(*out)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(line, col), ": non-finite value ", QuoteForMessage(f.text),
                       " (set CsvOptions.allow_nonfinite to accept it)"));
    }
    return absl::OkStatus();
  }

  absl::Status AddRecord(const std::vector<Field>& fields, int line) {
    if (fields.size() != ncols_) {
      return absl::InvalidArgumentError(absl::StrFormat("%s:%d: expected %d fields, got %d",
                                                        source_, line, ncols_, fields.size()));
    }
    for (size_t c = 0; c < ncols_; ++c) {
      if (has_label_ && c == label_col_) {
        const Field& f = fields[c];
        if (tok_.Trim(f.text).empty()) {
          return absl::InvalidArgumentError(absl::StrCat(Where(line, c), ": empty label"));
        }
        labels_.push_back(LabelCell{f.text, std::string(tok_.Trim(f.text)), line});
        continue;
      }
      double v;
      KNN_RETURN_IF_ERROR(ParseField(fields[c], line, c, &v));
      values_.push_back(v);
    }
    ++rows_;
    return absl::OkStatus();
  }

  // Numeric labels when every label is a number, else string classes sorted by bytes.
  absl::Status BuildTargets(Dataset* ds) const {
    const bool strings = std::any_of(labels_.begin(), labels_.end(), [](const LabelCell& l) {
      return !LooksNumeric(l.number_text);
    });
    ds->targets.reserve(labels_.size());
    if (!strings) {
      for (const LabelCell& l : labels_) {
        double v;
        KNN_RETURN_IF_ERROR(ParseField(Field{l.number_text, false}, l.line, label_col_, &v));
        ds->targets.push_back(v);
      }
      return absl::OkStatus();
    }
    std::vector<std::string> names;
    names.reserve(labels_.size());
    for (const LabelCell& l : labels_) names.push_back(l.text);
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    for (const LabelCell& l : labels_) {
      const auto it = std::lower_bound(names.begin(), names.end(), l.text);
      ds->targets.push_back(static_cast<double>(it - names.begin()));
    }
    ds->class_names = std::move(names);
    return absl::OkStatus();
  }

  Tokenizer tok_;
  std::string_view source_;
  const CsvOptions& options_;
  size_t ncols_ = 0;
  bool has_label_ = false;
  bool label_by_name_ = false;
  size_t label_col_ = 0;
  std::vector<std::string> names_;  // the header, when there is one
  std::vector<double> values_;      // features, row-major
  std::vector<LabelCell> labels_;
  size_t rows_ = 0;
};

}  // namespace

absl::StatusOr<Dataset> ParseCsv(std::string_view text, std::string_view source_name,
                                 const CsvOptions& options) {
  try {
    return CsvParser(text, source_name, options).Parse();
  } catch (const std::exception& e) {  // std::bad_alloc on a huge input; nothing else throws
    return absl::ResourceExhaustedError(absl::StrFormat("%s: %s", source_name, e.what()));
  }
}

absl::StatusOr<Dataset> LoadCsv(const std::string& path, const CsvOptions& options) {
  KNN_ASSIGN_OR_RETURN(std::string text, datasets_internal::ReadFile(path));
  KNN_ASSIGN_OR_RETURN(Dataset ds, ParseCsv(text, path, options));
  ds.name = datasets_internal::FileStem(path);
  return ds;
}

}  // namespace knncluster
