// The routes every server's HTTP port answers (rpc/http_server.h does the HTTP):
//   GET /healthz   200 "ok" while the process runs (liveness)
//   GET /readyz    200 "ready" when `ready` returns OK, else 503 with its message (readiness)
//   GET /metrics   the registry in Prometheus text format 0.0.4
// and anything `extra` answers (the coordinator's status page); everything else is 404. HEAD is
// answered like GET without the body; other methods never get here (405 in HttpServer).
// gRPC-free. Thread-safe when `ready` and `extra` are.
#ifndef KNNCLUSTER_RPC_OPS_HTTP_H_
#define KNNCLUSTER_RPC_OPS_HTTP_H_

#include <functional>
#include <optional>

#include "absl/status/status.h"
#include "rpc/http_server.h"
#include "rpc/metrics.h"

namespace knncluster::rpc {

// `metrics` must outlive the handler. `extra` may be null; it returns nullopt for paths it does
// not serve.
HttpServer::Handler MakeOpsHandler(
    const MetricsRegistry* metrics, std::function<absl::Status()> ready,
    std::function<std::optional<HttpResponse>(const HttpRequest&)> extra = nullptr);

// Declares knn_process_resident_memory_bytes and knn_process_start_time_seconds in `metrics`.
void DeclareProcessMetrics(MetricsRegistry* metrics);

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_OPS_HTTP_H_
