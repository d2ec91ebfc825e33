// The public client (<knncluster/client.h>) against an in-test coordinator: the bearer token
// arrives as metadata; TLS (server name override, mutual TLS) with a certificate made at test
// time; bad options are refused before anything is sent; and the wire <-> public conversions
// (uploads in chunks with string labels, the cluster status and its JSON as knnctl prints it).
#include "knncluster/client.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/cpp/core_convert.h"
#include "client/cpp/knn_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "knncluster/v1/coordinator.grpc.pb.h"
#include "rpc/convert.h"

namespace knncluster::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The status every GetClusterStatus returns; its first worker's id is the call's
// "authorization" metadata ("<none>" without one).
v1::ClusterStatus CannedStatus() {
  v1::ClusterStatus s;
  v1::WorkerInfo* w = s.add_workers();
  w->set_address("127.0.0.1:1");
  w->set_state(v1::WORKER_DEAD);
  w->set_millis_since_heartbeat(1234);
  w->add_shard_ids("m-0");
  w->set_rows(7);
  w->set_rss_bytes(uint64_t{5} << 30);
  w->set_cores(4);
  w->set_memory_budget_bytes(uint64_t{1} << 40);
  v1::DatasetInfo* d = s.add_datasets();
  d->set_name("iris.train");
  d->set_rows(120);
  d->set_cols(4);
  d->set_labels(v1::LABELS_STRING);
  d->add_class_names("setosa");
  d->add_class_names("virginica");
  d->set_view_of("iris");
  d->add_feature_names("sepal_length");
  v1::ModelInfo* m = s.add_models();
  m->set_name("m");
  m->set_task(v1::TASK_OUTLIER);
  ::knncluster::NeighborsParams params;
  params.n_neighbors = 3;
  params.weights = ::knncluster::Weights::kDistance;
  params.algorithm = ::knncluster::Algorithm::kBallTree;
  params.p = std::numeric_limits<double>::infinity();
  rpc::ToProto(params, m->mutable_params());
  m->set_dataset("iris.train");
  m->set_rows(120);
  m->set_cols(4);
  v1::ShardPlacement* shard = m->add_shards();
  shard->set_shard_id("m-0");
  shard->set_worker_id("w");
  shard->set_rows(120);
  shard->set_first_global_index(-1);
  m->set_threshold(0.25);
  return s;
}

class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  grpc::Status GetClusterStatus(grpc::ServerContext* context, const v1::GetClusterStatusRequest*,
                                v1::ClusterStatus* response) override {
    *response = CannedStatus();
    const auto& md = context->client_metadata();
    auto it = md.find("authorization");
    response->mutable_workers(0)->set_worker_id(
        it == md.end() ? "<none>" : std::string(it->second.data(), it->second.size()));
    return grpc::Status::OK;
  }

  grpc::Status UploadDataset(grpc::ServerContext*,
                             grpc::ServerReader<v1::UploadDatasetRequest>* reader,
                             v1::DatasetInfo* response) override {
    absl::MutexLock lock(&mu_);
    uploads_.clear();
    v1::UploadDatasetRequest part;
    while (reader->Read(&part)) uploads_.push_back(part);
    response->set_name(uploads_.empty() ? "" : uploads_[0].header().name());
    response->set_labels(v1::LABELS_STRING);
    return grpc::Status::OK;
  }

  grpc::Status Score(grpc::ServerContext*, const v1::ScoreRequest* request,
                     v1::ScoreResponse* response) override {
    // Echoes the shape of what was sent: inline rows x cols, labels.
    response->set_score(static_cast<double>(request->queries().matrix().rows()));
    response->set_metric(
        absl::StrCat(request->queries().matrix().cols(), "/", request->queries().dataset()));
    response->set_n_samples(static_cast<uint64_t>(request->labels_size()));
    return grpc::Status::OK;
  }

  std::vector<v1::UploadDatasetRequest> uploads() {
    absl::MutexLock lock(&mu_);
    return uploads_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::UploadDatasetRequest> uploads_ ABSL_GUARDED_BY(mu_);
};

