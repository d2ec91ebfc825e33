// Dataset: a feature matrix with optional targets and names, as returned by every loader in
// core/datasets, plus the built-in datasets embedded in knn_core (today: "digits").
//
// A Dataset owns all of its data (plain values; copy or move it freely). The loaders here are
// pure functions of their input and are safe to call from any thread; a const Dataset may be read
// from any number of threads.
#ifndef KNNCLUSTER_CORE_DATASETS_DATASET_H_
#define KNNCLUSTER_CORE_DATASETS_DATASET_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/matrix.h"

namespace knncluster {

struct Dataset {
  std::string name;
  Matrix features;  // n x d
  // n labels or regression targets; empty when the data is unlabeled.
  std::vector<double> targets;
  // Non-empty when the label column held strings: targets[i] is then an index into class_names.
  // Names are sorted ascending by bytes (as numpy.unique sorts), so code order == name order.
  std::vector<std::string> class_names;
  // One per feature column, from a CSV header (or built in); else empty.
  std::vector<std::string> feature_names;

  size_t size() const { return features.rows(); }
  size_t dim() const { return features.cols(); }
};

// The handwritten digits data (UCI "Optical Recognition of Handwritten Digits", as shipped with
// scikit-learn; see data/README.md): 1797 x 64 pixel values in 0..16, targets 0..9, name
// "digits", feature_names "pixel_0_0" .. "pixel_7_7", rows in file order, which is the order of
// sklearn.datasets.load_digits(). Embedded at build time: needs no file at run time.
absl::StatusOr<Dataset> LoadDigits();

// The names LoadBuiltin accepts, sorted.
std::vector<std::string> BuiltinDatasetNames();

// A built-in dataset by name ("digits"). NotFound (listing the known names) for any other name.
absl::StatusOr<Dataset> LoadBuiltin(std::string_view name);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_DATASETS_DATASET_H_
