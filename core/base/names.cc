#include "core/base/names.h"

#include "absl/strings/str_cat.h"

namespace knncluster {

absl::Status ValidateName(const std::string& name, const std::string& field) {
  if (name.empty() || name.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": a name of 1 to 128 characters [A-Za-z0-9_.-] is required, got \"", name, "\""));
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": \"", name, "\" has a character outside [A-Za-z0-9_.-]"));
    }
  }
  if (name[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat(field, ": \"", name, "\" must not start with '.'"));
  }
  return absl::OkStatus();
}

}  // namespace knncluster
