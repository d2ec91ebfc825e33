// Writes 8-bit grayscale images as PNG files (through Debian's libpng). Used by
// `knnctl show-digits`. Thread-safe: no shared state.
#ifndef KNNCLUSTER_CLIENT_CLI_PNG_WRITER_H_
#define KNNCLUSTER_CLIENT_CLI_PNG_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace knncluster::cli {

// pixels: width * height bytes, row-major, 0 = black, 255 = white.
absl::Status WriteGrayPng(const std::string& path, int width, int height,
                          const std::vector<uint8_t>& pixels);

}  // namespace knncluster::cli

#endif  // KNNCLUSTER_CLIENT_CLI_PNG_WRITER_H_
