#include "rpc/ops_http.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace knncluster::rpc {

HttpServer::Handler MakeOpsHandler(
    const MetricsRegistry* metrics, std::function<absl::Status()> ready,
    std::function<std::optional<HttpResponse>(const HttpRequest&)> extra) {
  return [metrics, ready = std::move(ready),
          extra = std::move(extra)](const HttpRequest& request) -> HttpResponse {
    HttpResponse r;
    if (request.path == "/healthz") {
      r.body = "ok\n";
    } else if (request.path == "/readyz") {
      const absl::Status st = ready ? ready() : absl::OkStatus();
      if (st.ok()) {
        r.body = "ready\n";
      } else {
        r.status = 503;
        r.body = absl::StrCat("not ready: ", st.message(), "\n");
      }
    } else if (request.path == "/metrics") {
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = metrics->Render();
    } else if (std::optional<HttpResponse> e = extra ? extra(request) : std::nullopt) {
      r = std::move(*e);
    } else {
      r.status = 404;
      r.body = "not found\n";
    }
    return r;
  };
}

void DeclareProcessMetrics(MetricsRegistry* metrics) {
  metrics->DeclareGauge("knn_process_resident_memory_bytes",
                        "Resident memory of this process, in bytes.", [] {
                          return std::vector<GaugeSample>{
                              {{}, static_cast<double>(ProcessResidentBytes())}};
                        });
  const double start = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  metrics->DeclareGauge("knn_process_start_time_seconds",
                        "When this process started serving, in seconds since the Unix epoch.",
                        [start] { return std::vector<GaugeSample>{{{}, start}}; });
}

}  // namespace knncluster::rpc
