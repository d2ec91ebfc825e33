// Test helpers for parity tests whose oracle is scikit-learn run fresh by Debian's
// /usr/bin/python3: whether it can run here, and the CI rule (under CI=true a parity test that
// would skip for want of its oracle fails instead). Header-only; used by tests only.
#ifndef KNNCLUSTER_TESTS_TESTING_SKLEARN_ORACLE_H_
#define KNNCLUSTER_TESTS_TESTING_SKLEARN_ORACLE_H_

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace knncluster::testing {

inline constexpr char kPython[] = "/usr/bin/python3";

inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// Empty when /usr/bin/python3 can import numpy and sklearn; otherwise why not.
inline std::string SklearnUnavailableReason() {
  if (access(kPython, X_OK) != 0) {
    return std::string(kPython) + " not found; install python3-sklearn (scripts/install-deps.sh)";
  }
  const std::string probe = std::string(kPython) + " -c 'import numpy, sklearn' >/dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) {
    return std::string(kPython) +
           " cannot import numpy and sklearn; install python3-sklearn (scripts/install-deps.sh)";
  }
  return "";
}

}  // namespace knncluster::testing

#endif  // KNNCLUSTER_TESTS_TESTING_SKLEARN_ORACLE_H_