std::string BioString(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

// A self-signed certificate (P-256, valid for a day) for the DNS name "knn.test" only, not
// 127.0.0.1, and its key, made with libcrypto (no openssl command needed); empty on failure.
std::pair<std::string, std::string> MakeCertAndKey() {
  std::pair<std::string, std::string> out;
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  BIO* cert_bio = BIO_new(BIO_s_mem());
  BIO* key_bio = BIO_new(BIO_s_mem());
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* san = nullptr;
  X509_NAME* name = X509_get_subject_name(x);
  const bool ok =
      key != nullptr && x != nullptr && X509_set_version(x, 2) == 1 &&
      ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1 &&
      X509_gmtime_adj(X509_getm_notBefore(x), -60) != nullptr &&
      X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600) != nullptr &&
      X509_set_pubkey(x, key) == 1 &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("knn.test"), -1, -1,
                                 0) == 1 &&
      X509_set_issuer_name(x, name) == 1 &&
      (san = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "DNS:knn.test")) != nullptr &&
      X509_add_ext(x, san, -1) == 1 && X509_sign(x, key, EVP_sha256()) > 0 &&
      PEM_write_bio_X509(cert_bio, x) == 1 &&
      PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  if (ok) out = {BioString(cert_bio), BioString(key_bio)};
  X509_EXTENSION_free(san);
  BIO_free(key_bio);
  BIO_free(cert_bio);
  X509_free(x);
  EVP_PKEY_free(key);
  return out;
}

// The certificate and key, also as files (ctest runs tests as parallel processes, hence the
// process id in their names), made once per test process and removed at exit.
struct TestCert {
  TestCert() {
    std::tie(cert, key) = MakeCertAndKey();
    const std::string base = absl::StrCat(::testing::TempDir(), "/client_test_", getpid());
    cert_file = base + "_cert.pem";
    key_file = base + "_key.pem";
    std::ofstream(cert_file, std::ios::binary) << cert;
    std::ofstream(key_file, std::ios::binary) << key;
  }
  ~TestCert() {
    std::remove(cert_file.c_str());
    std::remove(key_file.c_str());
  }
  TestCert(const TestCert&) = delete;
  TestCert& operator=(const TestCert&) = delete;

  std::string cert, key, cert_file, key_file;
};
const TestCert& Cert() {
  static const TestCert cert;
  return cert;
}

class ClientTest : public ::testing::Test {
 protected:
  // Serves the fake on 127.0.0.1: plaintext, TLS, or TLS requiring a client certificate.
  enum class Security { kPlaintext, kTls, kMutualTls };
  void Serve(Security security) {
    std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
    if (security != Security::kPlaintext) {
      ASSERT_FALSE(Cert().cert.empty()) << "libcrypto could not make a test certificate";
      grpc::SslServerCredentialsOptions ssl(
          security == Security::kMutualTls
              ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
              : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
      ssl.pem_key_cert_pairs.push_back({Cert().key, Cert().cert});
      if (security == Security::kMutualTls) ssl.pem_root_certs = Cert().cert;
      creds = grpc::SslServerCredentials(ssl);
    }
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", creds, &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  ClientOptions Options() const {
    ClientOptions o;
    o.address = address_;
    o.deadline = std::chrono::milliseconds(5'000);
    return o;
  }
  static TlsOptions Tls() {
    TlsOptions tls;
    tls.root_ca_file = Cert().cert_file;
    tls.server_name = "knn.test";
    return tls;
  }
  // The authorization metadata the server saw, or the call's error.
  static absl::StatusOr<std::string> SeenToken(Client& client) {
    auto status = client.GetClusterStatus();
    if (!status.ok()) return status.status();
    return status->workers.at(0).worker_id;
  }

  FakeCoordinator service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

TEST_F(ClientTest, TokenTravelsAsBearerMetadataOnEveryCall) {
  Serve(Security::kPlaintext);
  auto none = Client::Create(Options());
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*SeenToken(**none), "<none>");

  ClientOptions options = Options();
  options.token = "s3cr3t.t0ken-_~+/=";
  auto client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*SeenToken(**client), "Bearer s3cr3t.t0ken-_~+/=");
  EXPECT_EQ(*SeenToken(**client), "Bearer s3cr3t.t0ken-_~+/=");  // every call, not the first
}

TEST_F(ClientTest, TlsWithAServerNameOverride) {
  Serve(Security::kTls);
  ClientOptions options = Options();
  options.tls = Tls();
  options.token = "tok";
  auto client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*SeenToken(**client), "Bearer tok");

  // The same CA given by contents.
  options.tls->root_ca_file.clear();
  options.tls->root_ca_pem = Cert().cert;
  client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*SeenToken(**client), "Bearer tok");

  // The certificate names knn.test, not 127.0.0.1: without the override the handshake fails.
  options.tls->server_name.clear();
  client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(SeenToken(**client).status().code(), absl::StatusCode::kUnavailable);

  // gRPC's default roots do not trust a self-signed certificate.
  options.tls = TlsOptions();
  options.tls->server_name = "knn.test";
  client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(SeenToken(**client).status().code(), absl::StatusCode::kUnavailable);

  // Nor does a plaintext client get an answer from a TLS server.
  client = Client::Create(Options());
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(SeenToken(**client).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ClientTest, MutualTls) {
  Serve(Security::kMutualTls);
  ClientOptions options = Options();
  options.tls = Tls();
  auto client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(SeenToken(**client).status().code(), absl::StatusCode::kUnavailable);

  options.tls->cert_file = Cert().cert_file;
  options.tls->key_pem = Cert().key;
  client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(*SeenToken(**client), "<none>");
}

