// The channel and server settings of rpc/limits.h against a real loopback server: idempotent
// methods are retried on UNAVAILABLE, others are not; messages over the limit are refused;
// keepalive pings do not get a client GOAWAY'd; a server keeps its threads between calls.
#include "rpc/limits.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/syscall.h>
#include <unistd.h>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "knncluster/v1/worker.grpc.pb.h"

namespace knncluster::rpc {
namespace {

using ::testing::HasSubstr;

// Fails the first `failures` calls of each method with UNAVAILABLE, then succeeds.
class FlakyWorker final : public v1::Worker::Service {
 public:
  explicit FlakyWorker(int failures) : failures_(failures) {}
  grpc::Status SearchShards(grpc::ServerContext*, const v1::SearchShardsRequest* request,
                            v1::SearchShardsResponse*) override {
    if (request->k() > 0) {  // k ms of work, on a thread recorded by its kernel id
      {
        absl::MutexLock lock(&mu);
        handler_threads.insert(static_cast<long>(syscall(SYS_gettid)));
      }
      absl::SleepFor(absl::Milliseconds(request->k()));
      return grpc::Status::OK;
    }
    return ++search_calls < failures_ + 1 ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "flaky")
                                          : grpc::Status::OK;
  }
  grpc::Status RunFoldJob(grpc::ServerContext*, const v1::RunFoldJobRequest*,
                          v1::RunFoldJobResponse*) override {
    return ++job_calls < failures_ + 1 ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "flaky")
                                       : grpc::Status::OK;
  }
  absl::Mutex mu;
  std::set<long> handler_threads;  // Linux thread ids are not reused soon: one per thread
  std::atomic<int> search_calls{0};
  std::atomic<int> job_calls{0};

 private:
  const int failures_;
};

class LimitsTest : public ::testing::Test {
 protected:
  void Start(int failures, int max_message_bytes = 1 << 20) {
    service_ = std::make_unique<FlakyWorker>(failures);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    SetServerLimits("limits_test", max_message_bytes, 64, &builder);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    grpc::ChannelArguments args;
    SetClientChannelArgs(max_message_bytes, IdempotentWorkerMethods(), &args);
    stub_ = v1::Worker::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args));
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }
  static void Deadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  }

  std::unique_ptr<FlakyWorker> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Worker::Stub> stub_;
};

TEST_F(LimitsTest, IdempotentCallsAreRetriedOnUnavailable) {
  Start(/*failures=*/2);
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::SearchShardsRequest request;
  v1::SearchShardsResponse response;
  const grpc::Status st = stub_->SearchShards(&ctx, request, &response);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(service_->search_calls.load(), 3);
}

TEST_F(LimitsTest, RetriesStopAfterMaxAttempts) {
  Start(/*failures=*/100);
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::SearchShardsResponse response;
  const grpc::Status st = stub_->SearchShards(&ctx, v1::SearchShardsRequest(), &response);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(service_->search_calls.load(), kRetryMaxAttempts);
}

TEST_F(LimitsTest, NonIdempotentCallsAreNotRetried) {
  Start(/*failures=*/1);
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::RunFoldJobResponse response;
  const grpc::Status st = stub_->RunFoldJob(&ctx, v1::RunFoldJobRequest(), &response);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(service_->job_calls.load(), 1);
}

TEST_F(LimitsTest, MessagesOverTheLimitAreRefused) {
  Start(/*failures=*/0, /*max_message_bytes=*/64 << 10);
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::SearchShardsRequest request;
  for (int i = 0; i < 20000; ++i) request.mutable_queries()->add_values(i);  // 160 KB
  v1::SearchShardsResponse response;
  const grpc::Status st = stub_->SearchShards(&ctx, request, &response);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(service_->search_calls.load(), 0);
}

// Two calls at a time, 40 times over: the calls run on the few threads the server keeps, where
// gRPC's default (2 idle threads at most) started and ended a thread for about every call.
TEST_F(LimitsTest, AServerKeepsItsThreadsBetweenCalls) {
  Start(/*failures=*/0);
  for (int round = 0; round < 40; ++round) {
    std::vector<std::thread> callers;
    for (int c = 0; c < 2; ++c) {
      callers.emplace_back([&] {
        grpc::ClientContext ctx;
        Deadline(&ctx);
        v1::SearchShardsRequest request;
        request.set_k(5);
        v1::SearchShardsResponse response;
        EXPECT_TRUE(stub_->SearchShards(&ctx, request, &response).ok());
      });
    }
    for (std::thread& t : callers) t.join();
  }
  absl::MutexLock lock(&service_->mu);
  EXPECT_LE(service_->handler_threads.size(), static_cast<size_t>(kServerMaxIdleThreads) + 2);
}

TEST(RetryServiceConfigTest, NamesEveryMethodAndOnlyUnavailable) {
  const std::string config = RetryServiceConfig(IdempotentWorkerMethods());
  EXPECT_THAT(config, HasSubstr(R"({"service":"knncluster.v1.Worker","method":"SearchShards"})"));
  EXPECT_THAT(config, HasSubstr(R"("retryableStatusCodes":["UNAVAILABLE"])"));
  EXPECT_THAT(config, HasSubstr(R"("maxAttempts":4)"));
  EXPECT_THAT(config, ::testing::Not(HasSubstr("RunFoldJob")));
}

}  // namespace
}  // namespace knncluster::rpc
