#include "coordinator/worker_pool.h"

#include <utility>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "rpc/limits.h"

namespace knncluster::coordinator {

std::string WorkerHandle::Describe() const {
  return id == address ? absl::StrCat("worker ", id)
                       : absl::StrCat("worker ", id, " (", address, ")");
}

WorkerPool::WorkerPool(WorkerPoolOptions options) : options_(std::move(options)) {}

std::shared_ptr<v1::Worker::Stub> WorkerPool::MakeStub(const std::string& address) const {
  grpc::ChannelArguments args;
  // Message limits, keepalive (a vanished worker is noticed between calls too), and retries with
  // backoff and jitter of SearchShards and GetWorkerStatus only (rpc/limits.h).
  rpc::SetClientChannelArgs(options_.max_message_bytes, rpc::IdempotentWorkerMethods(), &args);
  // Reconnect quickly after a worker restarts at the same address.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto channel = grpc::CreateCustomChannel(
      address,
      options_.credentials != nullptr ? options_.credentials : grpc::InsecureChannelCredentials(),
      args);
  return std::shared_ptr<v1::Worker::Stub>(v1::Worker::NewStub(channel));
}

absl::Status WorkerPool::AddStatic(const std::string& address) {
  if (address.empty()) return absl::InvalidArgumentError("workers: empty worker address");
  auto stub = MakeStub(address);
  absl::MutexLock lock(&mu_);
  Entry& e = workers_[address];
  e.info.id = address;
  e.info.address = address;
  e.info.is_static = true;
  e.info.alive = false;
  e.stub = std::move(stub);
  return absl::OkStatus();
}

absl::Status WorkerPool::Register(const std::string& id, const std::string& address,
                                  uint32_t cores, uint64_t memory_bytes, absl::Time now,
                                  uint64_t memory_budget_bytes,
                                  std::vector<std::string> shard_ids) {
  if (id.empty()) return absl::InvalidArgumentError("worker_id: must not be empty");
  if (address.empty()) return absl::InvalidArgumentError("address: must not be empty");
  std::shared_ptr<v1::Worker::Stub> stub;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(id);
    if (it != workers_.end() && it->second.info.address == address) stub = it->second.stub;
  }
  if (stub == nullptr) stub = MakeStub(address);  // outside the lock: channel creation
  absl::MutexLock lock(&mu_);
  Entry& e = workers_[id];
  e.info.id = id;
  e.info.address = address;
  e.info.alive = true;
  e.info.last_contact = now;
  e.info.cores = cores;
  e.info.memory_bytes = memory_bytes;
  e.info.memory_budget_bytes = memory_budget_bytes;
  // A (re)started worker holds what it says it holds: nothing when new, the shards restored
  // from its data directory after a restart.
  e.info.reported_shards = std::move(shard_ids);
  e.info.shards_reported_at = now;
  e.stub = std::move(stub);
  return absl::OkStatus();
}

bool WorkerPool::Heartbeat(const std::string& id, std::vector<std::string> shard_ids,
                           uint64_t rss_bytes, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it == workers_.end()) return false;
  WorkerSnapshot& w = it->second.info;
  w.alive = true;
  w.last_contact = now;
  w.rss_bytes = rss_bytes;
  w.reported_shards = std::move(shard_ids);
  w.shards_reported_at = now;
  return true;
}

void WorkerPool::ProbeSucceeded(const std::string& id, const v1::WorkerStatus& status,
                                absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it == workers_.end()) return;
  WorkerSnapshot& w = it->second.info;
  w.alive = true;
  w.last_contact = now;
  w.rss_bytes = status.rss_bytes();
  if (status.cores() != 0) w.cores = status.cores();
  if (status.memory_budget_bytes() != 0) w.memory_budget_bytes = status.memory_budget_bytes();
  std::vector<std::string> shards;
  for (const auto& s : status.shards()) shards.push_back(s.shard_id());
  w.reported_shards = std::move(shards);
  w.shards_reported_at = now;
}

void WorkerPool::ReportCallFailure(const std::string& id, const absl::Status& status) {
  if (status.code() != absl::StatusCode::kUnavailable &&
      status.code() != absl::StatusCode::kDeadlineExceeded) {
    return;
  }
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it != workers_.end()) it->second.info.alive = false;
}

void WorkerPool::ReportCallSuccess(const std::string& id, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it != workers_.end() && it->second.info.alive) it->second.info.last_contact = now;
}

std::vector<std::string> WorkerPool::CheckLiveness(absl::Time now) {
  const absl::Duration limit = options_.heartbeat_interval * options_.dead_after_intervals;
  std::vector<std::string> died;
  absl::MutexLock lock(&mu_);
  for (auto& [id, e] : workers_) {
    if (e.info.alive && now - e.info.last_contact > limit) {
      e.info.alive = false;
      died.push_back(id);
    }
  }
  return died;
}

std::vector<WorkerHandle> WorkerPool::WorkersToProbe(absl::Time now) const {
  std::vector<WorkerHandle> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, e] : workers_) {
    if (!e.info.alive || now - e.info.last_contact > options_.heartbeat_interval * 1.5) {
      out.push_back(HandleOf(e));
    }
  }
  return out;
}

absl::StatusOr<WorkerHandle> WorkerPool::Get(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it == workers_.end()) return absl::NotFoundError(absl::StrCat("unknown worker ", id));
  return HandleOf(it->second);
}

bool WorkerPool::IsAlive(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  return it != workers_.end() && it->second.info.alive;
}

std::vector<WorkerHandle> WorkerPool::LiveWorkers() const {
  std::vector<WorkerHandle> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, e] : workers_) {
    if (e.info.alive) out.push_back(HandleOf(e));
  }
  return out;
}

std::vector<WorkerSnapshot> WorkerPool::Snapshot() const {
  std::vector<WorkerSnapshot> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, e] : workers_) out.push_back(e.info);
  return out;
}

}  // namespace knncluster::coordinator
