#include "rpc/grpc_metrics.h"

#include <chrono>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace knncluster::rpc {

namespace {

constexpr char kHandled[] = "knn_grpc_server_handled_total";
constexpr char kHandling[] = "knn_grpc_server_handling_seconds";
constexpr char kStarted[] = "knn_grpc_server_started_total";

// "/pkg.Service/Method" → ("pkg.Service", "Method").
void SplitMethod(const char* full, std::string* service, std::string* method) {
  std::string s = full == nullptr ? "" : full;
  if (!s.empty() && s[0] == '/') s.erase(0, 1);
  const size_t slash = s.find('/');
  if (slash == std::string::npos) {
    *service = "unknown";
    *method = s.empty() ? "unknown" : s;
    return;
  }
  *service = s.substr(0, slash);
  *method = s.substr(slash + 1);
}

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(grpc::experimental::ServerRpcInfo* info, MetricsRegistry* metrics)
      : metrics_(metrics), start_(std::chrono::steady_clock::now()) {
    SplitMethod(info->method(), &service_, &method_);
    metrics_->Increment(kStarted, {{"grpc_service", service_}, {"grpc_method", method_}});
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      const MetricLabels labels = {{"grpc_service", service_},
                                   {"grpc_method", method_},
                                   {"grpc_code", GrpcCodeName(status.error_code())}};
      metrics_->Increment(kHandled, labels);
      metrics_->Observe(kHandling, labels, seconds);
    }
    methods->Proceed();
  }

 private:
  MetricsRegistry* const metrics_;
  const std::chrono::steady_clock::time_point start_;
  std::string service_;
  std::string method_;
};

class MetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(MetricsRegistry* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(info, metrics_);
  }

 private:
  MetricsRegistry* const metrics_;
};

}  // namespace

std::string GrpcCodeName(int code) {
  // gRPC's and Abseil's codes are the same canonical numbers and names (rpc/status.h).
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? absl::StrCat("CODE_", code) : name;
}

void DeclareGrpcServerMetrics(MetricsRegistry* metrics) {
  metrics->DeclareCounter(kStarted, "gRPC calls started on the server, by service and method.");
  metrics->DeclareCounter(kHandled,
                          "gRPC calls completed on the server, by service, method and status code.");
  metrics->DeclareHistogram(kHandling,
                            "Time from a gRPC call's start on the server to its status, in "
                            "seconds, by service, method and status code.",
                            LatencyBucketsSeconds());
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeMetricsInterceptorFactory(MetricsRegistry* metrics) {
  return std::make_unique<MetricsInterceptorFactory>(metrics);
}

}  // namespace knncluster::rpc
