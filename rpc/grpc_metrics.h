// The gRPC side of a server's metrics: a server interceptor that counts every call by service,
// method and status code and times it, into a MetricsRegistry (rpc/metrics.h). Installed on the
// coordinator's and the worker's grpc::Server, so it sees every method, unary and streaming, the
// health and reflection services included, and calls refused by a CallGuard (with their code).
//
// Metrics (the names are the documented contract, README.md):
//   knn_grpc_server_handled_total{grpc_service, grpc_method, grpc_code}   counter
//   knn_grpc_server_handling_seconds{grpc_service, grpc_method, grpc_code} histogram
//   knn_grpc_server_started_total{grpc_service, grpc_method}               counter
// grpc_code is the canonical name ("OK", "NOT_FOUND", "INVALID_ARGUMENT", ...). A call's latency
// runs from the call's creation on the server to its status being sent.
//
// Thread-safe: the registry is; interceptors are per call.
#ifndef KNNCLUSTER_RPC_GRPC_METRICS_H_
#define KNNCLUSTER_RPC_GRPC_METRICS_H_

#include <memory>
#include <string>

#include <grpcpp/support/server_interceptor.h>

#include "rpc/metrics.h"

namespace knncluster::rpc {

// Declares the three families above in `metrics`.
void DeclareGrpcServerMetrics(MetricsRegistry* metrics);

// For ServerBuilder::experimental().SetInterceptorCreators. `metrics` must outlive the server and
// have the families declared (DeclareGrpcServerMetrics).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeMetricsInterceptorFactory(MetricsRegistry* metrics);

// "NOT_FOUND" for grpc::StatusCode::NOT_FOUND, and so on.
std::string GrpcCodeName(int code);

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_GRPC_METRICS_H_