TEST_F(ClientTest, BadOptionsAreRefusedNamingTheField) {
  const auto refused = [](const ClientOptions& options) {
    auto client = Client::Create(options);
    return client.ok() ? absl::OkStatus() : client.status();
  };
  ClientOptions options;
  options.address = "127.0.0.1:1";
  options.tls = TlsOptions();
  options.tls->root_ca_file = "/nonexistent/ca.pem";
  absl::Status s = refused(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tls.root_ca_file: /nonexistent/ca.pem: cannot read"));

  options.tls->root_ca_pem = "x";
  s = refused(options);
  EXPECT_THAT(s.message(), HasSubstr("tls.root_ca_pem and tls.root_ca_file: give one"));

  options.tls->root_ca_file.clear();
  s = refused(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tls.root_ca_pem: not PEM"));

  options.tls = TlsOptions();
  options.tls->cert_pem = "-----BEGIN CERTIFICATE-----\n";
  s = refused(options);
  EXPECT_THAT(s.message(), HasSubstr("a client certificate and its key go together"));

  options.tls.reset();
  options.token = "two words";
  s = refused(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("token:"));

  // The wire-level client's infallible Create: every call returns the options' error.
  auto wire = KnnClient::Create(options);
  auto status = wire->GetClusterStatus();
  EXPECT_EQ(status.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.status().message(), HasSubstr("token:"));
}

TEST_F(ClientTest, ClusterStatusAndItsJsonAreTheServers) {
  Serve(Security::kPlaintext);
  auto client = Client::Create(Options());
  ASSERT_TRUE(client.ok());
  auto status = (*client)->GetClusterStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_EQ(status->workers.size(), 1u);
  EXPECT_EQ(status->workers[0].state, WorkerState::kDead);
  EXPECT_EQ(status->workers[0].rss_bytes, uint64_t{5} << 30);
  ASSERT_EQ(status->datasets.size(), 1u);
  EXPECT_EQ(status->datasets[0].labels, Labels::kString);
  EXPECT_THAT(status->datasets[0].class_names, ElementsAre("setosa", "virginica"));
  ASSERT_EQ(status->models.size(), 1u);
  const ModelInfo& m = status->models[0];
  EXPECT_EQ(m.task, Task::kOutlier);
  EXPECT_EQ(m.params.n_neighbors, 3);
  EXPECT_EQ(m.params.weights, Weights::kDistance);
  EXPECT_EQ(m.params.algorithm, Algorithm::kBallTree);
  EXPECT_TRUE(std::isinf(m.params.p));
  EXPECT_EQ(m.threshold, 0.25);
  ASSERT_EQ(m.shards.size(), 1u);
  EXPECT_EQ(m.shards[0].first_global_index, -1);

  // knnctl --json status prints this: byte for byte what protobuf prints of the server's reply.
  v1::ClusterStatus want = CannedStatus();
  want.mutable_workers(0)->set_worker_id("<none>");
  google::protobuf::util::JsonPrintOptions print;
  print.always_print_primitive_fields = true;
  print.preserve_proto_field_names = true;
  std::string want_json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(want, &want_json, print).ok());
  EXPECT_EQ(ClusterStatusToJson(*status), want_json);
}

TEST_F(ClientTest, UploadSendsRowChunksWithStringLabels) {
  Serve(Security::kPlaintext);
  ClientOptions options = Options();
  options.chunk_bytes = 2 * 3 * sizeof(double);  // two rows of three per chunk
  auto client = Client::Create(options);
  ASSERT_TRUE(client.ok());
  Dataset d;
  d.rows = 5;
  d.cols = 3;
  for (int i = 0; i < 15; ++i) d.features.push_back(i);
  d.targets = {1, 0, 1, 1, 0};
  d.class_names = {"no", "yes"};
  d.feature_names = {"a", "b", "c"};
  auto info = (*client)->UploadDataset("five", d, /*replace=*/true);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name, "five");
  EXPECT_EQ(info->labels, Labels::kString);
  const auto parts = service_.uploads();
  ASSERT_EQ(parts.size(), 4u);  // header + 2 + 2 + 1 rows
  EXPECT_EQ(parts[0].header().cols(), 3u);
  EXPECT_EQ(parts[0].header().labels(), v1::LABELS_STRING);
  EXPECT_TRUE(parts[0].header().replace());
  EXPECT_THAT(parts[0].header().feature_names(), ElementsAre("a", "b", "c"));
  EXPECT_EQ(parts[1].chunk().rows().rows(), 2u);
  EXPECT_THAT(parts[1].chunk().string_labels(), ElementsAre("yes", "no"));
  EXPECT_THAT(parts[3].chunk().rows().values(), ElementsAre(12, 13, 14));
  EXPECT_THAT(parts[3].chunk().string_labels(), ElementsAre("no"));

  // Parts that disagree are refused before anything is sent.
  d.targets.pop_back();
  EXPECT_THAT((*client)->UploadDataset("five", d).status().message(),
              HasSubstr("data.targets: expected one per row (5), got 4"));
  d.targets = {1, 0, 1, 1, 2};
  EXPECT_THAT((*client)->UploadDataset("five", d).status().message(),
              HasSubstr("data.targets[4]: 2 is not a code into class_names"));
  d.features.pop_back();
  EXPECT_THAT((*client)->UploadDataset("five", d).status().message(),
              HasSubstr("data.features: 14 values do not make rows of 3 columns"));
}

