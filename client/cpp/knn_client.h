// KnnClient: the wire-level client of a knncluster coordinator, inside the client library (not
// installed): requests and replies are the generated knncluster::v1 messages. The public
// knncluster::client::Client (<knncluster/client.h>) is built on it; code in this tree that
// speaks protobuf anyway (benchmarks) may use it directly.
//
// Thin and synchronous: every call sets a deadline and carries the bearer token, streams what may
// be large (dataset uploads in row chunks, model files in byte chunks), and returns absl::Status /
// StatusOr with the server's code and message (rpc/status.h). The channel is plaintext or TLS as
// ClientOptions say.
//
// Thread safety: a KnnClient may be used from several threads at once (gRPC stubs are).
#ifndef KNNCLUSTER_CLIENT_CPP_KNN_CLIENT_H_
#define KNNCLUSTER_CLIENT_CPP_KNN_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/matrix.h"
#include "core/index/neighbor_index.h"
#include "knncluster/cancel_token.h"
#include "knncluster/client.h"
#include "knncluster/v1/coordinator.grpc.pb.h"

namespace knncluster::client {

// What a channel is created with.
struct ChannelSetup {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments args;  // message size limits, TLS server name override
};
// The setup `options` ask for: plaintext, or TLS from PEM contents or files (read here).
// InvalidArgument naming the field ("tls.root_ca_file: ...") for a file that cannot be read or is
// not PEM, a certificate without its key, or a token gRPC could not send as metadata.
absl::StatusOr<ChannelSetup> MakeChannelSetup(const ClientOptions& options);

class KnnClient {
 public:
  // Creates the channel (MakeChannelSetup). Does not wait for the server.
  static absl::StatusOr<std::unique_ptr<KnnClient>> Connect(const ClientOptions& options);
  // The same, for callers without a use for the error: with bad options, every call of the
  // client returns Connect's error.
  static std::unique_ptr<KnnClient> Create(const ClientOptions& options);

  KnnClient(const KnnClient&) = delete;
  KnnClient& operator=(const KnnClient&) = delete;

  // Uploads `data` under `name` in row chunks. String class labels travel as strings.
  // InvalidArgument when the view's parts disagree in size.
  absl::StatusOr<v1::DatasetInfo> UploadDataset(const std::string& name, const DatasetView& data,
                                                bool replace = false);
  absl::StatusOr<v1::DatasetInfo> DescribeDataset(const std::string& name);
  absl::StatusOr<v1::ListDatasetsResponse> ListDatasets();
  absl::Status DeleteDataset(const std::string& name);
  absl::StatusOr<v1::SplitDatasetResponse> SplitDataset(const v1::SplitDatasetRequest& request);
  absl::StatusOr<v1::ModelInfo> Fit(const v1::FitRequest& request);
  // `missing_shards` (may be null) receives the shards a partial answer left out
  // (ClientOptions::allow_partial).
  absl::StatusOr<KNeighborsResult> KNeighbors(const std::string& model, const v1::Queries& queries,
                                              std::optional<int> k,
                                              std::vector<std::string>* missing_shards = nullptr);
  absl::StatusOr<v1::PredictResponse> Predict(const std::string& model, const v1::Queries& queries);
  absl::StatusOr<v1::PredictProbaResponse> PredictProba(const std::string& model,
                                                        const v1::Queries& queries);
  // `labels`: one per inline query row; a dataset brings its own.
  absl::StatusOr<v1::ScoreResponse> Score(const std::string& model, const v1::Queries& queries,
                                          absl::Span<const double> labels = {});
  // The model file's bytes.
  absl::StatusOr<std::string> ExportModel(const std::string& model);
  absl::StatusOr<v1::ModelInfo> ImportModel(const std::string& model, const std::string& bytes);
  absl::StatusOr<v1::ModelInfo> DescribeModel(const std::string& model);
  absl::StatusOr<v1::ListModelsResponse> ListModels();
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
  KnnClient(const ClientOptions& options, std::unique_ptr<v1::Coordinator::Stub> stub,
            absl::Status setup)
      : options_(options), stub_(std::move(stub)), setup_(std::move(setup)) {}
  // Sets the call's deadline and token; setup_'s error when the options were bad.
  absl::Status Prepare(grpc::ClientContext* context) const;

  const ClientOptions options_;
  const std::unique_ptr<v1::Coordinator::Stub> stub_;  // null when !setup_.ok()
  const absl::Status setup_;
};

}  // namespace knncluster::client

#endif  // KNNCLUSTER_CLIENT_CPP_KNN_CLIENT_H_
