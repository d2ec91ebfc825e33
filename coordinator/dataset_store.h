// DatasetStore: the coordinator's catalog of uploaded datasets and split parts, kept on disk in
// its data directory as the cluster's source of truth. Rows are streamed to disk as they arrive
// and read back with pread; no dataset is ever held whole in memory. A split part is a *view*:
// a list of row indices into a base dataset, never a copy of its rows.
//
// On disk (all integers and doubles little-endian):
//   <dir>/LOCK                      flock'ed while a store is open: one process per directory
//   <dir>/datasets/<name>/meta      versioned, CRC-32-checked header (see dataset_store.cc)
//   <dir>/datasets/<name>/features.f64   base only: rows x cols doubles, row-major
//   <dir>/datasets/<name>/labels.f64     base with labels: one double per row (codes for kString)
//   <dir>/datasets/<name>/indices.i64    view only: one int64 base row index per row
//   <dir>/datasets/.tmp-*           uploads and splits in progress; removed by Open after a crash
//   <dir>/quarantine/<name>-<id>    datasets Open could not load, moved aside (see load_errors())
// A dataset is written under a .tmp- directory, fsync'ed, then renamed into place (and the parent
// directory fsync'ed), so a crash leaves either the old dataset or the new one, never a mixture.
// Committed files are immutable.
//
// Views always point at a base dataset: splitting a view resolves its rows to base rows, so
// view_of is the base's name and there are no chains. A base that has views can be neither
// deleted nor replaced (FailedPrecondition naming a view); a view can be.
//
// Ownership: Open returns the sole owner of the store. A DatasetWriter borrows the store that
// made it: REQUIRES the store outlives every writer.
// Thread-safety: every DatasetStore method may be called concurrently. An absl::Mutex guards the
// catalog only; readers take a reference-counted entry (holding open file descriptors) and read
// without the lock, so a concurrent Delete or replace never pulls files from under a reader (the
// reader sees the version it looked up). A DatasetWriter is used by one thread at a time.
#ifndef KNNCLUSTER_COORDINATOR_DATASET_STORE_H_
#define KNNCLUSTER_COORDINATOR_DATASET_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/base/matrix.h"
#include "core/model_selection/split.h"

namespace knncluster::coordinator {

enum class LabelKind { kNone, kNumeric, kString };

struct DatasetMeta {
  std::string name;
  uint64_t rows = 0, cols = 0;
  LabelKind labels = LabelKind::kNone;
  // kString: the sorted unique names (byte order, as numpy.unique); labels are codes into it.
  std::vector<std::string> class_names;
  std::vector<std::string> feature_names;  // optional: empty or cols names
  std::string view_of;  // non-empty for a split part: the base dataset's name (never a view)
};

struct UploadHeader {
  std::string name;
  uint64_t cols = 0;
  LabelKind labels = LabelKind::kNone;
  std::vector<std::string> feature_names;  // empty or exactly cols names
  bool replace = false;
};

class DatasetStore;

namespace dataset_store_internal {
// The checksum of one data file, as kept in a version-3 meta (see dataset_store.cc).
struct DataFileCrc {
  std::string file;
  uint64_t size = 0;
  uint32_t crc = 0;
};
}  // namespace dataset_store_internal

// An upload in progress: rows are appended to files in a temporary directory of the store;
// Commit makes the dataset visible atomically (rename); destruction without Commit removes the
// temporary files. Made by DatasetStore::BeginUpload. Not thread-safe: one thread at a time.
class DatasetWriter {
 public:
  ~DatasetWriter();
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  // Appends a chunk of rows. rows.cols() must equal the header's cols (a chunk of 0 rows is a
  // no-op); `labels` has one finite value per row for kNumeric, `string_labels` one name per row
  // for kString, and both are empty for kNone. A chunk that fails validation is rejected whole
  // and the upload may continue; an I/O error ends the upload (every later call returns it).
  // Errors name the field: "chunk.labels: expected 100 labels, got 99", "chunk.rows: expected 64
  // columns, got 63", "chunk.rows.values[3][2]: value nan is not finite" (indices within the
  // chunk).
  absl::Status Append(MatrixView rows, absl::Span<const double> labels,
                      absl::Span<const std::string> string_labels);

  // Makes the dataset visible. InvalidArgument "dataset: no rows" when nothing was appended;
  // AlreadyExists if the name was taken meanwhile (and replace is false); FailedPrecondition if
  // the dataset to replace has views. Once called (whatever the outcome) the writer is finished.
  absl::StatusOr<DatasetMeta> Commit();

  // Rows appended so far.
  uint64_t rows() const { return rows_; }

 private:
  friend class DatasetStore;
  DatasetWriter(DatasetStore* store, UploadHeader header, std::string tmp_dir);
  absl::Status Open();
  absl::StatusOr<DatasetMeta> CommitImpl();
  absl::Status WriteStringCodes();

