// DatasetCache: the whole datasets a worker holds for grid search (replicated mode), by content
// hash (rpc/content_hash.h). Each is its features, its labels and, for classifier jobs, the class
// encoding of its labels (EncodeClasses), computed on first use and kept.
//
// Memory: the cache charges each dataset DatasetBytes(rows, cols, has_labels) against a budget
// (the worker's --memory-budget-mb), together with what the ShardStore holds (`other_bytes`,
// read at each reservation) and with uploads in progress. Room is reserved from an upload's header
// before any row is read (Reserve): a dataset larger than the whole budget is refused at once
// (RESOURCE_EXHAUSTED naming the sizes); otherwise the least recently used datasets that no
// running job uses are evicted until it fits, and when even that is not enough the upload is
// refused (RESOURCE_EXHAUSTED naming what holds the budget). Not charged: a fold job's own working
// memory (its training rows gathered, its index, its neighbours), and the subset indexes of
// SearchShards.
//
// Ownership: datasets are immutable once cached and shared as std::shared_ptr<const
// CachedDataset>. A running job holds a Pin, which keeps its dataset from eviction (and alive);
// an upload holds a Reservation until its dataset is inserted or the upload fails. Pins and
// Reservations must not outlive the cache.
// Thread safety: every method may be called from any thread at once. No lock is held while a
// dataset is freed or while `other_bytes` runs.
#ifndef KNNCLUSTER_WORKER_DATASET_CACHE_H_
#define KNNCLUSTER_WORKER_DATASET_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/base/matrix.h"
#include "core/model_selection/grid_search.h"

namespace knncluster::worker {

// Bytes a dataset of this shape is charged: the features (rows x cols doubles), and when labeled
// the labels plus room for their class codes (2 x rows doubles). InvalidArgument naming
// "header.rows" when the product overflows 64 bits.
absl::StatusOr<uint64_t> DatasetBytes(uint64_t rows, uint64_t cols, bool has_labels);

// One cached dataset. Immutable, except that the class encoding is computed once, on first use.
class CachedDataset {
 public:
  // REQUIRES: features != nullptr; labels empty or one per row.
  CachedDataset(std::string content_hash, std::shared_ptr<const Matrix> features,
                std::vector<double> labels);
  CachedDataset(const CachedDataset&) = delete;
  CachedDataset& operator=(const CachedDataset&) = delete;

  const std::string& content_hash() const { return content_hash_; }
  const Matrix& features() const { return *features_; }
  absl::Span<const double> labels() const { return labels_; }
  bool has_labels() const { return !labels_.empty(); }
  size_t rows() const { return features_->rows(); }
  size_t cols() const { return features_->cols(); }
  // What the cache charges for it: DatasetBytes of its shape.
  uint64_t charged_bytes() const { return charged_bytes_; }

  // EncodeClasses(labels()), computed on the first call (by one caller; concurrent callers wait)
  // and kept. REQUIRES: has_labels().
  const absl::StatusOr<EncodedClasses>& Classes() const;

 private:
  const std::string content_hash_;
  const std::shared_ptr<const Matrix> features_;
  const std::vector<double> labels_;
  const uint64_t charged_bytes_;
  mutable absl::once_flag classes_once_;
  mutable absl::StatusOr<EncodedClasses> classes_;
};

class DatasetCache {
 public:
  // Room set aside for a dataset being received. Returns the room to the budget when destroyed,
  // unless passed to Insert. Movable.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept;
    Reservation& operator=(Reservation&& other) noexcept;
    ~Reservation();
    uint64_t bytes() const { return bytes_; }

   private:
    friend class DatasetCache;
    Reservation(DatasetCache* cache, uint64_t bytes) : cache_(cache), bytes_(bytes) {}
    DatasetCache* cache_ = nullptr;  // null: released or moved from
    uint64_t bytes_ = 0;
  };

  // A dataset in use: not evicted while any Pin on it exists. Movable.
  class Pin {
   public:
    Pin(Pin&& other) noexcept;
    Pin& operator=(Pin&& other) noexcept;
    ~Pin();
    const CachedDataset& operator*() const { return *dataset_; }
    const CachedDataset* operator->() const { return dataset_.get(); }

   private:
    friend class DatasetCache;
    Pin(DatasetCache* cache, std::shared_ptr<const CachedDataset> dataset)
        : cache_(cache), dataset_(std::move(dataset)) {}
    void Release();
    DatasetCache* cache_ = nullptr;  // null: moved from
    std::shared_ptr<const CachedDataset> dataset_;
  };

  // `budget_bytes` >= 1. `other_bytes` (may be empty: 0) returns the bytes held outside the cache
  // that count against the same budget (the worker's shards); it is called without the cache's
  // lock held.
  DatasetCache(uint64_t budget_bytes, std::function<uint64_t()> other_bytes);
  DatasetCache(const DatasetCache&) = delete;
  DatasetCache& operator=(const DatasetCache&) = delete;

  // Whether `content_hash` is cached; marks it recently used.
  bool Touch(const std::string& content_hash);

  // Sets aside `bytes` for a dataset about to be received, evicting least recently used datasets
  // that no job pins if needed. ResourceExhausted when `bytes` exceeds the whole budget ("the
  // dataset needs N bytes, more than this worker's whole memory budget of B bytes"), or when it
  // cannot be freed ("... only F of this worker's memory budget of B bytes can be made free:
  // shards hold S bytes, datasets pinned by running jobs P, uploads in progress U").
  absl::StatusOr<Reservation> Reserve(uint64_t bytes);

  // Caches `dataset` in the room `reservation` set aside, and returns how many datasets are now
  // cached. If a dataset with the same hash is already cached (a concurrent upload of the same
  // data), that one is kept and `dataset` dropped. REQUIRES: reservation came from this cache's
  // Reserve(dataset->charged_bytes()).
  size_t Insert(Reservation reservation, std::shared_ptr<const CachedDataset> dataset);

  // Pins a cached dataset for a job (and marks it recently used). NotFound: "dataset <hash> is not
  // cached on this worker".
  absl::StatusOr<Pin> Acquire(const std::string& content_hash);

  uint64_t budget_bytes() const { return budget_bytes_; }
  size_t size() const;
  // Bytes charged by the cached datasets (not counting reservations).
  uint64_t cached_bytes() const;
  // Datasets evicted so far.
  uint64_t evictions() const;

 private:
  struct Entry {
    std::shared_ptr<const CachedDataset> dataset;
    int pins = 0;
    uint64_t last_used = 0;  // a tick of use_clock_
  };

  void Unreserve(uint64_t bytes);
  void Unpin(const std::string& content_hash);

  const uint64_t budget_bytes_;
  const std::function<uint64_t()> other_bytes_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t reserved_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t use_clock_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace knncluster::worker

#endif  // KNNCLUSTER_WORKER_DATASET_CACHE_H_
