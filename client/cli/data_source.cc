#include "client/cli/data_source.h"

#include <cerrno>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/datasets/csv.h"
#include "core/datasets/npy.h"

namespace knncluster::cli {

absl::StatusOr<TestSize> ParseTestSize(const std::string& text) {
  int64_t count;
  if (absl::SimpleAtoi(text, &count)) return TestSize::Count(count);
  double fraction;
  if (absl::SimpleAtod(text, &fraction)) return TestSize::Fraction(fraction);
  return absl::InvalidArgumentError(
      absl::StrCat("--test-size: expected a fraction like 0.2 or a count like 360, got \"", text, "\""));
}

namespace {

bool IsNone(const std::string& s) { return s == "none"; }

absl::StatusOr<LabelColumn> ParseLabelColumn(const std::string& text) {
  if (text.empty()) return LabelColumn::Last();
  if (IsNone(text)) return LabelColumn::None();
  int index;
  if (absl::SimpleAtoi(text, &index)) return LabelColumn::Index(index);
  return LabelColumn::Name(text);
}

absl::StatusOr<Dataset> LoadNpyFile(const DataSourceOptions& o) {
  KNN_ASSIGN_OR_RETURN(Matrix m, LoadNpy(o.data_file));
  Dataset d;
  d.name = o.data_file;
  if (!o.labels_file.empty()) {
    KNN_ASSIGN_OR_RETURN(d.targets, LoadNpyVector(o.labels_file));
    if (d.targets.size() != m.rows()) {
      return absl::InvalidArgumentError(absl::StrCat("--labels: ", o.labels_file, " holds ",
                                                     d.targets.size(), " labels but ", o.data_file,
                                                     " has ", m.rows(), " rows"));
    }
    d.features = std::move(m);
    return d;
  }
  if (o.label_column.empty() || IsNone(o.label_column)) {
    d.features = std::move(m);  // an .npy without --labels/--label-column is unlabelled
    return d;
  }
  int col;
  if (!absl::SimpleAtoi(o.label_column, &col) || col < -static_cast<int>(m.cols()) ||
      col >= static_cast<int>(m.cols())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--label-column: for an .npy file give a column index in [", -static_cast<int>(m.cols()),
        ", ", m.cols(), "), got \"", o.label_column, "\""));
  }
  const size_t label = col < 0 ? m.cols() + col : col;
  if (m.cols() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--label-column: ", o.data_file, " has a single column; nothing left as features"));
  }
  d.features = Matrix(m.rows(), m.cols() - 1);
  d.targets.resize(m.rows());
  for (size_t i = 0; i < m.rows(); ++i) {
    size_t out = 0;
    for (size_t j = 0; j < m.cols(); ++j) {
      if (j == label) {
        d.targets[i] = m.at(i, j);
      } else {
        d.features.at(i, out++) = m.at(i, j);
      }
    }
  }
  return d;
}

}  // namespace

absl::StatusOr<Dataset> LoadSource(const DataSourceOptions& o) {
  if (o.dataset.empty() == o.data_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "give exactly one of --dataset (built-in: ", absl::StrJoin(BuiltinDatasetNames(), ", "),
        ") or --data FILE.csv|FILE.npy"));
  }
  if (!o.dataset.empty()) return LoadBuiltin(o.dataset);
  if (absl::EndsWith(o.data_file, ".npy")) return LoadNpyFile(o);
  if (!o.labels_file.empty()) {
    return absl::InvalidArgumentError("--labels: only for .npy data; a CSV names its label column");
  }
  CsvOptions csv;
  KNN_ASSIGN_OR_RETURN(csv.label, ParseLabelColumn(o.label_column));
  return LoadCsv(o.data_file, csv);
}

absl::StatusOr<TrainTestIndices> SplitFor(const DataSourceOptions& o, int64_t n) {
  KNN_ASSIGN_OR_RETURN(TestSize test_size, ParseTestSize(o.test_size));
  return TrainTestSplit(n, test_size, o.random_state, o.shuffle);
}

Dataset Subset(const Dataset& d, const std::vector<int64_t>& rows) {
  Dataset out;
  out.name = d.name;
  out.features = Matrix::Gather(d.features, rows);
  if (!d.targets.empty()) {
    out.targets.reserve(rows.size());
    for (int64_t r : rows) out.targets.push_back(d.targets[r]);
  }
  out.class_names = d.class_names;
  out.feature_names = d.feature_names;
  return out;
}

absl::StatusOr<Dataset> LoadSelection(const DataSourceOptions& o) {
  KNN_ASSIGN_OR_RETURN(Dataset d, LoadSource(o));
  if (o.split == "all") return d;
  if (o.split != "train" && o.split != "test") {
    return absl::InvalidArgumentError(
        absl::StrCat("--split: expected all, train or test, got \"", o.split, "\""));
  }
  KNN_ASSIGN_OR_RETURN(TrainTestIndices split, SplitFor(o, static_cast<int64_t>(d.size())));
  return Subset(d, o.split == "train" ? split.train : split.test);
}

}  // namespace knncluster::cli