  DatasetStore* const store_;
  const UploadHeader header_;
  const std::string tmp_dir_;
  int features_fd_ = -1;
  int labels_fd_ = -1;  // kNumeric: labels.f64; kString: provisional uint32 codes (labels.tmp)
  uint64_t rows_ = 0;
  bool finished_ = false;
  absl::Status failed_;  // the I/O error that ended the upload, if any
  // kString: each distinct name with its provisional code (order of first appearance). The
  // codes file holds one provisional code per row; Commit rewrites it as sorted-name codes.
  std::map<std::string, uint32_t> provisional_codes_;
};

class DatasetStore {
 public:
  // Opens `dir` (creating it and its parents if missing) and loads every committed dataset into
  // the catalog, checking each meta file (magic, format version, CRC-32, name) and the sizes
  // and (version-3 metas) CRC-32s of its data files (and, for views, their base and the range
  // of every index). A dataset that
  // fails these checks is not fatal: it is moved to <dir>/quarantine/, the rest are loaded, and
  // the reason, naming the file, is kept in load_errors(). Leftovers of interrupted uploads are
  // removed. FailedPrecondition if another DatasetStore (in any process) has `dir` open.
  static absl::StatusOr<std::unique_ptr<DatasetStore>> Open(const std::string& dir);

  ~DatasetStore();
  DatasetStore(const DatasetStore&) = delete;
  DatasetStore& operator=(const DatasetStore&) = delete;

  // Starts an upload. Validates header.name ([A-Za-z0-9_.-]{1,128}, not starting with '.'),
  // header.cols >= 1, header.feature_names (empty or cols names). AlreadyExists unless
  // header.replace; FailedPrecondition when replacing a base that has views (both checked
  // again at Commit).
  absl::StatusOr<std::unique_ptr<DatasetWriter>> BeginUpload(const UploadHeader& header);

  // Every dataset and view, sorted by name.
  std::vector<DatasetMeta> List() const;

  // NotFound: `dataset: no dataset named "x"`.
  absl::StatusOr<DatasetMeta> Describe(const std::string& name) const;

  // Removes a dataset or view. FailedPrecondition naming a view when `name` is a base with views.
  absl::Status Delete(const std::string& name);

  struct SplitResult {
    DatasetMeta train, test;
    // scikit-learn's train_test_split(arange(rows of `name`)): positions within the dataset
    // that was split, in scikit-learn's order. When `name` is a base these are also the parts'
    // base rows; when it is a view, the parts list base rows view_indices[position].
    std::vector<int64_t> train_indices, test_indices;
  };
  // scikit-learn's train_test_split over the rows of `name` (TrainTestSplit; its errors pass
  // through and name test_size). Creates two views of the base: train row i is row
  // train_indices[i] of `name`. train_name and test_name are validated like upload names and
  // must differ from each other and from `name`; an existing part name is AlreadyExists unless
  // `replace`. The two parts are committed together under the catalog lock.
  absl::StatusOr<SplitResult> Split(const std::string& name, TestSize test_size,
                                    std::optional<uint32_t> random_state, bool shuffle,
                                    const std::string& train_name, const std::string& test_name,
                                    bool replace);

  // Rows [begin, end) of a dataset or view, in its own row order, read from disk. For a view,
  // base rows are gathered with one pread per run of nearby rows. InvalidArgument ("rows: ...")
  // unless begin <= end <= rows.
  absl::StatusOr<Matrix> ReadRows(const std::string& name, uint64_t begin, uint64_t end) const;

  // All labels of a dataset or view in its row order (codes into class_names for kString).
  // FailedPrecondition for a dataset without labels.
  absl::StatusOr<std::vector<double>> ReadLabels(const std::string& name) const;

  // What Open could not load, one status per dataset (naming the file and where it was moved).
  const std::vector<absl::Status>& load_errors() const { return load_errors_; }
  // The names of the datasets Open quarantined that were not views (bases, or datasets whose
  // meta could not be read): candidates for a rebuild from a model's shards.
  const std::set<std::string>& quarantined_bases() const { return quarantined_bases_; }

  const std::string& dir() const { return dir_; }

 private:
  friend class DatasetWriter;
  struct Entry;

  DatasetStore(std::string dir, int lock_fd);
  absl::Status Load();
  // Opens the files of a dataset written to `path` (checking their sizes, and for a view every
  // index against base_rows) as an entry not yet in the catalog. With `crcs` (from a version-3
  // meta) every data file's CRC-32 is verified too (DataLoss naming the file on a mismatch).
  static absl::StatusOr<std::shared_ptr<Entry>> MakeEntry(
      const std::string& path, DatasetMeta meta, uint64_t base_rows,
      std::shared_ptr<const Entry> base,
      std::optional<std::vector<dataset_store_internal::DataFileCrc>> crcs);
  absl::StatusOr<std::shared_ptr<const Entry>> Find(const std::string& name) const;
  // <dir>/datasets/<prefix><name>-<id>, an unused path; MakeTempDir creates one (prefix .tmp-).
  std::string UniquePath(const char* prefix, const std::string& name);
  absl::StatusOr<std::string> MakeTempDir(const std::string& name);
  // Whether `name` may be (re)placed: AlreadyExists unless replace; FailedPrecondition for a
  // base with views.
  absl::Status CheckReplaceable(const std::string& name, bool replace) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves tmp_dir to datasets/<entry's name> (swapping out any old version, whose files are then
  // removed) and publishes `entry`, made by MakeEntry from tmp_dir. The caller has checked
  // CheckReplaceable under the same lock.
  absl::Status Install(const std::string& tmp_dir, std::shared_ptr<Entry> entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string DatasetsDir() const { return dir_ + "/datasets"; }

  const std::string dir_;
  const int lock_fd_;
  std::atomic<uint64_t> next_tmp_id_{0};
  std::vector<absl::Status> load_errors_;  // written by Open only
  std::set<std::string> quarantined_bases_;  // written by Open only

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const Entry>> catalog_ ABSL_GUARDED_BY(mu_);
};

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_DATASET_STORE_H_
