#include "worker/shard_store.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/index/binary_tree.h"

namespace knncluster::worker {

uint64_t EstimateIndexBytes(const NeighborIndex& index, int leaf_size) {
  const uint64_t rows = index.size();
  const uint64_t cols = index.dim();
  uint64_t bytes = rows * cols * sizeof(double) + rows * sizeof(int64_t);
  // The float32 panels of the p = 2 filter (brute force, and trees from kMinFilterDim on).
  const bool filtered =
      index.algorithm() == Algorithm::kBrute || index.dim() >= tree_internal::kMinFilterDim;
  if (index.metric().p() == 2 && filtered) bytes += rows * cols * sizeof(float);
  if (index.algorithm() != Algorithm::kBrute) {
    // About 2 * rows / leaf_size nodes, each a [begin, end) range plus bounds of about 2 * cols
    // doubles (KD: lo and hi; ball: centroid and radius).
    const uint64_t leaf = static_cast<uint64_t>(std::max(1, leaf_size));
    const uint64_t nodes = 2 * ((rows + leaf - 1) / leaf);
    bytes += nodes * (4 * sizeof(uint64_t) + 2 * cols * sizeof(double));
  }
  return bytes;
}

void ShardStore::Put(const std::string& shard_id, std::shared_ptr<const NeighborIndex> index,
                     uint64_t memory_bytes) {
  assert(index != nullptr);
  Shard shard;
  shard.info.shard_id = shard_id;
  shard.info.rows = index->size();
  shard.info.cols = index->dim();
  shard.info.algorithm = index->algorithm();
  shard.info.memory_bytes = memory_bytes;
  for (int64_t id : index->stored_ids()) shard.info.id_end = std::max(shard.info.id_end, id + 1);
  shard.index = std::move(index);
  {
    absl::MutexLock lock(&mu_);
    shard.generation = next_generation_++;
    total_bytes_ += memory_bytes;
    Shard& slot = shards_[shard_id];
    std::swap(slot, shard);
    if (shard.index != nullptr) total_bytes_ -= shard.info.memory_bytes;
  }
  // `shard` now holds the replaced one (if any): it is released here, outside the lock, so that
  // freeing a large index never stalls other callers.
}

absl::StatusOr<std::vector<Shard>> ShardStore::Find(absl::Span<const std::string> shard_ids) const {
  std::vector<Shard> out;
  out.reserve(shard_ids.size());
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < shard_ids.size(); ++i) {
    auto it = shards_.find(shard_ids[i]);
    if (it == shards_.end()) {
      return absl::NotFoundError(
          absl::StrCat("shard_ids[", i, "]: unknown shard \"", shard_ids[i], "\" on this worker"));
    }
    out.push_back(it->second);
  }
  return out;
}

bool ShardStore::Drop(const std::string& shard_id) {
  Shard dropped;
  {
    absl::MutexLock lock(&mu_);
    auto it = shards_.find(shard_id);
    if (it == shards_.end()) return false;
    dropped = std::move(it->second);
    shards_.erase(it);
    total_bytes_ -= dropped.info.memory_bytes;
  }
  return true;  // `dropped` is released outside the lock
}

std::vector<ShardInfo> ShardStore::List() const {
  std::vector<ShardInfo> out;
  {
    absl::MutexLock lock(&mu_);
    out.reserve(shards_.size());
    for (const auto& [id, shard] : shards_) out.push_back(shard.info);
  }
  std::sort(out.begin(), out.end(),
            [](const ShardInfo& a, const ShardInfo& b) { return a.shard_id < b.shard_id; });
  return out;
}

std::vector<std::string> ShardStore::ShardIds() const {
  std::vector<std::string> out;
  {
    absl::MutexLock lock(&mu_);
    out.reserve(shards_.size());
    for (const auto& [id, shard] : shards_) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

size_t ShardStore::size() const {
  absl::MutexLock lock(&mu_);
  return shards_.size();
}

uint64_t ShardStore::TotalBytes() const {
  absl::MutexLock lock(&mu_);
  return total_bytes_;
}

}  // namespace knncluster::worker
