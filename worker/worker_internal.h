// Helpers private to worker/: the stable worker id kept in the data directory, and what the
// process knows about its own memory. Not part of the worker's public API.
// Thread safety: the functions are safe to call from any thread; LoadOrCreateWorkerId assumes
// one worker process per data directory.
#ifndef KNNCLUSTER_WORKER_WORKER_INTERNAL_H_
#define KNNCLUSTER_WORKER_WORKER_INTERNAL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace knncluster::worker {

// The file under the data directory that holds the worker's id.
inline constexpr char kWorkerIdFile[] = "worker_id";

// Reads `<data_dir>/worker_id`, or, on the first start, creates the directory and the file with
// a random 128-bit id (32 lower-case hex digits), written atomically (temp file + rename). The
// id stays the same across restarts, whatever address the worker then listens on.
// InvalidArgument for an empty data_dir; DataLoss when the file exists but is not a valid id;
// Internal for I/O errors (naming the path).
absl::StatusOr<std::string> LoadOrCreateWorkerId(const std::string& data_dir);

// Resident set size of this process, from /proc/self/statm (0 if unavailable).
uint64_t ResidentBytes();
// Physical memory of the machine (0 if unknown).
uint64_t PhysicalMemoryBytes();

// Returns memory freed by the allocator to the OS (glibc's malloc_trim; a no-op elsewhere). Called
// after a shard's staging buffer or a replaced / dropped shard is freed: glibc raises its mmap
// threshold after freeing a large block, so later shard-sized buffers come from the heap and
// would otherwise stay in the RSS after being freed.
void ReleaseFreedMemory();

}  // namespace knncluster::worker

#endif  // KNNCLUSTER_WORKER_WORKER_INTERNAL_H_
