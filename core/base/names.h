// The one rule for names of datasets and models (they become directory names on disk and keys
// on the wire): 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.' (so "." and ".."
// and the store's own temporary names are impossible). Thread-safe: a pure function.
#ifndef KNNCLUSTER_CORE_BASE_NAMES_H_
#define KNNCLUSTER_CORE_BASE_NAMES_H_

#include <string>

#include "absl/status/status.h"

namespace knncluster {

// InvalidArgument naming `field` when `name` breaks the rule.
absl::Status ValidateName(const std::string& name, const std::string& field);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_BASE_NAMES_H_
