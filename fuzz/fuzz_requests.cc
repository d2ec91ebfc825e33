// libFuzzer target: request validation of the coordinator's and the worker's gRPC services.
//
// The real services (coordinator/coordinator_service.h, worker/worker_service.h) run over real
// state that the harness builds once: a DatasetStore in a temporary directory holding one
// labelled dataset "d" (12 x 2), a ModelRegistry holding a classifier "m" fitted on it whose one
// shard sits on a worker that is gone (so a query that passes validation ends in UNAVAILABLE, and
// nothing is ever sent over a network), a WorkerPool with no workers, and a worker holding one
// shard "s0". Nothing is sent anywhere but to the harness's own loopback port.
//
// Input: byte 0 picks the RPC; for a unary RPC the rest is its serialized request, which the
// handler is called with directly (no server involved); for a client-streaming RPC the rest is a
// sequence of messages, each a little-endian u16 length and that many bytes, sent in order to
// the same services through a server on 127.0.0.1 (port 0), since a grpc::ServerReader cannot be
// made without a server.
//
// What is checked: no crash, no undefined behaviour, no leak, no allocation beyond
// -malloc_limit_mb however large a size a request claims; no INTERNAL or UNKNOWN status (those
// mean our bug, STYLE.md); a request refused for what it says (INVALID_ARGUMENT, NOT_FOUND, ...)
// leaves the dataset catalog and the model registry exactly as they were; and an imported model
// file whose parameters are invalid is refused as INVALID_ARGUMENT. The fixtures stay as they are:
// a request that would change them (deleting "d", "m" or "s0"; replacing them; a split that stores
// views) is not run or is made a dry run, and whatever a successful streaming call created is
// removed again.
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/dataset_store.h"
#include "coordinator/grid_search_manager.h"
#include "coordinator/model_manager.h"
#include "coordinator/model_registry.h"
#include "coordinator/scatter_gather.h"
#include "coordinator/worker_pool.h"
#include "core/base/thread_pool.h"
#include "core/estimators/model_io.h"
#include "core/estimators/outlier_detector.h"
#include "fuzz/fuzz_check.h"
#include "knncluster/v1/coordinator.grpc.pb.h"
#include "knncluster/v1/worker.grpc.pb.h"
#include "rpc/content_hash.h"
#include "rpc/convert.h"
#include "worker/dataset_cache.h"
#include "worker/shard_store.h"
#include "worker/subset_index_cache.h"
#include "worker/worker_service.h"

namespace {

namespace v1 = knncluster::v1;
using knncluster::Matrix;
using knncluster::ThreadPool;

constexpr char kDataset[] = "d";
constexpr char kModel[] = "m";
constexpr char kShard[] = "s0";
constexpr size_t kRows = 12;
constexpr size_t kCols = 2;

std::string* g_temp_dir = nullptr;
knncluster::coordinator::GridSearchManager* g_searches = nullptr;

void RemoveTempDir() {
  if (g_temp_dir != nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(*g_temp_dir, ec);
  }
}

// libFuzzer ends with exit(): grid searches still running must stop before the libraries they
// use (OpenSSL, for content hashes) tear themselves down in their own exit handlers.
void StopSearches() {
  if (g_searches != nullptr) g_searches->Shutdown();
}

void Die(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "fuzz_requests setup: %s: %s\n", what, status.ToString().c_str());
  std::abort();
}

Matrix FixtureRows() {
  Matrix X(kRows, kCols);
  for (size_t i = 0; i < kRows; ++i) {
    X.at(i, 0) = static_cast<double>(i % 4);
    X.at(i, 1) = static_cast<double>(i / 4) * 0.5;
  }
  return X;
}

// Everything the services borrow. Built once and never destroyed (the process exits under it).
struct Fixture {
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<knncluster::coordinator::DatasetStore> store;
  std::unique_ptr<knncluster::coordinator::WorkerPool> workers;
  std::unique_ptr<knncluster::coordinator::ModelRegistry> registry;
  std::unique_ptr<knncluster::coordinator::ScatterGather> search;
  std::unique_ptr<knncluster::coordinator::ModelManager> models;
  std::unique_ptr<knncluster::coordinator::GridSearchManager> searches;
  std::unique_ptr<knncluster::coordinator::CoordinatorService> coordinator;
  std::unique_ptr<knncluster::coordinator::MembershipService> membership;
  std::unique_ptr<knncluster::worker::ShardStore> shards;
  std::unique_ptr<knncluster::worker::DatasetCache> datasets;
  std::unique_ptr<knncluster::worker::SubsetIndexCache> subset_indexes;
  std::unique_ptr<knncluster::worker::WorkerService> worker;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_stub;
  std::unique_ptr<v1::Worker::Stub> worker_stub;
};

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

