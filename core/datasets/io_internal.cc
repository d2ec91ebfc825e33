#include "core/datasets/io_internal.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace knncluster {
namespace datasets_internal {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

absl::Status ErrnoError(int err, std::string_view what, const std::string& path) {
  if (err == 0) return absl::UnknownError(absl::StrFormat("%s %s", what, path));
  return absl::ErrnoToStatus(err, absl::StrFormat("%s %s", what, path));
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  errno = 0;
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (f == nullptr) return ErrnoError(errno, "cannot open", path);
  std::string bytes;
  char buf[1 << 16];
  size_t n;
  try {
    while ((n = std::fread(buf, 1, sizeof(buf), f.get())) > 0) bytes.append(buf, n);
  } catch (const std::exception& e) {  // std::bad_alloc / length_error on a huge file
    return absl::ResourceExhaustedError(absl::StrFormat("reading %s: %s", path, e.what()));
  }
  if (std::ferror(f.get())) return ErrnoError(errno, "cannot read", path);
  return bytes;
}

absl::Status WriteFile(const std::string& path, std::string_view bytes) {
  errno = 0;
  FilePtr f(std::fopen(path.c_str(), "wb"));
  if (f == nullptr) return ErrnoError(errno, "cannot create", path);
  if (std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
    return ErrnoError(errno, "cannot write", path);
  }
  std::FILE* raw = f.release();
  if (std::fclose(raw) != 0) return ErrnoError(errno, "cannot write", path);
  return absl::OkStatus();
}

std::string FileStem(std::string_view path) {
  const size_t slash = path.find_last_of('/');
  if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  const size_t dot = path.find_last_of('.');
  if (dot != std::string_view::npos && dot > 0) path = path.substr(0, dot);
  return std::string(path);
}

std::string QuoteForMessage(std::string_view text) {
  constexpr size_t kMax = 64;
  // absl::string_view is not std::string_view in every Abseil build (Debian's is its own type).
  const absl::string_view head(text.data(), std::min(text.size(), kMax));
  return absl::StrCat("\"", absl::CHexEscape(head), text.size() > kMax ? "...\"" : "\"");
}

}  // namespace datasets_internal
}  // namespace knncluster
