// ShardStore: the shards a worker holds, by shard id. Each shard is a built, immutable
// NeighborIndex over the shard's rows (its ids are the rows' global ids) plus a little metadata.
//
// Memory: the index is the only copy of a shard's rows and global ids. SearchShards with a fold
// subset builds other indexes over part of the rows from the index's own stored_rows() and
// stored_ids() (a tree's reordered copy, or the buffer a brute-force index shares), so the store
// keeps nothing beside it. ShardInfo::memory_bytes counts the index alone (EstimateIndexBytes).
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
  int64_t id_end = 0;                       // one past the largest global id (0: no rows)
};

struct Shard {
  // Never null. Its stored_rows() and stored_ids() are the shard's rows and global ids, in the
  // index's own order.
  std::shared_ptr<const NeighborIndex> index;
  // Distinct for every Put, so that what was derived from a shard (a subset index) is known to be
  // stale once the shard is replaced under the same id.
  uint64_t generation = 0;
  ShardInfo info;
};

// Approximate bytes held by an index over rows x cols: the rows (a tree's reordered copy, or the
// shared buffer brute force keeps), the ids, the float32 filter panels used for p = 2, and the
// tree nodes. This is all a shard holds. For reporting and the memory budget.
uint64_t EstimateIndexBytes(const NeighborIndex& index, int leaf_size);

class ShardStore {
 public:
  ShardStore() = default;
  ShardStore(const ShardStore&) = delete;
  ShardStore& operator=(const ShardStore&) = delete;

  // Stores `index` (built over the shard's rows, with their global ids as ids) under `shard_id`,
  // replacing (and, once no search holds it, freeing) any shard of that id. REQUIRES: index
  // non-null.
  void Put(const std::string& shard_id, std::shared_ptr<const NeighborIndex> index,
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
