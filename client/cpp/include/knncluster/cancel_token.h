// <knncluster/cancel_token.h>, installed with <knncluster/client.h>.
//
// CancelToken: lets one thread abort another thread's blocking call. knnctl's SIGINT thread
// cancels the token; the thread blocked in Client::WatchGridSearch has registered a hook (for a
// gRPC call, ClientContext::TryCancel) that ends the call at once. gRPC-free, so the CLI's
// engine interface can take one in local mode too.
//
// Thread-safe. A hook runs under the token's lock, in the cancelling thread: it must be quick and
// must not touch the token. While a CancelScope lives, its hook's captures must stay valid; the
// scope's destructor waits for a running hook to return.
#ifndef KNNCLUSTER_CANCEL_TOKEN_H_
#define KNNCLUSTER_CANCEL_TOKEN_H_

#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace knncluster::client {

class CancelToken {
 public:
  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  // Marks the token cancelled (for good) and runs the registered hook, if any.
  void Cancel() {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return;
    cancelled_ = true;
    if (hook_) hook_();
  }

  bool cancelled() const {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }

 private:
  friend class CancelScope;
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> hook_ ABSL_GUARDED_BY(mu_);  // at most one registered call
};

// Registers `hook` with `token` (which may be null: then nothing happens) for the scope's
// lifetime; runs it at once when the token is already cancelled.
// REQUIRES: no other scope of the same token is alive.
class CancelScope {
 public:
  CancelScope(CancelToken* token, std::function<void()> hook) : token_(token) {
    if (token_ == nullptr) return;
    absl::MutexLock lock(&token_->mu_);
    token_->hook_ = std::move(hook);
    if (token_->cancelled_) token_->hook_();
  }
  ~CancelScope() {
    if (token_ == nullptr) return;
    absl::MutexLock lock(&token_->mu_);
    token_->hook_ = nullptr;
  }
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

 private:
  CancelToken* token_;
};

}  // namespace knncluster::client

#endif  // KNNCLUSTER_CANCEL_TOKEN_H_
