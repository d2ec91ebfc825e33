#include "coordinator/dataset_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/crc32.h"
#include "core/base/durable_file.h"
#include "core/base/names.h"
#include "core/base/status_macros.h"

// The data files are defined as little-endian; they are written and read as raw host bytes.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "dataset files are little-endian: a big-endian build must byte-swap them");

namespace knncluster::coordinator {

// The meta file, version 3 (written): a durable file (core/base/durable_file.h: magic
// "KNNDSET\n", u32 version 3, u32 0, u64 payload length, u32 CRC-32 of the payload, u32 CRC-32 of
// the header, payload). Version 1 (read, never written; what builds before version 2 wrote):
//   magic "KNNDSET\n" (8 bytes) | u32 format version 1 | u64 payload length | payload | u32 CRC-32
// where the CRC covers every byte before it. Both share the magic and keep the version at byte 8,
// which tells them apart; a version-1 meta is read as it is (it upgrades when its dataset is
// next written). The payload of both versions is
//   str name | u64 rows | u64 cols | u8 label kind (0 none, 1 numeric, 2 string)
//   | u64 n, n x str class_names | u64 n, n x str feature_names | str view_of
//   | u64 base_rows (a view: its base's row count; a base: 0)
// with str = u64 byte length + bytes, all integers little-endian. Version 3 appends
//   | u64 n, n x (str file name | u64 size | u32 CRC-32 of the file's bytes)
// for every data file of the dataset (features.f64 and labels.f64 of a base, indices.i64 of a
// view), which Open verifies, so that a flipped byte in a data file (whose size is unchanged)
// quarantines the dataset instead of serving wrong rows. Versions 1 and 2 carry no data
// checksums: their data files are checked by size only.
namespace {

namespace fs = std::filesystem;

constexpr char kMetaMagic[8] = {'K', 'N', 'N', 'D', 'S', 'E', 'T', '\n'};
constexpr uint32_t kMetaVersion = 3;
constexpr uint32_t kMetaLegacyVersion = 1;
constexpr uint32_t kMetaFirstDurableVersion = 2;
constexpr DurableFileFormat kMetaFormat{"KNNDSET\n", kMetaVersion, kMetaFirstDurableVersion,
                                        "dataset meta file"};
constexpr char kMetaFile[] = "meta";
constexpr char kFeaturesFile[] = "features.f64";
constexpr char kLabelsFile[] = "labels.f64";
constexpr char kIndicesFile[] = "indices.i64";
constexpr char kStringCodesFile[] = "labels.tmp";  // during a kString upload only
constexpr char kTmpPrefix[] = ".tmp-";
constexpr char kOldPrefix[] = ".old-";
// A view's rows are gathered with one pread per run of base rows that are at most kMaxGapBytes
// apart, reading at most kMaxBlockBytes at once (or one row, if rows are larger).
constexpr uint64_t kMaxGapBytes = 64 << 10;
constexpr uint64_t kMaxBlockBytes = 1 << 20;
constexpr size_t kCopyBlockValues = 1 << 16;

std::string Quote(std::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(std::string(s)), "\"");
}

absl::Status ErrnoError(int err, const char* what, const std::string& path) {
  return absl::ErrnoToStatus(err, absl::StrCat(what, " ", path));
}

absl::Status FsError(const std::error_code& ec, const char* what, const std::string& path) {
  return absl::ErrnoToStatus(ec.value(), absl::StrCat(what, " ", path, ": ", ec.message()));
}

std::string Join(const std::string& dir, const std::string& file) {
  return absl::StrCat(dir, "/", file);
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::StatusOr<Fd> OpenFile(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, "cannot open", path);
  return Fd(fd);
}

absl::Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot write", path);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status PreadAll(int fd, void* data, size_t size, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot read", path);
    }
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(path, ": unexpected end of file at byte ", offset, " (truncated?)"));
    }
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status Fsync(int fd, const std::string& path) {
  if (::fsync(fd) != 0) return ErrnoError(errno, "cannot fsync", path);
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& path) {
  KNN_ASSIGN_OR_RETURN(Fd fd, OpenFile(path, O_RDONLY | O_DIRECTORY));
  return Fsync(fd.get(), path);
}

absl::StatusOr<uint64_t> FileSize(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, "cannot stat", path);
  return static_cast<uint64_t>(st.st_size);
}

absl::Status WriteFileSynced(const std::string& path, std::string_view bytes) {
  KNN_ASSIGN_OR_RETURN(Fd fd, OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC));
  KNN_RETURN_IF_ERROR(WriteAll(fd.get(), bytes.data(), bytes.size(), path));
  return Fsync(fd.get(), path);
}

absl::Status Rename(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoError(errno, "cannot rename", absl::StrCat(from, " to ", to));
  }
  return absl::OkStatus();
}

// Best effort: used to clean up after a failure or to drop files no catalog entry refers to.
void RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

uint8_t LabelKindCode(LabelKind k) {
  switch (k) {
    case LabelKind::kNone:
      return 0;
    case LabelKind::kNumeric:
      return 1;
    case LabelKind::kString:
      return 2;
  }
  return 0;
}

// --- meta encoding ---------------------------------------------------------------------------

class ByteWriter {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void Str(std::string_view s) {
    U64(s.size());
    out_.append(s.data(), s.size());
  }
  void Strs(const std::vector<std::string>& v) {
    U64(v.size());
    for (const std::string& s : v) Str(s);
  }
  void Bytes(std::string_view s) { out_.append(s.data(), s.size()); }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

// Reads fields from a bounded byte range; every read checks the bytes that remain.
class ByteReader {
 public:
  ByteReader(std::string_view bytes, const std::string& path) : bytes_(bytes), path_(path) {}
  bool done() const { return pos_ == bytes_.size(); }

