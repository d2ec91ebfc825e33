// NumPy .npy files (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
// readers into a Matrix or a label vector, and a writer.
//
// Read: format versions 1.0, 2.0 and 3.0; dtypes float32/float64/int32/int64 stored
// little-endian ('<f4', '<f8', '<i4', '<i8'; '=' and '|' mean native order, accepted on
// little-endian hosts); C order only; shape (n,) read as n x 1, or (n, d). Everything else is an
// InvalidArgument naming the file and saying what to do: big-endian data, Fortran order, object
// (pickled) or other dtypes, 0-D or >2-D arrays, truncated data, trailing bytes, a bad magic
// string or header. Values are converted to double; an int64 beyond +-2^53 (not exactly
// representable) is an error, as is NaN/Inf unless `allow_nonfinite`.
// Write: '<f8', version 1.0, C order, header padded to 64 bytes as numpy does.
//
// Pure functions (plus file I/O): thread-safe. Results own their data.
#ifndef KNNCLUSTER_CORE_DATASETS_NPY_H_
#define KNNCLUSTER_CORE_DATASETS_NPY_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/matrix.h"

namespace knncluster {

// Reads the .npy file at `path` as a matrix. NotFound when the file does not exist.
absl::StatusOr<Matrix> LoadNpy(const std::string& path, bool allow_nonfinite = false);

// Parses the bytes of a .npy file; `source_name` names it in error messages.
absl::StatusOr<Matrix> ParseNpy(std::string_view bytes, std::string_view source_name,
                                bool allow_nonfinite = false);

// Reads a label/target vector: shape (n,) or (n, 1); any other shape is an error.
absl::StatusOr<std::vector<double>> LoadNpyVector(const std::string& path,
                                                  bool allow_nonfinite = false);
absl::StatusOr<std::vector<double>> ParseNpyVector(std::string_view bytes,
                                                   std::string_view source_name,
                                                   bool allow_nonfinite = false);

// The .npy bytes of `m`: '<f8', version 1.0, shape (rows, cols), C order.
std::string EncodeNpy(MatrixView m);

// Writes EncodeNpy(m) to `path`, replacing any existing file.
absl::Status SaveNpy(const std::string& path, MatrixView m);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_DATASETS_NPY_H_
