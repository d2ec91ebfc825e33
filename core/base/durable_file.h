// Durable files: the one way knncluster writes a file that must survive a crash and be read back
// exactly, or not at all. Every persisted catalog entry (a worker's shards, the coordinator's
// grid searches, models) goes through WriteDurableFile / ReadDurableFile, and every data
// directory carries a FORMAT marker checked at start (CheckDataDirFormat).
//
// File layout (integers little-endian), 32 bytes of header then the payload:
//   [0, 8)    magic: 8 bytes naming the kind of file ("KNNSHRD\n", "KNNGRID\n", ...)
//   [8, 12)   u32 format version of the payload (the caller's, per kind)
//   [12, 16)  u32 reserved, 0
//   [16, 24)  u64 payload length
//   [24, 28)  u32 CRC-32 (core/base/crc32.h) of the payload
//   [28, 32)  u32 CRC-32 of bytes [0, 28), so a damaged length is caught before it is trusted
//   [32, 32 + length)  payload
// Nothing may follow the payload.
//
// Writing: the bytes go to `<path>.tmp-<unique>` in the same directory (created O_EXCL), which is
// fsync'ed, renamed over `path`, and the directory fsync'ed. A crash leaves the old file or the
// new one, never a mixture, plus perhaps a `.tmp-` file: IsDurableTempFile recognises those and
// RemoveDurableTempFiles sweeps a directory of them at start.
//
// Reading checks, in order, and names the path in every error:
//   - the file is shorter than its header or its header's length: DataLoss ("truncated")
//   - the magic is not the kind's: DataLoss ("not a ... file")
//   - the header CRC or payload CRC does not match, or bytes follow the payload: DataLoss
//   - the version is newer than `format.version`: FailedPrecondition "format version N is newer
//     than this build supports (M)"; older than `format.min_version`: FailedPrecondition
//     "format version N is older than this build can read (oldest M)". A version in
//     [min_version, version] is returned with the payload: upgrading it is the caller's job.
//
// No gRPC, no logging: errors are returned. Thread safety: the functions are thread-safe; two
// writers of one path race like two renames (one of the complete files wins).
#ifndef KNNCLUSTER_CORE_BASE_DURABLE_FILE_H_
#define KNNCLUSTER_CORE_BASE_DURABLE_FILE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace knncluster {

inline constexpr size_t kDurableMagicSize = 8;
inline constexpr size_t kDurableHeaderSize = 32;

// What a kind of file is: its magic and the versions this build reads and writes.
struct DurableFileFormat {
  // Exactly kDurableMagicSize bytes (a NUL-terminated literal of 8 characters).
  const char* magic = "";
  // The version written, and the newest one read.
  uint32_t version = 1;
  // The oldest version read (the caller upgrades versions in [min_version, version)).
  uint32_t min_version = 1;
  // For messages: "shard file", "grid search file".
  const char* description = "file";
};

struct DurableContents {
  uint32_t version = 0;  // as found in the file, in [min_version, version]
  std::string payload;
};

// Writes `payload` to `path` atomically and durably (see above), with format.version. Internal
// naming the path and the system error on I/O failure (the temporary file is removed).
absl::Status WriteDurableFile(const std::string& path, const DurableFileFormat& format,
                              std::string_view payload);
// The same with the payload given in parts (written one after the other, never concatenated in
// memory): for large payloads such as a shard's rows.
absl::Status WriteDurableFile(const std::string& path, const DurableFileFormat& format,
                              absl::Span<const std::string_view> payload_parts);

// The bytes WriteDurableFile writes, for a caller that places them itself (e.g. inside a
// directory it then renames into place as a whole).
std::string EncodeDurableFile(const DurableFileFormat& format, std::string_view payload);

// Reads and checks `path` (see above). NotFound when it does not exist. Holds the file in memory
// once (the payload is the file's bytes less the header, moved in place).
absl::StatusOr<DurableContents> ReadDurableFile(const std::string& path,
                                                const DurableFileFormat& format);

// Checks `bytes` as if read from the file `path` (for tests and for callers that already hold
// the bytes).
absl::StatusOr<DurableContents> ParseDurableFile(const std::string& path, std::string_view bytes,
                                                 const DurableFileFormat& format);

// Whether a file name is a leftover temporary of WriteDurableFile ("<name>.tmp-<...>").
bool IsDurableTempFile(std::string_view file_name);

// Removes every leftover temporary file directly in `dir` (not recursively); returns how many.
// A missing directory has none.
absl::StatusOr<int> RemoveDurableTempFiles(const std::string& dir);

// Moves `path` into `quarantine_dir` (created if missing) as `<file name>.<unix seconds>[.n]`, so
// that an unreadable file is kept for inspection and out of the way. Returns the new path.
absl::StatusOr<std::string> QuarantineFile(const std::string& path,
                                           const std::string& quarantine_dir);

// The data-directory version marker: `<dir>/FORMAT`, one text line "<kind> <version>\n" (e.g.
// "knncluster-worker 1"), written durably. CheckDataDirFormat, called at every start:
//   - creates `dir` if missing;
//   - no FORMAT (a new directory, or one from before FORMAT existed, treated as version 0):
//     runs `upgrade(0)` when given, then writes FORMAT with `version`;
//   - FORMAT of another kind: FailedPrecondition ("... is a knncluster-coordinator directory, not
//     a knncluster-worker one");
//   - newer than `version`: FailedPrecondition "<dir>: data directory format version N is newer
//     than this build supports (M); run a newer build or use another directory";
//   - older: runs `upgrade(found)` then rewrites FORMAT; without an `upgrade`,
//     FailedPrecondition "... is older than this build can upgrade".
//   - unreadable or malformed FORMAT: DataLoss naming the file.
// Returns the version found (0 when FORMAT was missing). `upgrade` may be null only when there is
// nothing to upgrade (version 0 is then accepted as is: the layout adds directories only).
absl::StatusOr<uint32_t> CheckDataDirFormat(
    const std::string& dir, const std::string& kind, uint32_t version,
    const std::function<absl::Status(uint32_t found)>& upgrade = nullptr);

inline constexpr char kDataDirFormatFile[] = "FORMAT";

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_BASE_DURABLE_FILE_H_