  absl::Status U8(const char* field, uint8_t* v) {
    KNN_RETURN_IF_ERROR(Need(1, field));
    *v = static_cast<uint8_t>(bytes_[pos_++]);
    return absl::OkStatus();
  }
  absl::Status U32(const char* field, uint32_t* v) {
    KNN_RETURN_IF_ERROR(Need(4, field));
    *v = 0;
    for (int i = 0; i < 4; ++i)
      *v |= static_cast<uint32_t>(static_cast<uint8_t>(bytes_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return absl::OkStatus();
  }
  absl::Status U64(const char* field, uint64_t* v) {
    KNN_RETURN_IF_ERROR(Need(8, field));
    *v = 0;
    for (int i = 0; i < 8; ++i)
      *v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes_[pos_ + i])) << (8 * i);
    pos_ += 8;
    return absl::OkStatus();
  }
  absl::Status Str(const char* field, std::string* s) {
    uint64_t n;
    KNN_RETURN_IF_ERROR(U64(field, &n));
    KNN_RETURN_IF_ERROR(Need(n, field));
    s->assign(bytes_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  absl::Status Strs(const char* field, std::vector<std::string>* v) {
    uint64_t n;
    KNN_RETURN_IF_ERROR(U64(field, &n));
    // Each string takes at least its 8-byte length, which bounds n before anything is reserved.
    KNN_RETURN_IF_ERROR(Need(n > remaining() / 8 ? remaining() + 1 : 0, field));
    v->resize(n);
    for (std::string& s : *v) KNN_RETURN_IF_ERROR(Str(field, &s));
    return absl::OkStatus();
  }

 private:
  size_t remaining() const { return bytes_.size() - pos_; }
  absl::Status Need(uint64_t n, const char* field) const {
    if (n > remaining()) {
      return absl::DataLossError(
          absl::StrCat(path_, ": truncated while reading ", field, " (the file is corrupt)"));
    }
    return absl::OkStatus();
  }

  std::string_view bytes_;
  const std::string& path_;
  size_t pos_ = 0;
};

using dataset_store_internal::DataFileCrc;

// CRC-32 of the first `size` bytes of an open file, read in blocks.
absl::StatusOr<uint32_t> FileCrc32(int fd, uint64_t size, const std::string& path) {
  std::string block;
  uint32_t crc = 0;
  for (uint64_t at = 0; at < size;) {
    block.resize(std::min<uint64_t>(kMaxBlockBytes, size - at));
    KNN_RETURN_IF_ERROR(PreadAll(fd, block.data(), block.size(), at, path));
    crc = ExtendCrc32(crc, block);
    at += block.size();
  }
  return crc;
}

std::string EncodeMeta(const DatasetMeta& m, uint64_t base_rows,
                       const std::vector<DataFileCrc>& crcs) {
  ByteWriter payload;
  payload.Str(m.name);
  payload.U64(m.rows);
  payload.U64(m.cols);
  payload.U8(LabelKindCode(m.labels));
  payload.Strs(m.class_names);
  payload.Strs(m.feature_names);
  payload.Str(m.view_of);
  payload.U64(base_rows);
  payload.U64(crcs.size());
  for (const DataFileCrc& c : crcs) {
    payload.Str(c.file);
    payload.U64(c.size);
    payload.U32(c.crc);
  }
  return EncodeDurableFile(kMetaFormat, payload.out());
}

struct DecodedMeta {
  DatasetMeta meta;
  uint64_t base_rows = 0;
  std::optional<std::vector<DataFileCrc>> crcs;  // version >= 3 only
};

absl::StatusOr<DecodedMeta> DecodeMeta(std::string_view bytes, const std::string& path) {
  constexpr size_t kHeader = sizeof kMetaMagic + 4 + 8;
  if (bytes.size() < sizeof kMetaMagic ||
      std::memcmp(bytes.data(), kMetaMagic, sizeof kMetaMagic) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": not a dataset meta file (bad magic)"));
  }
  ByteReader header(bytes.substr(sizeof kMetaMagic), path);
  uint32_t version;
  KNN_RETURN_IF_ERROR(header.U32("the format version", &version));
  std::string_view payload;
  DecodedMeta d;
  if (version != kMetaLegacyVersion) {
    // Every check (checksums, length, a version newer than this build) is the durable file's.
    KNN_RETURN_IF_ERROR(ParseDurableFile(path, bytes, kMetaFormat).status());
    payload = bytes.substr(kDurableHeaderSize);
  } else {
    uint64_t payload_size;
    KNN_RETURN_IF_ERROR(header.U64("the payload length", &payload_size));
    if (payload_size != bytes.size() - std::min(bytes.size(), kHeader + 4) ||
        bytes.size() < kHeader + 4) {
      return absl::DataLossError(absl::StrCat(path, ": payload length ", payload_size,
                                              " does not match the file size ", bytes.size(),
                                              " (the file is corrupt)"));
    }
    const size_t crc_at = bytes.size() - 4;
    uint32_t stored = 0;
    for (int i = 0; i < 4; ++i)
      stored |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[crc_at + i])) << (8 * i);
    const uint32_t computed = Crc32(bytes.substr(0, crc_at));
    if (stored != computed) {
      return absl::DataLossError(absl::StrFormat(
          "%s: checksum mismatch (stored 0x%08x, computed 0x%08x): the file is corrupt", path,
          stored, computed));
    }
    payload = bytes.substr(kHeader, payload_size);
  }
  ByteReader r(payload, path);
  uint8_t kind;
  KNN_RETURN_IF_ERROR(r.Str("name", &d.meta.name));
  KNN_RETURN_IF_ERROR(r.U64("rows", &d.meta.rows));
  KNN_RETURN_IF_ERROR(r.U64("cols", &d.meta.cols));
  KNN_RETURN_IF_ERROR(r.U8("labels", &kind));
  KNN_RETURN_IF_ERROR(r.Strs("class_names", &d.meta.class_names));
  KNN_RETURN_IF_ERROR(r.Strs("feature_names", &d.meta.feature_names));
  KNN_RETURN_IF_ERROR(r.Str("view_of", &d.meta.view_of));
  KNN_RETURN_IF_ERROR(r.U64("base_rows", &d.base_rows));
  if (version >= 3) {
    uint64_t n;
    KNN_RETURN_IF_ERROR(r.U64("data file checksums", &n));
    if (n > 3) return absl::DataLossError(absl::StrCat(path, ": ", n, " data file checksums"));
    d.crcs.emplace(n);
    for (DataFileCrc& c : *d.crcs) {
      KNN_RETURN_IF_ERROR(r.Str("data file name", &c.file));
      KNN_RETURN_IF_ERROR(r.U64("data file size", &c.size));
      KNN_RETURN_IF_ERROR(r.U32("data file checksum", &c.crc));
    }
  }
  if (!r.done()) {
    return absl::DataLossError(absl::StrCat(path, ": trailing bytes after the payload"));
  }
  if (kind > 2) {
    return absl::DataLossError(absl::StrCat(path, ": unknown label kind ", kind));
  }
  d.meta.labels = static_cast<LabelKind>(kind);
  return d;
}

