// The coordinator end to end in one process: a CoordinatorServer whose workers are fake Worker
// services (fake_worker_testing.h), driven through a real Coordinator stub.
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/fake_worker_testing.h"
#include "core/datasets/dataset.h"
#include "core/estimators/kneighbors_classifier.h"
#include "core/estimators/kneighbors_regressor.h"
#include "core/estimators/model_io.h"
#include "core/estimators/outlier_detector.h"
#include "core/model_selection/split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "knncluster/v1/coordinator.grpc.pb.h"
#include "rpc/convert.h"

namespace knncluster::coordinator {
namespace {

using ::testing::HasSubstr;
using testing::FakeWorker;

std::string TempDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/coord-", name, "-", getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
}

class CoordinatorTest : public ::testing::Test {
 protected:
  void StartCluster(int n_workers) {
    CoordinatorOptions o;
    o.data_dir = TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    o.heartbeat_interval_ms = 100;
    o.threads = 2;
    for (int i = 0; i < n_workers; ++i) {
      workers_.push_back(std::make_unique<FakeWorker>());
      o.workers.push_back(workers_.back()->address());
    }
    server_ = std::make_unique<CoordinatorServer>(o);
    ASSERT_TRUE(server_->Start().ok());
    stub_ = v1::Coordinator::NewStub(grpc::CreateChannel(server_->bound_address(),
                                                         grpc::InsecureChannelCredentials()));
    // Static workers are alive once the liveness loop has probed them.
    for (int tries = 0; tries < 100; ++tries) {
      v1::ClusterStatus status = ClusterStatus();
      int alive = 0;
      for (const auto& w : status.workers()) alive += w.state() == v1::WORKER_ALIVE;
      if (alive == n_workers) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    FAIL() << "workers did not come alive";
  }

  v1::ClusterStatus ClusterStatus() {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::ClusterStatus status;
    EXPECT_TRUE(stub_->GetClusterStatus(&ctx, {}, &status).ok());
    return status;
  }

  grpc::Status Upload(const std::string& name, const Matrix& X, const std::vector<double>& y,
                      size_t chunk_rows = 100) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::DatasetInfo info;
    auto writer = stub_->UploadDataset(&ctx, &info);
    v1::UploadDatasetRequest req;
    req.mutable_header()->set_name(name);
    req.mutable_header()->set_cols(X.cols());
    req.mutable_header()->set_labels(y.empty() ? v1::LABELS_NONE : v1::LABELS_NUMERIC);
    writer->Write(req);
    for (size_t b = 0; b < X.rows(); b += chunk_rows) {
      const size_t e = std::min(X.rows(), b + chunk_rows);
      v1::UploadDatasetRequest c;
      rpc::ToProto(X.view().Slice(b, e), c.mutable_chunk()->mutable_rows());
      for (size_t i = b; i < e && !y.empty(); ++i) c.mutable_chunk()->add_labels(y[i]);
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Fit(const std::string& model, const std::string& dataset, v1::Task task,
                   const v1::NeighborsParams& params, v1::ModelInfo* info = nullptr) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::FitRequest req;
    req.set_model(model);
    req.set_dataset(dataset);
    req.set_task(task);
    *req.mutable_params() = params;
    req.set_replace(true);
    v1::ModelInfo local;
    return stub_->Fit(&ctx, req, info != nullptr ? info : &local);
  }

  grpc::Status KNeighbors(const std::string& model, const Matrix& q, std::optional<int> k,
                          v1::KNeighborsResponse* resp, bool compact_indices = false) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::KNeighborsRequest req;
    req.set_model(model);
    rpc::ToProto(q, req.mutable_queries()->mutable_matrix());
    if (k) req.set_k(*k);
    req.set_compact_indices(compact_indices);
    return stub_->KNeighbors(&ctx, req, resp);
  }

