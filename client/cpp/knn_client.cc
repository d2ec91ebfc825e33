#include "client/cpp/knn_client.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "rpc/convert.h"
#include "rpc/limits.h"
#include "rpc/status.h"

namespace knncluster::client {

namespace {
// Large enough for a batch of query results; the server sets its own limits.
constexpr int kMaxMessageBytes = 64 << 20;

// One PEM of TlsOptions, from its contents or its file; "" when neither is given.
absl::StatusOr<std::string> ReadPem(const std::string& field, const std::string& pem,
                                    const std::string& file) {
  if (!pem.empty() && !file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.", field, "_pem and tls.", field, "_file: give one, not both"));
  }
  std::string contents = pem;
  std::string where = absl::StrCat("tls.", field, "_pem");
  if (!file.empty()) {
    where = absl::StrCat("tls.", field, "_file: ", file);
    std::ifstream in(file, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    if (!in) return absl::InvalidArgumentError(absl::StrCat(where, ": cannot read the file"));
    contents = bytes.str();
  }
  // gRPC would only fail at the handshake, as UNAVAILABLE: say what is wrong at once.
  if (!contents.empty() && !absl::StrContains(contents, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not PEM (no \"-----BEGIN\" line)"));
  }
  return contents;
}

}  // namespace

absl::StatusOr<ChannelSetup> MakeChannelSetup(const ClientOptions& options) {
  ChannelSetup setup;
  // Message limits, keepalive, and retries (backoff with jitter) of the idempotent calls only.
  rpc::SetClientChannelArgs(kMaxMessageBytes, rpc::IdempotentCoordinatorMethods(), &setup.args);
  // The token goes into a metadata value: gRPC sends printable ASCII only, and a bearer token
  // (RFC 6750) has no spaces.
  for (char c : options.token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "token: printable ASCII without spaces expected (it is sent as a bearer token)");
    }
  }
  if (!options.tls) {
    setup.credentials = grpc::InsecureChannelCredentials();
    return setup;
  }
  const TlsOptions& tls = *options.tls;
  grpc::SslCredentialsOptions ssl;
  KNN_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem("root_ca", tls.root_ca_pem, tls.root_ca_file));
  KNN_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem("cert", tls.cert_pem, tls.cert_file));
  KNN_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem("key", tls.key_pem, tls.key_file));
  if (ssl.pem_cert_chain.empty() != ssl.pem_private_key.empty()) {
    return absl::InvalidArgumentError(
        "tls: a client certificate and its key go together (give both for mutual TLS, or neither)");
  }
  if (!tls.server_name.empty()) setup.args.SetSslTargetNameOverride(tls.server_name);
  setup.credentials = grpc::SslCredentials(ssl);
  return setup;
}

absl::StatusOr<std::unique_ptr<KnnClient>> KnnClient::Connect(const ClientOptions& options) {
  KNN_ASSIGN_OR_RETURN(ChannelSetup setup, MakeChannelSetup(options));
  auto channel = grpc::CreateCustomChannel(options.address, setup.credentials, setup.args);
  return std::unique_ptr<KnnClient>(
      new KnnClient(options, v1::Coordinator::NewStub(channel), absl::OkStatus()));
}

std::unique_ptr<KnnClient> KnnClient::Create(const ClientOptions& options) {
  auto client = Connect(options);
  if (client.ok()) return *std::move(client);
  return std::unique_ptr<KnnClient>(new KnnClient(options, nullptr, client.status()));
}

absl::Status KnnClient::Prepare(grpc::ClientContext* context) const {
  if (!setup_.ok()) return setup_;
  context->set_deadline(std::chrono::system_clock::now() + options_.deadline);
  // Per call rather than as call credentials: gRPC refuses call credentials on a plaintext
  // channel, and loopback tests run without TLS.
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  return absl::OkStatus();
}

v1::Queries KnnClient::DatasetQueries(const std::string& dataset) {
  v1::Queries q;
  q.set_dataset(dataset);
  return q;
}

