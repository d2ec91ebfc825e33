// The distributed grid search end to end in one process: a real CoordinatorServer and real
// WorkerServers (the knn-coordinator and knn-worker code minus their flags) on loopback gRPC,
// driven through a Coordinator stub. Every result is compared with the single-process engine
// (core GridSearchCV), which tests/parity and core/model_selection check against scikit-learn.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/coordinator_server.h"
#include "core/datasets/dataset.h"
#include "core/model_selection/grid_search.h"
#include "core/model_selection/split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "knncluster/v1/coordinator.grpc.pb.h"
#include "rpc/convert.h"
#include "rpc/grid_convert.h"
#include "worker/worker_server.h"

namespace knncluster {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/gs-", name, "-", getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

template <typename Ctx>
void SetDeadline(Ctx* ctx, int seconds = 120) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

class GridSearchClusterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (coordinator_ != nullptr) coordinator_->Shutdown();
    for (auto& w : workers_) {
      if (w != nullptr) w->Shutdown();
    }
  }

  void StartCoordinator() {
    dir_ = TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    StartCoordinatorOnDir();
  }

  // A coordinator on dir_ as it is (a restart when one ran there before).
  void StartCoordinatorOnDir(size_t max_finished = 100) {
    if (coordinator_ != nullptr) {
      coordinator_->Shutdown();
      coordinator_.reset();
    }
    coordinator::CoordinatorOptions o;
    o.data_dir = dir_ + "/coordinator";
    o.heartbeat_interval_ms = 100;
    o.threads = 2;
    o.grid_search.slots_per_worker = 2;
    o.grid_search.no_worker_timeout = absl::Seconds(20);
    o.grid_search.max_finished = max_finished;
    coordinator_ = std::make_unique<coordinator::CoordinatorServer>(o);
    ASSERT_TRUE(coordinator_->Start().ok());
    stub_ = v1::Coordinator::NewStub(grpc::CreateChannel(coordinator_->bound_address(),
                                                         grpc::InsecureChannelCredentials()));
  }

  // A worker that registers with the coordinator (so its memory budget is known).
  void AddWorker(uint64_t budget_bytes = 0, int job_delay_ms = 0) {
    worker::WorkerOptions o;
    o.data_dir = absl::StrCat(dir_, "/w", workers_.size());
    o.coordinator_address = coordinator_->bound_address();
    o.threads = 1;
    if (budget_bytes > 0) o.memory_budget_bytes = budget_bytes;
    o.testing_job_delay = absl::Milliseconds(job_delay_ms);
    workers_.push_back(std::make_unique<worker::WorkerServer>(o));
    ASSERT_TRUE(workers_.back()->Start().ok());
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

  void UploadDigits(const std::string& name = "digits") {
    auto digits = LoadDigits();
    ASSERT_TRUE(digits.ok());
    Upload(name, digits->features, digits->targets);
  }

  void Upload(const std::string& name, const Matrix& X, const std::vector<double>& y) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::DatasetInfo info;
    auto writer = stub_->UploadDataset(&ctx, &info);
    v1::UploadDatasetRequest req;
    req.mutable_header()->set_name(name);
    req.mutable_header()->set_cols(X.cols());
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
    grpc::Status st = writer->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  static v1::StartGridSearchRequest TutorialRequest() {
    v1::StartGridSearchRequest r;
    r.set_dataset("digits");
    r.set_task(v1::TASK_CLASSIFIER);
    r.mutable_base()->set_algorithm(v1::ALGORITHM_KD_TREE);
    v1::ParamGrid* g = r.add_param_grid();
    for (int k = 2; k < 20; k += 2) g->add_n_neighbors(k);
    for (double p : {1.0, 2.0, 3.0}) g->add_p(p);
    r.set_cv(5);
    return r;
  }

  grpc::Status Start(const v1::StartGridSearchRequest& r, v1::GridSearchInfo* info) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    return stub_->StartGridSearch(&ctx, r, info);
  }

  // Watches until the search ends; returns every event.
  std::vector<v1::GridSearchInfo> Watch(const std::string& id) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, 300);
    v1::WatchGridSearchRequest req;
    req.set_id(id);
    req.set_interval_ms(50);
    auto reader = stub_->WatchGridSearch(&ctx, req);
    std::vector<v1::GridSearchInfo> events;
    v1::GridSearchInfo info;
    while (reader->Read(&info)) events.push_back(info);
    grpc::Status st = reader->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    return events;
  }

  grpc::Status Result(const std::string& id, v1::GridSearchResult* result) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::GetGridSearchResultRequest req;
    req.set_id(id);
    return stub_->GetGridSearchResult(&ctx, req, result);
  }

  // Runs a search to its end and returns its result.
  v1::GridSearchResult RunToEnd(const v1::StartGridSearchRequest& r) {
    v1::GridSearchInfo info;
    grpc::Status st = Start(r, &info);
    EXPECT_TRUE(st.ok()) << st.error_message();
    std::vector<v1::GridSearchInfo> events = Watch(info.id());
    EXPECT_FALSE(events.empty());
    if (!events.empty()) {
      EXPECT_EQ(events.back().state(), v1::GRID_SEARCH_SUCCEEDED) << events.back().error();
    }
    v1::GridSearchResult result;
    st = Result(info.id(), &result);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return result;
  }

  // The single-process answer for the same request.
  static CvResults Local(const v1::StartGridSearchRequest& r, std::shared_ptr<const Matrix> X,
                         const std::vector<double>& y) {
    GridSearchOptions o;
    o.classifier = r.task() == v1::TASK_CLASSIFIER;
    auto base = rpc::FromProto(r.base(), "base");
    EXPECT_TRUE(base.ok());
    o.base = *base;
    for (const auto& g : r.param_grid()) o.param_grid.push_back(*rpc::FromProto(g, "g"));
    if (o.param_grid.empty()) o.param_grid.emplace_back();
    o.cv = r.cv() == 0 ? 5 : static_cast<int>(r.cv());
    o.shuffle = r.shuffle();
    if (r.has_random_state()) o.random_state = r.random_state();
    for (const auto& f : r.folds()) o.folds.push_back(rpc::FromProto(f));
    o.scoring = *rpc::ScoringFromName(r.scoring(), o.classifier, "scoring");
    o.refit = false;
    auto result = GridSearchCV(X, y, o, nullptr);
    EXPECT_TRUE(result.ok()) << result.status();
    return result->cv_results;
  }

  static void ExpectSameResults(const v1::GridSearchResult& got, const CvResults& want) {
    auto cv = rpc::FromProto(got.cv_results(), "cv_results");
    ASSERT_TRUE(cv.ok()) << cv.status();
    ASSERT_EQ(cv->params.size(), want.params.size());
    for (size_t c = 0; c < want.params.size(); ++c) {
      SCOPED_TRACE(c);
      EXPECT_EQ(cv->params[c].n_neighbors, want.params[c].n_neighbors);
      EXPECT_EQ(cv->params[c].p, want.params[c].p);
      EXPECT_EQ(cv->params[c].weights, want.params[c].weights);
      EXPECT_EQ(cv->params[c].algorithm, want.params[c].algorithm);
      EXPECT_EQ(cv->split_test_scores[c], want.split_test_scores[c]);  // exact doubles
      EXPECT_EQ(cv->mean_test_score[c], want.mean_test_score[c]);
      EXPECT_EQ(cv->std_test_score[c], want.std_test_score[c]);
      EXPECT_EQ(cv->rank_test_score[c], want.rank_test_score[c]);
      EXPECT_EQ(cv->param_keys[c], want.param_keys[c]);
    }
    EXPECT_EQ(got.best_index(), want.best_index);
    EXPECT_EQ(got.best_score(), want.best_score);
    EXPECT_EQ(got.best_params().n_neighbors(), want.best_params.n_neighbors);
    EXPECT_EQ(cv->mean_fit_time.size(), want.params.size());
    EXPECT_EQ(cv->mean_score_time.size(), want.params.size());
  }

  std::string dir_;
  std::unique_ptr<coordinator::CoordinatorServer> coordinator_;
  std::vector<std::unique_ptr<worker::WorkerServer>> workers_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

