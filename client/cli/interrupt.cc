#include "client/cli/interrupt.h"

#include <pthread.h>

#include <utility>

namespace knncluster::cli {

SigintWaiter::SigintWaiter(std::function<void(int)> on_interrupt)
    : on_interrupt_(std::move(on_interrupt)) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, &old_mask_);
  thread_ = std::thread([this] { Wait(); });
}

SigintWaiter::~SigintWaiter() {
  // Wake the waiter with a SIGINT of its own; it sees stopping_ and returns.
  stopping_ = true;
  pthread_kill(thread_.native_handle(), SIGINT);
  thread_.join();
  // A SIGINT that arrived meanwhile is still pending; it takes effect now, as it would have
  // without the waiter.
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

void SigintWaiter::Wait() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  int count = 0;
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (stopping_) return;
    on_interrupt_(++count);
  }
}

}  // namespace knncluster::cli
