#include "core/base/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/crc32.h"
#include "core/base/status_macros.h"

namespace knncluster {

namespace {

namespace fs = std::filesystem;

constexpr char kTempInfix[] = ".tmp-";

absl::Status ErrnoError(int err, const char* what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

// An owned file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now, reporting the error (a write error may surface only at close).
  absl::Status Close(const std::string& path) {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return ErrnoError(errno, "cannot close", path);
    return absl::OkStatus();
  }

 private:
  int fd_;
};

void PutU32(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutU64(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

absl::Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot write", path);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  const int raw = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (raw < 0) return ErrnoError(errno, "cannot open directory", dir);
  Fd fd(raw);
  if (::fsync(fd.get()) != 0) return ErrnoError(errno, "cannot fsync directory", dir);
  return absl::OkStatus();
}

// Opens a new temporary file next to `path`, O_EXCL so that concurrent writers never share one.
absl::StatusOr<std::pair<int, std::string>> CreateTemp(const std::string& path) {
  const size_t thread_hash = std::hash<std::thread::id>()(std::this_thread::get_id());
  for (int attempt = 0;; ++attempt) {
    const std::string tmp =
        absl::StrFormat("%s%s%d-%x-%d-%d", path, kTempInfix, ::getpid(), thread_hash,
                        absl::GetCurrentTimeNanos(), attempt);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) return std::make_pair(fd, tmp);
    if (errno != EEXIST || attempt >= 100) return ErrnoError(errno, "cannot create", tmp);
  }
}

std::string ParentDir(const std::string& path) {
  return fs::path(path).parent_path().string();
}

// tmp in the same directory, write every part, fsync, rename over `path`, fsync the directory.
// The temporary file is removed on failure.
absl::Status WriteAtomically(const std::string& path, absl::Span<const std::string_view> parts) {
  KNN_ASSIGN_OR_RETURN(auto created, CreateTemp(path));
  Fd fd(created.first);
  const std::string& tmp = created.second;
  absl::Status st;
  for (size_t i = 0; st.ok() && i < parts.size(); ++i) st = WriteAll(fd.get(), parts[i], tmp);
  if (st.ok() && ::fsync(fd.get()) != 0) st = ErrnoError(errno, "cannot fsync", tmp);
  if (st.ok()) st = fd.Close(tmp);
  if (st.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    st = ErrnoError(errno, "cannot rename", absl::StrCat(tmp, " to ", path));
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(ParentDir(path));
}

// The 32-byte header. REQUIRES: format.magic has 8 characters (checked by the callers).
void MakeHeader(const DurableFileFormat& format, uint64_t length, uint32_t crc, char* header) {
  assert(std::strlen(format.magic) == kDurableMagicSize);
  std::memset(header, 0, kDurableHeaderSize);
  std::memcpy(header, format.magic, kDurableMagicSize);
  PutU32(format.version, header + 8);
  PutU64(length, header + 16);
  PutU32(crc, header + 24);
  PutU32(Crc32(std::string_view(header, 28)), header + 28);
}

// Checks the header and payload of a durable file's bytes; returns the version.
absl::StatusOr<uint32_t> CheckBytes(const std::string& path, std::string_view bytes,
                                    const DurableFileFormat& format);

}  // namespace

std::string EncodeDurableFile(const DurableFileFormat& format, std::string_view payload) {
  char header[kDurableHeaderSize];
  MakeHeader(format, payload.size(), Crc32(payload), header);
  std::string out(header, sizeof(header));
  out.append(payload.data(), payload.size());
  return out;
}

absl::Status WriteDurableFile(const std::string& path, const DurableFileFormat& format,
                              std::string_view payload) {
  return WriteDurableFile(path, format, absl::Span<const std::string_view>(&payload, 1));
}

absl::Status WriteDurableFile(const std::string& path, const DurableFileFormat& format,
                              absl::Span<const std::string_view> payload_parts) {
  if (std::strlen(format.magic) != kDurableMagicSize) {
    return absl::InternalError(absl::StrCat("durable file magic must be 8 bytes, got \"",
                                            format.magic, "\" for ", path));
  }
  uint64_t length = 0;
  uint32_t crc = 0;
  for (std::string_view part : payload_parts) {
    length += part.size();
    crc = ExtendCrc32(crc, part);
  }
  char header[kDurableHeaderSize];
  MakeHeader(format, length, crc, header);
  std::vector<std::string_view> parts;
  parts.reserve(payload_parts.size() + 1);
  parts.emplace_back(header, sizeof(header));
  parts.insert(parts.end(), payload_parts.begin(), payload_parts.end());
  return WriteAtomically(path, parts);
}

absl::StatusOr<DurableContents> ParseDurableFile(const std::string& path, std::string_view bytes,
                                                 const DurableFileFormat& format) {
  KNN_ASSIGN_OR_RETURN(const uint32_t version, CheckBytes(path, bytes, format));
  DurableContents out;
  out.version = version;
  out.payload = std::string(bytes.substr(kDurableHeaderSize));
  return out;
}

namespace {
absl::StatusOr<uint32_t> CheckBytes(const std::string& path, std::string_view bytes,
                                    const DurableFileFormat& format) {
  if (bytes.size() < kDurableHeaderSize) {
    return absl::DataLossError(absl::StrFormat(
        "%s: truncated %s: %d bytes, shorter than the %d-byte header", path, format.description,
        bytes.size(), kDurableHeaderSize));
  }
  const char* h = bytes.data();
  if (std::memcmp(h, format.magic, kDurableMagicSize) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": not a ", format.description,
                                            " (wrong magic bytes \"",
                                            absl::CHexEscape(absl::string_view(h, 8)), "\")"));
  }
  if (GetU32(h + 28) != Crc32(std::string_view(h, 28))) {
    return absl::DataLossError(
        absl::StrCat(path, ": the ", format.description, "'s header checksum does not match"));
  }
  const uint32_t version = GetU32(h + 8);
  const uint64_t length = GetU64(h + 16);
  if (version > format.version) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": ", format.description, " format version ", version,
        " is newer than this build supports (", format.version, ")"));
  }
  if (version < format.min_version) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": ", format.description, " format version ", version,
        " is older than this build can read (oldest ", format.min_version, ")"));
  }
  const uint64_t available = bytes.size() - kDurableHeaderSize;
  if (length > available) {
    return absl::DataLossError(absl::StrFormat(
        "%s: truncated %s: the header announces %d payload bytes, the file holds %d", path,
        format.description, length, available));
  }
  if (length < available) {
    return absl::DataLossError(absl::StrFormat("%s: %d unexpected bytes after the %s's payload",
                                               path, available - length, format.description));
  }
  const std::string_view payload = bytes.substr(kDurableHeaderSize);
  if (GetU32(h + 24) != Crc32(payload)) {
    return absl::DataLossError(absl::StrCat(path, ": the ", format.description,
                                            "'s checksum does not match (corrupted)"));
  }
  return version;
}
}  // namespace