// The tutorial's search, replicated over two workers: scikit-learn's numbers (the same as the
// single-process engine's), 15 neighbour searches for 135 fits, the refit model scoring 0.98333
// on the tutorial's test split, and progress events that count up to 15 of 15.
TEST_F(GridSearchClusterTest, TutorialGridReplicatedEqualsSingleProcess) {
  StartCoordinator();
  AddWorker();
  AddWorker();
  WaitAlive(2);
  UploadDigits();
  v1::StartGridSearchRequest req = TutorialRequest();
  req.set_mode(v1::GRID_SEARCH_MODE_REPLICATED);
  req.set_refit_model("best-digits");
  v1::GridSearchInfo info;
  ASSERT_TRUE(Start(req, &info).ok());
  EXPECT_THAT(info.id(), ::testing::StartsWith("gs-"));
  EXPECT_EQ(info.jobs_total(), 15u);
  EXPECT_EQ(info.n_candidates(), 27u);
  std::vector<v1::GridSearchInfo> events = Watch(info.id());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state(), v1::GRID_SEARCH_SUCCEEDED) << events.back().error();
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_GE(events[i].jobs_done(), events[i - 1].jobs_done());
  }
  EXPECT_EQ(events.back().jobs_done(), 15u);
  v1::GridSearchResult result;
  ASSERT_TRUE(Result(info.id(), &result).ok());
  EXPECT_EQ(result.info().mode(), v1::GRID_SEARCH_MODE_REPLICATED);
  EXPECT_EQ(result.info().neighbor_searches(), 15u);
  EXPECT_EQ(result.info().jobs_requeued(), 0u);
  EXPECT_EQ(result.best_score(), 0.9671711544413494);
  EXPECT_EQ(result.best_params().n_neighbors(), 2);
  EXPECT_EQ(result.best_params().p(), 2);
  EXPECT_EQ(result.refit_model(), "best-digits");
  // The dataset went to each worker once, not once per job.
  EXPECT_EQ(result.info().dataset_transfers(), 2u);

  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  auto X = std::make_shared<const Matrix>(digits->features);
  ExpectSameResults(result, Local(req, X, digits->targets));

  // The refit model is a fitted model of the cluster: the tutorial's test accuracy.
  auto split = TrainTestSplit(1797, TestSize::Fraction(0.2), 1337);
  ASSERT_TRUE(split.ok());
  v1::ScoreRequest score;
  score.set_model("best-digits");
  rpc::ToProto(Matrix::Gather(*X, split->test), score.mutable_queries()->mutable_matrix());
  for (int64_t i : split->test) score.add_labels(digits->targets[i]);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ScoreResponse scored;
  grpc::Status st = stub_->Score(&ctx, score, &scored);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // A second search over the same data sends it to no one: the workers cache it by content hash.
  req.set_refit(false);
  v1::GridSearchResult again = RunToEnd(req);
  EXPECT_EQ(again.info().dataset_transfers(), 0u);
  EXPECT_EQ(again.best_score(), 0.9671711544413494);

  // Refit on all 1797 rows, as the single-process GridSearchCV's best_estimator_
  // (core/model_selection/grid_search_test.cc).
  EXPECT_EQ(scored.score(), 0.9833333333333333);
}

