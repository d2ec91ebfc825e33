#include "core/datasets/dataset.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/datasets/digits_data_internal.h"

namespace knncluster {

absl::StatusOr<Dataset> LoadDigits() {
  using datasets_internal::kDigitsData;
  using datasets_internal::kDigitsDataSize;
  using datasets_internal::kDigitsPixels;
  using datasets_internal::kDigitsRowBytes;
  if (kDigitsDataSize == 0 || kDigitsDataSize % kDigitsRowBytes != 0) {
    return absl::InternalError(
        absl::StrFormat("embedded digits table has %d bytes, not a multiple of %d", kDigitsDataSize,
                        kDigitsRowBytes));
  }
  const size_t n = kDigitsDataSize / kDigitsRowBytes;
  Dataset ds;
  ds.name = "digits";
  ds.features = Matrix(n, kDigitsPixels);
  ds.targets.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char* src = kDigitsData + i * kDigitsRowBytes;
    double* dst = ds.features.row(i);
    for (size_t j = 0; j < kDigitsPixels; ++j) dst[j] = src[j];
    ds.targets[i] = src[kDigitsPixels];
  }
  // scikit-learn's names: pixel_<image row>_<image column> of the 8x8 image.
  ds.feature_names.reserve(kDigitsPixels);
  for (size_t j = 0; j < kDigitsPixels; ++j) {
    ds.feature_names.push_back(absl::StrCat("pixel_", j / 8, "_", j % 8));
  }
  return ds;
}

std::vector<std::string> BuiltinDatasetNames() { return {"digits"}; }

absl::StatusOr<Dataset> LoadBuiltin(std::string_view name) {
  if (name == "digits") return LoadDigits();
  return absl::NotFoundError(absl::StrFormat("unknown built-in dataset \"%s\"; known: %s", name,
                                             absl::StrJoin(BuiltinDatasetNames(), ", ")));
}

}  // namespace knncluster