void LoadFixtureShard(Fixture* f) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::LoadShardResponse response;
  auto writer = f->worker_stub->LoadShard(&ctx, &response);
  v1::LoadShardRequest header;
  header.mutable_header()->set_shard_id(kShard);
  header.mutable_header()->set_rows(kRows);
  header.mutable_header()->set_cols(kCols);
  v1::LoadShardRequest rows;
  knncluster::rpc::ToProto(FixtureRows(), rows.mutable_rows());
  if (!writer->Write(header) || !writer->Write(rows)) Die("LoadShard", absl::UnknownError("write"));
  writer->WritesDone();
  const grpc::Status st = writer->Finish();
  if (!st.ok())
    Die("LoadShard",
        absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message()));
}

Fixture* MakeFixture() {
  using namespace knncluster::coordinator;  // NOLINT: harness setup only
  auto* f = new Fixture;
  // Under $TMPDIR (scripts/fuzz.sh points it into its own work directory, which it removes even
  // when a crash skips RemoveTempDir).
  const char* base = getenv("TMPDIR");
  std::string tmpl =
      absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/knn-fuzz-requests-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp", absl::InternalError(std::strerror(errno)));
  g_temp_dir = new std::string(tmpl);
  std::atexit(RemoveTempDir);

  f->pool = std::make_unique<ThreadPool>(2);
  auto store = DatasetStore::Open(*g_temp_dir + "/data");
  if (!store.ok()) Die("DatasetStore::Open", store.status());
  f->store = *std::move(store);
  f->workers = std::make_unique<WorkerPool>(WorkerPoolOptions{});
  f->registry = std::make_unique<ModelRegistry>();
  ScatterGatherOptions search_options;
  search_options.rpc_deadline = absl::Seconds(1);
  f->search = std::make_unique<ScatterGather>(f->workers.get(), f->pool.get(), search_options);
  ModelManagerOptions model_options;
  model_options.load_deadline = absl::Seconds(1);
  model_options.control_deadline = absl::Seconds(1);
  f->models = std::make_unique<ModelManager>(f->store.get(), f->workers.get(), f->registry.get(),
                                             f->search.get(), f->pool.get(), model_options);
  GridSearchManagerOptions grid_options;
  grid_options.no_worker_timeout = absl::Milliseconds(1);  // no worker will ever come
  grid_options.job_deadline = absl::Seconds(1);
  grid_options.put_deadline = absl::Seconds(1);
  grid_options.max_finished = 4;
  f->searches =
      std::make_unique<GridSearchManager>(f->store.get(), f->workers.get(), f->registry.get(),
                                          f->models.get(), f->search.get(), grid_options);
  g_searches = f->searches.get();
  // OpenSSL registers its exit handler when first used; use it now so that StopSearches, registered
  // after it, runs before it.
  (void)knncluster::rpc::DatasetContentHash(FixtureRows(), {});
  std::atexit(StopSearches);
  f->coordinator = std::make_unique<CoordinatorService>(
      f->store.get(), f->registry.get(), f->models.get(), f->workers.get(), f->searches.get());
  f->membership = std::make_unique<MembershipService>(f->workers.get());

  // Dataset "d": 12 x 2, numeric labels 0/1.
  UploadHeader header;
  header.name = kDataset;
  header.cols = kCols;
  header.labels = LabelKind::kNumeric;
  auto writer = f->store->BeginUpload(header);
  if (!writer.ok()) Die("BeginUpload", writer.status());
  std::vector<double> y(kRows);
  for (size_t i = 0; i < kRows; ++i) y[i] = static_cast<double>(i % 2);
  const Matrix X = FixtureRows();
  absl::Status st = (*writer)->Append(X, y, {});
  if (!st.ok()) Die("Append", st);
  auto meta = (*writer)->Commit();
  if (!meta.ok()) Die("Commit", meta.status());

  // Model "m": a classifier on "d" whose one shard is on a worker that has gone away.
  auto entry = std::make_shared<ModelEntry>();
  entry->name = kModel;
  entry->task = knncluster::Model::Task::kClassifier;
  entry->params.n_neighbors = 3;
  entry->dataset = kDataset;
  entry->rows = kRows;
  entry->cols = kCols;
  entry->generation = f->registry->NextGeneration();
  auto labels = std::make_shared<ModelLabels>();
  labels->y = y;
  labels->classes = {0, 1};
  for (double v : y) labels->codes.push_back(static_cast<int32_t>(v));
  entry->labels = labels;
  Placement placement;
  placement.location.shard_id = "m/0";
  placement.replicas.push_back({"gone", absl::InfinitePast(), false});
  placement.SyncLocation();
  placement.location.rows = kRows;
  entry->shards.push_back(placement);
  auto put = f->registry->Put(entry, /*replace=*/false);
  if (!put.ok()) Die("ModelRegistry::Put", put.status());

  // The worker side.
  f->shards = std::make_unique<knncluster::worker::ShardStore>();
  f->datasets = std::make_unique<knncluster::worker::DatasetCache>(
      uint64_t{64} << 20, [s = f->shards.get()] { return s->TotalBytes(); });
  f->subset_indexes = std::make_unique<knncluster::worker::SubsetIndexCache>(4);
  knncluster::worker::WorkerServiceContext context;
  context.worker_id = "fuzz-worker";
  context.store = f->shards.get();
  context.datasets = f->datasets.get();
  context.subset_indexes = f->subset_indexes.get();
  context.pool = f->pool.get();
  f->worker = std::make_unique<knncluster::worker::WorkerService>(std::move(context));

  // Streaming RPCs go through a server on a loopback port. (Not an in-process channel: there a
  // client's Write waits for the server to read it, so a call that the server answers early
  // would hang until its deadline.)
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterService(f->coordinator.get());
  builder.RegisterService(f->worker.get());
  f->server = builder.BuildAndStart();
  if (f->server == nullptr || port == 0) Die("BuildAndStart", absl::InternalError("no server"));
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                           grpc::InsecureChannelCredentials(), args);
  f->coordinator_stub = v1::Coordinator::NewStub(channel);
  f->worker_stub = v1::Worker::NewStub(channel);
  LoadFixtureShard(f);
  return f;
}

