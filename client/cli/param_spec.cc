#include "client/cli/param_spec.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"
#include "core/estimators/params.h"
#include "nlohmann/json.hpp"

namespace knncluster::cli {
namespace {

absl::Status Bad(const std::string& label, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(label, ": ", problem));
}

absl::Status TooMany(const std::string& label, absl::string_view item, double n) {
  return Bad(label, absl::StrFormat("%s gives %.0f values (at most %d)", item, n,
                                    kMaxParamValues));
}

absl::StatusOr<long long> ParseInt(const std::string& label, absl::string_view text) {
  long long v;
  if (!absl::SimpleAtoi(text, &v)) {
    return Bad(label, absl::StrCat("\"", text, "\" is not an integer"));
  }
  return v;
}

// A finite number, or +inf when `allow_inf` ("inf", "infinity").
absl::StatusOr<double> ParseDouble(const std::string& label, absl::string_view text,
                                   bool allow_inf) {
  double v;
  if (!absl::SimpleAtod(text, &v) || std::isnan(v)) {
    return Bad(label, absl::StrCat("\"", text, "\" is not a number"));
  }
  if (std::isinf(v) && (!allow_inf || v < 0)) {
    return Bad(label, absl::StrCat("\"", text, "\": a range needs finite numbers"));
  }
  return v;
}

// Splits "a,b:c:d,e" into items; an item with ':' is a range.
absl::StatusOr<std::vector<std::string>> Items(const std::string& label,
                                               const std::string& values) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(values, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) return Bad(label, absl::StrCat("empty value in \"", values, "\""));
    items.emplace_back(item);
  }
  return items;
}

absl::StatusOr<std::vector<std::string>> RangeParts(const std::string& label,
                                                    const std::string& item) {
  std::vector<std::string> parts = absl::StrSplit(item, ':');
  if (parts.size() != 2 && parts.size() != 3) {
    return Bad(label, absl::StrCat("\"", item, "\" is not a range start:stop[:step]"));
  }
  return parts;
}

absl::StatusOr<std::vector<int>> IntValues(const std::string& label, const std::string& values) {
  KNN_ASSIGN_OR_RETURN(std::vector<std::string> items, Items(label, values));
  std::vector<int> out;
  for (const std::string& item : items) {
    if (item.find(':') == std::string::npos) {
      KNN_ASSIGN_OR_RETURN(long long v, ParseInt(label, item));
      if (v < 1 || v > std::numeric_limits<int>::max()) {
        return Bad(label, absl::StrCat("values must be >= 1, got ", item));
      }
      out.push_back(static_cast<int>(v));
      continue;
    }
    KNN_ASSIGN_OR_RETURN(std::vector<std::string> parts, RangeParts(label, item));
    KNN_ASSIGN_OR_RETURN(long long start, ParseInt(label, parts[0]));
    KNN_ASSIGN_OR_RETURN(long long stop, ParseInt(label, parts[1]));
    long long step = 1;
    if (parts.size() == 3) {
      KNN_ASSIGN_OR_RETURN(step, ParseInt(label, parts[2]));
    }
    KNN_ASSIGN_OR_RETURN(std::vector<int> range, ArangeInt(label, start, stop, step));
    if (range.empty()) {
      return Bad(label, absl::StrCat("the range ", item, " is empty (numpy's arange(",
                                     absl::StrJoin(parts, ", "), ") has no values)"));
    }
    for (int v : range) {
      if (v < 1) return Bad(label, absl::StrCat("values must be >= 1, but ", item, " gives ", v));
      out.push_back(v);
    }
  }
  if (out.size() > kMaxParamValues) return TooMany(label, values, out.size());
  return out;
}

absl::StatusOr<std::vector<double>> PValues(const std::string& label, const std::string& values) {
  KNN_ASSIGN_OR_RETURN(std::vector<std::string> items, Items(label, values));
  std::vector<double> out;
  for (const std::string& item : items) {
    if (item.find(':') == std::string::npos) {
      KNN_ASSIGN_OR_RETURN(double v, ParseDouble(label, item, /*allow_inf=*/true));
      if (!(v >= 1)) return Bad(label, absl::StrCat("p must be >= 1 or inf, got ", item));
      out.push_back(v);
      continue;
    }
    KNN_ASSIGN_OR_RETURN(std::vector<std::string> parts, RangeParts(label, item));
    KNN_ASSIGN_OR_RETURN(double start, ParseDouble(label, parts[0], false));
    KNN_ASSIGN_OR_RETURN(double stop, ParseDouble(label, parts[1], false));
    double step = 1;
    if (parts.size() == 3) {
      KNN_ASSIGN_OR_RETURN(step, ParseDouble(label, parts[2], false));
    }
    KNN_ASSIGN_OR_RETURN(std::vector<double> range, ArangeDouble(label, start, stop, step));
    if (range.empty()) {
      return Bad(label, absl::StrCat("the range ", item, " is empty (numpy's arange(",
                                     absl::StrJoin(parts, ", "), ") has no values)"));
    }
    for (double v : range) {
      if (!(v >= 1)) {
        return Bad(label, absl::StrCat("p must be >= 1 or inf, but ", item, " gives ", v));
      }
      out.push_back(v);
    }
  }
  if (out.size() > kMaxParamValues) return TooMany(label, values, out.size());
  return out;
}