// Reads base rows indices[i] (each `row_bytes` long, from a file of `n_rows` rows) into
// out + i * row_bytes, one pread per run of nearby rows: sorting the indices turns a random
// split's rows into near-sequential reads.
absl::Status GatherRows(int fd, const std::string& path, uint64_t row_bytes, uint64_t n_rows,
                        absl::Span<const int64_t> indices, char* out) {
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || static_cast<uint64_t>(indices[i]) >= n_rows) {
      return absl::DataLossError(absl::StrCat("index ", indices[i], " into ", path, " of ", n_rows,
                                              " rows is out of range (corrupt view)"));
    }
  }
  std::vector<size_t> order(indices.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return indices[a] < indices[b]; });
  std::vector<char> block;
  for (size_t i = 0; i < order.size();) {
    const uint64_t first = static_cast<uint64_t>(indices[order[i]]);
    size_t j = i + 1;
    while (j < order.size()) {
      const uint64_t next = static_cast<uint64_t>(indices[order[j]]);
      const uint64_t prev = static_cast<uint64_t>(indices[order[j - 1]]);
      if ((next - prev) * row_bytes > kMaxGapBytes ||
          (next - first + 1) * row_bytes > kMaxBlockBytes) {
        break;
      }
      ++j;
    }
    const uint64_t last = static_cast<uint64_t>(indices[order[j - 1]]);
    block.resize((last - first + 1) * row_bytes);
    KNN_RETURN_IF_ERROR(PreadAll(fd, block.data(), block.size(), first * row_bytes, path));
    for (size_t k = i; k < j; ++k) {
      const uint64_t row = static_cast<uint64_t>(indices[order[k]]) - first;
      std::memcpy(out + order[k] * row_bytes, block.data() + row * row_bytes, row_bytes);
    }
    i = j;
  }
  return absl::OkStatus();
}

absl::Status NotFoundError(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("dataset: no dataset named ", Quote(name)));
}

