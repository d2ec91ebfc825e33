#include "rpc/credentials.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster::rpc {
namespace {

using ::testing::HasSubstr;

TEST(IsLoopbackHostTest, LoopbackAndNot) {
  for (const char* host :
       {"127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]", "unix:/tmp/knn.sock"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "[::]", "::", "", "10.0.0.1", "128.0.0.1", "127.0.0",
                           "127.0.0.256", "localhost.example.com", "example.com", "1127.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST(CheckSecurityOptionsTest, InsecureOnlyOnLoopbackUnlessAllowed) {
  SecurityOptions o;
  o.insecure = true;
  EXPECT_TRUE(CheckSecurityOptions(o, "127.0.0.1:0").ok());
  EXPECT_TRUE(CheckSecurityOptions(o, "localhost:5000").ok());
  EXPECT_TRUE(CheckSecurityOptions(o, "[::1]:5000").ok());
  for (const char* address : {"0.0.0.0:0", "[::]:5000", "10.1.2.3:7000", ":5000"}) {
    absl::Status s = CheckSecurityOptions(o, address);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(s.message(), HasSubstr("--allow-insecure-remote")) << address;
  }
  o.allow_insecure_remote = true;
  EXPECT_TRUE(CheckSecurityOptions(o, "0.0.0.0:0").ok());
}

TEST(CheckSecurityOptionsTest, NeitherTlsNorInsecureIsRefused) {
  SecurityOptions o;
  o.insecure = false;
  absl::Status s = CheckSecurityOptions(o, "127.0.0.1:0");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--tls-cert"));
  EXPECT_THAT(s.message(), HasSubstr("--insecure"));
}

TEST(CheckSecurityOptionsTest, TlsNeedsAllThreeFilesAndExcludesInsecure) {
  SecurityOptions o;
  o.insecure = false;
  o.cert_file = "c.pem";
  o.key_file = "k.pem";
  absl::Status s = CheckSecurityOptions(o, "0.0.0.0:0");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("missing --tls-ca"));
  o.ca_file = "ca.pem";
  EXPECT_TRUE(CheckSecurityOptions(o, "0.0.0.0:0").ok());
  o.insecure = true;
  EXPECT_EQ(CheckSecurityOptions(o, "127.0.0.1:0").code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoadTest, TokenFileAndPem) {
  const std::string dir = ::testing::TempDir();
  const std::string token_file = dir + "/credentials_test_token";
  std::ofstream(token_file) << "  s3cret-token\n";
  absl::StatusOr<std::string> token = LoadAuthToken(token_file);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "s3cret-token");
  EXPECT_EQ(*LoadAuthToken(""), "");
  std::ofstream(token_file) << "two words\n";
  EXPECT_EQ(LoadAuthToken(token_file).status().code(), absl::StatusCode::kInvalidArgument);
  std::ofstream(token_file) << "\n";
  EXPECT_EQ(LoadAuthToken(token_file).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(LoadAuthToken(dir + "/no-such-file").status().message(),
              HasSubstr("--auth-token-file"));
  std::remove(token_file.c_str());

  SecurityOptions o;
  o.cert_file = dir + "/no-such-cert.pem";
  o.key_file = o.cert_file;
  o.ca_file = o.cert_file;
  absl::Status s = LoadTlsMaterial(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("--tls-cert"));
}

TEST(ConstantTimeEqualsTest, Equality) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
}

}  // namespace
}  // namespace knncluster::rpc
