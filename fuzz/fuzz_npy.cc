// libFuzzer target: the .npy loader (core/datasets/npy.h) on arbitrary bytes.
//
// The bytes are parsed as a matrix and as a label vector, with and without non-finite values
// allowed. An accepted file must describe exactly the data it carries; whatever it holds
// re-encodes (EncodeNpy) to a file that parses back to the same values, bit for bit. Any input
// may be refused with InvalidArgument (or ResourceExhausted), and a header claiming more data
// than the file holds must be refused before anything is allocated (ASan's allocation limit and
// libFuzzer's -malloc_limit_mb catch a loader that allocates first).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/datasets/npy.h"
#include "fuzz/fuzz_check.h"

namespace {

using knncluster::Matrix;

bool SameBits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void CheckRefused(const absl::Status& status) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument ||
             status.code() == absl::StatusCode::kResourceExhausted);
  FUZZ_CHECK(!status.message().empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<Matrix> any = knncluster::ParseNpy(bytes, "fuzz.npy", /*allow_nonfinite=*/true);
  absl::StatusOr<Matrix> finite = knncluster::ParseNpy(bytes, "fuzz.npy");
  if (!any.ok()) {
    CheckRefused(any.status());
    FUZZ_CHECK(!finite.ok());
    return 0;
  }
  // Data bytes are at least 4 per value, so an accepted file is never smaller than its values.
  FUZZ_CHECK(any->values().size() == any->rows() * any->cols());
  FUZZ_CHECK(any->values().size() <= size / 4);
  bool all_finite = true;
  for (double v : any->values()) all_finite = all_finite && std::isfinite(v);
  FUZZ_CHECK(finite.ok() == all_finite);
  if (!finite.ok()) CheckRefused(finite.status());

  const std::string encoded = knncluster::EncodeNpy(*any);
  absl::StatusOr<Matrix> again = knncluster::ParseNpy(encoded, "re-encoded", true);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->rows() == any->rows() && again->cols() == any->cols());
  for (size_t i = 0; i < any->values().size(); ++i) {
    FUZZ_CHECK(SameBits(again->values()[i], any->values()[i]));
  }

  absl::StatusOr<std::vector<double>> vec = knncluster::ParseNpyVector(bytes, "fuzz.npy", true);
  FUZZ_CHECK(vec.ok() == (any->cols() == 1));
  if (vec.ok()) FUZZ_CHECK(vec->size() == any->rows());
  return 0;
}
