// SubsetIndexCache: indexes over part of a shard, for SearchShards with a fold subset (grid
// search, sharded mode). A subset index covers the shard's rows whose global id is not excluded
// (a fold's non-training rows), built with the fold job's index options, with the rows' global ids
// as ids, so its answers merge (MergePartialAnswers) like any shard's.
//
// The coordinator searches a fold's validation rows in several chunks, each a SearchShards call
// with the same subset; the cache keeps the last `capacity` indexes built, keyed by (subset key,
// shard id), so later chunks reuse them. An entry is used only when it was built from the same
// shard generation (the shard was not replaced since), the same excluded list and the same index
// options; otherwise it is rebuilt, so a reused key can never give a wrong answer.
//
// Memory: up to `capacity` indexes, each at most its shard's size; not charged to the memory
// budget.
// Ownership: indexes are shared (std::shared_ptr<const NeighborIndex>), so an entry evicted or
// replaced during a search stays alive until that search ends.
// Thread safety: every method may be called from any thread at once; builds run outside the lock.
#ifndef KNNCLUSTER_WORKER_SUBSET_INDEX_CACHE_H_
#define KNNCLUSTER_WORKER_SUBSET_INDEX_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/index/neighbor_index.h"
#include "worker/shard_store.h"

namespace knncluster::worker {

// What a subset index is built from, besides its shard.
struct SubsetSpec {
  std::string key;                                       // the request's subset.key
  std::shared_ptr<const std::vector<int64_t>> excluded;  // as sent; never null
  IndexOptions options;                                  // algorithm, leaf_size, p
};

// An index over the rows of `shard` whose global id is not in `excluded`, with their global ids
// as ids and `options`, gathered from the shard index's stored_rows() and stored_ids(). Null when
// every row is excluded.
absl::StatusOr<std::shared_ptr<const NeighborIndex>> BuildSubsetIndex(
    const Shard& shard, const absl::flat_hash_set<int64_t>& excluded, const IndexOptions& options);

class SubsetIndexCache {
 public:
  // REQUIRES: capacity >= 1.
  explicit SubsetIndexCache(size_t capacity);
  SubsetIndexCache(const SubsetIndexCache&) = delete;
  SubsetIndexCache& operator=(const SubsetIndexCache&) = delete;

  // The cached index of `spec` over `shard` (null inside: every row excluded), or nullopt when
  // none was built from exactly this shard generation, excluded list and options. Marks it used.
  std::optional<std::shared_ptr<const NeighborIndex>> Find(const SubsetSpec& spec,
                                                           const Shard& shard);
  // Caches `index` (may be null) as built from `spec` over `shard`, evicting the least recently
  // used entry beyond capacity.
  void Put(const SubsetSpec& spec, const Shard& shard, std::shared_ptr<const NeighborIndex> index);

  size_t size() const;
  // Indexes built and put so far (a test's view of reuse).
  uint64_t puts() const;

 private:
  struct Entry {
    std::string key;
    std::string shard_id;
    uint64_t generation = 0;
    std::shared_ptr<const std::vector<int64_t>> excluded;
    IndexOptions options;
    std::shared_ptr<const NeighborIndex> index;
    uint64_t last_used = 0;
  };

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);  // at most capacity_; scanned (it is small)
  uint64_t use_clock_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t puts_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace knncluster::worker

#endif  // KNNCLUSTER_WORKER_SUBSET_INDEX_CACHE_H_
