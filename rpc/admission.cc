#include "rpc/admission.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace knncluster::rpc {

namespace {
std::string Mib(uint64_t bytes) { return absl::StrFormat("%.1f MiB", bytes / 1048576.0); }
}  // namespace

AdmissionControl::Ticket::Ticket(Ticket&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), bytes_(other.bytes_) {}

AdmissionControl::Ticket& AdmissionControl::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    bytes_ = other.bytes_;
  }
  return *this;
}

AdmissionControl::Ticket::~Ticket() { Release(); }

void AdmissionControl::Ticket::Release() {
  if (owner_ != nullptr) owner_->Release(bytes_);
  owner_ = nullptr;
}

AdmissionControl::AdmissionControl(AdmissionOptions options) : options_(std::move(options)) {}

absl::StatusOr<AdmissionControl::Ticket> AdmissionControl::Admit(absl::string_view method,
                                                                 uint64_t request_bytes) {
  const uint64_t max_bytes = options_.max_inflight_bytes;
  absl::MutexLock lock(&mu_);
  if (options_.max_concurrent > 0 && in_flight_ >= options_.max_concurrent) {
    ++refused_;
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: %s overloaded: %d calls in flight, the limit (%s=%d); retry later", method,
        options_.server, in_flight_, options_.concurrent_flag, options_.max_concurrent));
  }
  if (max_bytes > 0 && request_bytes > max_bytes) {
    ++refused_;
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: the request is %s, more than the %s may hold for requests in flight (%s=%d); send "
        "smaller batches",
        method, Mib(request_bytes), options_.server, options_.bytes_flag, max_bytes >> 20));
  }
  if (max_bytes > 0 && in_flight_bytes_ + request_bytes > max_bytes) {
    ++refused_;
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: %s overloaded: this request's %s on top of the %s in flight exceeds the limit "
        "(%s=%d); retry later",
        method, options_.server, Mib(request_bytes), Mib(in_flight_bytes_), options_.bytes_flag,
        max_bytes >> 20));
  }
  ++in_flight_;
  in_flight_bytes_ += request_bytes;
  return Ticket(this, request_bytes);
}

void AdmissionControl::Release(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  --in_flight_;
  in_flight_bytes_ -= bytes;
}

int AdmissionControl::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

uint64_t AdmissionControl::in_flight_bytes() const {
  absl::MutexLock lock(&mu_);
  return in_flight_bytes_;
}

uint64_t AdmissionControl::refused() const {
  absl::MutexLock lock(&mu_);
  return refused_;
}

}  // namespace knncluster::rpc