absl::StatusOr<std::vector<std::string>> NameValues(const std::string& label,
                                                    const std::string& values,
                                                    const std::vector<std::string>& allowed) {
  KNN_ASSIGN_OR_RETURN(std::vector<std::string> items, Items(label, values));
  for (const std::string& item : items) {
    if (std::find(allowed.begin(), allowed.end(), item) == allowed.end()) {
      return Bad(label, absl::StrCat("\"", item, "\" is not one of ",
                                     absl::StrJoin(allowed, ", ")));
    }
  }
  return items;
}

}  // namespace

absl::StatusOr<std::vector<int>> ArangeInt(const std::string& label, long long start,
                                           long long stop, long long step) {
  if (step == 0) return Bad(label, "a range's step must not be 0");
  constexpr long long kMin = std::numeric_limits<int>::min();
  constexpr long long kMax = std::numeric_limits<int>::max();
  if (start < kMin || start > kMax || stop < kMin || stop > kMax) {
    return Bad(label, absl::StrCat("range ", start, ":", stop, " is out of range"));
  }
  long long n = 0;
  if (step > 0 && stop > start) n = (stop - start + step - 1) / step;
  if (step < 0 && start > stop) n = (start - stop + (-step) - 1) / (-step);
  if (static_cast<size_t>(n) > kMaxParamValues) {
    return TooMany(label, absl::StrCat(start, ":", stop, ":", step), static_cast<double>(n));
  }
  std::vector<int> out;
  for (long long i = 0; i < n; ++i) out.push_back(static_cast<int>(start + i * step));
  return out;
}

absl::StatusOr<std::vector<double>> ArangeDouble(const std::string& label, double start,
                                                 double stop, double step) {
  if (step == 0) return Bad(label, "a range's step must not be 0");
  const double len = std::ceil((stop - start) / step);
  if (!std::isfinite(len)) return Bad(label, "a range needs finite numbers");
  if (len > static_cast<double>(kMaxParamValues)) {
    return TooMany(label, absl::StrCat(start, ":", stop, ":", step), len);
  }
  std::vector<double> out;
  if (len <= 0) return out;
  // numpy fills buffer[0] = start, buffer[1] = start + step, then start + i * delta with
  // delta = buffer[1] - buffer[0] (which may differ from step in the last bit).
  const double delta = (start + step) - start;
  const auto n = static_cast<size_t>(len);
  for (size_t i = 0; i < n; ++i) out.push_back(i == 0 ? start : start + i * delta);
  return out;
}

absl::Status SetParamValues(const std::string& label, const std::string& key,
                            const std::string& values, ParamGrid* grid) {
  auto already = [&](bool set) -> absl::Status {
    return set ? Bad(label, absl::StrCat(key, " is given twice for the same grid"))
               : absl::OkStatus();
  };
  if (absl::StripAsciiWhitespace(values).empty()) return Bad(label, "no values");
  if (key == "n_neighbors") {
    KNN_RETURN_IF_ERROR(already(!grid->n_neighbors.empty()));
    KNN_ASSIGN_OR_RETURN(grid->n_neighbors, IntValues(label, values));
  } else if (key == "leaf_size") {
    KNN_RETURN_IF_ERROR(already(!grid->leaf_size.empty()));
    KNN_ASSIGN_OR_RETURN(grid->leaf_size, IntValues(label, values));
  } else if (key == "p") {
    KNN_RETURN_IF_ERROR(already(!grid->p.empty()));
    KNN_ASSIGN_OR_RETURN(grid->p, PValues(label, values));
  } else if (key == "weights") {
    KNN_RETURN_IF_ERROR(already(!grid->weights.empty()));
    KNN_ASSIGN_OR_RETURN(grid->weights, NameValues(label, values, {"uniform", "distance"}));
  } else if (key == "algorithm") {
    KNN_RETURN_IF_ERROR(already(!grid->algorithm.empty()));
    KNN_ASSIGN_OR_RETURN(grid->algorithm,
                         NameValues(label, values, {"auto", "ball_tree", "kd_tree", "brute"}));
  } else {
    return Bad(label, absl::StrCat("unknown parameter \"", key,
                                   "\" (expected n_neighbors, p, weights, algorithm, leaf_size)"));
  }
  return absl::OkStatus();
}

