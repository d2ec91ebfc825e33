#include "worker/worker_internal.h"

#include <unistd.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace knncluster::worker {

namespace {
// Ids we create are 32 hex digits; we accept any [0-9A-Za-z_-] id up to this length, so that an
// operator may name a worker by hand.
constexpr size_t kMaxIdLength = 128;

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}
}  // namespace

absl::StatusOr<std::string> LoadOrCreateWorkerId(const std::string& data_dir) {
  if (data_dir.empty()) {
    return absl::InvalidArgumentError(
        "data_dir: a data directory is required (it keeps the "
        "worker's stable id)");
  }
  namespace fs = std::filesystem;
  const fs::path dir(data_dir);
  const fs::path path = dir / kWorkerIdFile;
  std::error_code ec;
  if (fs::exists(path, ec)) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) return absl::InternalError(absl::StrCat("cannot read ", path.string()));
    const std::string id(absl::StripAsciiWhitespace(text.str()));
    if (!ValidId(id)) {
      return absl::DataLossError(absl::StrCat(
          path.string(), ": not a worker id (expected 1 to 128 characters [0-9A-Za-z_-])"));
    }
    return id;
  }
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create data directory ", dir.string(), ": ", ec.message()));
  }
  absl::BitGen gen;
  const std::string id =
      absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(gen), absl::Uniform<uint64_t>(gen));
  const fs::path tmp = dir / absl::StrCat(kWorkerIdFile, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << id << "\n";
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp.string()));
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return absl::InternalError(absl::StrCat("cannot create ", path.string(), ": ", ec.message()));
  }
  return id;
}

uint64_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;  // NOLINT(runtime/int): fscanf's type
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  const long page = sysconf(_SC_PAGESIZE);  // NOLINT(runtime/int)
  return page > 0 ? static_cast<uint64_t>(resident) * static_cast<uint64_t>(page) : 0;
}

uint64_t PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);  // NOLINT(runtime/int)
  const long page = sysconf(_SC_PAGESIZE);     // NOLINT(runtime/int)
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

void ReleaseFreedMemory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

}  // namespace knncluster::worker
