// SigintWaiter: Ctrl-C handled on a thread, not in a signal handler. The constructor blocks
// SIGINT (the mask is inherited by every thread started afterwards, gRPC's included) and starts a
// thread that waits for it with sigwait; each SIGINT calls `on_interrupt(count)` on that thread
// (count = 1 for the first). knnctl uses it to stop watching a grid search (detach, or cancel the
// search) instead of dying mid-stream.
//
// REQUIRES: constructed before any other thread starts, and destroyed by the thread that made it
// (which gets its old signal mask back). Not copyable.
#ifndef KNNCLUSTER_CLIENT_CLI_INTERRUPT_H_
#define KNNCLUSTER_CLIENT_CLI_INTERRUPT_H_

#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

namespace knncluster::cli {

class SigintWaiter {
 public:
  explicit SigintWaiter(std::function<void(int count)> on_interrupt);
  ~SigintWaiter();
  SigintWaiter(const SigintWaiter&) = delete;
  SigintWaiter& operator=(const SigintWaiter&) = delete;

 private:
  void Wait();

  std::function<void(int)> on_interrupt_;
  sigset_t old_mask_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace knncluster::cli

#endif  // KNNCLUSTER_CLIENT_CLI_INTERRUPT_H_
