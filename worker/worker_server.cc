#include "worker/worker_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/base/durable_file.h"
#include "core/base/status_macros.h"
#include "core/base/thread_pool.h"
#include "knncluster/v1/worker.grpc.pb.h"
#include "rpc/admission.h"
#include "rpc/limits.h"
#include "rpc/grpc_metrics.h"
#include "rpc/ops_http.h"
#include "worker/dataset_cache.h"
#include "worker/membership_client.h"
#include "worker/shard_files.h"
#include "worker/shard_store.h"
#include "worker/subset_index_cache.h"
#include "worker/worker_internal.h"
#include "worker/worker_service.h"

namespace knncluster::worker {

namespace {
// "HOST:PORT" → HOST (which may be a bracketed IPv6 address).
absl::StatusOr<std::string> HostOf(const std::string& address, const std::string& field) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected HOST:PORT, got \"", address, "\""));
  }
  return address.substr(0, colon);
}
}  // namespace

WorkerServer::WorkerServer(WorkerOptions options) : options_(std::move(options)) {}

WorkerServer::~WorkerServer() {
  Shutdown();
  Wait();
}

absl::Status WorkerServer::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("WorkerServer::Start: already started");
  if (options_.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads: must be >= 0 (0: all cores), got ", options_.threads));
  }
  if (options_.max_receive_message_bytes < 1) {
    return absl::InvalidArgumentError("max_receive_message_bytes: must be >= 1");
  }
  if (options_.subset_index_cache_entries < 1) {
    return absl::InvalidArgumentError("subset_index_cache_entries: must be >= 1");
  }
  if (options_.max_concurrent_requests < 0) {
    return absl::InvalidArgumentError("max_concurrent_requests: must be >= 0 (0: no limit)");
  }
  if (options_.testing_search_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("testing_search_delay: must be >= 0");
  }
  if (options_.testing_job_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("testing_job_delay: must be >= 0");
  }
  KNN_ASSIGN_OR_RETURN(const std::string host, HostOf(options_.listen_address, "listen_address"));
  if (!options_.advertise_address.empty()) {
    KNN_RETURN_IF_ERROR(HostOf(options_.advertise_address, "advertise_address").status());
  }
  if (!options_.coordinator_address.empty()) {
    KNN_RETURN_IF_ERROR(HostOf(options_.coordinator_address, "coordinator_address").status());
  }
  if (!options_.data_dir.empty()) {
    // First, so that a foreign or newer directory is left untouched. Version 0 (a directory
    // from before FORMAT existed) holds only worker_id: nothing to upgrade.
    KNN_RETURN_IF_ERROR(
        CheckDataDirFormat(options_.data_dir, "knncluster-worker", kWorkerDataDirVersion)
            .status());
  }
  KNN_RETURN_IF_ERROR(rpc::CheckSecurityOptions(options_.security, options_.listen_address));
  KNN_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ServerCredentials> server_credentials,
      rpc::MakeServerCredentials(options_.security, rpc::ClientCertificates::kRequire));
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> channel_credentials,
                       rpc::MakePeerChannelCredentials(options_.security));
  KNN_ASSIGN_OR_RETURN(worker_id_, LoadOrCreateWorkerId(options_.data_dir));

  metrics_ = std::make_unique<rpc::MetricsRegistry>();
  rpc::DeclareGrpcServerMetrics(metrics_.get());
  rpc::DeclareProcessMetrics(metrics_.get());
  if (options_.http_port >= 0) {
    // Before the shards are restored, so that /healthz answers while they load (/readyz does
    // not until the worker serves).
    rpc::HttpServerOptions http_options;
    http_options.host = host;
    http_options.port = options_.http_port;
    http_ = std::make_unique<rpc::HttpServer>(
        http_options, rpc::MakeOpsHandler(metrics_.get(), [this]() -> absl::Status {
          if (!serving_) return absl::UnavailableError("not serving");
          if (membership_ != nullptr && !membership_->registered()) {
            return absl::UnavailableError("not registered with the coordinator");
          }
          return absl::OkStatus();
        }));
    KNN_RETURN_IF_ERROR(http_->Start());
    http_port_ = http_->port();
  }

  memory_budget_bytes_ = options_.memory_budget_bytes;
  if (memory_budget_bytes_ == 0) {
    const uint64_t physical = PhysicalMemoryBytes();
    memory_budget_bytes_ = physical != 0 ? physical / 2 : uint64_t{1} << 30;
  }

  pool_ = std::make_unique<ThreadPool>(options_.threads);
  store_ = std::make_unique<ShardStore>();
  files_ = std::make_unique<ShardFiles>(options_.data_dir);
  // Shards count against the same budget as the cached datasets.
  datasets_ = std::make_unique<DatasetCache>(
      memory_budget_bytes_, [store = store_.get()] { return store->TotalBytes(); });
  subset_indexes_ = std::make_unique<SubsetIndexCache>(options_.subset_index_cache_entries);
  WorkerServiceContext context;
  context.worker_id = worker_id_;
  context.store = store_.get();
  context.datasets = datasets_.get();
  context.subset_indexes = subset_indexes_.get();
  context.pool = pool_.get();
  context.files = files_.get();
  context.testing_job_delay = options_.testing_job_delay;
  context.guard = rpc::CallGuard("", rpc::CallGuard::Peer::kCoordinator, options_.security.tls());
  context.testing_search_delay = options_.testing_search_delay;
  rpc::AdmissionOptions admission;
  admission.server = "worker";
  admission.max_concurrent = options_.max_concurrent_requests;
  admission.max_inflight_bytes = options_.max_inflight_request_bytes;
  admission_ = std::make_unique<rpc::AdmissionControl>(admission);
  context.admission = admission_.get();
  context.memory_budget_bytes = memory_budget_bytes_;
  service_ = std::make_unique<WorkerService>(std::move(context));

  DeclareGauges();

  // The shards kept in the data directory, before serving (and before registering, so that the
  // coordinator hears of them at once).
  KNN_ASSIGN_OR_RETURN(
      const int restored,
      files_->RestoreAll([this](StoredShard shard) { return service_->RestoreShard(std::move(shard)); }));
  service_->set_shards_restored(static_cast<uint32_t>(restored));
  if (options_.log) {
    if (restored > 0) {
      options_.log(absl::StrCat("restored ", restored, " shard(s) from ", options_.data_dir,
                                "/shards"));
    }
    for (const std::string& line : files_->quarantined()) {
      options_.log(absl::StrCat("quarantined unreadable shard file ", line,
                                " (the coordinator will send the shard again)"));
    }
  }

  // Both are process-wide switches of gRPC, read when a server is built.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options_.listen_address, server_credentials, &port);
  rpc::SetServerLimits("knn-worker", options_.max_receive_message_bytes,
                       options_.max_concurrent_requests > 0
                           ? options_.max_concurrent_requests + kWorkerAdmissionFreeThreads
                           : 0,
                       &builder);
  builder.RegisterService(service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(rpc::MakeMetricsInterceptorFactory(metrics_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen_address));
  }
  bound_address_ = absl::StrCat(host, ":", port);
  advertise_address_ =
      options_.advertise_address.empty() ? bound_address_ : options_.advertise_address;
  // The default health service knows only "" until a service's status is set (TOOLCHAIN.md).
  server_->GetHealthCheckService()->SetServingStatus(v1::Worker::service_full_name(), true);

  if (!options_.coordinator_address.empty()) {
    MembershipOptions m;
    m.coordinator_address = options_.coordinator_address;
    m.worker_id = worker_id_;
    m.advertise_address = advertise_address_;
    m.cores = static_cast<uint32_t>(pool_->num_threads());
    m.memory_bytes = PhysicalMemoryBytes();
    m.memory_budget_bytes = memory_budget_bytes_;
    m.rpc_deadline = options_.membership_rpc_deadline;
    m.credentials = channel_credentials;
    m.log = options_.log;
    membership_ = std::make_unique<MembershipClient>(std::move(m), store_.get());
    membership_->Start();
  }
  serving_ = true;
  started_ = true;
  return absl::OkStatus();
}

