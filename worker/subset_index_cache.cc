#include "worker/subset_index_cache.h"

#include <cassert>
#include <utility>

#include "absl/types/span.h"
#include "core/base/matrix.h"
#include "core/base/status_macros.h"

namespace knncluster::worker {

namespace {
bool SameOptions(const IndexOptions& a, const IndexOptions& b) {
  return a.algorithm == b.algorithm && a.leaf_size == b.leaf_size && a.p == b.p;
}
}  // namespace

absl::StatusOr<std::shared_ptr<const NeighborIndex>> BuildSubsetIndex(
    const Shard& shard, const absl::flat_hash_set<int64_t>& excluded, const IndexOptions& options) {
  // The shard's index is the one copy of its rows: gather the kept ones from it, in its own order
  // (a tree's). The order cannot change the answer: every index orders neighbours by
  // (distance, id) whatever the order of its rows, with the same Rdist bits (top_k.h).
  const MatrixView rows = shard.index->stored_rows();
  const absl::Span<const int64_t> ids = shard.index->stored_ids();
  std::vector<int64_t> positions;
  std::vector<int64_t> kept_ids;
  positions.reserve(ids.size());
  kept_ids.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (excluded.contains(ids[i])) continue;
    positions.push_back(static_cast<int64_t>(i));
    kept_ids.push_back(ids[i]);
  }
  if (positions.empty()) return std::shared_ptr<const NeighborIndex>();
  auto kept = std::make_shared<const Matrix>(Matrix::Gather(rows, positions));
  std::vector<int64_t>().swap(positions);
  KNN_ASSIGN_OR_RETURN(std::unique_ptr<const NeighborIndex> index,
                       BuildIndex(std::move(kept), std::move(kept_ids), options));
  return std::shared_ptr<const NeighborIndex>(std::move(index));
}

SubsetIndexCache::SubsetIndexCache(size_t capacity) : capacity_(capacity) {
  assert(capacity_ >= 1);
}

std::optional<std::shared_ptr<const NeighborIndex>> SubsetIndexCache::Find(const SubsetSpec& spec,
                                                                           const Shard& shard) {
  std::shared_ptr<const std::vector<int64_t>> excluded;
  std::shared_ptr<const NeighborIndex> index;
  {
    absl::MutexLock lock(&mu_);
    for (Entry& e : entries_) {
      if (e.key == spec.key && e.shard_id == shard.info.shard_id &&
          e.generation == shard.generation && SameOptions(e.options, spec.options)) {
        e.last_used = ++use_clock_;
        excluded = e.excluded;
        index = e.index;
        break;
      }
    }
  }
  if (excluded == nullptr) return std::nullopt;
  // Compared outside the lock: the lists are immutable and shared.
  if (excluded != spec.excluded && *excluded != *spec.excluded) return std::nullopt;
  return index;
}

void SubsetIndexCache::Put(const SubsetSpec& spec, const Shard& shard,
                           std::shared_ptr<const NeighborIndex> index) {
  Entry entry;
  entry.key = spec.key;
  entry.shard_id = shard.info.shard_id;
  entry.generation = shard.generation;
  entry.excluded = spec.excluded;
  entry.options = spec.options;
  entry.index = std::move(index);
  absl::MutexLock lock(&mu_);
  entry.last_used = ++use_clock_;
  ++puts_;
  // Replace the entry of the same (key, shard), else the least recently used one when full. The
  // replaced entry is swapped into `entry` and freed when it goes out of scope, after the lock.
  Entry* slot = nullptr;
  for (Entry& e : entries_) {
    if (e.key == entry.key && e.shard_id == entry.shard_id) slot = &e;
  }
  if (slot == nullptr && entries_.size() < capacity_) {
    entries_.push_back(std::move(entry));
    return;
  }
  if (slot == nullptr) {
    slot = &entries_[0];
    for (Entry& e : entries_) {
      if (e.last_used < slot->last_used) slot = &e;
    }
  }
  std::swap(*slot, entry);
}

size_t SubsetIndexCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

uint64_t SubsetIndexCache::puts() const {
  absl::MutexLock lock(&mu_);
  return puts_;
}

}  // namespace knncluster::worker
