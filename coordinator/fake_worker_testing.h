// Test-only: an in-process knncluster.v1.Worker built directly on the core (BuildIndex,
// KNeighborsRdist, MergePartialAnswers), so coordinator tests run without worker/ code. Honours
// SearchShardsRequest's distance bounds as the real worker does. Serves on 127.0.0.1:0. Not for
// production use.
#ifndef KNNCLUSTER_COORDINATOR_FAKE_WORKER_TESTING_H_
#define KNNCLUSTER_COORDINATOR_FAKE_WORKER_TESTING_H_

#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/index/neighbor_index.h"
#include "core/index/top_k.h"
#include "knncluster/v1/worker.grpc.pb.h"
#include "rpc/convert.h"
#include "rpc/status.h"

namespace knncluster::coordinator::testing {

class FakeWorkerService final : public v1::Worker::Service {
 public:
  grpc::Status LoadShard(grpc::ServerContext*, grpc::ServerReader<v1::LoadShardRequest>* reader,
                         v1::LoadShardResponse* response) override {
    v1::LoadShardRequest req;
    if (!reader->Read(&req) || !req.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "header first");
    }
    const v1::ShardHeader h = req.header();
    std::vector<double> values;
    while (reader->Read(&req)) {
      values.insert(values.end(), req.rows().values().begin(), req.rows().values().end());
    }
    if (values.size() != h.rows() * h.cols()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "row count");
    }
    auto params = rpc::FromProto(h.index_params(), "index_params");
    if (!params.ok()) return rpc::ToGrpcStatus(params.status());
    std::vector<int64_t> ids(h.rows());
    for (size_t i = 0; i < ids.size(); ++i) {  // listed (spatial shards) or a range
      ids[i] = h.global_indices_size() > 0 ? h.global_indices(static_cast<int>(i))
                                           : h.first_global_index() + static_cast<int64_t>(i);
    }
    auto data = std::make_shared<const Matrix>(h.rows(), h.cols(), std::move(values));
    auto index = BuildIndex(data, ids, params->index_options());
    if (!index.ok()) return rpc::ToGrpcStatus(index.status());
    absl::MutexLock lock(&mu_);
    shards_[h.shard_id()] = std::shared_ptr<const NeighborIndex>(*std::move(index));
    ++loads_;
    response->set_shard_id(h.shard_id());
    response->set_rows(h.rows());
    return grpc::Status::OK;
  }

  grpc::Status SearchShards(grpc::ServerContext* context, const v1::SearchShardsRequest* request,
                            v1::SearchShardsResponse* response) override {
    {
      // A hung worker (SetSearchDelay): waits, or until the caller cancels.
      absl::MutexLock lock(&mu_);
      const absl::Time until = absl::Now() + search_delay_;
      while (absl::Now() < until && !context->IsCancelled()) {
        mu_.AwaitWithTimeout(absl::Condition(+[](bool* b) { return *b; }, &never_),
                             absl::Milliseconds(10));
      }
      if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    std::vector<std::shared_ptr<const NeighborIndex>> indexes;
    {
      absl::MutexLock lock(&mu_);
      ++searches_;
      for (const std::string& id : request->shard_ids()) {
        auto it = shards_.find(id);
        if (it == shards_.end()) {
          return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no shard ", id));
        }
        indexes.push_back(it->second);
      }
    }
    auto queries = rpc::FromProto(request->queries(), "queries");
    if (!queries.ok()) return rpc::ToGrpcStatus(queries.status());
    std::vector<double> bounds;
    if (request->bounded_rows_size() > 0) {
      bounds.assign(queries->rows(), HUGE_VAL);
      for (int i = 0; i < request->bounded_rows_size(); ++i) {
        bounds.at(request->bounded_rows(i)) = request->rdist_bounds(i);
      }
      absl::MutexLock lock(&mu_);
      bounded_rows_ += request->bounded_rows_size();
    }
    std::vector<KNeighborsResult> parts;
    std::vector<PartialAnswer> views;
    size_t total = 0;
    for (const auto& index : indexes) {
      auto r = index->KNeighborsRdist(*queries, static_cast<int>(request->k()), nullptr, bounds);
      if (!r.ok()) return rpc::ToGrpcStatus(r.status());
      total += index->size();
      parts.push_back(*std::move(r));
    }
    for (const KNeighborsResult& part : parts) views.push_back(PartialAnswer::Whole(part));
    KNeighborsResult out;
    out.num_queries = queries->rows();
    out.k = std::min<size_t>(request->k(), total);
    out.distances.resize(out.num_queries * out.k);
    out.indices.resize(out.num_queries * out.k);
    absl::Status merged =
        MergePartialAnswers(views, out.num_queries, out.k, nullptr, nullptr, out.distances.data(),
                            out.indices.data(), bounds.empty() ? ShortRows::kFail : ShortRows::kPad);
    if (!merged.ok()) return rpc::ToGrpcStatus(merged);
    {
      absl::MutexLock lock(&mu_);
      if (bad_index_.has_value() && !out.indices.empty()) out.indices.back() = *bad_index_;
    }
    rpc::ToProto(out, response->mutable_neighbors());
    return grpc::Status::OK;
  }

  grpc::Status DropShard(grpc::ServerContext*, const v1::DropShardRequest* request,
                         v1::DropShardResponse* response) override {
    absl::MutexLock lock(&mu_);
    response->set_existed(shards_.erase(request->shard_id()) > 0);
    return grpc::Status::OK;
  }

  grpc::Status GetWorkerStatus(grpc::ServerContext*, const v1::GetWorkerStatusRequest*,
                               v1::WorkerStatus* response) override {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, index] : shards_) {
      v1::ShardStatus* s = response->add_shards();
      s->set_shard_id(id);
      s->set_rows(index->size());
    }
    response->set_cores(1);
    return grpc::Status::OK;
  }

  size_t num_shards() {
    absl::MutexLock lock(&mu_);
    return shards_.size();
  }
  int searches() {
    absl::MutexLock lock(&mu_);
    return searches_;
  }
  // Queries that came with a distance bound (SearchShardsRequest.bounded_rows), over all calls.
  int bounded_rows() {
    absl::MutexLock lock(&mu_);
    return bounded_rows_;
  }
  void Clear() {
    absl::MutexLock lock(&mu_);
    shards_.clear();
  }
  // A broken worker: every answer's last index becomes `id` (nullopt: answers are right).
  void SetBadIndex(std::optional<int64_t> id) {
    absl::MutexLock lock(&mu_);
    bad_index_ = id;
  }
  // Every SearchShards call waits this long first (as a hung or partitioned worker would).
  void SetSearchDelay(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    search_delay_ = d;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const NeighborIndex>> shards_ ABSL_GUARDED_BY(mu_);
  int loads_ ABSL_GUARDED_BY(mu_) = 0;
  int searches_ ABSL_GUARDED_BY(mu_) = 0;
  int bounded_rows_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<int64_t> bad_index_ ABSL_GUARDED_BY(mu_);
  absl::Duration search_delay_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  bool never_ ABSL_GUARDED_BY(mu_) = false;
};

// A FakeWorkerService on its own in-process server.
class FakeWorker {
 public:
  FakeWorker() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.SetMaxReceiveMessageSize(64 << 20);
    builder.SetMaxSendMessageSize(64 << 20);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  ~FakeWorker() { Stop(); }
  void Stop() {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now());
      server_->Wait();
      server_.reset();
    }
  }
  const std::string& address() const { return address_; }
  FakeWorkerService& service() { return service_; }

 private:
  FakeWorkerService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace knncluster::coordinator::testing

#endif  // KNNCLUSTER_COORDINATOR_FAKE_WORKER_TESTING_H_
