// KnnClient's grid-search watch against a fake coordinator: a watch outlives one call's
// deadline, a cancel token ends it at once, and errors keep their code.
#include "client/cpp/knn_client.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace knncluster::client {
namespace {

// Streams the search "gs-000000000001" every 20 ms; it ends (SUCCEEDED) `run_for` after the
// server starts. Any other id is NOT_FOUND.
class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  explicit FakeCoordinator(absl::Duration run_for) : end_(absl::Now() + run_for) {}

  grpc::Status WatchGridSearch(grpc::ServerContext* context,
                               const v1::WatchGridSearchRequest* request,
                               grpc::ServerWriter<v1::GridSearchInfo>* writer) override {
    if (request->id() != "gs-000000000001") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "id: no grid search");
    }
    ++streams_;
    while (!context->IsCancelled()) {
      v1::GridSearchInfo info;
      info.set_id(request->id());
      const bool done = absl::Now() >= end_;
      info.set_state(done ? v1::GRID_SEARCH_SUCCEEDED : v1::GRID_SEARCH_RUNNING);
      if (!writer->Write(info)) break;
      if (done) return grpc::Status::OK;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  }

  int streams() const { return streams_; }

 private:
  const absl::Time end_;
  std::atomic<int> streams_{0};
};

class KnnClientWatchTest : public ::testing::Test {
 protected:
  void Start(absl::Duration run_for, std::chrono::milliseconds deadline) {
    service_ = std::make_unique<FakeCoordinator>(run_for);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    ClientOptions options;
    options.address = "127.0.0.1:" + std::to_string(port);
    options.deadline = deadline;
    client_ = KnnClient::Create(options);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  std::unique_ptr<FakeCoordinator> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<KnnClient> client_;
};

TEST_F(KnnClientWatchTest, OutlivesOneCallsDeadline) {
  Start(absl::Milliseconds(900), std::chrono::milliseconds(250));
  int events = 0;
  v1::GridSearchState last = v1::GRID_SEARCH_QUEUED;
  absl::Status s = client_->WatchGridSearch("gs-000000000001", 50,
                                            [&](const v1::GridSearchInfo& info) {
                                              ++events;
                                              last = info.state();
                                            });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(last, v1::GRID_SEARCH_SUCCEEDED);
  EXPECT_GE(service_->streams(), 3);  // re-opened after each 250 ms deadline
  EXPECT_GT(events, 10);
}

TEST_F(KnnClientWatchTest, CancelTokenEndsTheWatchAtOnce) {
  Start(absl::Seconds(60), std::chrono::milliseconds(30'000));
  CancelToken token;
  std::atomic<int> events{0};
  std::thread canceller([&] {
    while (events < 3) absl::SleepFor(absl::Milliseconds(5));
    token.Cancel();
  });
  const absl::Time start = absl::Now();
  absl::Status s = client_->WatchGridSearch(
      "gs-000000000001", 50, [&](const v1::GridSearchInfo&) { ++events; }, &token);
  canceller.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // A token cancelled before the call: CANCELLED without waiting.
  s = client_->WatchGridSearch("gs-000000000001", 50, [](const v1::GridSearchInfo&) {}, &token);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
}

TEST_F(KnnClientWatchTest, ErrorsKeepTheirCode) {
  Start(absl::Seconds(1), std::chrono::milliseconds(5'000));
  absl::Status s = client_->WatchGridSearch("gs-nope", 50, [](const v1::GridSearchInfo&) {});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(s.message(), "id: no grid search");
}

TEST(CancelTokenTest, HookRunsOnceAndScopesUnregister) {
  CancelToken token;
  int runs = 0;
  {
    CancelScope scope(&token, [&] { ++runs; });
    EXPECT_FALSE(token.cancelled());
  }
  {
    CancelScope scope(&token, [&] { runs += 10; });
    token.Cancel();
    token.Cancel();
  }
  EXPECT_EQ(runs, 10);
  EXPECT_TRUE(token.cancelled());
  CancelScope late(&token, [&] { runs += 100; });  // already cancelled: runs at once
  EXPECT_EQ(runs, 110);
  CancelScope none(nullptr, [&] { runs += 1000; });
  EXPECT_EQ(runs, 110);
}

}  // namespace
}  // namespace knncluster::client