  std::vector<std::unique_ptr<FakeWorker>> workers_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

TEST_F(CoordinatorTest, NoLiveWorkersIsUnavailable) {
  StartCluster(0);
  ASSERT_TRUE(Upload("d", Matrix(3, 2), {0, 1, 0}).ok());
  v1::NeighborsParams params;
  params.set_n_neighbors(1);
  grpc::Status st = Fit("m", "d", v1::TASK_CLASSIFIER, params);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(st.error_message(), HasSubstr("no live workers"));
}

// Regression (fuzz_requests): ImportModel stored the file's training rows as "<name>.data" before
// anything checked the file's parameters, so a model file with n_neighbors 0 was imported as a
// model no query could use, and one with p 0.5 failed only after the dataset was stored.
TEST_F(CoordinatorTest, ImportRefusesBadParametersBeforeStoringAnything) {
  StartCluster(1);
  auto import = [&](const Model& m) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::ModelInfo info;
    auto writer = stub_->ImportModel(&ctx, &info);
    v1::ImportModelRequest req;
    req.set_model("bad");
    writer->Write(req);
    req.set_data(SerializeModel(m));
    writer->Write(req);
    writer->WritesDone();
    return writer->Finish();
  };
  Model good;
  good.X = Matrix(4, 2, {0, 0, 1, 0, 0, 1, 1, 1});
  good.y = {0, 1, 1, 0};
  good.params.n_neighbors = 3;
  Model zero_k = good;
  zero_k.params.n_neighbors = 0;
  Model bad_p = good;
  bad_p.params.p = 0.5;
  Model big_k = good;
  big_k.params.n_neighbors = 5;
  Model outlier = good;
  outlier.task = Model::Task::kOutlier;
  outlier.y.clear();
  outlier.contamination = 0.9;
  const std::vector<std::pair<const Model*, std::string>> cases = {
      {&zero_k, "data: the model file's n_neighbors: must be >= 1, got 0"},
      {&bad_p, "data: the model file's p"},
      {&big_k, "data: the model file's n_neighbors 5 exceeds its 4 training rows"},
      {&outlier, "data: the model file's contamination: must be in (0, 0.5], got 0.9"}};
  for (const auto& [model, message] : cases) {
    const grpc::Status st = import(*model);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << message;
    EXPECT_THAT(st.error_message(), HasSubstr(message));
    const v1::ClusterStatus status = ClusterStatus();
    EXPECT_EQ(status.datasets_size(), 0) << message;  // no "bad.data" left behind
    EXPECT_EQ(status.models_size(), 0) << message;
  }
  ASSERT_TRUE(import(good).ok());
  EXPECT_EQ(ClusterStatus().models_size(), 1);
}

TEST_F(CoordinatorTest, DigitsTutorialEqualsSingleProcess) {
  StartCluster(3);
  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok());
  ASSERT_TRUE(Upload("digits", digits->features, digits->targets).ok());

  grpc::ClientContext sctx;
  SetDeadline(&sctx);
  v1::SplitDatasetRequest split;
  split.set_dataset("digits");
  split.set_test_fraction(0.2);
  split.set_random_state(1337);
  split.set_return_indices(true);
  v1::SplitDatasetResponse parts;
  ASSERT_TRUE(stub_->SplitDataset(&sctx, split, &parts).ok());
  auto tts = TrainTestSplit(1797, TestSize::Fraction(0.2), 1337u);
  ASSERT_TRUE(tts.ok());
  ASSERT_EQ(std::vector<int64_t>(parts.train_indices().begin(), parts.train_indices().end()),
            tts->train);
  auto X_train = std::make_shared<const Matrix>(Matrix::Gather(digits->features, tts->train));
  const Matrix X_test = Matrix::Gather(digits->features, tts->test);
  std::vector<double> y_train, y_test;
  for (int64_t i : tts->train) y_train.push_back(digits->targets[i]);
  for (int64_t i : tts->test) y_test.push_back(digits->targets[i]);

  for (v1::Weights w : {v1::WEIGHTS_UNIFORM, v1::WEIGHTS_DISTANCE}) {
    v1::NeighborsParams params;
    params.set_n_neighbors(5);
    params.set_weights(w);
    params.set_algorithm(v1::ALGORITHM_KD_TREE);
    ASSERT_TRUE(Fit("knn", "digits-train", v1::TASK_CLASSIFIER, params).ok());
    KNeighborsClassifier local(*rpc::FromProto(params, "params"));
    ASSERT_TRUE(local.Fit(X_train, y_train).ok());

    grpc::ClientContext c1;
    SetDeadline(&c1);
    v1::ScoreRequest sreq;
    sreq.set_model("knn");
    sreq.mutable_queries()->set_dataset("digits-test");
    v1::ScoreResponse score;
    ASSERT_TRUE(stub_->Score(&c1, sreq, &score).ok());
    EXPECT_EQ(score.metric(), "accuracy");
    EXPECT_EQ(score.score(), *local.Score(X_test, y_test, nullptr));
    EXPECT_EQ(score.n_samples(), X_test.rows());

    grpc::ClientContext c2;
    SetDeadline(&c2);
    v1::PredictProbaRequest preq;
    preq.set_model("knn");
    rpc::ToProto(X_test, preq.mutable_queries()->mutable_matrix());
    v1::PredictProbaResponse proba;
    ASSERT_TRUE(stub_->PredictProba(&c2, preq, &proba).ok());
    const Matrix want = *local.PredictProba(X_test, nullptr);
    EXPECT_EQ(std::vector<double>(proba.probabilities().values().begin(),
                                  proba.probabilities().values().end()),
              want.values());

    v1::KNeighborsResponse nb;
    ASSERT_TRUE(KNeighbors("knn", X_test, 7, &nb).ok());
    const KNeighborsResult want_nb = *local.KNeighbors(X_test, 7, nullptr);
    EXPECT_EQ(std::vector<int64_t>(nb.neighbors().indices().begin(), nb.neighbors().indices().end()),
              want_nb.indices);
    EXPECT_EQ(std::vector<double>(nb.neighbors().distances().begin(),
                                  nb.neighbors().distances().end()),
              want_nb.distances);
    // Asked for compact indices: the same answer, its indices in indices32.
    v1::KNeighborsResponse compact;
    ASSERT_TRUE(KNeighbors("knn", X_test, 7, &compact, /*compact_indices=*/true).ok());
    EXPECT_EQ(compact.neighbors().indices_size(), 0);
    EXPECT_EQ(std::vector<int64_t>(compact.neighbors().indices32().begin(),
                                   compact.neighbors().indices32().end()),
              want_nb.indices);
    EXPECT_EQ(std::vector<double>(compact.neighbors().distances().begin(),
                                  compact.neighbors().distances().end()),
              want_nb.distances);
  }

