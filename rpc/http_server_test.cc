#include "rpc/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "rpc/metrics.h"
#include "rpc/ops_http.h"

namespace knncluster::rpc {
namespace {

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, n);
  return out;
}

// Sends `raw` on a new connection and returns the whole response.
std::string Exchange(int port, const std::string& raw) {
  const int fd = Connect(port);
  EXPECT_EQ(send(fd, raw.data(), raw.size(), MSG_NOSIGNAL), static_cast<ssize_t>(raw.size()));
  std::string out = ReadAll(fd);
  close(fd);
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics_.DeclareCounter("hits_total", "Hits.");
    metrics_.Increment("hits_total", {{"path", "/x"}}, 4);
    HttpServerOptions options;
    options.threads = 2;
    options.io_timeout = absl::Seconds(2);
    server_ = std::make_unique<HttpServer>(
        options, MakeOpsHandler(
                     &metrics_, [this] { return ready_ ? absl::OkStatus()
                                                       : absl::UnavailableError("loading"); },
                     [](const HttpRequest& r) -> std::optional<HttpResponse> {
                       if (r.path != "/echo") return std::nullopt;
                       HttpResponse out;
                       out.body = "query=" + r.query;
                       return out;
                     }));
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_GT(server_->port(), 0);
  }

  MetricsRegistry metrics_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, GetHealthReadyMetrics) {
  const int port = server_->port();
  std::string r = Exchange(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 200 OK\r\n")) << r;
  EXPECT_TRUE(absl::StrContains(r, "Content-Length: 3\r\n")) << r;
  EXPECT_TRUE(absl::EndsWith(r, "\r\n\r\nok\n")) << r;

  r = Exchange(port, "GET /readyz HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 503 Service Unavailable\r\n")) << r;
  EXPECT_TRUE(absl::StrContains(r, "not ready: loading")) << r;
  ready_ = true;
  r = Exchange(port, "GET /readyz HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 200 OK\r\n")) << r;

  r = Exchange(port, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::StrContains(r, "Content-Type: text/plain; version=0.0.4")) << r;
  EXPECT_TRUE(absl::EndsWith(r, "\r\n\r\n" + metrics_.Render())) << r;
  EXPECT_TRUE(absl::StrContains(r, "hits_total{path=\"/x\"} 4\n")) << r;

  r = Exchange(port, "GET /echo?a=1&b=2 HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::EndsWith(r, "query=a=1&b=2")) << r;
}

TEST_F(HttpServerTest, HeadHasHeadersButNoBody) {
  const std::string r = Exchange(server_->port(), "HEAD /healthz HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 200 OK\r\n")) << r;
  EXPECT_TRUE(absl::StrContains(r, "Content-Length: 3\r\n")) << r;
  EXPECT_TRUE(absl::EndsWith(r, "\r\n\r\n")) << r;
}

TEST_F(HttpServerTest, EveryOtherMethodIs405) {
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    const std::string r = Exchange(
        server_->port(),
        std::string(method) + " /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 405 Method Not Allowed\r\n")) << method << r;
    EXPECT_TRUE(absl::StrContains(r, "Allow: GET, HEAD\r\n")) << r;
  }
}

TEST_F(HttpServerTest, UnknownPathIs404AndMalformedIs400) {
  EXPECT_TRUE(absl::StartsWith(Exchange(server_->port(), "GET /nope HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 404 Not Found\r\n"));
  for (const char* raw : {"garbage\r\n\r\n", "GET\r\n\r\n", "GET nope HTTP/1.1\r\n\r\n",
                          "get /healthz HTTP/1.1\r\n\r\n",
                          "GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
                          "GET /healthz HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"}) {
    EXPECT_TRUE(absl::StartsWith(Exchange(server_->port(), raw), "HTTP/1.1 400 Bad Request\r\n"))
        << raw;
  }
  EXPECT_TRUE(absl::StartsWith(Exchange(server_->port(), "GET / SPDY/3\r\n\r\n"),
                               "HTTP/1.1 505"));
  const std::string huge = "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\n\r\n";
  EXPECT_TRUE(absl::StartsWith(Exchange(server_->port(), huge), "HTTP/1.1 413"));
}

TEST_F(HttpServerTest, SlowAndHalfRequestsDoNotBlockOthers) {
  // Both handler threads are taken by clients that send half a request and stall.
  const int slow1 = Connect(server_->port());
  const int slow2 = Connect(server_->port());
  ASSERT_GT(send(slow1, "GET /hea", 8, 0), 0);
  ASSERT_GT(send(slow2, "GET /metrics HTTP/1.1\r\nHost:", 29, 0), 0);
  const absl::Time start = absl::Now();
  // A third request is answered once a stalled one times out (io_timeout 2 s), not never.
  const std::string r = Exchange(server_->port(), "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(r, "HTTP/1.1 200 OK\r\n")) << r;
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  // The stalled ones got 408 and a closed connection.
  EXPECT_TRUE(absl::StartsWith(ReadAll(slow1), "HTTP/1.1 408"));
  EXPECT_TRUE(absl::StartsWith(ReadAll(slow2), "HTTP/1.1 408"));
  close(slow1);
  close(slow2);
  // One stalled client alone leaves the other thread free: answered at once.
  const int slow3 = Connect(server_->port());
  ASSERT_GT(send(slow3, "GET /", 5, 0), 0);
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time again = absl::Now();
  EXPECT_TRUE(absl::StartsWith(Exchange(server_->port(), "GET /healthz HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 200 OK\r\n"));
  EXPECT_LT(absl::Now() - again, absl::Seconds(1));
  close(slow3);
}

TEST_F(HttpServerTest, ShutdownIsPromptWithAStalledClient) {
  const int slow = Connect(server_->port());
  ASSERT_GT(send(slow, "GET /", 5, 0), 0);
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time start = absl::Now();
  server_->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  close(slow);
}

TEST(HttpServerOptionsTest, BadPortAndHost) {
  HttpServerOptions o;
  o.port = 70000;
  EXPECT_EQ(HttpServer(o, nullptr).Start().code(), absl::StatusCode::kInvalidArgument);
  o.port = 0;
  o.host = "no-such-host.invalid";
  EXPECT_FALSE(HttpServer(o, nullptr).Start().ok());
}

}  // namespace
}  // namespace knncluster::rpc
