// Model: everything needed to rebuild a fitted estimator (its task, hyper-parameters and training
// data), and its versioned binary file format. The same bytes are the cluster's export format, so
// a model saved by one process (or by the coordinator) loads in any other.
//
// Format (all integers little-endian, doubles IEEE-754 binary64 stored bit-exactly as their
// little-endian bit pattern, so NaN payloads, -0.0 and +inf survive):
//   "KNNMODEL"            8 bytes magic
//   u32 format version    kModelFormatVersion (1)
//   u64 payload length    bytes of payload that follow
//   payload               the fields below, in order
//   u32 CRC-32            of every byte before it (magic through payload; crc32.h)
// Payload, version 1:
//   u8 task (0 classifier, 1 regressor, 2 outlier)
//   i32 n_neighbors, u8 weights (0 uniform, 1 distance), u8 algorithm (0 auto, 1 kd_tree,
//   2 ball_tree, 3 brute), i32 leaf_size, f64 p (+inf for Chebyshev)
//   f64 contamination, u8 has_threshold, f64 threshold (0 when absent)
//   str dataset_name
//   u64 rows, u64 cols, f64[rows * cols] X (row-major)
//   u64 n, f64[n] y
//   u64 count, str[count] class_names
//   u64 count, str[count] feature_names
// where str is u64 byte length + bytes (UTF-8, not NUL-terminated).
// A reader rejects newer versions rather than guessing; a later version may append fields.
//
// Errors from ParseModel / LoadModel name the file (`source_name`): InvalidArgument when the bytes
// are not a model file of this build (bad magic, unsupported version), DataLoss when they are one
// but are damaged (truncated, trailing bytes, checksum mismatch, a length that overruns the
// payload, an unknown enum value, y inconsistent with X). Every length is checked against the
// bytes that remain before anything is allocated, so a corrupt length can neither crash the
// reader nor make it allocate more than the file's size.
//
// Thread safety: pure functions, plus file I/O on distinct paths. Model is a plain value.
#ifndef KNNCLUSTER_CORE_ESTIMATORS_MODEL_IO_H_
#define KNNCLUSTER_CORE_ESTIMATORS_MODEL_IO_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/matrix.h"
#include "core/estimators/params.h"

namespace knncluster {

inline constexpr char kModelMagic[] = "KNNMODEL";  // 8 bytes, without the NUL
inline constexpr uint32_t kModelFormatVersion = 1;

struct Model {
  enum class Task { kClassifier, kRegressor, kOutlier };

  Task task = Task::kClassifier;
  NeighborsParams params;
  double contamination = 0.1;       // outlier detector only
  std::optional<double> threshold;  // outlier detector only: the threshold in use
  Matrix X;                         // training data, n x d
  // Classifier: the training labels as given to Fit; regressor: the targets; outlier: empty.
  std::vector<double> y;
  std::vector<std::string> class_names;    // classifier: names of label codes, or empty
  std::vector<std::string> feature_names;  // optional, one per column of X
  std::string dataset_name;                // optional provenance
};

// "classifier", "regressor", "outlier".
std::string TaskName(Model::Task task);

// The file bytes of `model`.
std::string SerializeModel(const Model& model);

// Parses file bytes; `source_name` (a path, "<memory>") names them in error messages.
absl::StatusOr<Model> ParseModel(std::string_view bytes, std::string_view source_name);

// Writes the model to `path` atomically: into a temporary file in the same directory, fsync,
// rename over `path`, fsync the directory. Readers see the old file or the new one, never a torn
// one. Errors carry the errno's code (NotFound for a missing directory, PermissionDenied, ...).
absl::Status SaveModel(const std::string& path, const Model& model);

// Reads and parses `path`. NotFound when it does not exist.
absl::StatusOr<Model> LoadModel(const std::string& path);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_ESTIMATORS_MODEL_IO_H_
