// Issue 6's limits end to end, in one process: a real CoordinatorServer and real WorkerServers on
// loopback gRPC, driven through stubs. Each limit is exceeded on purpose, the refusal is checked
// (RESOURCE_EXHAUSTED, a message naming the limit and its flag), and then the server is shown to
// keep serving normal calls.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "coordinator/coordinator_server.h"
#include "core/datasets/dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "knncluster/v1/coordinator.grpc.pb.h"
#include "knncluster/v1/worker.grpc.pb.h"
#include "rpc/admission.h"
#include "rpc/convert.h"
#include "worker/worker_server.h"

namespace knncluster {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/limits-", name, "-", getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

template <typename Ctx>
void SetDeadline(Ctx* ctx, int seconds = 60) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

class LimitsClusterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (coordinator_ != nullptr) coordinator_->Shutdown();
    for (auto& w : workers_) w->Shutdown();
  }

  void StartCoordinator(int max_concurrent = 256, uint64_t max_bytes = uint64_t{512} << 20) {
    dir_ = TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    coordinator::CoordinatorOptions o;
    o.data_dir = dir_ + "/coordinator";
    o.heartbeat_interval_ms = 100;
    o.threads = 2;
    o.max_concurrent_requests = max_concurrent;
    o.max_inflight_request_bytes = max_bytes;
    coordinator_ = std::make_unique<coordinator::CoordinatorServer>(o);
    ASSERT_TRUE(coordinator_->Start().ok());
    stub_ = v1::Coordinator::NewStub(grpc::CreateChannel(coordinator_->bound_address(),
                                                         grpc::InsecureChannelCredentials()));
  }

  worker::WorkerServer* AddWorker(int search_delay_ms = 0, int max_concurrent = 512,
                                  uint64_t budget_bytes = 0) {
    worker::WorkerOptions o;
    o.data_dir = absl::StrCat(dir_, "/w", workers_.size());
    o.coordinator_address = coordinator_->bound_address();
    o.threads = 1;
    o.testing_search_delay = absl::Milliseconds(search_delay_ms);
    o.max_concurrent_requests = max_concurrent;
    if (budget_bytes > 0) o.memory_budget_bytes = budget_bytes;
    workers_.push_back(std::make_unique<worker::WorkerServer>(o));
    EXPECT_TRUE(workers_.back()->Start().ok());
    return workers_.back().get();
  }

  void WaitAlive(size_t n) {
    for (int tries = 0; tries < 200; ++tries) {
      grpc::ClientContext ctx;
      SetDeadline(&ctx);
      v1::ClusterStatus status;
      ASSERT_TRUE(stub_->GetClusterStatus(&ctx, {}, &status).ok());
      size_t alive = 0;
      for (const auto& w : status.workers()) alive += w.state() == v1::WORKER_ALIVE;
      if (alive == n) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    FAIL() << "workers did not come alive";
  }

  grpc::Status Upload(const std::string& name, const Matrix& X, const std::vector<double>& y) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::DatasetInfo info;
    auto writer = stub_->UploadDataset(&ctx, &info);
    v1::UploadDatasetRequest req;
    req.mutable_header()->set_name(name);
    req.mutable_header()->set_cols(X.cols());
    req.mutable_header()->set_rows(X.rows());
    req.mutable_header()->set_labels(v1::LABELS_NUMERIC);
    writer->Write(req);
    for (size_t b = 0; b < X.rows(); b += 500) {
      const size_t e = std::min(X.rows(), b + 500);
      v1::UploadDatasetRequest c;
      rpc::ToProto(X.view().Slice(b, e), c.mutable_chunk()->mutable_rows());
      for (size_t i = b; i < e; ++i) c.mutable_chunk()->add_labels(y[i]);
      writer->Write(c);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Fit(const std::string& model, const std::string& dataset) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::FitRequest req;
    req.set_model(model);
    req.set_dataset(dataset);
    req.mutable_params()->set_n_neighbors(5);
    v1::ModelInfo info;
    return stub_->Fit(&ctx, req, &info);
  }

  void UploadAndFitDigits() {
    auto digits = LoadDigits();
    ASSERT_TRUE(digits.ok());
    digits_ = std::make_unique<Dataset>(*std::move(digits));
    grpc::Status st = Upload("digits", digits_->features, digits_->targets);
    ASSERT_TRUE(st.ok()) << st.error_message();
    st = Fit("m", "digits");
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  v1::PredictRequest PredictRows(size_t rows) const {
    v1::PredictRequest req;
    req.set_model("m");
    rpc::ToProto(digits_->features.view().Slice(0, rows), req.mutable_queries()->mutable_matrix());
    return req;
  }

  grpc::Status Predict(const v1::PredictRequest& req, v1::PredictResponse* response = nullptr) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::PredictResponse local;
    return stub_->Predict(&ctx, req, response != nullptr ? response : &local);
  }

  // Fires `n` Predict calls at once; returns how many ended with each code, and one message of
  // each code.
  std::map<grpc::StatusCode, int> Burst(int n, std::map<grpc::StatusCode, std::string>* messages) {
    absl::Mutex mu;
    std::map<grpc::StatusCode, int> codes;
    std::vector<std::thread> threads;
    const v1::PredictRequest req = PredictRows(4);
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&] {
        const grpc::Status st = Predict(req);
        absl::MutexLock lock(&mu);
        ++codes[st.error_code()];
        (*messages)[st.error_code()] = st.error_message();
      });
    }
    for (auto& t : threads) t.join();
    return codes;
  }

  std::string dir_;
  std::unique_ptr<coordinator::CoordinatorServer> coordinator_;
  std::vector<std::unique_ptr<worker::WorkerServer>> workers_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::unique_ptr<Dataset> digits_;
};