// The same result with one worker and with three (auto mode: replicated here).
TEST_F(GridSearchClusterTest, TutorialGridWithOneAndWithThreeWorkers) {
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  const auto X = std::make_shared<const Matrix>(digits->features);
  for (int n : {1, 3}) {
    SCOPED_TRACE(n);
    TearDown();
    workers_.clear();
    coordinator_.reset();
    StartCoordinator();
    for (int i = 0; i < n; ++i) AddWorker();
    WaitAlive(n);
    UploadDigits();
    v1::StartGridSearchRequest req = TutorialRequest();
    req.set_refit(false);
    v1::GridSearchResult result = RunToEnd(req);
    EXPECT_EQ(result.info().neighbor_searches(), 15u);
    EXPECT_EQ(result.best_score(), 0.9671711544413494);
    ExpectSameResults(result, Local(req, X, digits->targets));
  }
}

// Sharded mode (forced): each fold job is a sharded search with the fold's validation rows left
// out on every worker; same numbers, and the temporary shards model is gone afterwards.
TEST_F(GridSearchClusterTest, ShardedModeEqualsSingleProcess) {
  StartCoordinator();
  AddWorker();
  AddWorker();
  AddWorker();
  WaitAlive(3);
  UploadDigits();
  v1::StartGridSearchRequest req = TutorialRequest();
  req.set_mode(v1::GRID_SEARCH_MODE_SHARDED);
  req.mutable_param_grid(0)->add_weights(v1::WEIGHTS_UNIFORM);
  req.mutable_param_grid(0)->add_weights(v1::WEIGHTS_DISTANCE);
  req.set_scoring("f1_macro");
  req.set_refit(false);
  v1::GridSearchResult result = RunToEnd(req);
  EXPECT_EQ(result.info().mode(), v1::GRID_SEARCH_MODE_SHARDED);
  EXPECT_EQ(result.info().neighbor_searches(), 15u);
  EXPECT_EQ(result.refit_model(), "");
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  ExpectSameResults(result, Local(req, std::make_shared<const Matrix>(digits->features),
                                  digits->targets));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub_->ListModels(&ctx, {}, &models).ok());
  EXPECT_EQ(models.models_size(), 0);
}

