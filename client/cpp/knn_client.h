// KnnClient: the C++ client of a knncluster coordinator. Thin and synchronous: every call sets a
// deadline, streams what may be large (dataset uploads in row chunks, model files in byte chunks),
// and returns absl::Status / StatusOr with the server's code and message (rpc/status.h).
// The scikit-learn-shaped C++ API of the client-libraries issue is built on top of this.
//
// Thread safety: a KnnClient may be used from several threads at once (gRPC stubs are).
#ifndef KNNCLUSTER_CLIENT_CPP_KNN_CLIENT_H_
#define KNNCLUSTER_CLIENT_CPP_KNN_CLIENT_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cpp/cancel_token.h"
#include "core/base/matrix.h"
#include "core/datasets/dataset.h"
#include "core/index/neighbor_index.h"
#include "knncluster/v1/coordinator.grpc.pb.h"

namespace knncluster::client {

struct ClientOptions {
  std::string address;                             // coordinator HOST:PORT
  std::chrono::milliseconds deadline{120'000};     // per call
  size_t chunk_bytes = 1 << 20;                    // upload / import chunk size
};

class KnnClient {
 public:
  // Creates the channel (insecure for now; TLS arrives with the security issue). Does not wait
  // for the server.
  static std::unique_ptr<KnnClient> Create(const ClientOptions& options);

  KnnClient(const KnnClient&) = delete;
  KnnClient& operator=(const KnnClient&) = delete;

  // Uploads `data` under `name` in row chunks. String class labels travel as strings.
  absl::StatusOr<v1::DatasetInfo> UploadDataset(const std::string& name, const Dataset& data,
                                                bool replace = false);
  absl::StatusOr<v1::DatasetInfo> DescribeDataset(const std::string& name);
  absl::StatusOr<v1::SplitDatasetResponse> SplitDataset(const v1::SplitDatasetRequest& request);
  absl::StatusOr<v1::ModelInfo> Fit(const v1::FitRequest& request);
  absl::StatusOr<KNeighborsResult> KNeighbors(const std::string& model, const v1::Queries& queries,
                                              std::optional<int> k);
  absl::StatusOr<v1::PredictResponse> Predict(const std::string& model, const v1::Queries& queries);
  absl::StatusOr<v1::PredictProbaResponse> PredictProba(const std::string& model,
                                                        const v1::Queries& queries);
  absl::StatusOr<v1::ScoreResponse> Score(const std::string& model, const v1::Queries& queries);
  // The model file's bytes.
  absl::StatusOr<std::string> ExportModel(const std::string& model);
  absl::StatusOr<v1::ModelInfo> ImportModel(const std::string& model, const std::string& bytes);
  absl::StatusOr<v1::ModelInfo> DescribeModel(const std::string& model);
  absl::Status DeleteModel(const std::string& model);
  absl::StatusOr<v1::ClusterStatus> GetClusterStatus();

  // Grid search, run as a job on the coordinator: Start returns at once with the search's id.
  absl::StatusOr<v1::GridSearchInfo> StartGridSearch(const v1::StartGridSearchRequest& request);
  // Calls `on_info` with the search's current state, then on every change (and at least every
  // `interval_ms`), until the search ends: then returns OK. A search may outlive one call's
  // deadline; the stream is then opened again (it restarts with the current state). Returns
  // CANCELLED as soon as `cancel` (may be null) is cancelled; the search itself goes on.
  absl::Status WatchGridSearch(const std::string& id, uint32_t interval_ms,
                               const std::function<void(const v1::GridSearchInfo&)>& on_info,
                               CancelToken* cancel = nullptr);
  // Cancels a queued or running search; returns its state afterwards.
  absl::StatusOr<v1::GridSearchInfo> CancelGridSearch(const std::string& id);
  absl::StatusOr<v1::ListGridSearchesResponse> ListGridSearches();
  // FAILED_PRECONDITION while the search runs; the search's error when it failed.
  absl::StatusOr<v1::GridSearchResult> GetGridSearchResult(const std::string& id);

  // Queries naming a dataset already on the coordinator, or sent inline.
  static v1::Queries DatasetQueries(const std::string& dataset);
  static v1::Queries InlineQueries(MatrixView rows);

 private:
  KnnClient(const ClientOptions& options, std::unique_ptr<v1::Coordinator::Stub> stub)
      : options_(options), stub_(std::move(stub)) {}
  void SetDeadline(grpc::ClientContext* context) const;

  ClientOptions options_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

}  // namespace knncluster::client

#endif  // KNNCLUSTER_CLIENT_CPP_KNN_CLIENT_H_
