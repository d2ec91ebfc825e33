#include "worker/shard_files.h"

#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/durable_file.h"
#include "core/base/status_macros.h"

namespace knncluster::worker {

namespace {

namespace fs = std::filesystem;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "shard files store doubles in host order, which must be little-endian");

constexpr DurableFileFormat kShardFormat{"KNNSHRD\n", kShardFileVersion, 1, "shard file"};
constexpr size_t kLengthBytes = 4;
constexpr size_t kMaxFileName = 200;

uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// `with_labels`: read the labels too (else their size is checked and they are skipped).
absl::StatusOr<StoredShard> ParseShard(const std::string& path, const std::string& payload,
                                       bool with_labels) {
  if (payload.size() < 4) {
    return absl::DataLossError(absl::StrCat(path, ": shard payload shorter than its header"));
  }
  uint32_t n = 0;
  for (int i = 3; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(payload[i]);
  if (n > payload.size() - 4) {
    return absl::DataLossError(absl::StrCat(path, ": shard header length ", n, " exceeds the file"));
  }
  StoredShard shard;
  if (!shard.header.ParseFromArray(payload.data() + 4, static_cast<int>(n))) {
    return absl::DataLossError(absl::StrCat(path, ": cannot parse the shard header"));
  }
  const uint64_t rows = shard.header.rows(), cols = shard.header.cols();
  uint64_t bytes = payload.size() - kLengthBytes - n;
  const uint64_t label_bytes = shard.header.has_labels() ? rows * sizeof(double) : 0;
  const uint64_t per_row = cols + (shard.header.has_labels() ? 1 : 0);
  if (cols == 0 || rows > bytes / sizeof(double) / per_row ||
      (rows * cols * sizeof(double) + label_bytes) != bytes) {
    return absl::DataLossError(absl::StrFormat(
        "%s: expected %d x %d doubles after the shard header, found %d bytes", path, rows, cols,
        bytes));
  }
  bytes -= label_bytes;
  shard.values.resize(rows * cols);
  std::memcpy(shard.values.data(), payload.data() + 4 + n, bytes);
  if (with_labels && label_bytes > 0) {
    shard.labels.resize(rows);
    std::memcpy(shard.labels.data(), payload.data() + 4 + n + bytes, label_bytes);
  }
  return shard;
}

}  // namespace

ShardFiles::ShardFiles(std::string data_dir)
    : data_dir_(std::move(data_dir)),
      shards_dir_(absl::StrCat(data_dir_, "/shards")),
      quarantine_dir_(absl::StrCat(data_dir_, "/quarantine")) {}

std::string ShardFiles::FileName(const std::string& shard_id) {
  std::string out;
  for (size_t i = 0; i < shard_id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(shard_id[i]);
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                       (c >= '0' && c <= '9') || c == '_' || c == '-' || (c == '.' && i > 0);
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "%%%02X", c);
    }
  }
  if (out.size() > kMaxFileName) {
    out.resize(kMaxFileName - 17);
    while (!out.empty() && out.back() == '%') out.pop_back();  // never split an escape
    if (out.size() >= 2 && out[out.size() - 2] == '%') out.resize(out.size() - 2);
    absl::StrAppendFormat(&out, "~%016x", Fnv1a64(shard_id));
  }
  return out;
}

std::string ShardFiles::PathOf(const std::string& shard_id) const {
  return absl::StrCat(shards_dir_, "/", FileName(shard_id));
}

absl::Status ShardFiles::Write(const v1::ShardHeader& header, absl::Span<const double> values,
                               absl::Span<const double> labels) const {
  std::error_code ec;
  fs::create_directories(shards_dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", shards_dir_, ": ", ec.message()));
  const std::string head = header.SerializeAsString();
  char n[4];
  for (int i = 0; i < 4; ++i) n[i] = static_cast<char>((head.size() >> (8 * i)) & 0xff);
  const std::string_view parts[] = {
      std::string_view(n, 4), head,
      std::string_view(reinterpret_cast<const char*>(values.data()),
                       values.size() * sizeof(double)),
      std::string_view(reinterpret_cast<const char*>(labels.data()),
                       labels.size() * sizeof(double))};
  return WriteDurableFile(PathOf(header.shard_id()), kShardFormat, parts);
}

absl::StatusOr<StoredShard> ShardFiles::Read(const std::string& shard_id) const {
  const std::string path = PathOf(shard_id);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("shard_id: no shard \"", shard_id, "\" on this worker"));
  }
  KNN_ASSIGN_OR_RETURN(DurableContents contents, ReadDurableFile(path, kShardFormat));
  KNN_ASSIGN_OR_RETURN(StoredShard shard, ParseShard(path, contents.payload, true));
  if (shard.header.shard_id() != shard_id) {
    return absl::DataLossError(absl::StrCat(path, ": holds shard \"", shard.header.shard_id(),
                                            "\", not \"", shard_id, "\""));
  }
  return shard;
}

absl::Status ShardFiles::Remove(const std::string& shard_id) const {
  const std::string path = PathOf(shard_id);
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot remove ", path, ": ", ec.message()));
  return absl::OkStatus();
}

void ShardFiles::Quarantine(const std::string& path, const absl::Status& why) {
  absl::StatusOr<std::string> moved = QuarantineFile(path, quarantine_dir_);
  std::string line =
      moved.ok() ? absl::StrCat(*moved, ": ", why.ToString())
                 : absl::StrCat(path, ": ", why.ToString(), " (and it could not be moved aside: ",
                                moved.status().ToString(), ")");
  if (!moved.ok()) {
    // Still never served: remove it so that a re-sent shard can take its place.
    std::error_code ec;
    fs::remove(path, ec);
  }
  absl::MutexLock lock(&mu_);
  quarantined_.push_back(std::move(line));
}

absl::StatusOr<int> ShardFiles::RestoreAll(
    const std::function<absl::Status(StoredShard)>& restore) {
  std::error_code ec;
  fs::create_directories(shards_dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", shards_dir_, ": ", ec.message()));
  KNN_RETURN_IF_ERROR(RemoveDurableTempFiles(shards_dir_).status());
  std::vector<std::string> paths;
  for (fs::directory_iterator it(shards_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file()) paths.push_back(it->path().string());
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", shards_dir_, ": ", ec.message()));
  std::sort(paths.begin(), paths.end());
  int restored = 0;
  for (const std::string& path : paths) {
    absl::Status status;
    {
      absl::StatusOr<DurableContents> contents = ReadDurableFile(path, kShardFormat);
      if (!contents.ok()) {
        status = contents.status();
      } else {
        absl::StatusOr<StoredShard> shard = ParseShard(path, contents->payload, false);
        contents->payload = std::string();  // one copy of the rows at a time
        if (!shard.ok()) {
          status = shard.status();
        } else if (PathOf(shard->header.shard_id()) != path) {
          status = absl::DataLossError(absl::StrCat(path, ": holds shard \"",
                                                    shard->header.shard_id(),
                                                    "\", which belongs in another file"));
        } else {
          status = restore(std::move(*shard));
        }
      }
    }
    if (status.ok()) {
      ++restored;
    } else {
      Quarantine(path, status);
    }
  }
  return restored;
}

std::vector<std::string> ShardFiles::quarantined() const {
  absl::MutexLock lock(&mu_);
  return quarantined_;
}

}  // namespace knncluster::worker
