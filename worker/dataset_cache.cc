#include "worker/dataset_cache.h"

#include <cassert>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace knncluster::worker {

absl::StatusOr<uint64_t> DatasetBytes(uint64_t rows, uint64_t cols, bool has_labels) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  constexpr uint64_t kDouble = sizeof(double);
  const uint64_t label_values = has_labels ? 2 : 0;  // the labels and their class codes
  // rows * (cols + label_values) * 8 must not overflow.
  if (cols > kMax - label_values || (rows != 0 && cols + label_values > kMax / kDouble / rows)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "header.rows: %d rows x %d columns do not fit in 64-bit byte counts", rows, cols));
  }
  return rows * (cols + label_values) * kDouble;
}

// ---- CachedDataset ------------------------------------------------------------------------------

CachedDataset::CachedDataset(std::string content_hash, std::shared_ptr<const Matrix> features,
                             std::vector<double> labels)
    : content_hash_(std::move(content_hash)),
      features_(std::move(features)),
      labels_(std::move(labels)),
      // The shape of a Matrix in memory cannot overflow the count.
      charged_bytes_(*DatasetBytes(features_->rows(), features_->cols(), !labels_.empty())),
      classes_(absl::UnknownError("not computed")) {
  assert(labels_.empty() || labels_.size() == features_->rows());
}

const absl::StatusOr<EncodedClasses>& CachedDataset::Classes() const {
  assert(has_labels());
  absl::call_once(classes_once_, [this] { classes_ = EncodeClasses(labels_); });
  return classes_;
}

// ---- Reservation, Pin ---------------------------------------------------------------------------

DatasetCache::Reservation::Reservation(Reservation&& other) noexcept
    : cache_(std::exchange(other.cache_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DatasetCache::Reservation& DatasetCache::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    if (cache_ != nullptr) cache_->Unreserve(bytes_);
    cache_ = std::exchange(other.cache_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

DatasetCache::Reservation::~Reservation() {
  if (cache_ != nullptr) cache_->Unreserve(bytes_);
}

DatasetCache::Pin::Pin(Pin&& other) noexcept
    : cache_(std::exchange(other.cache_, nullptr)), dataset_(std::move(other.dataset_)) {}

DatasetCache::Pin& DatasetCache::Pin::operator=(Pin&& other) noexcept {
  if (this != &other) {
    Release();
    cache_ = std::exchange(other.cache_, nullptr);
    dataset_ = std::move(other.dataset_);
  }
  return *this;
}

DatasetCache::Pin::~Pin() { Release(); }

void DatasetCache::Pin::Release() {
  if (cache_ != nullptr) cache_->Unpin(dataset_->content_hash());
  cache_ = nullptr;
  dataset_.reset();
}

// ---- DatasetCache -------------------------------------------------------------------------------

DatasetCache::DatasetCache(uint64_t budget_bytes, std::function<uint64_t()> other_bytes)
    : budget_bytes_(budget_bytes), other_bytes_(std::move(other_bytes)) {
  assert(budget_bytes_ >= 1);
}

bool DatasetCache::Touch(const std::string& content_hash) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(content_hash);
  if (it == entries_.end()) return false;
  it->second.last_used = ++use_clock_;
  return true;
}

absl::StatusOr<DatasetCache::Reservation> DatasetCache::Reserve(uint64_t bytes) {
  if (bytes > budget_bytes_) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the dataset needs %d bytes, more than this worker's whole memory budget of %d bytes",
        bytes, budget_bytes_));
  }
  const uint64_t other = other_bytes_ ? other_bytes_() : 0;
  // Evicted datasets are freed when this goes out of scope, after the lock is released.
  std::vector<std::shared_ptr<const CachedDataset>> evicted;
  absl::MutexLock lock(&mu_);
  // Everything below is bounded by the budget or by memory actually held, so sums cannot
  // overflow.
  auto used = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return other + cached_bytes_ + reserved_bytes_;
  };
  while (used() + bytes > budget_bytes_) {
    auto victim = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.pins == 0 &&
          (victim == entries_.end() || it->second.last_used < victim->second.last_used)) {
        victim = it;
      }
    }
    if (victim == entries_.end()) break;
    cached_bytes_ -= victim->second.dataset->charged_bytes();
    evicted.push_back(std::move(victim->second.dataset));
    entries_.erase(victim);
    ++evictions_;
  }
  if (used() + bytes > budget_bytes_) {
    uint64_t pinned = 0;
    for (const auto& [hash, entry] : entries_) pinned += entry.dataset->charged_bytes();
    const uint64_t free = used() >= budget_bytes_ ? 0 : budget_bytes_ - used();
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the dataset needs %d bytes but only %d of this worker's memory budget of %d bytes can "
        "be made free: shards hold %d bytes, datasets pinned by running jobs %d, uploads in "
        "progress %d",
        bytes, free, budget_bytes_, other, pinned, reserved_bytes_));
  }
  reserved_bytes_ += bytes;
  return Reservation(this, bytes);
}

size_t DatasetCache::Insert(Reservation reservation, std::shared_ptr<const CachedDataset> dataset) {
  assert(reservation.cache_ == this && reservation.bytes_ == dataset->charged_bytes());
  std::shared_ptr<const CachedDataset> duplicate;  // freed after the lock is released
  absl::MutexLock lock(&mu_);
  reserved_bytes_ -= reservation.bytes_;
  reservation.cache_ = nullptr;  // its room now belongs to the entry
  const uint64_t tick = ++use_clock_;
  auto [it, inserted] = entries_.try_emplace(dataset->content_hash());
  if (inserted) {
    cached_bytes_ += dataset->charged_bytes();
    it->second.dataset = std::move(dataset);
  } else {
    duplicate = std::move(dataset);
  }
  it->second.last_used = tick;
  return entries_.size();
}

absl::StatusOr<DatasetCache::Pin> DatasetCache::Acquire(const std::string& content_hash) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(content_hash);
  if (it == entries_.end()) {
    return absl::NotFoundError(
        absl::StrCat("dataset ", content_hash, " is not cached on this worker"));
  }
  ++it->second.pins;
  it->second.last_used = ++use_clock_;
  return Pin(this, it->second.dataset);
}

void DatasetCache::Unreserve(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  reserved_bytes_ -= bytes;
}

void DatasetCache::Unpin(const std::string& content_hash) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(content_hash);
  // A pinned entry is never evicted or replaced.
  assert(it != entries_.end() && it->second.pins > 0);
  if (it != entries_.end()) --it->second.pins;
}

size_t DatasetCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

uint64_t DatasetCache::cached_bytes() const {
  absl::MutexLock lock(&mu_);
  return cached_bytes_;
}

uint64_t DatasetCache::evictions() const {
  absl::MutexLock lock(&mu_);
  return evictions_;
}

}  // namespace knncluster::worker
