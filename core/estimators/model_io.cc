#include "core/estimators/model_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/base/crc32.h"

namespace knncluster {

namespace {

constexpr size_t kMagicSize = 8;
constexpr size_t kHeaderSize = kMagicSize + 4 + 8;  // magic, version, payload length
constexpr size_t kCrcSize = 4;

// --- Writing --------------------------------------------------------------------------------

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void F64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    U64(bits);
  }
  void Str(std::string_view s) {
    U64(s.size());
    out_.append(s.data(), s.size());
  }
  void Bytes(std::string_view s) { out_.append(s.data(), s.size()); }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

// --- Reading --------------------------------------------------------------------------------

// Reads fields from a bounded byte range; every read checks the bytes that remain.
class Reader {
 public:
  Reader(std::string_view bytes, std::string_view source) : bytes_(bytes), source_(source) {}
  // (absl::string_view is not std::string_view in this Abseil build, hence std::string.)

  size_t remaining() const { return bytes_.size() - pos_; }

  absl::Status U8(const char* field, uint8_t* v) {
    KNN_RETURN_IF_ERROR(Need(1, field));
    *v = static_cast<uint8_t>(bytes_[pos_++]);
    return absl::OkStatus();
  }
  absl::Status U32(const char* field, uint32_t* v) {
    KNN_RETURN_IF_ERROR(Need(4, field));
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= static_cast<uint32_t>(Byte(pos_ + i)) << (8 * i);
    pos_ += 4;
    return absl::OkStatus();
  }
  absl::Status U64(const char* field, uint64_t* v) {
    KNN_RETURN_IF_ERROR(Need(8, field));
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= static_cast<uint64_t>(Byte(pos_ + i)) << (8 * i);
    pos_ += 8;
    return absl::OkStatus();
  }
  absl::Status I32(const char* field, int32_t* v) {
    uint32_t u;
    KNN_RETURN_IF_ERROR(U32(field, &u));
    *v = static_cast<int32_t>(u);
    return absl::OkStatus();
  }
  absl::Status F64(const char* field, double* v) {
    uint64_t bits;
    KNN_RETURN_IF_ERROR(U64(field, &bits));
    std::memcpy(v, &bits, sizeof bits);
    return absl::OkStatus();
  }
  absl::Status Str(const char* field, std::string* s) {
    uint64_t len;
    KNN_RETURN_IF_ERROR(U64(field, &len));
    if (len > remaining()) return Overrun(field, len, 1);
    s->assign(bytes_.data() + pos_, static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return absl::OkStatus();
  }
  // `count` doubles, after checking they fit in what remains.
  absl::Status F64Array(const char* field, uint64_t count, std::vector<double>* v) {
    if (count > remaining() / 8) return Overrun(field, count, 8);
    v->resize(static_cast<size_t>(count));
    for (double& x : *v) KNN_RETURN_IF_ERROR(F64(field, &x));
    return absl::OkStatus();
  }
  absl::Status StrList(const char* field, std::vector<std::string>* v) {
    uint64_t count;
    KNN_RETURN_IF_ERROR(U64(field, &count));
    // Each string takes at least its 8-byte length.
    if (count > remaining() / 8) return Overrun(field, count, 8);
    v->resize(static_cast<size_t>(count));
    for (std::string& s : *v) KNN_RETURN_IF_ERROR(Str(field, &s));
    return absl::OkStatus();
  }

  absl::Status Corrupt(const std::string& what) const {
    return absl::DataLossError(absl::StrCat(source_, ": corrupt model payload: ", what));
  }

 private:
  uint8_t Byte(size_t i) const { return static_cast<uint8_t>(bytes_[i]); }
  absl::Status Need(size_t n, const char* field) const {
    if (n > remaining()) {
      return Corrupt(absl::StrFormat("%s: needs %d bytes at offset %d, only %d remain", field, n,
                                     pos_, remaining()));
    }
    return absl::OkStatus();
  }
  absl::Status Overrun(const char* field, uint64_t count, size_t unit) const {
    return Corrupt(absl::StrFormat("%s: length %d (x %d bytes) exceeds the %d bytes that remain",
                                   field, count, unit, remaining()));
  }

  std::string_view bytes_;
  std::string source_;
  size_t pos_ = 0;
};

uint32_t ReadU32At(std::string_view b, size_t pos) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<uint8_t>(b[pos + i])) << (8 * i);
  return v;
}

