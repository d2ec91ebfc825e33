// Whole-file read and write helpers shared by the loaders in core/datasets; private to the folder.
// Stateless functions: thread-safe (concurrent writes to one path race, as with any file).
#ifndef KNNCLUSTER_CORE_DATASETS_IO_INTERNAL_H_
#define KNNCLUSTER_CORE_DATASETS_IO_INTERNAL_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace knncluster {
namespace datasets_internal {

// The bytes of the file at `path`. NotFound if it does not exist; other failures map errno to a
// status (PermissionDenied, ...). Messages name `path`.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Replaces the file at `path` with `bytes`. Messages name `path`.
absl::Status WriteFile(const std::string& path, std::string_view bytes);

// "dir/name.ext" -> "name".
std::string FileStem(std::string_view path);

// `text` quoted for an error message: at most 64 bytes, control and non-ASCII bytes escaped.
std::string QuoteForMessage(std::string_view text);

}  // namespace datasets_internal
}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_DATASETS_IO_INTERNAL_H_
