// ThreadPool: a fixed set of worker threads that runs ParallelFor loops. Owned by the caller
// (a server, the CLI, a test) and passed down by pointer; the core library never creates threads
// of its own. A null ThreadPool* everywhere in the core means "run on the calling thread".
//
// Thread safety: ParallelFor may be called from several threads at once; each call blocks until
// all of its iterations are done. Calling ParallelFor from inside a task of the same pool is
// allowed (the nested loop runs inline on the calling thread), so it never deadlocks.
#ifndef KNNCLUSTER_CORE_BASE_THREAD_POOL_H_
#define KNNCLUSTER_CORE_BASE_THREAD_POOL_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace knncluster {

class ThreadPool {
 public:
  // `num_threads` is the parallelism of a ParallelFor: the calling thread takes part, so the pool
  // starts num_threads - 1 threads of its own. num_threads <= 0 means hardware_concurrency().
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(threads_.size()) + 1; }

  // Runs fn(i) for every i in [0, n), spread over the pool's threads and the calling thread,
  // and returns when all are done. Iterations are handed out one at a time in increasing order,
  // so give each iteration a chunk of work (a block of queries), not a single element.
  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);

 private:
  void WorkerLoop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Runs fn(i) for i in [0, n) on `pool`, or inline when pool is null.
void ParallelFor(ThreadPool* pool, size_t n, const std::function<void(size_t)>& fn);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_BASE_THREAD_POOL_H_
