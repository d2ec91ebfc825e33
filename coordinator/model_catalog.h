// ModelCatalog: the models' part of the coordinator's data directory. Every fitted model is one
// durable file (core/base/durable_file.h: temporary file, fsync, rename, CRC-32, version)
// `<data-dir>/models/<name>.model` holding a v1::ModelRecord (proto/knncluster/v1/storage.proto):
// parameters, the training dataset's name and shape, the generation, the replication, the class
// names, every shard (rows or row ids, bounding box) with its copies (worker id, when placed,
// lost), and the routing grid. The labels are read back from the training dataset at recovery.
//
// The ModelManager saves a model after every change of its entry (fit, import, delete, a copy
// added or dropped by the repair loop), always the registry's newest entry under one lock, so
// an older entry never overwrites a newer one. A restarted coordinator loads every record: the
// workers that come back on their data directories report the shards they restored and the
// repair loop finds them where the records place them (nothing is re-sent); copies the workers
// do not report are marked lost and loaded again from the dataset.
//
// A file that cannot be read (truncated, bit flip, a newer format version, a dataset that is
// gone) is moved to `<data-dir>/quarantine/` and its reason, naming the file, is returned by
// Load: it is reported, never misread, and the other models load.
//
// Thread safety: every method may be called from any thread.
#ifndef KNNCLUSTER_COORDINATOR_MODEL_CATALOG_H_
#define KNNCLUSTER_COORDINATOR_MODEL_CATALOG_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/model_registry.h"
#include "knncluster/v1/storage.pb.h"

namespace knncluster::coordinator {

// The record of an entry, and an entry (without labels) from a validated record.
v1::ModelRecord ToRecord(const ModelEntry& entry);
// InvalidArgument naming the field for a record that does not describe a consistent model.
absl::StatusOr<std::shared_ptr<ModelEntry>> FromRecord(const v1::ModelRecord& record);

class ModelCatalog {
 public:
  // `<data_dir>/models`, created if missing; leftover temporary files are removed.
  static absl::StatusOr<std::unique_ptr<ModelCatalog>> Open(const std::string& data_dir);

  // Writes the registry's current entry of `name`, or removes its file when the registry has no
  // such model. Internal naming the file on an I/O error.
  absl::Status Sync(const ModelRegistry& registry, const std::string& name);

  struct Loaded {
    std::vector<v1::ModelRecord> records;  // sorted by name
    std::vector<absl::Status> errors;      // one per quarantined file, naming it
  };
  // Every readable record; unreadable files are quarantined (see above).
  Loaded Load();
  // Moves a model's file to quarantine (its record was readable but the model could not be
  // rebuilt, e.g. its dataset is gone); returns the new path.
  absl::StatusOr<std::string> Quarantine(const std::string& name);

  std::string PathOf(const std::string& name) const;

 private:
  ModelCatalog(std::string dir, std::string quarantine_dir)
      : dir_(std::move(dir)), quarantine_dir_(std::move(quarantine_dir)) {}

  const std::string dir_;
  const std::string quarantine_dir_;
  absl::Mutex mu_;  // one Sync at a time: the newest entry is the one written last
};

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_MODEL_CATALOG_H_
