// The coordinator's gRPC services, thin adapters: each handler validates the request with
// rpc/convert (names, parameters, query width and finiteness) before touching shared state,
// calls the DatasetStore, ModelRegistry or ModelManager in core types, converts the answer, and
// ends in rpc::ToGrpcStatus. Sync API: gRPC's thread pool runs the handlers; the fan-out inside
// uses the callback API.
//
// CoordinatorService: the client-facing knncluster.v1.Coordinator.
// MembershipService: knncluster.v1.Membership, called by workers (Register, Heartbeat).
//
// Ownership: both borrow what the CoordinatorServer owns (it outlives them).
// Thread safety: handlers run concurrently; all state they touch is thread-safe.
#ifndef KNNCLUSTER_COORDINATOR_COORDINATOR_SERVICE_H_
#define KNNCLUSTER_COORDINATOR_COORDINATOR_SERVICE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/dataset_store.h"
#include "coordinator/grid_search_manager.h"
#include "coordinator/model_manager.h"
#include "coordinator/model_registry.h"
#include "coordinator/worker_pool.h"
#include "core/base/matrix.h"
#include "knncluster/v1/coordinator.grpc.pb.h"
#include "rpc/admission.h"
#include "rpc/credentials.h"

namespace knncluster::coordinator {

class CoordinatorService final : public v1::Coordinator::Service {
 public:
  // `searches` may be null (the grid-search calls then answer UNIMPLEMENTED). `guard` is
  // checked first by every handler (the bearer token); default: every call passes. `admission`
  // may be null (no limit); otherwise every call that does work (uploads, fits, queries, imports
  // and exports, splits, deletes, starting a search) is admitted by it next, and the cheap reads
  // (List*, Describe*, GetClusterStatus, watching, cancelling and reading searches) are not, so
  // an overloaded cluster can still be observed.
  CoordinatorService(DatasetStore* store, ModelRegistry* registry, ModelManager* models,
                     WorkerPool* workers, GridSearchManager* searches = nullptr,
                     rpc::CallGuard guard = rpc::CallGuard(),
                     rpc::AdmissionControl* admission = nullptr);
  CoordinatorService(const CoordinatorService&) = delete;
  CoordinatorService& operator=(const CoordinatorService&) = delete;

  grpc::Status UploadDataset(grpc::ServerContext* context,
                             grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                             v1::DatasetInfo* response) override;
  grpc::Status ListDatasets(grpc::ServerContext* context, const v1::ListDatasetsRequest* request,
                            v1::ListDatasetsResponse* response) override;
  grpc::Status DescribeDataset(grpc::ServerContext* context,
                               const v1::DescribeDatasetRequest* request,
                               v1::DatasetInfo* response) override;
  grpc::Status DeleteDataset(grpc::ServerContext* context, const v1::DeleteDatasetRequest* request,
                             v1::DeleteDatasetResponse* response) override;
  grpc::Status SplitDataset(grpc::ServerContext* context, const v1::SplitDatasetRequest* request,
                            v1::SplitDatasetResponse* response) override;
  grpc::Status Fit(grpc::ServerContext* context, const v1::FitRequest* request,
                   v1::ModelInfo* response) override;
  grpc::Status KNeighbors(grpc::ServerContext* context, const v1::KNeighborsRequest* request,
                          v1::KNeighborsResponse* response) override;
  grpc::Status Predict(grpc::ServerContext* context, const v1::PredictRequest* request,
                       v1::PredictResponse* response) override;
  grpc::Status PredictProba(grpc::ServerContext* context, const v1::PredictProbaRequest* request,
                            v1::PredictProbaResponse* response) override;
  grpc::Status Score(grpc::ServerContext* context, const v1::ScoreRequest* request,
                     v1::ScoreResponse* response) override;
  grpc::Status ExportModel(grpc::ServerContext* context, const v1::ExportModelRequest* request,
                           grpc::ServerWriter<v1::ModelChunk>* writer) override;
  grpc::Status ImportModel(grpc::ServerContext* context,
                           grpc::ServerReader<v1::ImportModelRequest>* reader,
                           v1::ModelInfo* response) override;
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status DescribeModel(grpc::ServerContext* context,
                             const v1::DescribeModelRequest* request,
                             v1::ModelInfo* response) override;
  grpc::Status DeleteModel(grpc::ServerContext* context, const v1::DeleteModelRequest* request,
                           v1::DeleteModelResponse* response) override;
  grpc::Status GetClusterStatus(grpc::ServerContext* context,
                                const v1::GetClusterStatusRequest* request,
                                v1::ClusterStatus* response) override;

