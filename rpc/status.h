// The one mapping between absl::Status (inside) and grpc::Status (on the wire). Abseil and gRPC
// share the canonical code numbers, so both directions cast the code and copy the message.
// Every service handler ends in `return ToGrpcStatus(...)`.
// Thread-safe: pure functions.
#ifndef KNNCLUSTER_RPC_STATUS_H_
#define KNNCLUSTER_RPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace knncluster::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_STATUS_H_
