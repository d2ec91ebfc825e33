// The transport limits every knncluster channel and server shares, written once: keepalive on
// channels and the matching ping policy on servers (so a client's keepalive is not answered
// with GOAWAY "too_many_pings"), message-size limits, gRPC's thread quota on servers, and
// retries with exponential backoff and jitter for the idempotent methods only.
//
// Idempotent (retried on UNAVAILABLE by the channels configured here): Worker/SearchShards,
// Worker/GetWorkerStatus; Coordinator/KNeighbors, Predict, PredictProba, Score, ListDatasets,
// DescribeDataset, ListModels, DescribeModel, GetClusterStatus, ListGridSearches,
// GetGridSearchResult. Never retried: everything that creates, replaces or deletes (Fit,
// UploadDataset, ImportModel, SplitDataset, DeleteDataset, DeleteModel, StartGridSearch,
// CancelGridSearch, LoadShard, DropShard, PutDataset, RunFoldJob, Register, Heartbeat) and the
// streams whose consumer has seen part of the answer (ExportModel, WatchGridSearch).
//
// Thread-safe: pure functions.
#ifndef KNNCLUSTER_RPC_LIMITS_H_
#define KNNCLUSTER_RPC_LIMITS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace grpc {
class ChannelArguments;
class ServerBuilder;
}  // namespace grpc

namespace knncluster::rpc {

// A client pings a connection that has been idle this long, and closes it when the ping is not
// answered within kKeepaliveTimeoutMs (a peer that vanished without a FIN).
inline constexpr int kKeepaliveTimeMs = 20'000;
inline constexpr int kKeepaliveTimeoutMs = 10'000;
// Servers accept a ping this often without data (gRPC's default is 5 minutes, which would
// GOAWAY every client above), and pings on connections with no call in flight.
inline constexpr int kServerMinPingIntervalMs = 10'000;

// Retries of idempotent calls: gRPC's retry policy (backoff before attempt n is uniformly
// random in [0, min(initial * multiplier^(n-1), max)]: exponential with full jitter).
inline constexpr int kRetryMaxAttempts = 4;
inline constexpr double kRetryInitialBackoffSeconds = 0.1;
inline constexpr double kRetryMaxBackoffSeconds = 2.0;
inline constexpr double kRetryBackoffMultiplier = 2.0;

// Idle threads a sync server keeps waiting for calls (gRPC's default is 2). With two calls in
// flight, as a worker has when two batches overlap, a server at the default created a thread for
// about every call and ended one after it: a coordinator and 2 workers under cluster_bench
// (uniform3d, batches of 10,000, --inflight 2) started 110 threads in 2 s (perf stat, clone3),
// 3 with this.
inline constexpr int kServerMaxIdleThreads = 8;

// Fully qualified method names ("knncluster.v1.Worker/SearchShards").
std::vector<std::string> IdempotentWorkerMethods();
std::vector<std::string> IdempotentCoordinatorMethods();

// The service config (JSON) that retries `methods` on UNAVAILABLE with the policy above.
std::string RetryServiceConfig(const std::vector<std::string>& methods);

// Keepalive, max send/receive message sizes and, when `methods` is not empty, the retry policy
// for them. REQUIRES: max_message_bytes >= 1.
void SetClientChannelArgs(int max_message_bytes, const std::vector<std::string>& retried_methods,
                          grpc::ChannelArguments* args);

// Max send/receive message sizes, the ping policy matching SetClientChannelArgs' keepalive,
// kServerMaxIdleThreads, and a grpc::ResourceQuota named `name` capping gRPC's sync-server
// threads at `max_threads` (beyond which gRPC itself answers RESOURCE_EXHAUSTED; 0: no cap). REQUIRES: max_message_bytes >= 1.
void SetServerLimits(absl::string_view name, int max_message_bytes, int max_threads,
                     grpc::ServerBuilder* builder);

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_LIMITS_H_
