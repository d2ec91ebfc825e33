// AdmissionControl: bounds the work a server has accepted and not finished, so that overload
// answers RESOURCE_EXHAUSTED at once instead of queueing without limit and growing memory.
//
// Two limits, checked when a call starts (Admit): the number of calls in flight, and the total
// bytes of their requests (the queries a search holds while it runs, and their answers are of
// the same order). A call over either limit is refused with a message naming the limit, its
// value and the flag that sets it; nothing waits. A single request larger than the whole byte
// budget is refused even on an idle server. Admit returns a Ticket that gives its share back
// when destroyed.
//
// Streams (uploads) count as one call; their bytes are bounded by the message size and by what
// the handler keeps (DatasetStore writes to disk, the worker's caches have their own budget).
//
// Thread-safe: Admit and the counters from any thread; a Ticket is movable, not copyable, and
// must not outlive its AdmissionControl.
#ifndef KNNCLUSTER_RPC_ADMISSION_H_
#define KNNCLUSTER_RPC_ADMISSION_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace knncluster::rpc {

struct AdmissionOptions {
  // Who refuses ("coordinator", "worker"), for messages.
  std::string server = "server";
  // Calls in flight at once; 0: no limit.
  int max_concurrent = 0;
  // The flag that sets max_concurrent, named in the refusal.
  std::string concurrent_flag = "--max-concurrent-requests";
  // Total bytes of the requests in flight; 0: no limit.
  uint64_t max_inflight_bytes = 0;
  std::string bytes_flag = "--max-inflight-request-mb";
};

class AdmissionControl {
 public:
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept;
    Ticket& operator=(Ticket&& other) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket();

   private:
    friend class AdmissionControl;
    Ticket(AdmissionControl* owner, uint64_t bytes) : owner_(owner), bytes_(bytes) {}
    void Release();
    AdmissionControl* owner_ = nullptr;
    uint64_t bytes_ = 0;
  };

  explicit AdmissionControl(AdmissionOptions options);
  AdmissionControl(const AdmissionControl&) = delete;
  AdmissionControl& operator=(const AdmissionControl&) = delete;

  // Admits a call of `method` whose request is `request_bytes` long, or ResourceExhausted naming
  // the limit and its flag.
  absl::StatusOr<Ticket> Admit(absl::string_view method, uint64_t request_bytes);

  const AdmissionOptions& options() const { return options_; }
  int in_flight() const;
  uint64_t in_flight_bytes() const;
  // Calls refused since start.
  uint64_t refused() const;

 private:
  void Release(uint64_t bytes);

  const AdmissionOptions options_;
  mutable absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t in_flight_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_ADMISSION_H_
