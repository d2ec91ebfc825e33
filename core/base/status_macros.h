// Propagation macros for absl::Status / absl::StatusOr, modelled on Kudu's KUDU_RETURN_NOT_OK.
// Abseil 20220623 ships no such macros. Thread-safe: they are plain control flow.
#ifndef KNNCLUSTER_CORE_BASE_STATUS_MACROS_H_
#define KNNCLUSTER_CORE_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KNN_STATUS_CONCAT_INNER_(a, b) a##b
#define KNN_STATUS_CONCAT_(a, b) KNN_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define KNN_RETURN_IF_ERROR(expr)                       \
  do {                                                  \
    ::absl::Status knn_status_ = (expr);                \
    if (!knn_status_.ok()) return knn_status_;          \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else moves the value
// into `lhs`, which may be a declaration (`KNN_ASSIGN_OR_RETURN(auto x, F())`).
#define KNN_ASSIGN_OR_RETURN(lhs, rexpr) \
  KNN_ASSIGN_OR_RETURN_IMPL_(KNN_STATUS_CONCAT_(knn_statusor_, __LINE__), lhs, rexpr)
#define KNN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // KNNCLUSTER_CORE_BASE_STATUS_MACROS_H_
