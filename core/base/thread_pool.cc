#include "core/base/thread_pool.h"

#include <atomic>
#include <memory>


namespace knncluster {
namespace {
// The pool whose worker is running on this thread, so nested ParallelFor calls run inline.
thread_local const ThreadPool* current_pool = nullptr;
}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (num_threads <= 0) num_threads = 1;
  threads_.reserve(num_threads);
  for (int i = 1; i < num_threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
}

void ThreadPool::WorkerLoop() {
  current_pool = this;
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ThreadPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->stopping_ || !p->tasks_.empty();
          },
          this));
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (n == 1 || current_pool == this || threads_.empty()) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  // The caller takes iterations too and waits only for the iterations others have *started*:
  // helpers still queued behind long tasks (another caller's blocking work) find nothing left
  // and return without touching `fn`, so a busy pool never stalls a caller.
  struct State {
    std::atomic<size_t> next{0};
    size_t n = 0;
    const std::function<void(size_t)>* fn = nullptr;  // valid while completed < n
    absl::Mutex mu;
    size_t completed ABSL_GUARDED_BY(mu) = 0;
  };
  auto state = std::make_shared<State>();
  state->n = n;
  state->fn = &fn;
  auto drain = [](State* st) {
    size_t mine = 0;
    for (size_t i; (i = st->next.fetch_add(1)) < st->n;) {
      (*st->fn)(i);
      ++mine;
    }
    if (mine > 0) {
      absl::MutexLock lock(&st->mu);
      st->completed += mine;
    }
  };
  const size_t helpers = std::min(threads_.size(), n - 1);
  {
    absl::MutexLock lock(&mu_);
    for (size_t h = 0; h < helpers; ++h) tasks_.emplace_back([state, drain] { drain(state.get()); });
  }
  drain(state.get());
  absl::MutexLock lock(&state->mu);
  state->mu.Await(absl::Condition(
      +[](State* st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(st->mu) { return st->completed == st->n; },
      state.get()));
}

void ParallelFor(ThreadPool* pool, size_t n, const std::function<void(size_t)>& fn) {
  if (pool == nullptr) {
    for (size_t i = 0; i < n; ++i) fn(i);
  } else {
    pool->ParallelFor(n, fn);
  }
}

}  // namespace knncluster
