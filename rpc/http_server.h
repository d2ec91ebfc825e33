// HttpServer: a small read-only HTTP/1.1 server for a process's health, metrics and status page
// (GET /healthz, /readyz, /metrics, ...). gRPC-free (POSIX sockets, std + Abseil).
//
// Why in-house rather than civetweb (in bookworm): the port only ever answers a handful of GET
// requests with bodies built in memory, so what matters is what it refuses: every method but GET
// and HEAD gets 405, there is no file serving, upload, CGI, websockets or keep-alive to audit or
// configure away, and the threads, request size and time per request are bounded here in a few
// hundred lines with no new dependency in the image.
//
// One request per connection (responses carry "Connection: close"). An acceptor thread hands
// connections to a fixed set of handler threads through a bounded queue (a full queue answers
// 503 at once); a handler reads at most max_request_bytes of request head within io_timeout, so a
// slow or half-sent request holds one handler thread for at most io_timeout and never blocks the
// others. A request with a body (Content-Length / Transfer-Encoding) is refused: nothing here
// takes input.
//
// Thread safety: Start once; port() from any thread; Shutdown from any thread (idempotent; it
// also runs in the destructor). The handler is called concurrently from the handler threads.
#ifndef KNNCLUSTER_RPC_HTTP_SERVER_H_
#define KNNCLUSTER_RPC_HTTP_SERVER_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace knncluster::rpc {

struct HttpRequest {
  std::string method;  // "GET" or "HEAD" (others never reach the handler)
  std::string path;    // "/metrics"; percent-escapes left as sent
  std::string query;   // after '?', without it; may be empty
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra header lines, each "Name: value" without CRLF.
  std::vector<std::string> headers;
};

struct HttpServerOptions {
  // Address to bind: an IPv4/IPv6 literal or a host name ("0.0.0.0", "127.0.0.1", "[::]").
  std::string host = "127.0.0.1";
  // 0: the OS picks one (see port()).
  int port = 0;
  // Handler threads: at most this many requests are read / answered at once.
  int threads = 4;
  // Connections accepted but not yet taken by a handler; beyond this, 503 at once.
  int max_queued = 64;
  // Time to receive a whole request head and to send the response.
  absl::Duration io_timeout = absl::Seconds(5);
  // Longest request head (request line + headers).
  size_t max_request_bytes = 8192;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the threads. InvalidArgument for bad options; Unavailable when the address
  // cannot be bound; FailedPrecondition when called twice.
  absl::Status Start();
  // The bound port. REQUIRES: Start() ok.
  int port() const { return port_; }
  // Stops accepting, wakes and joins every thread, closes queued connections. Idempotent.
  void Shutdown();

 private:
  void AcceptLoop();
  void HandlerLoop();
  void Serve(int fd);

  const HttpServerOptions options_;
  const Handler handler_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};  // written once by Shutdown; polled by every thread
  int port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> handlers_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<int> queue_ ABSL_GUARDED_BY(mu_);
};

// Canonical reason phrase of the statuses this server uses ("OK", "Not Found", ...).
const char* HttpReason(int status);

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_HTTP_SERVER_H_