// A regressor with explicit, unsorted folds and several grids, both modes: equal to the
// single-process engine. Integer-valued features make distance ties common.
TEST_F(GridSearchClusterTest, RegressorWithExplicitFoldsBothModes) {
  StartCoordinator();
  AddWorker();
  AddWorker();
  WaitAlive(2);
  const size_t n = 300;
  Matrix X(n, 3);
  std::vector<double> y(n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < 3; ++j) X.row(i)[j] = static_cast<double>((i * (j + 3) * 7) % 11);
    y[i] = static_cast<double>(i % 17) * 0.5 + X.row(i)[0];
  }
  Upload("reg", X, y);
  v1::StartGridSearchRequest req;
  req.set_dataset("reg");
  req.set_task(v1::TASK_REGRESSOR);
  req.set_scoring("neg_mean_squared_error");
  v1::ParamGrid* g = req.add_param_grid();
  g->add_n_neighbors(1);
  g->add_n_neighbors(4);
  g->add_n_neighbors(9);
  g->add_weights(v1::WEIGHTS_DISTANCE);
  g->add_algorithm(v1::ALGORITHM_BALL_TREE);
  g->add_algorithm(v1::ALGORITHM_BRUTE);
  v1::ParamGrid* g2 = req.add_param_grid();
  g2->add_p(1);
  g2->add_p(std::numeric_limits<double>::infinity());
  for (int f = 0; f < 3; ++f) {
    v1::Fold* fold = req.add_folds();
    for (int64_t i = n - 1; i >= 0; --i) {
      if (i % 3 == f) {
        fold->add_test(i);
      } else {
        fold->add_train(i);
      }
    }
  }
  req.set_refit(false);
  const CvResults want = Local(req, std::make_shared<const Matrix>(X), y);
  for (auto mode : {v1::GRID_SEARCH_MODE_REPLICATED, v1::GRID_SEARCH_MODE_SHARDED}) {
    SCOPED_TRACE(mode);
    req.set_mode(mode);
    v1::GridSearchResult result = RunToEnd(req);
    EXPECT_EQ(result.info().mode(), mode);
    ExpectSameResults(result, want);
  }
}

// Auto mode: a dataset too large for a worker's budget runs sharded.
TEST_F(GridSearchClusterTest, AutoModeFollowsTheWorkersMemoryBudget) {
  StartCoordinator();
  AddWorker(/*budget_bytes=*/600 << 10);  // digits: 1797 x 65 doubles = 913 KiB
  AddWorker(/*budget_bytes=*/600 << 10);
  WaitAlive(2);
  UploadDigits();
  v1::StartGridSearchRequest req = TutorialRequest();
  req.set_refit(false);
  v1::GridSearchResult result = RunToEnd(req);
  EXPECT_EQ(result.info().mode(), v1::GRID_SEARCH_MODE_SHARDED);
  EXPECT_EQ(result.best_score(), 0.9671711544413494);
  // Forcing replicated mode on such workers fails with a clear message.
  req.set_mode(v1::GRID_SEARCH_MODE_REPLICATED);
  v1::GridSearchInfo info;
  ASSERT_TRUE(Start(req, &info).ok());
  std::vector<v1::GridSearchInfo> events = Watch(info.id());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state(), v1::GRID_SEARCH_FAILED);
  EXPECT_THAT(events.back().error(), HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(events.back().error(), HasSubstr("sharded"));
}