  grpc::Status StartGridSearch(grpc::ServerContext* context,
                               const v1::StartGridSearchRequest* request,
                               v1::GridSearchInfo* response) override;
  grpc::Status WatchGridSearch(grpc::ServerContext* context,
                               const v1::WatchGridSearchRequest* request,
                               grpc::ServerWriter<v1::GridSearchInfo>* writer) override;
  grpc::Status CancelGridSearch(grpc::ServerContext* context,
                                const v1::CancelGridSearchRequest* request,
                                v1::GridSearchInfo* response) override;
  grpc::Status ListGridSearches(grpc::ServerContext* context,
                                const v1::ListGridSearchesRequest* request,
                                v1::ListGridSearchesResponse* response) override;
  grpc::Status GetGridSearchResult(grpc::ServerContext* context,
                                   const v1::GetGridSearchResultRequest* request,
                                   v1::GridSearchResult* response) override;

  // GetClusterStatus's answer, without the call's checks: the status page shows exactly this.
  void FillClusterStatus(v1::ClusterStatus* out) const;

 private:
  absl::Status DoUpload(grpc::ServerContext* context,
                        grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                        v1::DatasetInfo* response);
  absl::Status DoSplit(const v1::SplitDatasetRequest& request, v1::SplitDatasetResponse* response);
  absl::Status DoFit(const v1::FitRequest& request, absl::Time deadline, v1::ModelInfo* response);
  absl::Status DoScore(const v1::ScoreRequest& request, absl::Time deadline,
                       v1::ScoreResponse* response);
  absl::Status DoExport(const v1::ExportModelRequest& request,
                        grpc::ServerWriter<v1::ModelChunk>* writer);
  absl::Status DoImport(grpc::ServerContext* context,
                        grpc::ServerReader<v1::ImportModelRequest>* reader, absl::Time deadline,
                        v1::ModelInfo* response);
  // Inline rows (validated: shape, finite) or a stored dataset's rows.
  absl::StatusOr<Matrix> ResolveQueries(const v1::Queries& queries) const;
  absl::StatusOr<std::shared_ptr<const ModelEntry>> FindModel(const std::string& name) const;
  void ToProto(const ModelEntry& entry, v1::ModelInfo* out) const;

  // Admits a call whose request is `request_bytes` long plus, for queries naming a dataset, the
  // rows that will be read; an empty ticket without admission control.
  absl::StatusOr<rpc::AdmissionControl::Ticket> Admit(absl::string_view method,
                                                      uint64_t request_bytes,
                                                      const v1::Queries* queries = nullptr) const;
  // ResourceExhausted when a model of rows x cols cannot fit beside the other models in the live
  // workers' memory budgets (--memory-budget-mb); `replacing` is not counted.
  absl::Status CheckWorkersCanHold(const std::string& what, uint64_t rows, uint64_t cols,
                                   const std::string& replacing) const;

  DatasetStore* const store_;
  ModelRegistry* const registry_;
  ModelManager* const models_;
  WorkerPool* const workers_;
  GridSearchManager* const searches_;
  const rpc::CallGuard guard_;
  rpc::AdmissionControl* const admission_;
};

class MembershipService final : public v1::Membership::Service {
 public:
  // `guard` is checked first by every handler (with TLS: a worker's certificate); default:
  // every call passes.
  explicit MembershipService(WorkerPool* workers, rpc::CallGuard guard = rpc::CallGuard());
  MembershipService(const MembershipService&) = delete;
  MembershipService& operator=(const MembershipService&) = delete;

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;

 private:
  WorkerPool* const workers_;
  const rpc::CallGuard guard_;
};

// DatasetMeta -> DatasetInfo.
void ToProto(const DatasetMeta& meta, v1::DatasetInfo* out);

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_COORDINATOR_SERVICE_H_