Fixture& F() {
  static Fixture* fixture = MakeFixture();
  return *fixture;
}

// INTERNAL and UNKNOWN mean a bug on our side; every other code is a fair answer to a hostile
// request.
void CheckStatus(const grpc::Status& st) {
  if (st.error_code() == grpc::StatusCode::INTERNAL ||
      st.error_code() == grpc::StatusCode::UNKNOWN) {
    std::fprintf(stderr, "unexpected status %d: %s\n", static_cast<int>(st.error_code()),
                 st.error_message().c_str());
    std::abort();
  }
}

// What a refused request must leave as it was: the dataset catalog and the model registry.
std::string StateSnapshot() {
  std::string out;
  for (const auto& d : F().store->List()) {
    out += absl::StrCat("dataset ", d.name, " ", d.rows, "x", d.cols, "\n");
  }
  for (const auto& m : F().registry->List()) {
    out += absl::StrCat("model ", m->name, " ", m->generation, "\n");
  }
  return out;
}

// A request refused for what it says (not for a worker being unavailable, which may come after
// legitimate work) must not have changed the shared state: validation comes first.
void CheckRefusedChangedNothing(const grpc::Status& st, const std::string& before) {
  switch (st.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED: {
      const std::string after = StateSnapshot();
      if (after != before) {
        std::fprintf(stderr, "refused request (%d: %s) changed the state:\n%s---\n%s",
                     static_cast<int>(st.error_code()), st.error_message().c_str(), before.c_str(),
                     after.c_str());
        std::abort();
      }
      break;
    }
    default:
      break;
  }
}

// The messages of a streaming input: u16 little-endian length, then that many bytes (a short
// last record takes what is left).
std::vector<std::string_view> SplitRecords(std::string_view in) {
  std::vector<std::string_view> out;
  while (in.size() >= 2 && out.size() < 64) {
    const size_t n =
        static_cast<uint8_t>(in[0]) | (static_cast<size_t>(static_cast<uint8_t>(in[1])) << 8);
    in.remove_prefix(2);
    const size_t take = std::min(n, in.size());
    out.push_back(in.substr(0, take));
    in.remove_prefix(take);
  }
  return out;
}