// A worker that dies during the search: its jobs go back on the queue and run on the other
// worker; the result is the same as without the failure.
TEST_F(GridSearchClusterTest, JobsOfADeadWorkerAreRequeued) {
  StartCoordinator();
  AddWorker(0, /*job_delay_ms=*/150);
  AddWorker(0, /*job_delay_ms=*/150);
  WaitAlive(2);
  UploadDigits();
  v1::StartGridSearchRequest req = TutorialRequest();
  req.set_mode(v1::GRID_SEARCH_MODE_REPLICATED);
  req.set_refit(false);
  v1::GridSearchInfo info;
  ASSERT_TRUE(Start(req, &info).ok());
  // Once a job is done (both workers hold the dataset and are running jobs), kill worker 1.
  for (int tries = 0; tries < 400; ++tries) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::ListGridSearchesResponse list;
    ASSERT_TRUE(stub_->ListGridSearches(&ctx, {}, &list).ok());
    if (list.searches(0).jobs_done() >= 1) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  workers_[1]->Shutdown();
  workers_[1].reset();
  std::vector<v1::GridSearchInfo> events = Watch(info.id());
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().state(), v1::GRID_SEARCH_SUCCEEDED) << events.back().error();
  v1::GridSearchResult result;
  ASSERT_TRUE(Result(info.id(), &result).ok());
  EXPECT_GE(result.info().jobs_requeued(), 1u);
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  ExpectSameResults(result, Local(req, std::make_shared<const Matrix>(digits->features),
                                  digits->targets));
}

// Sharded mode through a worker's death: its shards are re-sent by the repair loop, the jobs
// that needed them run again, and the result is the same. (When the kill lands between jobs no
// job needs re-running; the result must be the same either way.)
TEST_F(GridSearchClusterTest, ShardedModeSurvivesAWorkerDeath) {
  StartCoordinator();
  AddWorker();
  AddWorker();
  AddWorker();
  WaitAlive(3);
  UploadDigits();
  v1::StartGridSearchRequest req = TutorialRequest();
  req.set_mode(v1::GRID_SEARCH_MODE_SHARDED);
  req.mutable_param_grid(0)->add_algorithm(v1::ALGORITHM_KD_TREE);
  req.mutable_param_grid(0)->add_algorithm(v1::ALGORITHM_BALL_TREE);
  req.mutable_param_grid(0)->add_algorithm(v1::ALGORITHM_BRUTE);
  req.set_refit(false);
  v1::GridSearchInfo info;
  ASSERT_TRUE(Start(req, &info).ok());
  EXPECT_EQ(info.jobs_total(), 45u);
  for (int tries = 0; tries < 1000; ++tries) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::ListGridSearchesResponse list;
    ASSERT_TRUE(stub_->ListGridSearches(&ctx, {}, &list).ok());
    if (list.searches(0).jobs_done() >= 1) break;
    absl::SleepFor(absl::Milliseconds(2));
  }
  workers_[2]->Shutdown();
  workers_[2].reset();
  std::vector<v1::GridSearchInfo> events = Watch(info.id());
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().state(), v1::GRID_SEARCH_SUCCEEDED) << events.back().error();
  v1::GridSearchResult result;
  ASSERT_TRUE(Result(info.id(), &result).ok());
  RecordProperty("jobs_requeued", static_cast<int>(result.info().jobs_requeued()));
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  ExpectSameResults(result, Local(req, std::make_shared<const Matrix>(digits->features),
                                  digits->targets));
}

