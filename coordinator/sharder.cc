#include "coordinator/sharder.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace knncluster::coordinator {

std::string ShardId(const std::string& model, uint64_t generation, size_t index) {
  return absl::StrCat(model, "@", generation, "/", index);
}

absl::StatusOr<std::vector<ShardSpec>> PlanShards(const std::string& model, uint64_t generation,
                                                  uint64_t rows,
                                                  const std::vector<std::string>& worker_ids,
                                                  const ShardingOptions& options) {
  if (rows == 0) return absl::InvalidArgumentError("dataset: the training set has no rows");
  if (worker_ids.empty()) return absl::UnavailableError("no live workers to hold the shards");
  const uint64_t per_worker = static_cast<uint64_t>(std::max(1, options.shards_per_worker));
  const uint64_t min_rows = std::max<uint64_t>(1, options.min_rows_per_shard);
  uint64_t n_shards = per_worker * worker_ids.size();
  n_shards = std::min(n_shards, std::max<uint64_t>(1, rows / min_rows));
  std::vector<ShardSpec> shards;
  shards.reserve(n_shards);
  const uint64_t base = rows / n_shards;
  const uint64_t extra = rows % n_shards;
  uint64_t begin = 0;
  for (uint64_t i = 0; i < n_shards; ++i) {
    ShardSpec s;
    s.shard_id = ShardId(model, generation, i);
    s.worker_id = worker_ids[i % worker_ids.size()];
    s.first_global_index = static_cast<int64_t>(begin);
    s.rows = base + (i < extra ? 1 : 0);
    begin += s.rows;
    shards.push_back(std::move(s));
  }
  return shards;
}

}  // namespace knncluster::coordinator