  // Export: the core's model file of the fitted classifier; import it back as another model.
  grpc::ClientContext ectx;
  SetDeadline(&ectx);
  v1::ExportModelRequest ereq;
  ereq.set_model("knn");
  auto reader = stub_->ExportModel(&ectx, ereq);
  std::string bytes;
  v1::ModelChunk chunk;
  while (reader->Read(&chunk)) bytes += chunk.data();
  ASSERT_TRUE(reader->Finish().ok());
  auto model = ParseModel(bytes, "export");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->X.values(), X_train->values());
  EXPECT_EQ(model->y, y_train);

  grpc::ClientContext ictx;
  SetDeadline(&ictx);
  v1::ModelInfo imported;
  auto iw = stub_->ImportModel(&ictx, &imported);
  v1::ImportModelRequest ireq;
  ireq.set_model("knn2");
  iw->Write(ireq);
  ireq.set_data(bytes);
  iw->Write(ireq);
  iw->WritesDone();
  ASSERT_TRUE(iw->Finish().ok());
  EXPECT_EQ(imported.dataset(), "knn2.data");
  EXPECT_EQ(imported.rows(), X_train->rows());

  // Delete: shards dropped from the workers.
  for (const char* m : {"knn", "knn2"}) {
    grpc::ClientContext dctx;
    SetDeadline(&dctx);
    v1::DeleteModelRequest dreq;
    dreq.set_model(m);
    v1::DeleteModelResponse dresp;
    ASSERT_TRUE(stub_->DeleteModel(&dctx, dreq, &dresp).ok());
  }
  for (auto& w : workers_) EXPECT_EQ(w->service().num_shards(), 0u);
}