TEST_F(GridSearchClusterTest, BadRequestsFailAtStartNamingTheField) {
  StartCoordinator();
  AddWorker();
  WaitAlive(1);
  UploadDigits();
  v1::GridSearchInfo info;
  v1::StartGridSearchRequest req = TutorialRequest();
  req.set_dataset("nope");
  grpc::Status st = Start(req, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  req = TutorialRequest();
  req.mutable_param_grid(0)->add_n_neighbors(1500);
  st = Start(req, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("n_neighbors=1500"));
  req = TutorialRequest();
  req.mutable_param_grid(0)->add_n_neighbors(0);
  st = Start(req, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("param_grid[0]"));
  req = TutorialRequest();
  req.set_scoring("r2");
  st = Start(req, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("scoring"));
  req = TutorialRequest();
  req.set_cv(1);
  st = Start(req, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("cv"));
  req = TutorialRequest();
  req.add_folds()->add_train(0);
  req.mutable_folds(0)->add_test(99999);
  st = Start(req, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("folds[0].test"));
  req = TutorialRequest();
  req.set_refit_model("bad name!");
  st = Start(req, &info);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("refit_model"));
  // Unknown ids.
  v1::GridSearchResult result;
  st = Result("gs-000000000000", &result);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  // The cluster still serves: a good search succeeds.
  req = TutorialRequest();
  req.set_refit(false);
  EXPECT_EQ(RunToEnd(req).best_score(), 0.9671711544413494);
}

// Cancel: the search ends CANCELLED, its result says so, and List shows it.
TEST_F(GridSearchClusterTest, CancelStopsTheSearch) {
  StartCoordinator();
  AddWorker(0, /*job_delay_ms=*/300);
  WaitAlive(1);
  UploadDigits();
  v1::StartGridSearchRequest req = TutorialRequest();
  req.set_mode(v1::GRID_SEARCH_MODE_REPLICATED);
  v1::GridSearchInfo info;
  ASSERT_TRUE(Start(req, &info).ok());
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::CancelGridSearchRequest cancel;
    cancel.set_id(info.id());
    v1::GridSearchInfo after;
    ASSERT_TRUE(stub_->CancelGridSearch(&ctx, cancel, &after).ok());
  }
  std::vector<v1::GridSearchInfo> events = Watch(info.id());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state(), v1::GRID_SEARCH_CANCELLED);
  EXPECT_LT(events.back().jobs_done(), 15u);
  v1::GridSearchResult result;
  grpc::Status st = Result(info.id(), &result);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ListGridSearchesResponse list;
  ASSERT_TRUE(stub_->ListGridSearches(&ctx, {}, &list).ok());
  ASSERT_EQ(list.searches_size(), 1);
  EXPECT_EQ(list.searches(0).state(), v1::GRID_SEARCH_CANCELLED);
  // Nothing was refit.
  grpc::ClientContext ctx2;
  SetDeadline(&ctx2);
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub_->ListModels(&ctx2, {}, &models).ok());
  EXPECT_EQ(models.models_size(), 0);
}

// ---- Persistence: a coordinator restarted on its data directory ------------------------------

v1::ListGridSearchesResponse List(v1::Coordinator::Stub* stub) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ListGridSearchesResponse list;
  EXPECT_TRUE(stub->ListGridSearches(&ctx, {}, &list).ok());
  return list;
}

const v1::GridSearchInfo* FindInfo(const v1::ListGridSearchesResponse& list, const std::string& id) {
  for (const auto& s : list.searches()) {
    if (s.id() == id) return &s;
  }
  return nullptr;
}

v1::StartGridSearchRequest SmallRequest() {
  v1::StartGridSearchRequest r;
  r.set_dataset("digits");
  r.set_task(v1::TASK_CLASSIFIER);
  v1::ParamGrid* g = r.add_param_grid();
  for (int k : {1, 3, 5}) g->add_n_neighbors(k);
  for (double p : {1.0, 2.0}) g->add_p(p);
  r.set_cv(3);
  r.set_refit(false);
  r.set_mode(v1::GRID_SEARCH_MODE_REPLICATED);
  return r;
}

