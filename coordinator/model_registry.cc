#include "coordinator/model_registry.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace knncluster::coordinator {

void Placement::SyncLocation() {
  location.worker_ids.clear();
  for (const Replica& r : replicas) {
    if (!r.lost) location.worker_ids.push_back(r.worker_id);
  }
}

std::vector<ShardLocation> ModelEntry::Locations() const {
  std::vector<ShardLocation> out;
  out.reserve(shards.size());
  for (const Placement& p : shards) out.push_back(p.location);
  return out;
}

std::vector<std::pair<std::string, std::string>> ModelEntry::Copies() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Placement& p : shards) {
    for (const Replica& r : p.replicas) out.emplace_back(p.location.shard_id, r.worker_id);
  }
  return out;
}

uint64_t ModelRegistry::NextGeneration() {
  absl::MutexLock lock(&mu_);
  return next_generation_++;
}

void ModelRegistry::AdvanceGeneration(uint64_t generation) {
  absl::MutexLock lock(&mu_);
  next_generation_ = std::max(next_generation_, generation + 1);
}

absl::StatusOr<std::shared_ptr<const ModelEntry>> ModelRegistry::Get(
    const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(name);
  if (it == models_.end()) {
    return absl::NotFoundError(absl::StrCat("model: no model named \"", name, "\""));
  }
  return it->second;
}

bool ModelRegistry::Contains(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  return models_.count(name) > 0;
}

absl::StatusOr<std::shared_ptr<const ModelEntry>> ModelRegistry::Put(
    std::shared_ptr<const ModelEntry> entry, bool replace) {
  absl::MutexLock lock(&mu_);
  auto& slot = models_[entry->name];
  if (slot != nullptr && !replace) {
    return absl::AlreadyExistsError(absl::StrCat(
        "model: a model named \"", entry->name, "\" exists; set replace to overwrite it"));
  }
  std::shared_ptr<const ModelEntry> old = std::move(slot);
  slot = std::move(entry);
  return old;
}

absl::StatusOr<std::shared_ptr<const ModelEntry>> ModelRegistry::Remove(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(name);
  if (it == models_.end()) {
    return absl::NotFoundError(absl::StrCat("model: no model named \"", name, "\""));
  }
  std::shared_ptr<const ModelEntry> old = std::move(it->second);
  models_.erase(it);
  return old;
}

std::vector<std::shared_ptr<const ModelEntry>> ModelRegistry::List() const {
  std::vector<std::shared_ptr<const ModelEntry>> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, e] : models_) out.push_back(e);
  return out;
}

std::vector<std::string> ModelRegistry::ModelsUsing(const std::string& dataset) const {
  std::vector<std::string> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, e] : models_) {
    if (e->dataset == dataset) out.push_back(name);
  }
  return out;
}

namespace {
// Applies `change` to the placement of `shard_id` in a copy of the entry of (model, generation)
// and publishes the copy when `change` returned true. False when there is no such entry or shard,
// or nothing changed.
template <typename Change>
bool UpdatePlacement(std::map<std::string, std::shared_ptr<const ModelEntry>>& models,
                     const std::string& model, uint64_t generation, const std::string& shard_id,
                     Change change) {
  auto it = models.find(model);
  if (it == models.end() || it->second->generation != generation) return false;
  auto copy = std::make_shared<ModelEntry>(*it->second);
  for (Placement& p : copy->shards) {
    if (p.location.shard_id != shard_id) continue;
    if (!change(p)) return false;
    p.SyncLocation();
    it->second = std::move(copy);
    return true;
  }
  return false;
}
}  // namespace

bool ModelRegistry::AddReplica(const std::string& model, uint64_t generation,
                               const std::string& shard_id, const std::string& worker_id,
                               absl::Time placed_at) {
  absl::MutexLock lock(&mu_);
  return UpdatePlacement(models_, model, generation, shard_id, [&](Placement& p) {
    for (Replica& r : p.replicas) {
      if (r.worker_id == worker_id) {
        r.placed_at = placed_at;
        r.lost = false;
        return true;
      }
    }
    p.replicas.push_back({worker_id, placed_at, false});
    return true;
  });
}

bool ModelRegistry::RemoveReplica(const std::string& model, uint64_t generation,
                                  const std::string& shard_id, const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  return UpdatePlacement(models_, model, generation, shard_id, [&](Placement& p) {
    const size_t before = p.replicas.size();
    p.replicas.erase(std::remove_if(p.replicas.begin(), p.replicas.end(),
                                    [&](const Replica& r) { return r.worker_id == worker_id; }),
                     p.replicas.end());
    return p.replicas.size() != before;
  });
}

void ModelRegistry::MarkLost(const std::vector<std::pair<std::string, std::string>>& copies) {
  const std::set<std::pair<std::string, std::string>> lost(copies.begin(), copies.end());
  absl::MutexLock lock(&mu_);
  for (auto& [name, e] : models_) {
    bool touched = false;
    for (const Placement& p : e->shards) {
      for (const Replica& r : p.replicas) {
        touched |= !r.lost && lost.count({p.location.shard_id, r.worker_id}) > 0;
      }
    }
    if (!touched) continue;
    auto copy = std::make_shared<ModelEntry>(*e);
    for (Placement& p : copy->shards) {
      for (Replica& r : p.replicas) {
        if (lost.count({p.location.shard_id, r.worker_id}) > 0) r.lost = true;
      }
      p.SyncLocation();
    }
    e = std::move(copy);
  }
}

void ModelRegistry::AddPending(const std::vector<std::string>& shard_ids) {
  absl::MutexLock lock(&mu_);
  pending_.insert(shard_ids.begin(), shard_ids.end());
}

void ModelRegistry::RemovePending(const std::vector<std::string>& shard_ids) {
  absl::MutexLock lock(&mu_);
  for (const std::string& id : shard_ids) pending_.erase(id);
}

bool ModelRegistry::IsPending(const std::string& shard_id) const {
  absl::MutexLock lock(&mu_);
  return pending_.count(shard_id) > 0;
}

void ModelRegistry::PinDataset(const std::string& dataset) {
  absl::MutexLock lock(&mu_);
  pinned_.insert(dataset);
}

void ModelRegistry::UnpinDataset(const std::string& dataset) {
  absl::MutexLock lock(&mu_);
  auto it = pinned_.find(dataset);
  if (it != pinned_.end()) pinned_.erase(it);
}

bool ModelRegistry::IsPinned(const std::string& dataset) const {
  absl::MutexLock lock(&mu_);
  return pinned_.count(dataset) > 0;
}

}  // namespace knncluster::coordinator
