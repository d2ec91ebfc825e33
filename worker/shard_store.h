// ShardStore: the shards a worker holds, by shard id. Each shard is a built, immutable
// NeighborIndex over the shard's rows (its ids are the rows' global ids), the rows themselves and
// their global ids as loaded (for SearchShards with a fold subset, which builds other indexes over
// part of the rows), plus a little metadata.
//
// Memory: the kept rows are the very buffer a brute-force index searches (shared, no extra
// cost); a tree reorders the rows into its own copy, so a tree shard holds its rows twice. The
// global ids are kept once more beside the index's (8 bytes a row). Both are counted in
// ShardInfo::memory_bytes.
//
// Ownership: indexes are shared as std::shared_ptr<const NeighborIndex>. The store swaps pointers
// under its mutex; a search takes its own references first (Find) and runs without the lock, so a
// shard replaced or dropped during a search stays alive until that search ends.
// Thread safety: every method may be called from any thread at any time.
#ifndef KNNCLUSTER_WORKER_SHARD_STORE_H_
#define KNNCLUSTER_WORKER_SHARD_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/base/matrix.h"
#include "core/index/neighbor_index.h"

namespace knncluster::worker {

// What the store knows about one shard besides its index.
struct ShardInfo {
  std::string shard_id;
  size_t rows = 0;
  size_t cols = 0;
  Algorithm algorithm = Algorithm::kBrute;  // as resolved (never kAuto)
  uint64_t memory_bytes = 0;                // data + ids + index structures, approximately
};

struct Shard {
  std::shared_ptr<const NeighborIndex> index;  // never null
  // The shard's rows and their global ids, in the order loaded (ids->size() == rows->rows()).
  std::shared_ptr<const Matrix> rows;               // never null
  std::shared_ptr<const std::vector<int64_t>> ids;  // never null
  // Distinct for every Put, so that what was derived from a shard (a subset index) is known to be
  // stale once the shard is replaced under the same id.
  uint64_t generation = 0;
  ShardInfo info;
};

// Approximate bytes held by an index over rows x cols: the rows (a tree's reordered copy, or the
// shared buffer brute force keeps), the ids, the float32 filter panels used for p = 2, and the
// tree nodes. For reporting only.
uint64_t EstimateIndexBytes(const NeighborIndex& index, int leaf_size);
// What a shard holds in all: EstimateIndexBytes, plus the rows and global ids the store keeps
// beside the index (the rows are shared with a brute-force index; a tree has its own copy).
uint64_t EstimateShardBytes(const NeighborIndex& index, int leaf_size);

class ShardStore {
 public:
  ShardStore() = default;
  ShardStore(const ShardStore&) = delete;
  ShardStore& operator=(const ShardStore&) = delete;

  // Stores `index` over `rows` (global ids `ids`) under `shard_id`, replacing (and, once no
  // search holds it, freeing) any shard of that id. REQUIRES: all three non-null, one id per row,
  // index built over those rows and ids.
  void Put(const std::string& shard_id, std::shared_ptr<const NeighborIndex> index,
           std::shared_ptr<const Matrix> rows, std::shared_ptr<const std::vector<int64_t>> ids,
           uint64_t memory_bytes);

  // The shards named, in the order named. NotFound naming the first unknown shard
  // ("shard_ids[1]: unknown shard \"m/3\" on this worker").
  absl::StatusOr<std::vector<Shard>> Find(absl::Span<const std::string> shard_ids) const;

  // Forgets a shard; returns whether it existed.
  bool Drop(const std::string& shard_id);

  // Every shard's info, sorted by shard id.
  std::vector<ShardInfo> List() const;
  // Every shard id, sorted.
  std::vector<std::string> ShardIds() const;
  size_t size() const;
  // The sum of every shard's memory_bytes.
  uint64_t TotalBytes() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Shard> shards_ ABSL_GUARDED_BY(mu_);
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace knncluster::worker

#endif  // KNNCLUSTER_WORKER_SHARD_STORE_H_