absl::Status ParseParamAssignment(const std::string& flag, const std::string& assignment,
                                  ParamGrid* grid) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos) {
    return Bad(flag, absl::StrCat("expected KEY=VALUES (e.g. n_neighbors=2:20:2), got \"",
                                  assignment, "\""));
  }
  const std::string key(absl::StripAsciiWhitespace(assignment.substr(0, eq)));
  return SetParamValues(absl::StrCat(flag, " ", key), key, assignment.substr(eq + 1), grid);
}

absl::StatusOr<ParamGrid> ParseGridSpec(const std::string& flag, const std::string& text) {
  ParamGrid grid;
  for (absl::string_view item : absl::StrSplit(text, ';', absl::SkipWhitespace())) {
    KNN_RETURN_IF_ERROR(ParseParamAssignment(flag, std::string(item), &grid));
  }
  return grid;
}

std::vector<std::string> GridKeys(const ParamGrid& g) {
  std::vector<std::string> keys;
  if (!g.algorithm.empty()) keys.push_back("algorithm");
  if (!g.leaf_size.empty()) keys.push_back("leaf_size");
  if (!g.n_neighbors.empty()) keys.push_back("n_neighbors");
  if (!g.p.empty()) keys.push_back("p");
  if (!g.weights.empty()) keys.push_back("weights");
  return keys;
}

namespace {

absl::StatusOr<std::vector<int64_t>> IndexList(const nlohmann::json& j, const std::string& where) {
  if (!j.is_array()) return Bad("--cv", absl::StrCat(where, ": expected a list of row indices"));
  std::vector<int64_t> out;
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_number_integer() || j[i].get<int64_t>() < 0) {
      return Bad("--cv", absl::StrCat(where, "[", i, "]: expected a row index (an integer >= 0), "
                                      "got ", j[i].dump()));
    }
    out.push_back(j[i].get<int64_t>());
  }
  return out;
}

}  // namespace

absl::StatusOr<CvSpec> ParseCv(const std::string& text) {
  CvSpec cv;
  long long n;
  if (absl::SimpleAtoi(text, &n)) {
    if (n < 2 || n > 1'000'000) {
      return Bad("--cv", absl::StrCat("the number of folds must be at least 2, got ", text));
    }
    cv.n_splits = static_cast<int>(n);
    return cv;
  }
  std::ifstream in(text);
  if (!in) {
    return Bad("--cv", absl::StrCat("expected a number of folds (>= 2) or a JSON file of folds; "
                                    "cannot open \"", text, "\""));
  }
  std::stringstream bytes;
  bytes << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(bytes.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("--cv", absl::StrCat(text, ": not valid JSON"));
  if (!j.is_array() || j.empty()) {
    return Bad("--cv", absl::StrCat(text, ": expected a non-empty list of folds, each "
                                    "{\"train\": [...], \"test\": [...]} or [train, test]"));
  }
  for (size_t f = 0; f < j.size(); ++f) {
    const std::string where = absl::StrCat(text, ": fold ", f);
    const nlohmann::json& fold = j[f];
    TrainTestIndices t;
    if (fold.is_object() && fold.contains("train") && fold.contains("test")) {
      KNN_ASSIGN_OR_RETURN(t.train, IndexList(fold["train"], where + ".train"));
      KNN_ASSIGN_OR_RETURN(t.test, IndexList(fold["test"], where + ".test"));
    } else if (fold.is_array() && fold.size() == 2) {
      KNN_ASSIGN_OR_RETURN(t.train, IndexList(fold[0], where + "[0] (train)"));
      KNN_ASSIGN_OR_RETURN(t.test, IndexList(fold[1], where + "[1] (test)"));
    } else {
      return Bad("--cv", absl::StrCat(where, ": expected {\"train\": [...], \"test\": [...]} or "
                                      "[train, test]"));
    }
    if (t.train.empty() || t.test.empty()) {
      return Bad("--cv", absl::StrCat(where, ": train and test must both be non-empty"));
    }
    cv.folds.push_back(std::move(t));
  }
  cv.n_splits = static_cast<int>(cv.folds.size());
  return cv;
}

}  // namespace knncluster::cli