uint64_t ReadU64At(std::string_view b, size_t pos) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(static_cast<uint8_t>(b[pos + i])) << (8 * i);
  return v;
}

absl::StatusOr<Model> ParsePayload(std::string_view payload, std::string_view source) {
  Reader r(payload, source);
  Model m;
  uint8_t task, weights, algorithm, has_threshold;
  int32_t n_neighbors, leaf_size;
  double threshold;
  KNN_RETURN_IF_ERROR(r.U8("task", &task));
  KNN_RETURN_IF_ERROR(r.I32("n_neighbors", &n_neighbors));
  KNN_RETURN_IF_ERROR(r.U8("weights", &weights));
  KNN_RETURN_IF_ERROR(r.U8("algorithm", &algorithm));
  KNN_RETURN_IF_ERROR(r.I32("leaf_size", &leaf_size));
  KNN_RETURN_IF_ERROR(r.F64("p", &m.params.p));
  KNN_RETURN_IF_ERROR(r.F64("contamination", &m.contamination));
  KNN_RETURN_IF_ERROR(r.U8("has_threshold", &has_threshold));
  KNN_RETURN_IF_ERROR(r.F64("threshold", &threshold));
  if (task > 2) return r.Corrupt(absl::StrFormat("task: unknown value %d", task));
  if (weights > 1) return r.Corrupt(absl::StrFormat("weights: unknown value %d", weights));
  if (algorithm > 3) return r.Corrupt(absl::StrFormat("algorithm: unknown value %d", algorithm));
  if (has_threshold > 1) {
    return r.Corrupt(absl::StrFormat("has_threshold: expected 0 or 1, got %d", has_threshold));
  }
  m.task = static_cast<Model::Task>(task);
  m.params.n_neighbors = n_neighbors;
  m.params.weights = static_cast<Weights>(weights);
  m.params.algorithm = static_cast<Algorithm>(algorithm);
  m.params.leaf_size = leaf_size;
  if (has_threshold == 1) m.threshold = threshold;

  KNN_RETURN_IF_ERROR(r.Str("dataset_name", &m.dataset_name));
  uint64_t rows, cols;
  KNN_RETURN_IF_ERROR(r.U64("X.rows", &rows));
  KNN_RETURN_IF_ERROR(r.U64("X.cols", &cols));
  // rows * cols must not overflow, and the doubles must fit in what remains.
  if (cols != 0 && rows > (r.remaining() / 8) / cols) {
    return r.Corrupt(absl::StrFormat("X: %d x %d doubles exceed the %d bytes that remain", rows,
                                     cols, r.remaining()));
  }
  if (cols == 0 && rows != 0) {
    return r.Corrupt(absl::StrFormat("X: %d rows of 0 columns", rows));
  }
  std::vector<double> values;
  KNN_RETURN_IF_ERROR(r.F64Array("X", rows * cols, &values));
  m.X = Matrix(static_cast<size_t>(rows), static_cast<size_t>(cols), std::move(values));
  uint64_t n_y;
  KNN_RETURN_IF_ERROR(r.U64("y.size", &n_y));
  KNN_RETURN_IF_ERROR(r.F64Array("y", n_y, &m.y));
  KNN_RETURN_IF_ERROR(r.StrList("class_names", &m.class_names));
  KNN_RETURN_IF_ERROR(r.StrList("feature_names", &m.feature_names));
  if (r.remaining() != 0) {
    return r.Corrupt(absl::StrFormat("%d unread bytes after the last field", r.remaining()));
  }
  const size_t want_y = m.task == Model::Task::kOutlier ? 0 : m.X.rows();
  if (m.y.size() != want_y) {
    return r.Corrupt(absl::StrFormat("y: %d values for a %s with %d training rows", m.y.size(),
                                     TaskName(m.task), m.X.rows()));
  }
  if (!m.feature_names.empty() && m.feature_names.size() != m.X.cols()) {
    return r.Corrupt(absl::StrFormat("feature_names: %d names for %d columns",
                                     m.feature_names.size(), m.X.cols()));
  }
  return m;
}

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  const int err = errno;
  return absl::ErrnoToStatus(err, absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

// Writes all of `bytes` to fd, retrying short writes and EINTR.
bool WriteAll(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string TaskName(Model::Task task) {
  switch (task) {
    case Model::Task::kClassifier:
      return "classifier";
    case Model::Task::kRegressor:
      return "regressor";
    case Model::Task::kOutlier:
      return "outlier";
  }
  return "unknown";
}

std::string SerializeModel(const Model& model) {
  Writer p;
  p.U8(static_cast<uint8_t>(model.task));
  p.I32(model.params.n_neighbors);
  p.U8(static_cast<uint8_t>(model.params.weights));
  p.U8(static_cast<uint8_t>(model.params.algorithm));
  p.I32(model.params.leaf_size);
  p.F64(model.params.p);
  p.F64(model.contamination);
  p.U8(model.threshold.has_value() ? 1 : 0);
  p.F64(model.threshold.value_or(0.0));
  p.Str(model.dataset_name);
  p.U64(model.X.rows());
  p.U64(model.X.cols());
  for (double v : model.X.values()) p.F64(v);
  p.U64(model.y.size());
  for (double v : model.y) p.F64(v);
  p.U64(model.class_names.size());
  for (const std::string& s : model.class_names) p.Str(s);
  p.U64(model.feature_names.size());
  for (const std::string& s : model.feature_names) p.Str(s);

  Writer file;
  file.Bytes(std::string_view(kModelMagic, kMagicSize));
  file.U32(kModelFormatVersion);
  file.U64(p.out().size());
  file.Bytes(p.out());
  file.U32(Crc32(file.out()));
  return std::move(file.out());
}

absl::StatusOr<Model> ParseModel(std::string_view bytes, std::string_view source_name) {
  const std::string_view magic(kModelMagic, kMagicSize);
  const size_t prefix = std::min(bytes.size(), kMagicSize);
  if (bytes.substr(0, prefix) != magic.substr(0, prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source_name), ": not a knncluster model file (bad magic)"));
  }
  if (bytes.size() < kHeaderSize) {
    return absl::DataLossError(
        absl::StrFormat("%s: truncated model file: %d bytes, the header alone needs %d",
                        source_name, bytes.size(), kHeaderSize));
  }
  const uint32_t version = ReadU32At(bytes, kMagicSize);
  if (version > kModelFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: model format version %d is newer than this build supports (%d)",
                        source_name, version, kModelFormatVersion));
  }
  if (version == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: invalid model format version 0", source_name));
  }
  const uint64_t payload_size = ReadU64At(bytes, kMagicSize + 4);
  const size_t available = bytes.size() - kHeaderSize;
  if (payload_size > available || available - payload_size < kCrcSize) {
    return absl::DataLossError(absl::StrFormat(
        "%s: truncated model file: the header declares %d payload bytes plus a %d-byte "
        "checksum, but only %d bytes follow it",
        source_name, payload_size, kCrcSize, available));
  }
  const size_t end = kHeaderSize + static_cast<size_t>(payload_size);
  if (bytes.size() - end != kCrcSize) {
    return absl::DataLossError(absl::StrFormat("%s: %d unexpected bytes after the checksum",
                                               source_name, bytes.size() - end - kCrcSize));
  }
  const uint32_t stored = ReadU32At(bytes, end);
  const uint32_t computed = Crc32(bytes.substr(0, end));
  if (stored != computed) {
    return absl::DataLossError(
        absl::StrFormat("%s: checksum mismatch (stored %08x, computed %08x): the file is corrupt",
                        source_name, stored, computed));
  }
  return ParsePayload(bytes.substr(kHeaderSize, static_cast<size_t>(payload_size)), source_name);
}

absl::Status SaveModel(const std::string& path, const Model& model) {
  const std::string bytes = SerializeModel(model);
  const size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) return ErrnoError("cannot create a temporary file next to", path);
  // mkstemp creates the file 0600; a model file is as readable as any other output.
  if (::fchmod(fd, 0644) != 0 || !WriteAll(fd, bytes) || ::fsync(fd) != 0) {
    absl::Status status = ErrnoError("cannot write", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return status;
  }
  if (::close(fd) != 0) {
    absl::Status status = ErrnoError("cannot close", tmp);
    ::unlink(tmp.c_str());
    return status;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status status = ErrnoError("cannot rename the temporary file onto", path);
    ::unlink(tmp.c_str());
    return status;
  }
  // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL); the
  // data is already synced, so that is not an error.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    const int rc = ::fsync(dir_fd);
    const int err = errno;
    ::close(dir_fd);
    if (rc != 0 && err != EINVAL && err != EROFS) {
      errno = err;
      return ErrnoError("cannot sync directory", dir);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Model> LoadModel(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("cannot open model file", path);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return ErrnoError("cannot read model file", path);
  return ParseModel(contents.str(), path);
}

}  // namespace knncluster
