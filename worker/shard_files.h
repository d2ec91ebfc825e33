// ShardFiles: the worker's shards on disk, so that a worker restarted on its data directory comes
// back holding every shard it held, without the coordinator sending them again.
//
// On disk:
//   <data-dir>/FORMAT                 "knncluster-worker 1" (core/base/durable_file.h)
//   <data-dir>/shards/<file name>     one durable file per shard (magic "KNNSHRD\n", version 2)
//   <data-dir>/shards/*.tmp-*         a write cut short by a crash; removed at start
//   <data-dir>/quarantine/<file name>.<unix seconds>   shard files that could not be read
// The file name is the shard id with every byte outside [A-Za-z0-9_-] (and a leading '.')
// written as %XX ("m/3" -> "m%2F3"); ids whose escaped name would exceed 200 bytes keep a prefix
// and end in "~" plus a 64-bit FNV-1a hash of the id. The id inside the file is authoritative.
//
// Payload, version 1 (little-endian):
//   u32 n | n bytes: the v1::ShardHeader as received (shard_id, rows, cols, global_indices or
//   first_global_index, index_params) | rows * cols f64: the rows, row-major, in the order sent
// The rows are those LoadShard received, before any index reordered them, so a restored shard is
// built from exactly the same input.
// Payload, version 2: version 1's, then, when header.has_labels, rows f64: the rows' labels in
// the same order (codes into header.class_names for string labels). Version-1 files are still
// read (they have no labels). Labels are read only by Read (ReadShard), never at restore, so
// they cost disk and no memory.
//
// Ownership: owns nothing but paths. Thread safety: every method may be called from any thread;
// writes of one shard id are atomic renames, so concurrent LoadShard calls for one id leave one
// complete file (the coordinator never sends the same id twice at once).
#ifndef KNNCLUSTER_WORKER_SHARD_FILES_H_
#define KNNCLUSTER_WORKER_SHARD_FILES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "knncluster/v1/worker.pb.h"

namespace knncluster::worker {

// The data directory's layout version (FORMAT) and the shard file's format version.
inline constexpr uint32_t kWorkerDataDirVersion = 1;
inline constexpr uint32_t kShardFileVersion = 2;

// One shard read back from its file.
struct StoredShard {
  v1::ShardHeader header;
  std::vector<double> values;  // header.rows() * header.cols(), row-major
  std::vector<double> labels;  // header.rows() when read by Read and header.has_labels; else empty
};

class ShardFiles {
 public:
  // REQUIRES: `data_dir` exists (LoadOrCreateWorkerId made it) and CheckDataDirFormat passed.
  explicit ShardFiles(std::string data_dir);
  ShardFiles(const ShardFiles&) = delete;
  ShardFiles& operator=(const ShardFiles&) = delete;

  // The file a shard id is kept in, under shards/.
  static std::string FileName(const std::string& shard_id);
  std::string PathOf(const std::string& shard_id) const;

  // Writes one shard durably (replacing any file of that id). REQUIRES: values.size() ==
  // header.rows() * header.cols(). Internal naming the path on I/O errors.
  // `labels` is empty, or (header.has_labels) holds header.rows() values.
  absl::Status Write(const v1::ShardHeader& header, absl::Span<const double> values,
                     absl::Span<const double> labels = {}) const;

  // Reads one shard's file, labels included. NotFound when there is none; DataLoss naming the
  // file when it cannot be parsed or holds another shard.
  absl::StatusOr<StoredShard> Read(const std::string& shard_id) const;

  // Removes a shard's file; OK if there is none.
  absl::Status Remove(const std::string& shard_id) const;

  // Reads every shard file, one at a time, and hands each to `restore` (which builds and stores
  // it). A file that cannot be read or parsed, or that `restore` rejects, is moved to
  // quarantine/ and recorded (quarantined()); the others are unaffected. Leftover temporary
  // files are removed first. Returns how many shards were restored; an error only when the
  // directory itself cannot be listed or created.
  absl::StatusOr<int> RestoreAll(const std::function<absl::Status(StoredShard)>& restore);

  // One line per file quarantined since the process started: "<new path>: <reason>".
  std::vector<std::string> quarantined() const;

 private:
  void Quarantine(const std::string& path, const absl::Status& why);

  const std::string data_dir_;
  const std::string shards_dir_;
  const std::string quarantine_dir_;
  mutable absl::Mutex mu_;
  std::vector<std::string> quarantined_ ABSL_GUARDED_BY(mu_);
};

}  // namespace knncluster::worker

#endif  // KNNCLUSTER_WORKER_SHARD_FILES_H_
