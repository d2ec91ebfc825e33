#include "rpc/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace knncluster::rpc {

namespace {

// Waits until `fd` is ready for `events` or the wake pipe is readable; false on timeout, wake-up
// or error.
bool WaitFor(int fd, short events, int wake_fd, absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    const int n = poll(fds, 2, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    if (fds[1].revents != 0) return false;
    return fds[0].revents != 0;
  }
}

void SendAll(int fd, const std::string& data, int wake_fd, absl::Time deadline) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
        WaitFor(fd, POLLOUT, wake_fd, deadline)) {
      continue;
    }
    return;
  }
}

std::string Serialize(const HttpResponse& r, bool head) {
  std::string out = absl::StrCat("HTTP/1.1 ", r.status, " ", HttpReason(r.status), "\r\n",
                                 "Content-Type: ", r.content_type, "\r\n",
                                 "Content-Length: ", r.body.size(), "\r\n",
                                 "Cache-Control: no-store\r\n",
                                 "X-Content-Type-Options: nosniff\r\n",
                                 "Connection: close\r\n");
  for (const std::string& h : r.headers) absl::StrAppend(&out, h, "\r\n");
  out += "\r\n";
  if (!head) out += r.body;
  return out;
}

HttpResponse Plain(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

const char* HttpReason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() { Shutdown(); }

absl::Status HttpServer::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("HttpServer::Start: already started");
  if (options_.port < 0 || options_.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("http port: must be in [0, 65535], got ", options_.port));
  }
  if (options_.threads < 1 || options_.max_queued < 1 || options_.max_request_bytes < 64) {
    return absl::InvalidArgumentError(
        "http server: threads and max_queued must be >= 1, max_request_bytes >= 64");
  }
  std::string host = options_.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(options_.port);
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints,
                           &found);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("http host \"", options_.host, "\": ", gai_strerror(rc)));
  }
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr && listen_fd_ < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) {
      listen_fd_ = fd;
      sockaddr_storage bound{};
      socklen_t len = sizeof(bound);
      getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
      port_ = bound.ss_family == AF_INET6
                  ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                  : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    } else {
      last_error = std::strerror(errno);
      close(fd);
    }
  }
  freeaddrinfo(found);
  if (listen_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("http: cannot listen on ", options_.host, ":",
                                               options_.port, ": ", last_error));
  }
  if (pipe2(wake_pipe_, O_CLOEXEC) != 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    return absl::InternalError(absl::StrCat("http: pipe: ", std::strerror(errno)));
  }
  started_ = true;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  for (int i = 0; i < options_.threads; ++i) handlers_.emplace_back([this] { HandlerLoop(); });
  return absl::OkStatus();
}

void HttpServer::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  const char byte = 0;
  (void)!write(wake_pipe_[1], &byte, 1);
  if (acceptor_.joinable()) acceptor_.join();
  for (std::thread& t : handlers_) t.join();
  handlers_.clear();
  absl::MutexLock lock(&mu_);
  for (int fd : queue_) close(fd);
  queue_.clear();
  close(listen_fd_);
  close(wake_pipe_[0]);
  close(wake_pipe_[1]);
}

void HttpServer::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    const int n = poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[1].revents != 0) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;
    bool queued = false;
    {
      absl::MutexLock lock(&mu_);
      if (static_cast<int>(queue_.size()) < options_.max_queued) {
        queue_.push_back(fd);
        queued = true;
      }
    }
    if (!queued) {
      SendAll(fd, Serialize(Plain(503, "busy\n"), false), wake_pipe_[0],
              absl::Now() + absl::Milliseconds(100));
      close(fd);
    }
  }
}

void HttpServer::HandlerLoop() {
  while (true) {
    int fd = -1;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      fd = queue_.front();
      queue_.pop_front();
    }
    Serve(fd);
    // Half-close, then read what the client still sends (a body we refused) for a moment, so
    // that closing does not reset the connection before the client has read our answer.
    shutdown(fd, SHUT_WR);
    const absl::Time linger = absl::Now() + absl::Milliseconds(200);
    char sink[4096];
    while (WaitFor(fd, POLLIN, wake_pipe_[0], linger) && recv(fd, sink, sizeof(sink), 0) > 0) {
    }
    close(fd);
  }
}

void HttpServer::Serve(int fd) {
  const absl::Time deadline = absl::Now() + options_.io_timeout;
  const int wake = wake_pipe_[0];
  std::string head;
  size_t end = std::string::npos;
  char buffer[2048];
  while (end == std::string::npos) {
    if (head.size() > options_.max_request_bytes) {
      SendAll(fd, Serialize(Plain(413, "request head too large\n"), false), wake, deadline);
      return;
    }
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      head.append(buffer, static_cast<size_t>(n));
      end = head.find("\r\n\r\n");
      if (end == std::string::npos) end = head.find("\n\n");  // lenient: bare LF
      continue;
    }
    if (n == 0) return;  // closed before a whole request
    if (errno == EINTR) continue;
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && WaitFor(fd, POLLIN, wake, deadline)) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      SendAll(fd, Serialize(Plain(408, "request timeout\n"), false), wake,
              absl::Now() + absl::Milliseconds(100));
    }
    return;
  }
  if (end > options_.max_request_bytes) {
    SendAll(fd, Serialize(Plain(413, "request head too large\n"), false), wake, deadline);
    return;
  }
  std::vector<std::string> lines =
      absl::StrSplit(absl::string_view(head).substr(0, end), '\n');
  for (std::string& line : lines) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
  }
  const std::vector<std::string> parts = absl::StrSplit(lines[0], ' ');
  const auto bad = [&](const std::string& why) {
    SendAll(fd, Serialize(Plain(400, why + "\n"), false), wake, deadline);
  };
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() || parts[1][0] != '/') {
    bad("malformed request line");
    return;
  }
  for (char c : parts[0]) {
    if (c < 'A' || c > 'Z') {
      bad("malformed method");
      return;
    }
  }
  if (!absl::StartsWith(parts[2], "HTTP/1.")) {
    SendAll(fd, Serialize(Plain(505, "HTTP/1.x only\n"), false), wake, deadline);
    return;
  }
  bool has_body = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos || colon == 0) {
      bad("malformed header line");
      return;
    }
    const std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
    const std::string value(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    uint64_t length = 0;
    if (name == "transfer-encoding" ||
        (name == "content-length" && (!absl::SimpleAtoi(value, &length) || length > 0))) {
      has_body = true;
    }
  }
  const std::string& method = parts[0];
  if (method != "GET" && method != "HEAD") {
    HttpResponse r = Plain(405, "read-only: GET and HEAD only\n");
    r.headers.push_back("Allow: GET, HEAD");
    SendAll(fd, Serialize(r, false), wake, deadline);
    return;
  }
  if (has_body) {
    bad("a GET or HEAD request carries no body");
    return;
  }
  HttpRequest request;
  request.method = method;
  const size_t q = parts[1].find('?');
  request.path = parts[1].substr(0, q);
  if (q != std::string::npos) request.query = parts[1].substr(q + 1);
  HttpResponse response = handler_(request);
  SendAll(fd, Serialize(response, method == "HEAD"), wake, deadline);
}

}  // namespace knncluster::rpc
