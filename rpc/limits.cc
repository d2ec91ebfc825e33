#include "rpc/limits.h"

#include <grpcpp/resource_quota.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace knncluster::rpc {

std::vector<std::string> IdempotentWorkerMethods() {
  return {"knncluster.v1.Worker/SearchShards", "knncluster.v1.Worker/GetWorkerStatus"};
}

std::vector<std::string> IdempotentCoordinatorMethods() {
  std::vector<std::string> out;
  for (const char* m : {"KNeighbors", "Predict", "PredictProba", "Score", "ListDatasets",
                        "DescribeDataset", "ListModels", "DescribeModel", "GetClusterStatus",
                        "ListGridSearches", "GetGridSearchResult"}) {
    out.push_back(absl::StrCat("knncluster.v1.Coordinator/", m));
  }
  return out;
}

std::string RetryServiceConfig(const std::vector<std::string>& methods) {
  std::vector<std::string> names;
  for (const std::string& m : methods) {
    const size_t slash = m.find('/');
    names.push_back(absl::StrFormat(R"({"service":"%s","method":"%s"})", m.substr(0, slash),
                                    slash == std::string::npos ? "" : m.substr(slash + 1)));
  }
  return absl::StrFormat(
      R"({"methodConfig":[{"name":[%s],"retryPolicy":{"maxAttempts":%d,)"
      R"("initialBackoff":"%.3fs","maxBackoff":"%.3fs","backoffMultiplier":%g,)"
      R"("retryableStatusCodes":["UNAVAILABLE"]}}]})",
      absl::StrJoin(names, ","), kRetryMaxAttempts, kRetryInitialBackoffSeconds,
      kRetryMaxBackoffSeconds, kRetryBackoffMultiplier);
}

void SetClientChannelArgs(int max_message_bytes, const std::vector<std::string>& retried_methods,
                          grpc::ChannelArguments* args) {
  args->SetMaxReceiveMessageSize(max_message_bytes);
  args->SetMaxSendMessageSize(max_message_bytes);
  args->SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args->SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  // Idle connections too: a coordinator learns of a vanished worker between queries.
  args->SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args->SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  if (!retried_methods.empty()) {
    args->SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
    args->SetServiceConfigJSON(RetryServiceConfig(retried_methods));
  }
}

void SetServerLimits(absl::string_view name, int max_message_bytes, int max_threads,
                     grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(max_message_bytes);
  builder->SetMaxSendMessageSize(max_message_bytes);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              kServerMinPingIntervalMs);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                               kServerMaxIdleThreads);
  if (max_threads > 0) {
    grpc::ResourceQuota quota{std::string(name)};
    quota.SetMaxThreads(max_threads);
    builder->SetResourceQuota(quota);
  }
}

}  // namespace knncluster::rpc