TEST_F(LimitsClusterTest, CoordinatorRefusesCallsBeyondItsConcurrencyLimitAndKeepsServing) {
  StartCoordinator(/*max_concurrent=*/3);
  AddWorker(/*search_delay_ms=*/400);
  WaitAlive(1);
  UploadAndFitDigits();
  v1::PredictResponse want;
  ASSERT_TRUE(Predict(PredictRows(4), &want).ok());

  std::map<grpc::StatusCode, std::string> messages;
  std::map<grpc::StatusCode, int> codes = Burst(12, &messages);
  EXPECT_GE(codes[grpc::StatusCode::OK], 3);
  EXPECT_GE(codes[grpc::StatusCode::RESOURCE_EXHAUSTED], 1);
  EXPECT_EQ(codes[grpc::StatusCode::OK] + codes[grpc::StatusCode::RESOURCE_EXHAUSTED], 12);
  EXPECT_THAT(messages[grpc::StatusCode::RESOURCE_EXHAUSTED],
              HasSubstr("coordinator overloaded"));
  EXPECT_THAT(messages[grpc::StatusCode::RESOURCE_EXHAUSTED],
              HasSubstr("--max-concurrent-requests=3"));
  EXPECT_GE(coordinator_->admission_for_testing()->refused(), 1u);
  EXPECT_EQ(coordinator_->admission_for_testing()->in_flight(), 0);

  // Still serving, with the same answers; status calls were never counted.
  v1::PredictResponse got;
  ASSERT_TRUE(Predict(PredictRows(4), &got).ok());
  EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString());
  WaitAlive(1);
}

TEST_F(LimitsClusterTest, WorkerRefusesSearchesBeyondItsLimitWithoutBeingMarkedDead) {
  StartCoordinator();
  worker::WorkerServer* w = AddWorker(/*search_delay_ms=*/400, /*max_concurrent=*/2);
  WaitAlive(1);
  UploadAndFitDigits();

  std::map<grpc::StatusCode, std::string> messages;
  std::map<grpc::StatusCode, int> codes = Burst(8, &messages);
  EXPECT_GE(codes[grpc::StatusCode::OK], 2);
  EXPECT_GE(codes[grpc::StatusCode::RESOURCE_EXHAUSTED], 1);
  EXPECT_EQ(codes[grpc::StatusCode::OK] + codes[grpc::StatusCode::RESOURCE_EXHAUSTED], 8);
  EXPECT_THAT(messages[grpc::StatusCode::RESOURCE_EXHAUSTED], HasSubstr("worker overloaded"));
  EXPECT_THAT(messages[grpc::StatusCode::RESOURCE_EXHAUSTED],
              HasSubstr("--max-concurrent-requests=2"));

  // The worker was busy, not gone: it stays alive and serves the next query.
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ClusterStatus status;
  ASSERT_TRUE(stub_->GetClusterStatus(&ctx, {}, &status).ok());
  ASSERT_EQ(status.workers_size(), 1);
  EXPECT_EQ(status.workers(0).state(), v1::WORKER_ALIVE);
  EXPECT_TRUE(Predict(PredictRows(4)).ok());
  (void)w;
}