// A finished search answers List and GetGridSearchResult identically after a restart; a search
// interrupted by the restart runs again under its id and ends with the single-process answer; a
// damaged record is quarantined, never misread.
TEST_F(GridSearchClusterTest, SearchesSurviveACoordinatorRestart) {
  StartCoordinator();
  AddWorker();
  WaitAlive(1);
  UploadDigits();
  const v1::StartGridSearchRequest req = SmallRequest();
  v1::GridSearchResult finished = RunToEnd(req);
  const std::string done_id = finished.info().id();
  ASSERT_FALSE(done_id.empty());
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/coordinator/grid_searches/" + done_id));
  const v1::GridSearchInfo listed = *FindInfo(List(stub_.get()), done_id);

  // A search still waiting for a worker when the coordinator stops.
  for (auto& w : workers_) w->Shutdown();
  WaitAlive(0);
  v1::StartGridSearchRequest slow = req;
  slow.set_cv(4);
  v1::GridSearchInfo interrupted;
  ASSERT_TRUE(Start(slow, &interrupted).ok());

  StartCoordinatorOnDir();
  v1::GridSearchResult again;
  grpc::Status st = Result(done_id, &again);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(again.SerializeAsString(), finished.SerializeAsString());
  v1::ListGridSearchesResponse list = List(stub_.get());
  ASSERT_EQ(list.searches_size(), 2);
  EXPECT_EQ(list.searches(0).id(), done_id);  // oldest first, as before
  EXPECT_EQ(list.searches(0).SerializeAsString(), listed.SerializeAsString());
  EXPECT_EQ(list.searches(1).id(), interrupted.id());
  EXPECT_NE(list.searches(1).state(), v1::GRID_SEARCH_SUCCEEDED);
  EXPECT_GE(list.searches(1).jobs_requeued(), list.searches(1).jobs_total());

  AddWorker();
  std::vector<v1::GridSearchInfo> events = Watch(interrupted.id());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state(), v1::GRID_SEARCH_SUCCEEDED) << events.back().error();
  v1::GridSearchResult resumed;
  ASSERT_TRUE(Result(interrupted.id(), &resumed).ok());
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  ExpectSameResults(resumed, Local(slow, std::make_shared<const Matrix>(digits->features),
                                   digits->targets));

  // Both answer the same after one more restart.
  for (auto& w : workers_) w->Shutdown();
  StartCoordinatorOnDir();
  v1::GridSearchResult third;
  ASSERT_TRUE(Result(done_id, &third).ok());
  EXPECT_EQ(third.SerializeAsString(), finished.SerializeAsString());
  ASSERT_TRUE(Result(interrupted.id(), &third).ok());
  EXPECT_EQ(third.SerializeAsString(), resumed.SerializeAsString());

  // One flipped bit: the record is quarantined, the search unknown, the other one intact.
  coordinator_->Shutdown();
  coordinator_.reset();
  const std::string path = dir_ + "/coordinator/grid_searches/" + done_id;
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    bytes = ss.str();
  }
  bytes[bytes.size() - 10] ^= 0x04;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  StartCoordinatorOnDir();
  EXPECT_EQ(Result(done_id, &third).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Result(interrupted.id(), &third).ok());
  EXPECT_EQ(third.SerializeAsString(), resumed.SerializeAsString());
  EXPECT_FALSE(std::filesystem::exists(path));
  bool quarantined = false;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/coordinator/quarantine")) {
    quarantined |= e.path().filename().string().rfind(done_id, 0) == 0;
  }
  EXPECT_TRUE(quarantined);
}

// Only the last max_finished finished searches are kept, on disk too.
TEST_F(GridSearchClusterTest, RetentionDeletesTheFilesOfForgottenSearches) {
  dir_ = TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  StartCoordinatorOnDir(/*max_finished=*/1);
  AddWorker();
  WaitAlive(1);
  UploadDigits();
  const std::string first = RunToEnd(SmallRequest()).info().id();
  const std::string second = RunToEnd(SmallRequest()).info().id();
  // The search is seen finished just before the older one is forgotten.
  for (int i = 0; i < 100 && std::filesystem::exists(dir_ + "/coordinator/grid_searches/" + first);
       ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/coordinator/grid_searches/" + first));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/coordinator/grid_searches/" + second));
  for (auto& w : workers_) w->Shutdown();
  StartCoordinatorOnDir(1);
  v1::ListGridSearchesResponse list = List(stub_.get());
  ASSERT_EQ(list.searches_size(), 1);
  EXPECT_EQ(list.searches(0).id(), second);
}

}  // namespace
}  // namespace knncluster