void WorkerServer::DeclareGauges() {
  using rpc::GaugeSample;
  auto one = [](double v) { return std::vector<GaugeSample>{{{}, v}}; };
  metrics_->DeclareGauge("knn_worker_shards", "Shards this worker holds.",
                         [this, one] { return one(static_cast<double>(store_->size())); });
  metrics_->DeclareGauge("knn_worker_rows", "Training rows in the shards this worker holds.",
                         [this, one] {
                           double rows = 0;
                           for (const ShardInfo& s : store_->List()) rows += s.rows;
                           return one(rows);
                         });
  metrics_->DeclareGauge("knn_worker_shard_bytes",
                         "Memory of the shards this worker holds (data, ids, indexes), in bytes.",
                         [this, one] { return one(static_cast<double>(store_->TotalBytes())); });
  metrics_->DeclareGauge("knn_worker_cached_datasets",
                         "Datasets cached for grid-search fold jobs.",
                         [this, one] { return one(static_cast<double>(datasets_->size())); });
  metrics_->DeclareGauge("knn_worker_cached_dataset_bytes",
                         "Memory charged for the cached grid-search datasets, in bytes.",
                         [this, one] { return one(static_cast<double>(datasets_->cached_bytes())); });
  metrics_->DeclareGauge("knn_worker_memory_budget_bytes",
                         "What this worker may use for data (--memory-budget-mb), in bytes.",
                         [this, one] { return one(static_cast<double>(memory_budget_bytes_)); });
  metrics_->DeclareGauge("knn_worker_registered",
                         "1 while registered with the coordinator (heartbeats answered), else 0; "
                         "1 without a coordinator once serving.",
                         [this, one] {
                           const bool up = serving_ && (membership_ == nullptr ||
                                                        membership_->registered());
                           return one(up ? 1 : 0);
                         });
}

uint64_t WorkerServer::SubsetIndexBuildsForTesting() const { return subset_indexes_->puts(); }

void WorkerServer::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || shut_down_) return;
    shut_down_ = true;
  }
  serving_ = false;
  if (membership_ != nullptr) membership_->Stop();
  // NOT_SERVING first, so health probes see the drain before connections close.
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.shutdown_grace));
  if (http_ != nullptr) http_->Shutdown();
}

void WorkerServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace knncluster::worker
