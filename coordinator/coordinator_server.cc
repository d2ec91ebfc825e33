#include "coordinator/coordinator_server.h"

#include <algorithm>
#include <map>
#include <utility>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "core/base/durable_file.h"
#include "core/base/status_macros.h"
#include "core/base/thread_pool.h"
#include "rpc/server_main.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/dataset_store.h"
#include "coordinator/model_manager.h"
#include "coordinator/model_registry.h"
#include "coordinator/scatter_gather.h"
#include "coordinator/worker_pool.h"
#include "rpc/admission.h"
#include "rpc/limits.h"
#include "coordinator/grid_search_manager.h"
#include "coordinator/grid_search_convert.h"
#include "coordinator/status_page.h"
#include "core/model_selection/heatmap_svg.h"
#include "rpc/grpc_metrics.h"
#include "rpc/ops_http.h"

namespace knncluster::coordinator {

namespace {
constexpr char kCoordinatorService[] = "knncluster.v1.Coordinator";
constexpr char kMembershipService[] = "knncluster.v1.Membership";
// The data directory's layout (FORMAT): datasets/, grid_searches/, quarantine/ (README.md).
constexpr uint32_t kCoordinatorDataDirVersion = 1;
}  // namespace

CoordinatorServer::CoordinatorServer(CoordinatorOptions options) : options_(std::move(options)) {}

CoordinatorServer::~CoordinatorServer() {
  Shutdown();
  Wait();
}

absl::Status CoordinatorServer::Start() {
  if (options_.data_dir.empty()) {
    return absl::InvalidArgumentError("data_dir: the coordinator needs a data directory");
  }
  if (options_.heartbeat_interval_ms < 1) {
    return absl::InvalidArgumentError("heartbeat_interval_ms: must be >= 1");
  }
  const size_t colon = options_.listen_address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen: expected HOST:PORT, got \"", options_.listen_address, "\""));
  }
  // Security first: a misconfigured coordinator must not open its data directory.
  KNN_RETURN_IF_ERROR(rpc::CheckSecurityOptions(options_.security, options_.listen_address));
  KNN_ASSIGN_OR_RETURN(const std::string token,
                       rpc::LoadAuthToken(options_.security.auth_token_file));
  KNN_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ServerCredentials> server_credentials,
      rpc::MakeServerCredentials(options_.security, rpc::ClientCertificates::kRequestAndVerify));
  WorkerPoolOptions pool_options;
  KNN_ASSIGN_OR_RETURN(pool_options.credentials,
                       rpc::MakePeerChannelCredentials(options_.security));
  metrics_ = std::make_unique<rpc::MetricsRegistry>();
  rpc::DeclareGrpcServerMetrics(metrics_.get());
  rpc::DeclareProcessMetrics(metrics_.get());
  if (options_.http_port >= 0) {
    // Before the data directory loads, so that /healthz answers meanwhile (/readyz does not).
    rpc::HttpServerOptions http_options;
    http_options.host = options_.listen_address.substr(0, colon);
    http_options.port = options_.http_port;
    http_ = std::make_unique<rpc::HttpServer>(
        http_options,
        rpc::MakeOpsHandler(
            metrics_.get(),
            [this]() -> absl::Status {
              return serving_ ? absl::OkStatus()
                              : absl::UnavailableError("data directory loading or shutting down");
            },
            [this](const rpc::HttpRequest& r) { return StatusPage(r); }));
    KNN_RETURN_IF_ERROR(http_->Start());
    http_port_ = http_->port();
  }
  KNN_ASSIGN_OR_RETURN(store_, DatasetStore::Open(options_.data_dir));
  // Under the store's LOCK: one process per directory. Version 0 (a directory from before FORMAT
  // existed) holds datasets only, in their own versioned format: nothing to upgrade.
  KNN_RETURN_IF_ERROR(CheckDataDirFormat(options_.data_dir, "knncluster-coordinator",
                                         kCoordinatorDataDirVersion)
                          .status());

  pool_options.heartbeat_interval = absl::Milliseconds(options_.heartbeat_interval_ms);
  pool_options.max_message_bytes = options_.max_message_bytes;
  workers_ = std::make_unique<WorkerPool>(pool_options);
  for (const std::string& address : options_.workers) {
    KNN_RETURN_IF_ERROR(workers_->AddStatic(address));
  }
  registry_ = std::make_unique<ModelRegistry>();
  pool_ = std::make_unique<ThreadPool>(options_.threads);
  ScatterGatherOptions search_options;
  search_options.rpc_deadline = options_.rpc_deadline;
  // Leave room for the proto framing under the message limit.
  search_options.max_response_bytes =
      std::min<size_t>(search_options.max_response_bytes, options_.max_message_bytes / 2);
  ModelRegistry* registry = registry_.get();
  search_options.on_shards_lost = [registry](const std::string& worker_id,
                                             const std::vector<std::string>& ids) {
    std::vector<std::pair<std::string, std::string>> copies;
    for (const std::string& id : ids) copies.emplace_back(id, worker_id);
    registry->MarkLost(copies);
  };
  search_ = std::make_unique<ScatterGather>(workers_.get(), pool_.get(), search_options);
  ModelManagerOptions model_options;
  model_options.sharding = options_.sharding;
  model_options.replication = options_.replication;
  model_options.load_deadline = options_.load_deadline;
  model_options.rebuild_wait = options_.rebuild_wait;
  model_options.log = options_.log ? options_.log : [](const std::string& line) {
    rpc::LogLine("knn-coordinator", rpc::LogLevel::kInfo, line);
  };
  KNN_ASSIGN_OR_RETURN(catalog_, ModelCatalog::Open(options_.data_dir));
  models_ = std::make_unique<ModelManager>(store_.get(), workers_.get(), registry_.get(),
                                           search_.get(), pool_.get(), model_options,
                                           catalog_.get());
  // Every model as it was: the workers re-register with the shards they kept.
  for (const absl::Status& st : store_->load_errors()) load_errors_.push_back(st.ToString());
  for (const absl::Status& st : models_->Recover()) load_errors_.push_back(st.ToString());
  GridSearchManagerOptions grid_options = options_.grid_search;
  grid_options.data_dir = options_.data_dir;
  grid_searches_ = std::make_unique<GridSearchManager>(store_.get(), workers_.get(),
                                                       registry_.get(), models_.get(),
                                                       search_.get(), grid_options);
  // Finished searches answer as before; interrupted ones start again.
  KNN_RETURN_IF_ERROR(grid_searches_->Recover());
  for (const std::string& e : grid_searches_->recover_errors()) load_errors_.push_back(e);
  if (options_.max_concurrent_requests < 0) {
    return absl::InvalidArgumentError("max_concurrent_requests: must be >= 0 (0: no limit)");
  }
  rpc::AdmissionOptions admission;
  admission.server = "coordinator";
  admission.max_concurrent = options_.max_concurrent_requests;
  admission.max_inflight_bytes = options_.max_inflight_request_bytes;
  admission_ = std::make_unique<rpc::AdmissionControl>(admission);
  const bool tls = options_.security.tls();
  coordinator_service_ = std::make_unique<CoordinatorService>(
      store_.get(), registry_.get(), models_.get(), workers_.get(), grid_searches_.get(),
      rpc::CallGuard(token, rpc::CallGuard::Peer::kAny, tls), admission_.get());
  membership_service_ = std::make_unique<MembershipService>(
      workers_.get(), rpc::CallGuard("", rpc::CallGuard::Peer::kWorker, tls));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options_.listen_address, server_credentials, &port);
  rpc::SetServerLimits("knn-coordinator", options_.max_message_bytes,
                       options_.max_concurrent_requests > 0
                           ? options_.max_concurrent_requests + kAdmissionFreeThreads
                           : 0,
                       &builder);
  builder.RegisterService(coordinator_service_.get());
  builder.RegisterService(membership_service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(rpc::MakeMetricsInterceptorFactory(metrics_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("listen: could not bind ", options_.listen_address));
  }
  bound_address_ = absl::StrCat(options_.listen_address.substr(0, colon), ":", port);
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(kCoordinatorService, true);
    health->SetServingStatus(kMembershipService, true);
  }
  if (options_.run_maintenance) {
    liveness_thread_ = std::thread([this] { LivenessLoop(); });
    repair_thread_ = std::thread([this] { RepairLoop(); });
  }
  DeclareGauges();
  serving_ = true;
  return absl::OkStatus();
}