TEST_F(CoordinatorTest, RegressorAndOutlierEqualSingleProcess) {
  StartCluster(2);
  std::mt19937 gen(3);
  std::uniform_int_distribution<int> d(0, 9);
  Matrix X(200, 3);
  std::vector<double> y(200);
  for (size_t i = 0; i < 200; ++i) {
    for (size_t j = 0; j < 3; ++j) X.at(i, j) = d(gen);
    y[i] = d(gen) * 0.25;
  }
  ASSERT_TRUE(Upload("r", X, y, 33).ok());
  Matrix Q(20, 3);
  for (size_t i = 0; i < 20; ++i)
    for (size_t j = 0; j < 3; ++j) Q.at(i, j) = d(gen) + 0.5;
  auto shared = std::make_shared<const Matrix>(X);

  v1::NeighborsParams params;
  params.set_n_neighbors(4);
  params.set_weights(v1::WEIGHTS_DISTANCE);
  params.set_p(3);
  params.set_algorithm(v1::ALGORITHM_BALL_TREE);
  ASSERT_TRUE(Fit("reg", "r", v1::TASK_REGRESSOR, params).ok());
  KNeighborsRegressor reg(*rpc::FromProto(params, "params"));
  ASSERT_TRUE(reg.Fit(shared, y).ok());
  grpc::ClientContext c1;
  SetDeadline(&c1);
  v1::PredictRequest preq;
  preq.set_model("reg");
  rpc::ToProto(Q, preq.mutable_queries()->mutable_matrix());
  v1::PredictResponse pred;
  ASSERT_TRUE(stub_->Predict(&c1, preq, &pred).ok());
  EXPECT_EQ(std::vector<double>(pred.predictions().begin(), pred.predictions().end()),
            *reg.Predict(Q, nullptr));

  v1::NeighborsParams oparams;
  oparams.set_n_neighbors(3);
  v1::ModelInfo info;
  ASSERT_TRUE(Fit("out", "r", v1::TASK_OUTLIER, oparams, &info).ok());
  OutlierParams op;
  op.neighbors.n_neighbors = 3;
  OutlierDetector det(op);
  ASSERT_TRUE(det.Fit(shared, nullptr).ok());
  ASSERT_TRUE(info.has_threshold());
  EXPECT_EQ(info.threshold(), det.threshold());
  grpc::ClientContext c2;
  SetDeadline(&c2);
  preq.set_model("out");
  ASSERT_TRUE(stub_->Predict(&c2, preq, &pred).ok());
  const std::vector<int> want = *det.Predict(Q, nullptr);
  ASSERT_EQ(pred.predictions_size(), static_cast<int>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(pred.predictions(i), want[i]);
  EXPECT_EQ(std::vector<double>(pred.scores().begin(), pred.scores().end()),
            *det.ScoreSamples(Q, nullptr));
}

TEST_F(CoordinatorTest, BadInputNamesTheField) {
  StartCluster(1);
  Matrix X(10, 2);
  for (size_t i = 0; i < 10; ++i) X.at(i, 0) = i;
  ASSERT_TRUE(Upload("d", X, {0, 1, 0, 1, 0, 1, 0, 1, 0, 1}).ok());
  ASSERT_TRUE(Upload("u", X, {}).ok());
  ASSERT_TRUE(Fit("m", "d", v1::TASK_CLASSIFIER, {}).ok());

  EXPECT_EQ(Fit("m2", "nope", v1::TASK_CLASSIFIER, {}).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::NeighborsParams bad_p;
  bad_p.set_p(0.5);
  grpc::Status st = Fit("m2", "d", v1::TASK_CLASSIFIER, bad_p);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("params.p"));
  v1::NeighborsParams big_k;
  big_k.set_n_neighbors(11);
  st = Fit("m2", "d", v1::TASK_CLASSIFIER, big_k);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("n_neighbors"));
  st = Fit("m2", "u", v1::TASK_CLASSIFIER, {});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  v1::KNeighborsResponse nb;
  EXPECT_EQ(KNeighbors("nope", X, 1, &nb).error_code(), grpc::StatusCode::NOT_FOUND);
  st = KNeighbors("m", X, 0, &nb);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("k:"));
  st = KNeighbors("m", X, 11, &nb);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("k:"));
  st = KNeighbors("m", Matrix(2, 3), 1, &nb);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("queries: expected 2 features, got 3"));
  Matrix nan(1, 2);
  nan.at(0, 1) = std::nan("");
  st = KNeighbors("m", nan, 1, &nb);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("queries"));

  grpc::ClientContext c1;
  SetDeadline(&c1);
  v1::ScoreRequest sreq;
  sreq.set_model("m");
  sreq.mutable_queries()->set_dataset("u");
  v1::ScoreResponse score;
  EXPECT_EQ(stub_->Score(&c1, sreq, &score).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  grpc::ClientContext c2;
  SetDeadline(&c2);
  v1::SplitDatasetRequest split;
  split.set_dataset("d");
  split.set_test_count(10);
  v1::SplitDatasetResponse parts;
  st = stub_->SplitDataset(&c2, split, &parts);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(Upload("empty", Matrix(0, 2), {}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // The model's training set cannot be deleted under it.
  grpc::ClientContext c3;
  SetDeadline(&c3);
  v1::DeleteDatasetRequest del;
  del.set_name("d");
  v1::DeleteDatasetResponse dresp;
  EXPECT_EQ(stub_->DeleteDataset(&c3, del, &dresp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(CoordinatorTest, DeadWorkersShardsAreReSent) {
  StartCluster(2);
  Matrix X(50, 2);
  for (size_t i = 0; i < 50; ++i) X.at(i, 0) = i;
  ASSERT_TRUE(Upload("d", X, {}).ok());
  v1::NeighborsParams p;
  p.set_n_neighbors(2);
  v1::ModelInfo info;
  ASSERT_TRUE(Fit("m", "d", v1::TASK_OUTLIER, p, &info).ok());
  ASSERT_EQ(info.shards_size(), 2);
  workers_[1]->Stop();
  // Within a few intervals the worker is dead and its shard lives on worker 0.
  for (int tries = 0; tries < 100; ++tries) {
    v1::KNeighborsResponse nb;
    if (KNeighbors("m", X, 3, &nb).ok()) {
      EXPECT_EQ(workers_[0]->service().num_shards(), 2u);
      return;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  FAIL() << "the shard was not re-sent";
}

}  // namespace
}  // namespace knncluster::coordinator