v1::Queries KnnClient::InlineQueries(MatrixView rows) {
  v1::Queries q;
  rpc::ToProto(rows, q.mutable_matrix());
  return q;
}

absl::StatusOr<v1::DatasetInfo> KnnClient::UploadDataset(const std::string& name,
                                                         const DatasetView& data, bool replace) {
  const size_t cols = data.cols;
  if (cols == 0 || data.features.size() % cols != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data.features: ", data.features.size(), " values do not make rows of ", cols, " columns"));
  }
  const size_t rows = data.features.size() / cols;
  const bool labeled = !data.targets.empty();
  const bool strings = labeled && !data.class_names.empty();
  if (labeled && data.targets.size() != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.targets: expected one per row (", rows, "), got ", data.targets.size()));
  }
  for (size_t i = 0; strings && i < rows; ++i) {
    const double code = data.targets[i];
    if (!(code >= 0 && code < static_cast<double>(data.class_names.size())) ||
        code != static_cast<double>(static_cast<size_t>(code))) {
      return absl::InvalidArgumentError(
          absl::StrCat("data.targets[", i, "]: ", code, " is not a code into class_names"));
    }
  }
  grpc::ClientContext context;
  KNN_RETURN_IF_ERROR(Prepare(&context));
  v1::DatasetInfo info;
  auto writer = stub_->UploadDataset(&context, &info);
  v1::UploadDatasetRequest header;
  header.mutable_header()->set_name(name);
  header.mutable_header()->set_cols(cols);
  header.mutable_header()->set_rows(rows);
  header.mutable_header()->set_replace(replace);
  header.mutable_header()->set_labels(!labeled  ? v1::LABELS_NONE
                                      : strings ? v1::LABELS_STRING
                                                : v1::LABELS_NUMERIC);
  for (const auto& f : data.feature_names) header.mutable_header()->add_feature_names(f);
  bool ok = writer->Write(header);
  const size_t rows_per_chunk = std::max<size_t>(1, options_.chunk_bytes / (sizeof(double) * cols));
  for (size_t begin = 0; ok && begin < rows; begin += rows_per_chunk) {
    const size_t end = std::min(rows, begin + rows_per_chunk);
    v1::UploadDatasetRequest chunk;
    rpc::ToProto(MatrixView(data.features.data() + begin * cols, end - begin, cols),
                 chunk.mutable_chunk()->mutable_rows());
    for (size_t i = begin; labeled && i < end; ++i) {
      if (strings) {
        chunk.mutable_chunk()->add_string_labels(
            data.class_names[static_cast<size_t>(data.targets[i])]);
      } else {
        chunk.mutable_chunk()->add_labels(data.targets[i]);
      }
    }
    ok = writer->Write(chunk);
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  return info;
}

#define KNN_UNARY_CALL(Method, request, Response)                    \
  grpc::ClientContext context;                                       \
  KNN_RETURN_IF_ERROR(Prepare(&context));                            \
  Response response;                                                 \
  grpc::Status status = stub_->Method(&context, request, &response); \
  if (!status.ok()) return rpc::FromGrpcStatus(status);              \
  return response

absl::StatusOr<v1::DatasetInfo> KnnClient::DescribeDataset(const std::string& name) {
  v1::DescribeDatasetRequest request;
  request.set_name(name);
  KNN_UNARY_CALL(DescribeDataset, request, v1::DatasetInfo);
}

absl::StatusOr<v1::ListDatasetsResponse> KnnClient::ListDatasets() {
  v1::ListDatasetsRequest request;
  KNN_UNARY_CALL(ListDatasets, request, v1::ListDatasetsResponse);
}

absl::Status KnnClient::DeleteDataset(const std::string& name) {
  v1::DeleteDatasetRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  KNN_RETURN_IF_ERROR(Prepare(&context));
  v1::DeleteDatasetResponse response;
  return rpc::FromGrpcStatus(stub_->DeleteDataset(&context, request, &response));
}

absl::StatusOr<v1::SplitDatasetResponse> KnnClient::SplitDataset(
    const v1::SplitDatasetRequest& request) {
  KNN_UNARY_CALL(SplitDataset, request, v1::SplitDatasetResponse);
}

absl::StatusOr<v1::ModelInfo> KnnClient::Fit(const v1::FitRequest& request) {
  KNN_UNARY_CALL(Fit, request, v1::ModelInfo);
}

absl::StatusOr<KNeighborsResult> KnnClient::KNeighbors(const std::string& model,
                                                       const v1::Queries& queries,
                                                       std::optional<int> k,
                                                       std::vector<std::string>* missing_shards) {
  v1::KNeighborsRequest request;
  request.set_model(model);
  *request.mutable_queries() = queries;
  if (k) request.set_k(*k);
  request.set_allow_partial(options_.allow_partial);
  request.set_compact_indices(true);  // rpc::FromProto reads either form
  grpc::ClientContext context;
  KNN_RETURN_IF_ERROR(Prepare(&context));
  v1::KNeighborsResponse response;
  if (k && *k > 0 && queries.has_matrix()) {
    // The answer's arrays at their final size, so that parsing it copies each value once
    // (KNeighborsResponse.neighbors is `optional`: the parse keeps them).
    const uint64_t most = queries.matrix().rows() * static_cast<uint64_t>(*k);
    if (most <= static_cast<uint64_t>(std::numeric_limits<int>::max())) {
      response.mutable_neighbors()->mutable_distances()->Reserve(static_cast<int>(most));
      response.mutable_neighbors()->mutable_indices32()->Reserve(static_cast<int>(most));
    }
  }
  grpc::Status status = stub_->KNeighbors(&context, request, &response);
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  if (missing_shards != nullptr) {
    missing_shards->assign(response.missing_shards().begin(), response.missing_shards().end());
  }
  return rpc::FromProto(response.neighbors(), "neighbors");
}

absl::StatusOr<v1::PredictResponse> KnnClient::Predict(const std::string& model,
                                                       const v1::Queries& queries) {
  v1::PredictRequest request;
  request.set_model(model);
  *request.mutable_queries() = queries;
  request.set_allow_partial(options_.allow_partial);
  KNN_UNARY_CALL(Predict, request, v1::PredictResponse);
}

absl::StatusOr<v1::PredictProbaResponse> KnnClient::PredictProba(const std::string& model,
                                                                 const v1::Queries& queries) {
  v1::PredictProbaRequest request;
  request.set_model(model);
  *request.mutable_queries() = queries;
  request.set_allow_partial(options_.allow_partial);
  KNN_UNARY_CALL(PredictProba, request, v1::PredictProbaResponse);
}

absl::StatusOr<v1::ScoreResponse> KnnClient::Score(const std::string& model,
                                                   const v1::Queries& queries,
                                                   absl::Span<const double> labels) {
  v1::ScoreRequest request;
  request.set_model(model);
  *request.mutable_queries() = queries;
  request.set_allow_partial(options_.allow_partial);
  request.mutable_labels()->Assign(labels.begin(), labels.end());
  KNN_UNARY_CALL(Score, request, v1::ScoreResponse);
}

absl::StatusOr<std::string> KnnClient::ExportModel(const std::string& model) {
  v1::ExportModelRequest request;
  request.set_model(model);
  grpc::ClientContext context;
  KNN_RETURN_IF_ERROR(Prepare(&context));
  auto reader = stub_->ExportModel(&context, request);
  std::string bytes;
  v1::ModelChunk chunk;
  while (reader->Read(&chunk)) bytes += chunk.data();
  grpc::Status status = reader->Finish();
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  return bytes;
}

absl::StatusOr<v1::ModelInfo> KnnClient::ImportModel(const std::string& model,
                                                     const std::string& bytes) {
  grpc::ClientContext context;
  KNN_RETURN_IF_ERROR(Prepare(&context));
  v1::ModelInfo info;
  auto writer = stub_->ImportModel(&context, &info);
  v1::ImportModelRequest first;
  first.set_model(model);
  bool ok = writer->Write(first);
  for (size_t begin = 0; ok && begin < bytes.size(); begin += options_.chunk_bytes) {
    v1::ImportModelRequest part;
    part.set_data(bytes.substr(begin, options_.chunk_bytes));
    ok = writer->Write(part);
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  return info;
}

absl::StatusOr<v1::ModelInfo> KnnClient::DescribeModel(const std::string& model) {
  v1::DescribeModelRequest request;
  request.set_model(model);
  KNN_UNARY_CALL(DescribeModel, request, v1::ModelInfo);
}

absl::StatusOr<v1::ListModelsResponse> KnnClient::ListModels() {
  v1::ListModelsRequest request;
  KNN_UNARY_CALL(ListModels, request, v1::ListModelsResponse);
}

absl::Status KnnClient::DeleteModel(const std::string& model) {
  v1::DeleteModelRequest request;
  request.set_model(model);
  grpc::ClientContext context;
  KNN_RETURN_IF_ERROR(Prepare(&context));
  v1::DeleteModelResponse response;
  return rpc::FromGrpcStatus(stub_->DeleteModel(&context, request, &response));
}

absl::StatusOr<v1::ClusterStatus> KnnClient::GetClusterStatus() {
  v1::GetClusterStatusRequest request;
  KNN_UNARY_CALL(GetClusterStatus, request, v1::ClusterStatus);
}

absl::StatusOr<v1::GridSearchInfo> KnnClient::StartGridSearch(
    const v1::StartGridSearchRequest& request) {
  KNN_UNARY_CALL(StartGridSearch, request, v1::GridSearchInfo);
}

absl::Status KnnClient::WatchGridSearch(
    const std::string& id, uint32_t interval_ms,
    const std::function<void(const v1::GridSearchInfo&)>& on_info, CancelToken* cancel) {
  v1::WatchGridSearchRequest request;
  request.set_id(id);
  request.set_interval_ms(interval_ms);
  const auto detached = [&] {
    return absl::CancelledError(absl::StrCat("stopped watching grid search ", id));
  };
  while (true) {
    if (cancel != nullptr && cancel->cancelled()) return detached();
    grpc::ClientContext context;
    KNN_RETURN_IF_ERROR(Prepare(&context));
    bool got_event = false;
    auto reader = stub_->WatchGridSearch(&context, request);
    {
      // TryCancel is valid only once the call has begun, so the hook is registered after.
      CancelScope scope(cancel, [&context] { context.TryCancel(); });
      v1::GridSearchInfo info;
      while (reader->Read(&info)) {
        got_event = true;
        on_info(info);
      }
    }
    grpc::Status status = reader->Finish();
    if (cancel != nullptr && cancel->cancelled()) return detached();
    if (status.ok()) return absl::OkStatus();
    // The deadline bounds one call, not the search: a stream that was delivering events is
    // opened again; one that delivered nothing within the deadline is an error.
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && got_event) continue;
    return rpc::FromGrpcStatus(status);
  }
}

absl::StatusOr<v1::GridSearchInfo> KnnClient::CancelGridSearch(const std::string& id) {
  v1::CancelGridSearchRequest request;
  request.set_id(id);
  KNN_UNARY_CALL(CancelGridSearch, request, v1::GridSearchInfo);
}

absl::StatusOr<v1::ListGridSearchesResponse> KnnClient::ListGridSearches() {
  v1::ListGridSearchesRequest request;
  KNN_UNARY_CALL(ListGridSearches, request, v1::ListGridSearchesResponse);
}

absl::StatusOr<v1::GridSearchResult> KnnClient::GetGridSearchResult(const std::string& id) {
  v1::GetGridSearchResultRequest request;
  request.set_id(id);
  KNN_UNARY_CALL(GetGridSearchResult, request, v1::GridSearchResult);
}

#undef KNN_UNARY_CALL

}  // namespace knncluster::client