void CoordinatorServer::DeclareGauges() {
  using rpc::GaugeSample;
  auto one = [](double v) { return std::vector<GaugeSample>{{{}, v}}; };
  metrics_->DeclareGauge("knn_coordinator_workers", "Workers known, by state (alive, dead).", [this] {
    double alive = 0, dead = 0;
    for (const WorkerSnapshot& w : workers_->Snapshot()) (w.alive ? alive : dead) += 1;
    return std::vector<GaugeSample>{{{{"state", "alive"}}, alive}, {{{"state", "dead"}}, dead}};
  });
  metrics_->DeclareGauge(
      "knn_coordinator_worker_up", "1 while a worker is alive, 0 once marked dead; per worker.",
      [this] {
        std::vector<GaugeSample> out;
        for (const WorkerSnapshot& w : workers_->Snapshot()) {
          out.push_back({{{"worker_id", w.id}, {"address", w.address}}, w.alive ? 1.0 : 0.0});
        }
        return out;
      });
  metrics_->DeclareGauge(
      "knn_coordinator_worker_seconds_since_contact",
      "Seconds since a worker's last heartbeat, probe or successful call; per worker.", [this] {
        std::vector<GaugeSample> out;
        const absl::Time now = absl::Now();
        for (const WorkerSnapshot& w : workers_->Snapshot()) {
          if (w.last_contact == absl::InfinitePast()) continue;
          out.push_back({{{"worker_id", w.id}}, absl::ToDoubleSeconds(now - w.last_contact)});
        }
        return out;
      });
  metrics_->DeclareGauge(
      "knn_coordinator_worker_resident_memory_bytes",
      "Resident memory a worker reported with its last heartbeat, in bytes; per worker.", [this] {
        std::vector<GaugeSample> out;
        for (const WorkerSnapshot& w : workers_->Snapshot()) {
          out.push_back({{{"worker_id", w.id}}, static_cast<double>(w.rss_bytes)});
        }
        return out;
      });
  metrics_->DeclareGauge("knn_coordinator_datasets",
                         "Datasets in the data directory (split parts included).",
                         [this, one] { return one(static_cast<double>(store_->List().size())); });
  metrics_->DeclareGauge("knn_coordinator_dataset_rows",
                         "Rows held in the data directory (datasets, not split parts).",
                         [this, one] {
                           double rows = 0;
                           for (const DatasetMeta& d : store_->List()) {
                             if (d.view_of.empty()) rows += static_cast<double>(d.rows);
                           }
                           return one(rows);
                         });
  metrics_->DeclareGauge("knn_coordinator_models", "Fitted models.",
                         [this, one] { return one(static_cast<double>(registry_->List().size())); });
  metrics_->DeclareGauge("knn_coordinator_model_rows", "Training rows of the fitted models.",
                         [this, one] {
                           double rows = 0;
                           for (const auto& m : registry_->List()) rows += static_cast<double>(m->rows);
                           return one(rows);
                         });
  metrics_->DeclareGauge("knn_coordinator_shards", "Shards of the fitted models.", [this, one] {
    double n = 0;
    for (const auto& m : registry_->List()) n += static_cast<double>(m->shards.size());
    return one(n);
  });
  metrics_->DeclareGauge(
      "knn_coordinator_shard_copies",
      "Copies of the models' shards placed on workers, by state: live (searched), lost (the "
      "worker no longer holds it).",
      [this] {
        double live = 0, lost = 0;
        for (const auto& m : registry_->List()) {
          for (const Placement& p : m->shards) {
            for (const Replica& r : p.replicas) (r.lost ? lost : live) += 1;
          }
        }
        return std::vector<GaugeSample>{{{{"state", "live"}}, live}, {{{"state", "lost"}}, lost}};
      });
  metrics_->DeclareGauge(
      "knn_coordinator_grid_searches",
      "Grid searches kept (running and the last finished ones), by state.", [this] {
        std::map<std::string, double> by_state = {{"queued", 0},    {"running", 0},
                                                  {"refitting", 0}, {"succeeded", 0},
                                                  {"failed", 0},    {"cancelled", 0}};
        for (const GridSearchProgress& p : grid_searches_->List()) {
          by_state[GridSearchStateName(p.state)] += 1;
        }
        std::vector<GaugeSample> out;
        for (const auto& [state, n] : by_state) out.push_back({{{"state", state}}, n});
        return out;
      });
  metrics_->DeclareGauge(
      "knn_coordinator_grid_search_jobs_pending",
      "Fold jobs of unfinished grid searches not done yet (the job queue's depth, running "
      "jobs included).",
      [this, one] {
        double n = 0;
        for (const GridSearchProgress& p : grid_searches_->List()) {
          if (!IsTerminal(p.state)) n += p.jobs_total - std::min(p.jobs_done, p.jobs_total);
        }
        return one(n);
      });
  metrics_->DeclareGauge(
      "knn_coordinator_grid_search_jobs_done",
      "Fold jobs done by the grid searches kept (running and the last finished ones).",
      [this, one] {
        double n = 0;
        for (const GridSearchProgress& p : grid_searches_->List()) n += p.jobs_done;
        return one(n);
      });
}