// Removes a directory of ours on scope exit unless released.
class TreeGuard {
 public:
  explicit TreeGuard(std::string path) : path_(std::move(path)) {}
  ~TreeGuard() {
    if (!path_.empty()) RemoveTree(path_);
  }
  TreeGuard(const TreeGuard&) = delete;
  TreeGuard& operator=(const TreeGuard&) = delete;
  void Release() { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace

// A committed dataset or view as loaded: its meta and open descriptors of its files. Immutable
// once in the catalog; the descriptors keep the files readable after Delete unlinks them.
struct DatasetStore::Entry {
  DatasetMeta meta;
  std::string path;                   // the dataset's directory (for messages)
  Fd features, labels, indices;       // base: features (+ labels); view: indices
  std::shared_ptr<const Entry> base;  // a view's base

  std::string File(const char* file) const { return Join(path, file); }
  const Entry& data() const { return base ? *base : *this; }
};

namespace {

// Opens the files of the dataset described by `meta` in `path` and checks their sizes (and, for
// a view, that every index is a row of `base`).
// With `crcs` (a version-3 meta), every data file must be listed there and match its CRC-32.
absl::Status OpenFiles(const std::string& path, const DatasetMeta& meta, uint64_t base_rows,
                       const std::vector<DataFileCrc>* crcs, int* features, int* labels,
                       int* indices) {
  const auto open_sized = [&](const char* file, uint64_t bytes, int* out) -> absl::Status {
    const std::string p = Join(path, file);
    KNN_ASSIGN_OR_RETURN(Fd fd, OpenFile(p, O_RDONLY));
    KNN_ASSIGN_OR_RETURN(uint64_t size, FileSize(fd.get(), p));
    if (size != bytes) {
      return absl::DataLossError(absl::StrCat(p, ": expected ", bytes, " bytes, found ", size,
                                              " (the file is corrupt or truncated)"));
    }
    if (crcs != nullptr) {
      const auto it = std::find_if(crcs->begin(), crcs->end(),
                                   [&](const DataFileCrc& c) { return c.file == file; });
      if (it == crcs->end()) {
        return absl::DataLossError(
            absl::StrCat(Join(path, kMetaFile), ": no checksum for ", file));
      }
      KNN_ASSIGN_OR_RETURN(uint32_t crc, FileCrc32(fd.get(), size, p));
      if (it->size != size || it->crc != crc) {
        return absl::DataLossError(absl::StrFormat(
            "%s: checksum mismatch (meta says %d bytes with CRC-32 0x%08x, found %d bytes with "
            "0x%08x): the file is corrupt",
            p, it->size, it->crc, size, crc));
      }
    }
    *out = fd.release();
    return absl::OkStatus();
  };
  if (meta.view_of.empty()) {
    KNN_RETURN_IF_ERROR(
        open_sized(kFeaturesFile, meta.rows * meta.cols * sizeof(double), features));
    if (meta.labels != LabelKind::kNone) {
      KNN_RETURN_IF_ERROR(open_sized(kLabelsFile, meta.rows * sizeof(double), labels));
    }
    return absl::OkStatus();
  }
  KNN_RETURN_IF_ERROR(open_sized(kIndicesFile, meta.rows * sizeof(int64_t), indices));
  const std::string p = Join(path, kIndicesFile);
  std::vector<int64_t> block;
  for (uint64_t begin = 0; begin < meta.rows; begin += kCopyBlockValues) {
    block.resize(std::min<uint64_t>(kCopyBlockValues, meta.rows - begin));
    KNN_RETURN_IF_ERROR(PreadAll(*indices, block.data(), block.size() * sizeof(int64_t),
                                 begin * sizeof(int64_t), p));
    for (size_t i = 0; i < block.size(); ++i) {
      if (block[i] < 0 || static_cast<uint64_t>(block[i]) >= base_rows) {
        return absl::DataLossError(absl::StrCat(p, ": index ", block[i], " at row ", begin + i,
                                                " is not a row of base dataset ",
                                                Quote(meta.view_of), " (", base_rows, " rows)"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<DatasetStore::Entry>> DatasetStore::MakeEntry(
    const std::string& path, DatasetMeta meta, uint64_t base_rows,
    std::shared_ptr<const Entry> base, std::optional<std::vector<DataFileCrc>> crcs) {
  auto e = std::make_shared<Entry>();
  int features = -1, labels = -1, indices = -1;
  absl::Status s =
      OpenFiles(path, meta, base_rows, crcs ? &*crcs : nullptr, &features, &labels, &indices);
  e->features = Fd(features);
  e->labels = Fd(labels);
  e->indices = Fd(indices);
  KNN_RETURN_IF_ERROR(s);
  e->meta = std::move(meta);
  e->path = path;
  e->base = std::move(base);
  return e;
}

// --- DatasetWriter ---------------------------------------------------------------------------

DatasetWriter::DatasetWriter(DatasetStore* store, UploadHeader header, std::string tmp_dir)
    : store_(store), header_(std::move(header)), tmp_dir_(std::move(tmp_dir)) {}

DatasetWriter::~DatasetWriter() {
  if (features_fd_ >= 0) ::close(features_fd_);
  if (labels_fd_ >= 0) ::close(labels_fd_);
  // After a successful Commit the directory has been renamed away and this is a no-op.
  RemoveTree(tmp_dir_);
}

absl::Status DatasetWriter::Open() {
  const int flags = O_RDWR | O_CREAT | O_EXCL;
  KNN_ASSIGN_OR_RETURN(Fd features, OpenFile(Join(tmp_dir_, kFeaturesFile), flags));
  features_fd_ = features.release();
  if (header_.labels != LabelKind::kNone) {
    const char* file = header_.labels == LabelKind::kString ? kStringCodesFile : kLabelsFile;
    KNN_ASSIGN_OR_RETURN(Fd labels, OpenFile(Join(tmp_dir_, file), flags));
    labels_fd_ = labels.release();
  }
  return absl::OkStatus();
}

absl::Status DatasetWriter::Append(MatrixView rows, absl::Span<const double> labels,
                                   absl::Span<const std::string> string_labels) {
  if (finished_) return absl::FailedPreconditionError("upload: already committed");
  KNN_RETURN_IF_ERROR(failed_);
  const size_t n = rows.rows();
  if (n > 0 && rows.cols() != header_.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk.rows: expected ", header_.cols, " columns, got ", rows.cols()));
  }
  switch (header_.labels) {
    case LabelKind::kNone:
      if (!labels.empty() || !string_labels.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(labels.empty() ? "chunk.string_labels" : "chunk.labels", ": dataset ",
                         Quote(header_.name), " was declared without labels, got ",
                         labels.size() + string_labels.size()));
      }
      break;
    case LabelKind::kNumeric:
      if (!string_labels.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("chunk.string_labels: dataset ", Quote(header_.name),
                         " was declared with numeric labels (chunk.labels), got ",
                         string_labels.size(), " string labels"));
      }
      if (labels.size() != n) {
        return absl::InvalidArgumentError(
            absl::StrCat("chunk.labels: expected ", n, " labels, got ", labels.size()));
      }
      break;
    case LabelKind::kString:
      if (!labels.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("chunk.labels: dataset ", Quote(header_.name),
                         " was declared with string labels (chunk.string_labels), got ",
                         labels.size(), " numeric labels"));
      }
      if (string_labels.size() != n) {
        return absl::InvalidArgumentError(absl::StrCat("chunk.string_labels: expected ", n,
                                                       " labels, got ", string_labels.size()));
      }
      break;
  }
  if (n == 0) return absl::OkStatus();
  const size_t cols = header_.cols;
  for (size_t i = 0; i < n; ++i) {
    const double* row = rows.row(i);
    for (size_t j = 0; j < cols; ++j) {
      if (!std::isfinite(row[j])) {
        return absl::InvalidArgumentError(
            absl::StrCat("chunk.rows.values[", i, "][", j, "]: value ", row[j], " is not finite"));
      }
    }
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (!std::isfinite(labels[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk.labels[", i, "]: value ", labels[i], " is not finite"));
    }
  }
  std::vector<uint32_t> codes;
  if (header_.labels == LabelKind::kString) {
    codes.reserve(n);
    for (const std::string& s : string_labels) {
      auto it = provisional_codes_.find(s);
      if (it == provisional_codes_.end()) {
        const uint32_t code = static_cast<uint32_t>(provisional_codes_.size());
        it = provisional_codes_.emplace(s, code).first;
      }
      codes.push_back(it->second);
    }
  }
  // From here a failure leaves a partial chunk in the files: the upload is over.
  absl::Status s =
      WriteAll(features_fd_, rows.data(), n * cols * sizeof(double), Join(tmp_dir_, kFeaturesFile));
  if (s.ok() && header_.labels == LabelKind::kNumeric) {
    s = WriteAll(labels_fd_, labels.data(), n * sizeof(double), Join(tmp_dir_, kLabelsFile));
  } else if (s.ok() && header_.labels == LabelKind::kString) {
    s = WriteAll(labels_fd_, codes.data(), n * sizeof(uint32_t), Join(tmp_dir_, kStringCodesFile));
  }
  if (!s.ok()) {
    failed_ = s;
    return s;
  }
  rows_ += n;
  return absl::OkStatus();
}

// Rewrites the provisional codes (order of first appearance) as codes into the sorted names,
// streaming the codes file into labels.f64.
absl::Status DatasetWriter::WriteStringCodes() {
  std::vector<uint32_t> remap(provisional_codes_.size());
  uint32_t rank = 0;
  // std::map orders std::string by char_traits<char>, which compares bytes as unsigned char:
  // byte order, as numpy.unique sorts.
  for (const auto& [name, code] : provisional_codes_) remap[code] = rank++;
  const std::string codes_path = Join(tmp_dir_, kStringCodesFile);
  const std::string labels_path = Join(tmp_dir_, kLabelsFile);
  KNN_ASSIGN_OR_RETURN(Fd out, OpenFile(labels_path, O_RDWR | O_CREAT | O_EXCL));
  std::vector<uint32_t> in;
  std::vector<double> values;
  for (uint64_t begin = 0; begin < rows_; begin += kCopyBlockValues) {
    in.resize(std::min<uint64_t>(kCopyBlockValues, rows_ - begin));
    KNN_RETURN_IF_ERROR(PreadAll(labels_fd_, in.data(), in.size() * sizeof(uint32_t),
                                 begin * sizeof(uint32_t), codes_path));
    values.resize(in.size());
    for (size_t i = 0; i < in.size(); ++i) values[i] = remap[in[i]];
    KNN_RETURN_IF_ERROR(
        WriteAll(out.get(), values.data(), values.size() * sizeof(double), labels_path));
  }
  ::close(labels_fd_);
  labels_fd_ = out.release();
  if (::unlink(codes_path.c_str()) != 0) return ErrnoError(errno, "cannot remove", codes_path);
  return absl::OkStatus();
}

absl::StatusOr<DatasetMeta> DatasetWriter::Commit() {
  if (finished_) return absl::FailedPreconditionError("upload: already committed");
  finished_ = true;
  return CommitImpl();
}

absl::StatusOr<DatasetMeta> DatasetWriter::CommitImpl() {
  KNN_RETURN_IF_ERROR(failed_);
  if (rows_ == 0) return absl::InvalidArgumentError("dataset: no rows");
  if (header_.labels == LabelKind::kString) KNN_RETURN_IF_ERROR(WriteStringCodes());
  KNN_RETURN_IF_ERROR(Fsync(features_fd_, Join(tmp_dir_, kFeaturesFile)));
  if (labels_fd_ >= 0) KNN_RETURN_IF_ERROR(Fsync(labels_fd_, Join(tmp_dir_, kLabelsFile)));
  DatasetMeta meta;
  meta.name = header_.name;
  meta.rows = rows_;
  meta.cols = header_.cols;
  meta.labels = header_.labels;
  meta.feature_names = header_.feature_names;
  if (header_.labels == LabelKind::kString) {
    meta.class_names.reserve(provisional_codes_.size());
    for (const auto& [name, code] : provisional_codes_) meta.class_names.push_back(name);
    provisional_codes_.clear();
  }
  std::vector<DataFileCrc> crcs;
  for (const auto& [file, fd] : {std::pair<const char*, int>{kFeaturesFile, features_fd_},
                                 std::pair<const char*, int>{kLabelsFile, labels_fd_}}) {
    if (fd < 0) continue;
    const std::string p = Join(tmp_dir_, file);
    KNN_ASSIGN_OR_RETURN(uint64_t size, FileSize(fd, p));
    KNN_ASSIGN_OR_RETURN(uint32_t crc, FileCrc32(fd, size, p));
    crcs.push_back({file, size, crc});
  }
  KNN_RETURN_IF_ERROR(WriteFileSynced(Join(tmp_dir_, kMetaFile), EncodeMeta(meta, 0, crcs)));
  KNN_RETURN_IF_ERROR(FsyncDir(tmp_dir_));
  ::close(features_fd_);
  features_fd_ = -1;
  if (labels_fd_ >= 0) ::close(labels_fd_);
  labels_fd_ = -1;
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<DatasetStore::Entry> entry,
                       DatasetStore::MakeEntry(tmp_dir_, meta, 0, nullptr, std::nullopt));

  absl::MutexLock lock(&store_->mu_);
  KNN_RETURN_IF_ERROR(store_->CheckReplaceable(meta.name, header_.replace));
  KNN_RETURN_IF_ERROR(store_->Install(tmp_dir_, std::move(entry)));
  return meta;
}

// --- DatasetStore ----------------------------------------------------------------------------

DatasetStore::DatasetStore(std::string dir, int lock_fd)
    : dir_(std::move(dir)), lock_fd_(lock_fd) {}

DatasetStore::~DatasetStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

absl::StatusOr<std::unique_ptr<DatasetStore>> DatasetStore::Open(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(Join(dir, "datasets"), ec);
  if (ec) return FsError(ec, "cannot create", Join(dir, "datasets"));
  const std::string lock_path = Join(dir, "LOCK");
  KNN_ASSIGN_OR_RETURN(Fd lock, OpenFile(lock_path, O_RDWR | O_CREAT));
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat(lock_path, ": the data directory is in use by another dataset store"));
    }
    return ErrnoError(errno, "cannot lock", lock_path);
  }
  std::unique_ptr<DatasetStore> store(new DatasetStore(dir, lock.release()));
  KNN_RETURN_IF_ERROR(store->Load());
  return store;
}

absl::Status DatasetStore::Load() {
  const std::string datasets = DatasetsDir();
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(datasets, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string file = it->path().filename().string();
    if (file.rfind(kTmpPrefix, 0) == 0) {
      RemoveTree(it->path().string());  // an upload, split or delete cut short
    } else {
      names.push_back(file);
    }
  }
  if (ec) return FsError(ec, "cannot list", datasets);
  // ".old-<name>-<id>" is a dataset being replaced when the filesystem lacks RENAME_EXCHANGE: if
  // the crash came before the new version took its place, the old one goes back.
  std::vector<std::string> dataset_names;
  for (const std::string& file : names) {
    if (file.rfind(kOldPrefix, 0) != 0) {
      dataset_names.push_back(file);
      continue;
    }
    const size_t dash = file.rfind('-');
    const std::string name = file.substr(sizeof kOldPrefix - 1, dash - (sizeof kOldPrefix - 1));
    const std::string old_path = Join(datasets, file);
    if (dash != std::string::npos && dash > sizeof kOldPrefix - 1 && ValidateName(name, "").ok() &&
        !fs::exists(Join(datasets, name), ec) && Rename(old_path, Join(datasets, name)).ok()) {
      dataset_names.push_back(name);
    } else {
      RemoveTree(old_path);
    }
  }
  std::sort(dataset_names.begin(), dataset_names.end());
  dataset_names.erase(std::unique(dataset_names.begin(), dataset_names.end()), dataset_names.end());

  // Bases first, so that views find theirs.
  struct Pending {
    std::string name;
    DecodedMeta meta;
  };
  std::vector<Pending> views;
  std::map<std::string, std::shared_ptr<const Entry>> loaded;
  const auto fail = [&](const std::string& name, const absl::Status& why) {
    const std::string quarantine = Join(dir_, "quarantine");
    const std::string to =
        Join(quarantine, absl::StrCat(name, "-",
                                      std::chrono::duration_cast<std::chrono::seconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count(),
                                      ".", ::getpid(), ".", next_tmp_id_++));
    std::error_code mk;
    fs::create_directories(quarantine, mk);
    const absl::Status moved =
        mk ? FsError(mk, "cannot create", quarantine) : Rename(Join(datasets, name), to);
    load_errors_.push_back(absl::Status(
        why.code(),
        absl::StrCat("dataset ", Quote(name), " not loaded: ", why.message(),
                     moved.ok() ? absl::StrCat("; moved to ", to)
                                : absl::StrCat("; left in place (", moved.message(), ")"))));
  };
  for (const std::string& name : dataset_names) {
    const std::string path = Join(datasets, name);
    const std::string meta_path = Join(path, kMetaFile);
    absl::StatusOr<DecodedMeta> meta = [&]() -> absl::StatusOr<DecodedMeta> {
      KNN_RETURN_IF_ERROR(ValidateName(name, path));
      if (!fs::is_directory(path))
        return absl::DataLossError(absl::StrCat(path, ": not a directory"));
      KNN_ASSIGN_OR_RETURN(Fd fd, OpenFile(meta_path, O_RDONLY));
      KNN_ASSIGN_OR_RETURN(uint64_t size, FileSize(fd.get(), meta_path));
      std::string bytes(size, '\0');
      KNN_RETURN_IF_ERROR(PreadAll(fd.get(), bytes.data(), size, 0, meta_path));
      KNN_ASSIGN_OR_RETURN(DecodedMeta d, DecodeMeta(bytes, meta_path));
      if (d.meta.name != name) {
        return absl::DataLossError(absl::StrCat(meta_path, ": names dataset ", Quote(d.meta.name),
                                                ", not its directory's name"));
      }
      return d;
    }();
    if (!meta.ok()) {
      quarantined_bases_.insert(name);  // perhaps a view: its meta cannot say
      fail(name, meta.status());
      continue;
    }
    if (!meta->meta.view_of.empty()) {
      views.push_back({name, *std::move(meta)});
      continue;
    }
    auto entry = MakeEntry(path, std::move(meta->meta), 0, nullptr, std::move(meta->crcs));
    if (!entry.ok()) {
      quarantined_bases_.insert(name);
      fail(name, entry.status());
      continue;
    }
    loaded[name] = *std::move(entry);
  }
  for (Pending& v : views) {
    const std::string path = Join(datasets, v.name);
    const DatasetMeta& m = v.meta.meta;
    const auto base_it = loaded.find(m.view_of);
    absl::Status bad;
    if (base_it == loaded.end() || !base_it->second->meta.view_of.empty()) {
      bad = absl::DataLossError(absl::StrCat(Join(path, kMetaFile), ": base dataset ",
                                             Quote(m.view_of), " is not loaded"));
    } else {
      const DatasetMeta& b = base_it->second->meta;
      if (b.rows != v.meta.base_rows || b.cols != m.cols || b.labels != m.labels ||
          b.class_names != m.class_names) {
        bad = absl::DataLossError(absl::StrCat(Join(path, kMetaFile),
                                               ": does not match its base dataset ",
                                               Quote(m.view_of), " (rows, cols or labels differ)"));
      }
    }
    if (!bad.ok()) {
      fail(v.name, bad);
      continue;
    }
    auto entry = MakeEntry(path, std::move(v.meta.meta), v.meta.base_rows, base_it->second,
                           std::move(v.meta.crcs));
    if (!entry.ok()) {
      fail(v.name, entry.status());
      continue;
    }
    loaded[v.name] = *std::move(entry);
  }
  absl::MutexLock lock(&mu_);
  catalog_ = std::move(loaded);
  return absl::OkStatus();
}

std::string DatasetStore::UniquePath(const char* prefix, const std::string& name) {
  // The id has no '-', so Load can take the name back out of ".old-<name>-<id>".
  return Join(DatasetsDir(), absl::StrCat(prefix, name, "-", ::getpid(), ".", next_tmp_id_++));
}

absl::StatusOr<std::string> DatasetStore::MakeTempDir(const std::string& name) {
  for (int attempt = 0;; ++attempt) {
    const std::string path = UniquePath(kTmpPrefix, name);
    if (::mkdir(path.c_str(), 0755) == 0) return path;
    if (errno != EEXIST || attempt >= 100) return ErrnoError(errno, "cannot create", path);
  }
}

absl::StatusOr<std::shared_ptr<const DatasetStore::Entry>> DatasetStore::Find(
    const std::string& name) const {
  absl::MutexLock lock(&mu_);
  const auto it = catalog_.find(name);
  if (it == catalog_.end()) return NotFoundError(name);
  return it->second;
}

absl::Status DatasetStore::CheckReplaceable(const std::string& name, bool replace) const {
  const auto it = catalog_.find(name);
  if (it == catalog_.end()) return absl::OkStatus();
  if (!replace) {
    return absl::AlreadyExistsError(
        absl::StrCat("dataset: ", Quote(name), " already exists (set replace to overwrite it)"));
  }
  for (const auto& [other, entry] : catalog_) {
    if (entry->meta.view_of == name) {
      return absl::FailedPreconditionError(absl::StrCat("dataset: cannot replace ", Quote(name),
                                                        ": it has views (", Quote(other),
                                                        "); delete them first"));
    }
  }
  return absl::OkStatus();
}

absl::Status DatasetStore::Install(const std::string& tmp_dir, std::shared_ptr<Entry> entry) {
  const std::string name = entry->meta.name;
  const std::string final_path = Join(DatasetsDir(), name);
  // The entry's descriptors were opened before the rename (they follow the files), so nothing
  // can fail between publishing the directory and publishing the entry.
  entry->path = final_path;
  if (catalog_.count(name) == 0) {
    KNN_RETURN_IF_ERROR(Rename(tmp_dir, final_path));
  } else if (::renameat2(AT_FDCWD, tmp_dir.c_str(), AT_FDCWD, final_path.c_str(),
                         RENAME_EXCHANGE) == 0) {
    RemoveTree(tmp_dir);  // now holds the old version; open readers keep their descriptors
  } else if (errno == EINVAL || errno == ENOSYS) {
    // No atomic exchange on this filesystem: move the old version aside first (Open restores it
    // if we crash before the new one is in place).
    const std::string old_path = UniquePath(kOldPrefix, name);
    KNN_RETURN_IF_ERROR(Rename(final_path, old_path));
    absl::Status s = Rename(tmp_dir, final_path);
    if (!s.ok()) {
      (void)Rename(old_path, final_path);
      return s;
    }
    RemoveTree(old_path);
  } else {
    return ErrnoError(errno, "cannot exchange", absl::StrCat(tmp_dir, " and ", final_path));
  }
  catalog_[name] = std::move(entry);
  return FsyncDir(DatasetsDir());
}

absl::StatusOr<std::unique_ptr<DatasetWriter>> DatasetStore::BeginUpload(
    const UploadHeader& header) {
  KNN_RETURN_IF_ERROR(ValidateName(header.name, "header.name"));
  if (header.cols < 1) {
    return absl::InvalidArgumentError(absl::StrCat("header.cols: must be >= 1, got ", header.cols));
  }
  if (!header.feature_names.empty() && header.feature_names.size() != header.cols) {
    return absl::InvalidArgumentError(absl::StrCat("header.feature_names: expected ", header.cols,
                                                   " names (or none), got ",
                                                   header.feature_names.size()));
  }
  {
    absl::MutexLock lock(&mu_);
    KNN_RETURN_IF_ERROR(CheckReplaceable(header.name, header.replace));
  }
  KNN_ASSIGN_OR_RETURN(std::string tmp_dir, MakeTempDir(header.name));
  std::unique_ptr<DatasetWriter> writer(new DatasetWriter(this, header, std::move(tmp_dir)));
  KNN_RETURN_IF_ERROR(writer->Open());
  return writer;
}

std::vector<DatasetMeta> DatasetStore::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<DatasetMeta> out;
  out.reserve(catalog_.size());
  for (const auto& [name, entry] : catalog_) out.push_back(entry->meta);
  return out;
}

absl::StatusOr<DatasetMeta> DatasetStore::Describe(const std::string& name) const {
  KNN_ASSIGN_OR_RETURN(auto entry, Find(name));
  return entry->meta;
}

absl::Status DatasetStore::Delete(const std::string& name) {
  std::string doomed;
  {
    absl::MutexLock lock(&mu_);
    const auto it = catalog_.find(name);
    if (it == catalog_.end()) return NotFoundError(name);
    for (const auto& [other, entry] : catalog_) {
      if (entry->meta.view_of == name) {
        return absl::FailedPreconditionError(absl::StrCat("dataset: cannot delete ", Quote(name),
                                                          ": it has views (", Quote(other),
                                                          "); delete them first"));
      }
    }
    // One rename takes the dataset out of sight atomically; Open sweeps a .tmp- left by a crash.
    doomed = UniquePath(kTmpPrefix, name);
    KNN_RETURN_IF_ERROR(Rename(Join(DatasetsDir(), name), doomed));
    catalog_.erase(it);
    KNN_RETURN_IF_ERROR(FsyncDir(DatasetsDir()));
  }
  RemoveTree(doomed);  // readers holding the entry keep reading through its open descriptors
  return absl::OkStatus();
}

absl::StatusOr<DatasetStore::SplitResult> DatasetStore::Split(
    const std::string& name, TestSize test_size, std::optional<uint32_t> random_state, bool shuffle,
    const std::string& train_name, const std::string& test_name, bool replace) {
  KNN_RETURN_IF_ERROR(ValidateName(train_name, "train_name"));
  KNN_RETURN_IF_ERROR(ValidateName(test_name, "test_name"));
  if (train_name == test_name) {
    return absl::InvalidArgumentError(
        absl::StrCat("test_name: must differ from train_name, both are ", Quote(train_name)));
  }
  for (const auto& [field, part] :
       {std::pair{"train_name", &train_name}, {"test_name", &test_name}}) {
    if (*part == name) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must differ from the dataset being split, ", Quote(name)));
    }
  }
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const Entry> source, Find(name));
  const DatasetMeta& src = source->meta;
  KNN_ASSIGN_OR_RETURN(TrainTestIndices split, TrainTestSplit(static_cast<int64_t>(src.rows),
                                                              test_size, random_state, shuffle));
  const std::shared_ptr<const Entry> base = source->base ? source->base : source;

  // Base rows of each part: a view's split positions resolve through its own indices.
  std::vector<int64_t> source_rows;
  if (source->base) {
    source_rows.resize(src.rows);
    KNN_RETURN_IF_ERROR(PreadAll(source->indices.get(), source_rows.data(),
                                 source_rows.size() * sizeof(int64_t), 0,
                                 source->File(kIndicesFile)));
  }
  const auto write_part = [&](const std::string& part_name, const std::vector<int64_t>& positions,
                              std::string* tmp_dir) -> absl::StatusOr<std::shared_ptr<Entry>> {
    KNN_ASSIGN_OR_RETURN(*tmp_dir, MakeTempDir(part_name));
    const std::string indices_path = Join(*tmp_dir, kIndicesFile);
    KNN_ASSIGN_OR_RETURN(Fd fd, OpenFile(indices_path, O_WRONLY | O_CREAT | O_EXCL));
    const std::vector<int64_t>* rows = &positions;
    std::vector<int64_t> resolved;
    if (source->base) {
      resolved.resize(positions.size());
      for (size_t i = 0; i < positions.size(); ++i) resolved[i] = source_rows[positions[i]];
      rows = &resolved;
    }
    KNN_RETURN_IF_ERROR(
        WriteAll(fd.get(), rows->data(), rows->size() * sizeof(int64_t), indices_path));
    KNN_RETURN_IF_ERROR(Fsync(fd.get(), indices_path));
    const uint64_t indices_bytes = rows->size() * sizeof(int64_t);
    const std::vector<DataFileCrc> crcs = {
        {kIndicesFile, indices_bytes,
         Crc32(std::string_view(reinterpret_cast<const char*>(rows->data()), indices_bytes))}};
    DatasetMeta meta;
    meta.name = part_name;
    meta.rows = positions.size();
    meta.cols = src.cols;
    meta.labels = src.labels;
    meta.class_names = src.class_names;
    meta.feature_names = src.feature_names;
    meta.view_of = base->meta.name;
    KNN_RETURN_IF_ERROR(
        WriteFileSynced(Join(*tmp_dir, kMetaFile), EncodeMeta(meta, base->meta.rows, crcs)));
    KNN_RETURN_IF_ERROR(FsyncDir(*tmp_dir));
    return MakeEntry(*tmp_dir, std::move(meta), base->meta.rows, base, std::nullopt);
  };
  std::string train_dir, test_dir;
  std::shared_ptr<Entry> train, test;
  const absl::Status written = [&]() -> absl::Status {
    KNN_ASSIGN_OR_RETURN(train, write_part(train_name, split.train, &train_dir));
    KNN_ASSIGN_OR_RETURN(test, write_part(test_name, split.test, &test_dir));
    return absl::OkStatus();
  }();
  TreeGuard train_guard(train_dir), test_guard(test_dir);
  KNN_RETURN_IF_ERROR(written);

  SplitResult result;
  result.train = train->meta;
  result.test = test->meta;
  {
    absl::MutexLock lock(&mu_);
    const auto it = catalog_.find(base->meta.name);
    if (it == catalog_.end() || it->second != base) {
      return absl::AbortedError(absl::StrCat("dataset: ", Quote(base->meta.name),
                                             " was deleted or replaced during the split; retry"));
    }
    KNN_RETURN_IF_ERROR(CheckReplaceable(train_name, replace));
    KNN_RETURN_IF_ERROR(CheckReplaceable(test_name, replace));
    KNN_RETURN_IF_ERROR(Install(train_dir, std::move(train)));
    const absl::Status installed = Install(test_dir, std::move(test));
    if (!installed.ok()) {
      // Best effort: take the train part back out, so the split is all or nothing.
      const std::string undo = UniquePath(kTmpPrefix, train_name);
      if (Rename(Join(DatasetsDir(), train_name), undo).ok()) {
        catalog_.erase(train_name);
        RemoveTree(undo);
      }
      return installed;
    }
  }
  result.train_indices = std::move(split.train);
  result.test_indices = std::move(split.test);
  return result;
}

absl::StatusOr<Matrix> DatasetStore::ReadRows(const std::string& name, uint64_t begin,
                                              uint64_t end) const {
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const Entry> entry, Find(name));
  const DatasetMeta& m = entry->meta;
  if (begin > end || end > m.rows) {
    return absl::InvalidArgumentError(absl::StrCat("rows: [", begin, ", ", end,
                                                   ") is not a range of the ", m.rows,
                                                   " rows of dataset ", Quote(name)));
  }
  Matrix out(end - begin, m.cols);
  const uint64_t row_bytes = m.cols * sizeof(double);
  const Entry& data = entry->data();
  if (!entry->base) {
    KNN_RETURN_IF_ERROR(PreadAll(data.features.get(), out.data(), (end - begin) * row_bytes,
                                 begin * row_bytes, data.File(kFeaturesFile)));
    return out;
  }
  std::vector<int64_t> indices(end - begin);
  KNN_RETURN_IF_ERROR(PreadAll(entry->indices.get(), indices.data(),
                               indices.size() * sizeof(int64_t), begin * sizeof(int64_t),
                               entry->File(kIndicesFile)));
  KNN_RETURN_IF_ERROR(GatherRows(data.features.get(), data.File(kFeaturesFile), row_bytes,
                                 data.meta.rows, indices, reinterpret_cast<char*>(out.data())));
  return out;
}

absl::StatusOr<std::vector<double>> DatasetStore::ReadLabels(const std::string& name) const {
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const Entry> entry, Find(name));
  const DatasetMeta& m = entry->meta;
  if (m.labels == LabelKind::kNone) {
    return absl::FailedPreconditionError(absl::StrCat("dataset: ", Quote(name), " has no labels"));
  }
  std::vector<double> out(m.rows);
  const Entry& data = entry->data();
  if (!entry->base) {
    KNN_RETURN_IF_ERROR(PreadAll(data.labels.get(), out.data(), out.size() * sizeof(double), 0,
                                 data.File(kLabelsFile)));
    return out;
  }
  std::vector<int64_t> indices(m.rows);
  KNN_RETURN_IF_ERROR(PreadAll(entry->indices.get(), indices.data(),
                               indices.size() * sizeof(int64_t), 0, entry->File(kIndicesFile)));
  KNN_RETURN_IF_ERROR(GatherRows(data.labels.get(), data.File(kLabelsFile), sizeof(double),
                                 data.meta.rows, indices, reinterpret_cast<char*>(out.data())));
  return out;
}

}  // namespace knncluster::coordinator
