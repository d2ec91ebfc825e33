// A damaged training set that cannot be rebuilt (issue 6): real coordinator and worker servers
// in one process. The rebuild itself, byte for byte, is tests/cluster/rebuild_test.py.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "coordinator/coordinator_server.h"
#include "core/datasets/dataset.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "knncluster/v1/coordinator.grpc.pb.h"
#include "rpc/convert.h"
#include "worker/worker_server.h"

namespace knncluster {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

void SetDeadline(grpc::ClientContext* ctx, int seconds = 60) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

class RebuildClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/rebuild-", getpid());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    if (coordinator_ != nullptr) coordinator_->Shutdown();
    for (auto& w : workers_) {
      if (w != nullptr) w->Shutdown();
    }
    std::filesystem::remove_all(dir_);
  }

  // `listen`: the address of the coordinator restarted (so its workers find it again).
  void StartCoordinator(const std::string& listen = "127.0.0.1:0") {
    if (coordinator_ != nullptr) coordinator_->Shutdown();
    coordinator_.reset();
    coordinator::CoordinatorOptions o;
    o.listen_address = listen;
    o.data_dir = dir_ + "/coordinator";
    o.heartbeat_interval_ms = 100;
    o.threads = 2;
    o.rebuild_wait = absl::Seconds(2);
    o.log = [this](const std::string& line) {
      absl::MutexLock lock(&mu_);
      log_.push_back(line);
    };
    coordinator_ = std::make_unique<coordinator::CoordinatorServer>(o);
    ASSERT_TRUE(coordinator_->Start().ok());
    stub_ = v1::Coordinator::NewStub(grpc::CreateChannel(coordinator_->bound_address(),
                                                         grpc::InsecureChannelCredentials()));
  }

  void AddWorker() {
    worker::WorkerOptions o;
    o.data_dir = absl::StrCat(dir_, "/w", workers_.size());
    o.coordinator_address = coordinator_->bound_address();
    o.threads = 1;
    workers_.push_back(std::make_unique<worker::WorkerServer>(o));
    ASSERT_TRUE(workers_.back()->Start().ok());
  }

  size_t Alive() {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::ClusterStatus status;
    if (!stub_->GetClusterStatus(&ctx, {}, &status).ok()) return 0;
    size_t alive = 0;
    for (const auto& w : status.workers()) alive += w.state() == v1::WORKER_ALIVE;
    return alive;
  }

  std::string Log() {
    absl::MutexLock lock(&mu_);
    return absl::StrJoin(log_, "\n");
  }

  std::string dir_;
  std::unique_ptr<coordinator::CoordinatorServer> coordinator_;
  std::vector<std::unique_ptr<worker::WorkerServer>> workers_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  absl::Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
};

// A shard with no live copy (its only worker is gone): after rebuild_wait the dataset stays
// quarantined, the model is quarantined, and the log says why.
TEST_F(RebuildClusterTest, ADatasetWhoseShardsAreNotAllLiveStaysQuarantined) {
  StartCoordinator();
  AddWorker();
  AddWorker();
  for (int i = 0; i < 200 && Alive() < 2; ++i) absl::SleepFor(absl::Milliseconds(50));
  ASSERT_EQ(Alive(), 2u);
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::DatasetInfo info;
    auto writer = stub_->UploadDataset(&ctx, &info);
    v1::UploadDatasetRequest req;
    req.mutable_header()->set_name("digits");
    req.mutable_header()->set_cols(digits->features.cols());
    req.mutable_header()->set_labels(v1::LABELS_NUMERIC);
    writer->Write(req);
    v1::UploadDatasetRequest c;
    rpc::ToProto(digits->features.view(), c.mutable_chunk()->mutable_rows());
    for (double y : digits->targets) c.mutable_chunk()->add_labels(y);
    writer->Write(c);
    writer->WritesDone();
    const grpc::Status st = writer->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::FitRequest fit;
    fit.set_model("dm");
    fit.set_dataset("digits");
    fit.set_task(v1::TASK_CLASSIFIER);
    v1::ModelInfo info;
    const grpc::Status st = stub_->Fit(&ctx, fit, &info);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_GE(info.shards_size(), 2);
  }
  const std::string address = coordinator_->bound_address();
  coordinator_->Shutdown();
  coordinator_.reset();
  workers_[1]->Shutdown();
  workers_[1].reset();
  {
    const std::string path = dir_ + "/coordinator/datasets/digits/features.f64";
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(100);
    char ch;
    f.get(ch);
    f.seekp(100);
    f.put(static_cast<char>(ch ^ 0x40));
  }
  StartCoordinator(address);  // w0 re-registers with its shard; w1's shard has no live copy
  EXPECT_THAT(absl::StrJoin(coordinator_->load_errors(), "\n"),
              HasSubstr("features.f64: checksum mismatch"));
  std::string log;
  for (int i = 0; i < 100; ++i) {
    log = Log();
    if (log.find("cannot be rebuilt") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(log, HasSubstr("dataset \"digits\" was quarantined: rebuilding it from the "));
  EXPECT_THAT(log, HasSubstr("dataset \"digits\" cannot be rebuilt and stays quarantined; model "
                             "\"dm\" cannot be restored: UNAVAILABLE: no live worker reported "
                             "shard"));
  EXPECT_THAT(log, Not(HasSubstr("rebuilt from")));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::DescribeModelRequest describe;
  describe.set_model("dm");
  v1::ModelInfo info;
  EXPECT_EQ(stub_->DescribeModel(&ctx, describe, &info).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext ctx2;
  SetDeadline(&ctx2);
  v1::DescribeDatasetRequest dataset;
  dataset.set_name("digits");
  v1::DatasetInfo dinfo;
  EXPECT_EQ(stub_->DescribeDataset(&ctx2, dataset, &dinfo).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/coordinator/models/dm.model"));
}

}  // namespace
}  // namespace knncluster