TEST_F(LimitsClusterTest, CoordinatorBoundsTheBytesOfRequestsInFlight) {
  StartCoordinator(256, /*max_bytes=*/uint64_t{256} << 10);
  AddWorker();
  WaitAlive(1);
  UploadAndFitDigits();
  // 600 rows x 64 doubles = 300 KiB of queries: more than the whole budget.
  grpc::Status st = Predict(PredictRows(600));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(st.error_message(), HasSubstr("--max-inflight-request-mb"));
  EXPECT_THAT(st.error_message(), HasSubstr("smaller batches"));
  // Queries naming a dataset count the dataset's rows (1797 x 64 doubles = 899 KiB).
  v1::PredictRequest by_name;
  by_name.set_model("m");
  by_name.mutable_queries()->set_dataset("digits");
  st = Predict(by_name);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Predict(PredictRows(100)).ok());
}

TEST_F(LimitsClusterTest, FitLargerThanTheWorkersBudgetsIsRefusedUpFront) {
  StartCoordinator();
  AddWorker(0, 512, /*budget_bytes=*/512 << 10);
  AddWorker(0, 512, /*budget_bytes=*/512 << 10);
  WaitAlive(2);
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  // digits: 1797 x 65 doubles = 913 KiB fits the two workers' 1 MiB.
  ASSERT_TRUE(Upload("digits", digits->features, digits->targets).ok());
  // 4000 x 64: 2 MiB does not.
  std::vector<double> values(4000 * 64);
  std::vector<double> y(4000);
  for (size_t i = 0; i < 4000; ++i) {
    for (size_t j = 0; j < 64; ++j) values[i * 64 + j] = static_cast<double>((i * 31 + j * 7) % 17);
    y[i] = static_cast<double>(i % 3);
  }
  const Matrix big(4000, 64, std::move(values));
  ASSERT_TRUE(Upload("big", big, y).ok());
  grpc::Status st = Fit("too-big", "big");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(st.error_message(), HasSubstr("--memory-budget-mb"));
  EXPECT_THAT(st.error_message(), HasSubstr("4000 rows x 64 features"));
  // Nothing was registered, and a model that fits still does.
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub_->ListModels(&ctx, {}, &models).ok());
  EXPECT_EQ(models.models_size(), 0);
  st = Fit("ok", "digits");
  EXPECT_TRUE(st.ok()) << st.error_message();
  // A second model of the same size no longer fits beside the first.
  st = Fit("second", "digits");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(st.error_message(), HasSubstr("other models hold"));
}

TEST_F(LimitsClusterTest, WorkerRefusesAShardOverItsBudgetFromTheHeader) {
  dir_ = TempDir("shard");
  worker::WorkerOptions o;
  o.data_dir = dir_ + "/w";
  o.memory_budget_bytes = 1 << 20;
  worker::WorkerServer server(o);
  ASSERT_TRUE(server.Start().ok());
  auto stub = v1::Worker::NewStub(
      grpc::CreateChannel(server.bound_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::LoadShardResponse response;
  auto writer = stub->LoadShard(&ctx, &response);
  v1::LoadShardRequest header;
  header.mutable_header()->set_shard_id("s/0");
  header.mutable_header()->set_rows(100000);  // 100000 x 64 doubles: 49 MiB
  header.mutable_header()->set_cols(64);
  writer->Write(header);
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(st.error_message(), HasSubstr("header.rows"));
  EXPECT_THAT(st.error_message(), HasSubstr("--memory-budget-mb"));
  server.Shutdown();
}

}  // namespace
}  // namespace knncluster
