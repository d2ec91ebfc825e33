#include "worker/membership_client.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rpc/limits.h"
#include "rpc/status.h"
#include "worker/shard_store.h"
#include "worker/worker_internal.h"

namespace knncluster::worker {

namespace {
// Register and Heartbeat are small (a heartbeat lists shard ids).
constexpr int kMembershipMaxMessageBytes = 16 << 20;

// gRPC's own reconnect backoff grows to 120 s by default, which would leave a worker unregistered
// for minutes after a late or restarted coordinator comes up; bound it by our retry backoff.
std::shared_ptr<grpc::Channel> MembershipChannel(const MembershipOptions& o) {
  grpc::ChannelArguments args;
  const int min_ms = static_cast<int>(absl::ToInt64Milliseconds(o.min_backoff));
  const int max_ms = static_cast<int>(absl::ToInt64Milliseconds(o.max_backoff));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::max(1, min_ms));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::max(1, min_ms));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, std::max(1, max_ms));
  // Keepalive and message limits; Register and Heartbeat are not retried by gRPC: the loop
  // retries them itself with its own backoff.
  rpc::SetClientChannelArgs(kMembershipMaxMessageBytes, {}, &args);
  return grpc::CreateCustomChannel(o.coordinator_address, o.credentials, args);
}
}  // namespace

MembershipClient::MembershipClient(MembershipOptions options, const ShardStore* store)
    : options_(std::move(options)),
      store_(store),
      stub_(v1::Membership::NewStub(MembershipChannel(options_))) {}

MembershipClient::~MembershipClient() { Stop(); }

void MembershipClient::Start() {
  thread_ = std::thread([this] { Run(); });
}

void MembershipClient::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (in_flight_ != nullptr) in_flight_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void MembershipClient::Log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

bool MembershipClient::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return !stopping_;
}

grpc::Status MembershipClient::Call(const std::function<grpc::Status(grpc::ClientContext*)>& call) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_deadline));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return grpc::Status(grpc::StatusCode::CANCELLED, "worker stopping");
    in_flight_ = &context;
  }
  grpc::Status status = call(&context);
  absl::MutexLock lock(&mu_);
  in_flight_ = nullptr;  // before `context` dies, so Stop never cancels a dead context
  return status;
}

absl::StatusOr<absl::Duration> MembershipClient::Register() {
  v1::RegisterRequest request;
  request.set_worker_id(options_.worker_id);
  request.set_address(options_.advertise_address);
  request.set_cores(options_.cores);
  request.set_memory_bytes(options_.memory_bytes);
  request.set_memory_budget_bytes(options_.memory_budget_bytes);
  // After a restart: the shards restored from the data directory, so they stay placed here.
  for (std::string& id : store_->ShardIds()) request.add_shard_ids(std::move(id));
  v1::RegisterResponse response;
  const grpc::Status status = Call(
      [&](grpc::ClientContext* context) { return stub_->Register(context, request, &response); });
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  if (response.heartbeat_interval_ms() == 0) return options_.default_heartbeat_interval;
  return absl::Milliseconds(response.heartbeat_interval_ms());
}

absl::StatusOr<bool> MembershipClient::Heartbeat() {
  v1::HeartbeatRequest request;
  request.set_worker_id(options_.worker_id);
  for (std::string& id : store_->ShardIds()) request.add_shard_ids(std::move(id));
  request.set_rss_bytes(ResidentBytes());
  v1::HeartbeatResponse response;
  const grpc::Status status = Call(
      [&](grpc::ClientContext* context) { return stub_->Heartbeat(context, request, &response); });
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  return response.reregister();
}

void MembershipClient::Run() {
  absl::Duration backoff = options_.min_backoff;
  absl::Duration interval = options_.default_heartbeat_interval;
  bool registered = false;
  bool warned = false;  // one line per lost contact, not one per retry
  while (true) {
    if (!registered) {
      absl::StatusOr<absl::Duration> result = Register();
      if (!result.ok()) {
        if (!warned) {
          Log(absl::StrCat("cannot register with coordinator ", options_.coordinator_address, ": ",
                           result.status().ToString(), " (retrying)"));
          warned = true;
        }
        if (!SleepFor(backoff)) return;
        backoff = std::min(2 * backoff, options_.max_backoff);
        continue;
      }
      registered = true;
      registered_ = true;
      warned = false;
      backoff = options_.min_backoff;
      interval = *result;
      Log(absl::StrFormat("registered with coordinator %s as %s (heartbeat every %d ms)",
                          options_.coordinator_address, options_.worker_id,
                          absl::ToInt64Milliseconds(interval)));
    }
    if (!SleepFor(interval)) return;
    absl::StatusOr<bool> reregister = Heartbeat();
    if (!reregister.ok()) {
      Log(absl::StrCat("heartbeat to coordinator ", options_.coordinator_address,
                       " failed: ", reregister.status().ToString(), " (registering again)"));
      registered = false;
      registered_ = false;
      warned = true;
    } else if (*reregister) {
      Log("the coordinator asked this worker to register again");
      registered = false;
      registered_ = false;
    }
  }
}

}  // namespace knncluster::worker