std::optional<rpc::HttpResponse> CoordinatorServer::StatusPage(const rpc::HttpRequest& request) {
  if (!options_.status_page || (request.path != "/" && request.path != "/status")) {
    return std::nullopt;
  }
  rpc::HttpResponse r;
  if (!serving_) {
    r.status = 503;
    r.body = "starting\n";
    return r;
  }
  r.content_type = "text/html; charset=utf-8";
  r.headers.push_back(
      "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:");
  StatusPageData data;
  data.coordinator_address =
      options_.advertise_address.empty() ? bound_address_ : options_.advertise_address;
  coordinator_service_->FillClusterStatus(&data.cluster);
  for (const GridSearchProgress& p : grid_searches_->List()) {
    StatusPageSearch& s = data.searches.emplace_back();
    InfoToProto(p, &s.info);
    if (p.state != GridSearchState::kSucceeded) continue;
    absl::StatusOr<GridSearchOutcome> outcome = grid_searches_->Result(p.id);
    if (!outcome.ok()) continue;
    const CvResults& cv = outcome->cv_results;
    s.best_score = cv.best_score;
    s.best_params = GridParamsText(cv.best_params, GridKeysOf(cv, cv.best_index));
    absl::StatusOr<Heatmap> heatmap = CvResultsHeatmap(cv, "", "");
    if (!heatmap.ok()) continue;  // the grid varies no parameter
    absl::StatusOr<std::string> svg = HeatmapSvg(*heatmap);
    if (!svg.ok()) continue;
    const size_t begin = svg->find("<svg");  // inline: without the XML declaration
    if (begin != std::string::npos) s.heatmap_svg = svg->substr(begin);
  }
  r.body = RenderStatusPage(data);
  return r;
}

void CoordinatorServer::LivenessLoop() {
  const absl::Duration interval = absl::Milliseconds(options_.heartbeat_interval_ms);
  do {
    models_->CheckWorkers();
  } while (!stop_.WaitForNotificationWithTimeout(interval));
}

void CoordinatorServer::RepairLoop() {
  const absl::Duration interval = absl::Milliseconds(options_.heartbeat_interval_ms);
  while (!stop_.WaitForNotificationWithTimeout(interval)) models_->Repair();
}

void CoordinatorServer::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  serving_ = false;
  // Searches end first (cancelled), so their watchers see the end and return.
  if (grid_searches_ != nullptr) grid_searches_->Shutdown();
  if (server_ != nullptr) {
    if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
      health->SetServingStatus(false);
    }
    server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.shutdown_grace));
  }
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (liveness_thread_.joinable()) liveness_thread_.join();
  if (repair_thread_.joinable()) repair_thread_.join();
  if (http_ != nullptr) http_->Shutdown();
}

void CoordinatorServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace knncluster::coordinator