absl::StatusOr<DurableContents> ReadDurableFile(const std::string& path,
                                                const DurableFileFormat& format) {
  const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return ErrnoError(errno, "cannot open", path);
  }
  Fd fd(raw);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "cannot stat", path);
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + got, bytes.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot read", path);
    }
    if (n == 0) break;  // shrank meanwhile: parsed as truncated
    got += static_cast<size_t>(n);
  }
  bytes.resize(got);
  KNN_ASSIGN_OR_RETURN(const uint32_t version, CheckBytes(path, bytes, format));
  DurableContents out;
  out.version = version;
  bytes.erase(0, kDurableHeaderSize);
  out.payload = std::move(bytes);
  return out;
}

bool IsDurableTempFile(std::string_view file_name) {
  return file_name.find(kTempInfix) != std::string_view::npos;
}

absl::StatusOr<int> RemoveDurableTempFiles(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  int removed = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!IsDurableTempFile(name)) continue;
    std::error_code rm;
    if (!fs::remove(it->path(), rm) || rm) {
      return absl::InternalError(
          absl::StrCat("cannot remove ", it->path().string(), ": ", rm.message()));
    }
    ++removed;
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  return removed;
}

absl::StatusOr<std::string> QuarantineFile(const std::string& path,
                                           const std::string& quarantine_dir) {
  std::error_code ec;
  fs::create_directories(quarantine_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", quarantine_dir, ": ", ec.message()));
  }
  const std::string base = absl::StrCat(quarantine_dir, "/", fs::path(path).filename().string(),
                                        ".", absl::ToUnixSeconds(absl::Now()));
  std::string target = base;
  for (int n = 1; fs::exists(target, ec); ++n) target = absl::StrCat(base, ".", n);
  if (std::rename(path.c_str(), target.c_str()) != 0) {
    return ErrnoError(errno, "cannot move", absl::StrCat(path, " to ", target));
  }
  KNN_RETURN_IF_ERROR(FsyncDir(quarantine_dir));
  KNN_RETURN_IF_ERROR(FsyncDir(ParentDir(path)));
  return target;
}

absl::StatusOr<uint32_t> CheckDataDirFormat(
    const std::string& dir, const std::string& kind, uint32_t version,
    const std::function<absl::Status(uint32_t found)>& upgrade) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create data directory ", dir, ": ", ec.message()));
  }
  const std::string path = absl::StrCat(dir, "/", kDataDirFormatFile);
  uint32_t found = 0;
  if (fs::exists(path, ec)) {
    std::FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) return ErrnoError(errno, "cannot open", path);
    char line[256] = {};
    const bool read = std::fgets(line, sizeof(line), f) != nullptr;
    std::fclose(f);
    const std::vector<std::string> words =
        absl::StrSplit(absl::StripAsciiWhitespace(read ? line : ""), ' ', absl::SkipEmpty());
    if (words.size() != 2 || !absl::SimpleAtoi(words[1], &found)) {
      return absl::DataLossError(absl::StrCat(
          path, ": malformed data directory marker (expected \"", kind, " <version>\")"));
    }
    if (words[0] != kind) {
      return absl::FailedPreconditionError(absl::StrCat(dir, " is a ", words[0],
                                                        " data directory, not a ", kind, " one"));
    }
    if (found > version) {
      return absl::FailedPreconditionError(absl::StrCat(
          dir, ": data directory format version ", found, " is newer than this build supports (",
          version, "); run a newer build or use another directory"));
    }
    if (found == version) return found;
  }
  if (found < version) {
    if (upgrade != nullptr) {
      KNN_RETURN_IF_ERROR(upgrade(found));
    } else if (found != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          dir, ": data directory format version ", found,
          " is older than this build can upgrade (it writes version ", version, ")"));
    }
  }
  // Written like any durable file's contents, but as plain text for operators.
  const std::string text = absl::StrCat(kind, " ", version, "\n");
  const std::string_view parts[] = {text};
  KNN_RETURN_IF_ERROR(WriteAtomically(path, parts));
  return found;
}

}  // namespace knncluster