TEST_F(ClientTest, QueriesInlineOrByName) {
  Serve(Security::kPlaintext);
  auto client = Client::Create(Options());
  ASSERT_TRUE(client.ok());
  const std::vector<double> rows = {1, 2, 3, 4, 5, 6};
  auto r = (*client)->Score("m", Queries::Inline(3, rows), std::vector<double>{0, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->score, 2);  // rows
  EXPECT_EQ(r->metric, "3/");
  EXPECT_EQ(r->n_samples, 2u);  // labels
  r = (*client)->Score("m", Queries::OfDataset("digits.test"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metric, "0/digits.test");

  EXPECT_THAT((*client)->Score("m", Queries::Inline(4, rows)).status().message(),
              HasSubstr("queries: 6 values do not make rows of 4 columns"));
  EXPECT_EQ((*client)->Score("m", Queries()).status().code(), absl::StatusCode::kInvalidArgument);
  Queries both = Queries::Inline(3, rows);
  both.dataset = "digits";
  EXPECT_THAT((*client)->Score("m", both).status().message(),
              HasSubstr("a dataset name or inline rows, not both"));
}

TEST(ClientNamesTest, ScikitLearnNames) {
  EXPECT_EQ(TaskName(Task::kRegressor), "regressor");
  EXPECT_EQ(AlgorithmName(Algorithm::kKdTree), "kd_tree");
  EXPECT_EQ(WeightsName(Weights::kDistance), "distance");
  EXPECT_EQ(GridSearchModeName(GridSearchMode::kSharded), "sharded");
  EXPECT_EQ(GridSearchStateName(GridSearchState::kRefitting), "REFITTING");
}

TEST(CoreConvertTest, RoundTrips) {
  ::knncluster::NeighborsParams p;
  p.n_neighbors = 7;
  p.weights = ::knncluster::Weights::kDistance;
  p.algorithm = ::knncluster::Algorithm::kBrute;
  p.leaf_size = 3;
  p.p = 1.5;
  const ::knncluster::NeighborsParams back = ToCore(FromCore(p));
  EXPECT_EQ(back.n_neighbors, 7);
  EXPECT_EQ(back.weights, ::knncluster::Weights::kDistance);
  EXPECT_EQ(back.algorithm, ::knncluster::Algorithm::kBrute);
  EXPECT_EQ(back.leaf_size, 3);
  EXPECT_EQ(back.p, 1.5);
  for (Task t : {Task::kClassifier, Task::kRegressor, Task::kOutlier}) {
    EXPECT_EQ(FromCore(ToCore(t)), t);
  }

  ::knncluster::CvResults cv;
  cv.params = {p, p};
  cv.param_keys = {{"n_neighbors"}, {"n_neighbors"}};
  cv.split_test_scores = {{0.5, 1}, {1, 1}};
  cv.mean_test_score = {0.75, 1};
  cv.std_test_score = {0.25, 0};
  cv.rank_test_score = {2, 1};
  const ::knncluster::CvResults cv2 = ToCore(FromCore(cv), 1, 1.0, FromCore(p));
  EXPECT_EQ(cv2.split_test_scores, cv.split_test_scores);
  EXPECT_EQ(cv2.rank_test_score, cv.rank_test_score);
  EXPECT_EQ(cv2.param_keys, cv.param_keys);
  EXPECT_EQ(cv2.best_index, 1u);
  EXPECT_EQ(cv2.best_params.n_neighbors, 7);

  auto digits = LoadDigits();
  ASSERT_TRUE(digits.ok()) << digits.status();
  EXPECT_EQ(digits->rows, 1797u);
  EXPECT_EQ(digits->cols, 64u);
  EXPECT_EQ(digits->features.size(), 1797u * 64);
  EXPECT_EQ(digits->targets.size(), 1797u);
  EXPECT_EQ(digits->feature_names.front(), "pixel_0_0");
}

}  // namespace
}  // namespace knncluster::client