template <typename Request>
bool Parse(std::string_view bytes, Request* request) {
  return request->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

// Calls a unary handler directly, as gRPC would after decoding `bytes`.
template <typename Request, typename Response, typename Service>
void Unary(Service* service,
           grpc::Status (Service::*handler)(grpc::ServerContext*, const Request*, Response*),
           std::string_view bytes, bool (*allowed)(Request*) = nullptr) {
  Request request;
  if (!Parse(bytes, &request)) return;
  if (allowed != nullptr && !allowed(&request)) return;
  grpc::ServerContext context;
  Response response;
  const std::string before = StateSnapshot();
  const grpc::Status st = (service->*handler)(&context, &request, &response);
  CheckStatus(st);
  CheckRefusedChangedNothing(st, before);
}

bool IsFixtureName(const std::string& name) { return name == kDataset || name == kModel; }

// Client streaming through the loopback server: sends `requests` in order (stopping early
// when the server has answered) and returns the call's status.
template <typename Request, typename Response, typename Stub>
grpc::Status Stream(
    Stub* stub,
    std::unique_ptr<grpc::ClientWriter<Request>> (Stub::*method)(grpc::ClientContext*, Response*),
    const std::vector<Request>& requests, Response* response) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  const std::string before = StateSnapshot();
  auto writer = (stub->*method)(&ctx, response);
  for (const Request& r : requests) {
    if (!writer->Write(r)) break;  // the server has answered already
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  CheckStatus(st);
  CheckRefusedChangedNothing(st, before);
  return st;
}

template <typename Request>
bool ParseAll(const std::vector<std::string_view>& records, std::vector<Request>* out) {
  for (std::string_view r : records) {
    out->emplace_back();
    if (!Parse(r, &out->back())) return false;
  }
  return true;
}

void UploadDataset(std::string_view in) {
  std::vector<v1::UploadDatasetRequest> requests;
  if (!ParseAll(SplitRecords(in), &requests)) return;
  for (const auto& r : requests) {
    if (r.has_header() && IsFixtureName(r.header().name())) return;
  }
  v1::DatasetInfo info;
  auto st =
      Stream(F().coordinator_stub.get(), &v1::Coordinator::Stub::UploadDataset, requests, &info);
  if (st.ok()) {  // put the catalog back as it was
    grpc::ServerContext context;
    v1::DeleteDatasetRequest del;
    del.set_name(info.name());
    v1::DeleteDatasetResponse unused;
    FUZZ_CHECK(F().coordinator->DeleteDataset(&context, &del, &unused).ok());
  }
}

bool ModelParamsValid(const knncluster::Model& m) {
  if (m.task != knncluster::Model::Task::kOutlier) return m.params.Validate().ok();
  knncluster::OutlierParams op;
  op.neighbors = m.params;
  op.contamination = m.contamination;
  op.threshold = m.threshold;
  return op.Validate().ok();
}

void ImportModel(std::string_view in) {
  std::vector<v1::ImportModelRequest> requests;
  if (!ParseAll(SplitRecords(in), &requests)) return;
  std::string name;
  for (const auto& r : requests) {
    if (r.part_case() == v1::ImportModelRequest::kModel) {
      name = r.model();
      if (IsFixtureName(name)) return;
    }
  }
  v1::ModelInfo info;
  const grpc::Status st =
      Stream(F().coordinator_stub.get(), &v1::Coordinator::Stub::ImportModel, requests, &info);
  // A model file whose parameters no estimator accepts is the request's fault: the import must
  // be refused as such (and so, by CheckRefusedChangedNothing, before anything is stored).
  std::string bytes;
  for (const auto& r : requests) {
    if (r.part_case() == v1::ImportModelRequest::kData) bytes += r.data();
  }
  absl::StatusOr<knncluster::Model> model = knncluster::ParseModel(bytes, "import");
  if (!name.empty() && requests.front().part_case() == v1::ImportModelRequest::kModel &&
      model.ok() && !ModelParamsValid(*model)) {
    if (st.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
      std::fprintf(stderr, "import of a model with invalid parameters answered %d: %s\n",
                   static_cast<int>(st.error_code()), st.error_message().c_str());
      std::abort();
    }
  }
  // Whatever the outcome, remove what an import may leave: the model and its training rows.
  if (!name.empty()) {
    (void)F().models->Delete(name);
    grpc::ServerContext context;
    v1::DeleteDatasetRequest del;
    del.set_name(name + ".data");
    v1::DeleteDatasetResponse unused;
    (void)F().coordinator->DeleteDataset(&context, &del, &unused);
  }
}

void LoadShard(std::string_view in) {
  std::vector<v1::LoadShardRequest> requests;
  if (!ParseAll(SplitRecords(in), &requests)) return;
  for (const auto& r : requests) {
    if (r.has_header() && r.header().shard_id() == kShard) return;
  }
  v1::LoadShardResponse response;
  auto st = Stream(F().worker_stub.get(), &v1::Worker::Stub::LoadShard, requests, &response);
  if (st.ok()) F().shards->Drop(response.shard_id());
}

void PutDataset(std::string_view in) {
  std::vector<v1::PutDatasetRequest> requests;
  if (!ParseAll(SplitRecords(in), &requests)) return;
  v1::PutDatasetResponse response;
  Stream(F().worker_stub.get(), &v1::Worker::Stub::PutDataset, requests, &response);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Hostile strings make protobuf log ("invalid UTF-8") on every other input: keep the fuzzer's
  // output readable. gRPC reads GRPC_VERBOSITY when it starts.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  setenv("GRPC_VERBOSITY", "NONE", /*overwrite=*/0);
  F();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using knncluster::coordinator::CoordinatorService;
  using knncluster::coordinator::MembershipService;
  using knncluster::worker::WorkerService;
  Fixture& f = F();
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  CoordinatorService* c = f.coordinator.get();
  WorkerService* w = f.worker.get();
  switch (data[0] % 22) {
    case 0:
      Unary(c, &CoordinatorService::DescribeDataset, in);
      break;
    case 1:
      Unary<v1::DeleteDatasetRequest, v1::DeleteDatasetResponse>(
          c, &CoordinatorService::DeleteDataset, in,
          [](v1::DeleteDatasetRequest* r) { return !IsFixtureName(r->name()); });
      break;
    case 2:
      Unary<v1::SplitDatasetRequest, v1::SplitDatasetResponse>(
          c, &CoordinatorService::SplitDataset, in, [](v1::SplitDatasetRequest* r) {
            r->set_dry_run(true);  // views would change the catalog
            return true;
          });
      break;
    case 3:
      Unary<v1::FitRequest, v1::ModelInfo>(c, &CoordinatorService::Fit, in, [](v1::FitRequest* r) {
        return !IsFixtureName(r->model());
      });
      break;
    case 4:
      Unary(c, &CoordinatorService::KNeighbors, in);
      break;
    case 5:
      Unary(c, &CoordinatorService::Predict, in);
      break;
    case 6:
      Unary(c, &CoordinatorService::PredictProba, in);
      break;
    case 7:
      Unary(c, &CoordinatorService::Score, in);
      break;
    case 8:
      Unary(c, &CoordinatorService::DescribeModel, in);
      break;
    case 9:
      Unary<v1::DeleteModelRequest, v1::DeleteModelResponse>(
          c, &CoordinatorService::DeleteModel, in,
          [](v1::DeleteModelRequest* r) { return !IsFixtureName(r->model()); });
      break;
    case 10:
      Unary<v1::StartGridSearchRequest, v1::GridSearchInfo>(
          c, &CoordinatorService::StartGridSearch, in, [](v1::StartGridSearchRequest* r) {
            return !(r->replace_refit_model() && IsFixtureName(r->refit_model()));
          });
      break;
    case 11:
      Unary(c, &CoordinatorService::CancelGridSearch, in);
      break;
    case 12:
      Unary(c, &CoordinatorService::GetGridSearchResult, in);
      break;
    case 13:
      Unary(f.membership.get(), &MembershipService::Heartbeat, in);
      break;
    case 14:
      Unary(w, &WorkerService::SearchShards, in);
      break;
    case 15:
      Unary<v1::DropShardRequest, v1::DropShardResponse>(
          w, &WorkerService::DropShard, in,
          [](v1::DropShardRequest* r) { return r->shard_id() != kShard; });
      break;
    case 16:
      Unary(w, &WorkerService::RunFoldJob, in);
      break;
    case 17:
      Unary(w, &WorkerService::GetWorkerStatus, in);
      break;
    case 18:
      UploadDataset(in);
      break;
    case 19:
      ImportModel(in);
      break;
    case 20:
      LoadShard(in);
      break;
    case 21:
      PutDataset(in);
      break;
  }
  return 0;
}
