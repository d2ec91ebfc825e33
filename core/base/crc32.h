// CRC-32 (IEEE 802.3, the polynomial of zlib, PNG and gzip: reflected 0xEDB88320, initial value
// and final XOR 0xFFFFFFFF), table-driven, so the core library needs no zlib. Used by model_io (and every file format of ours) to
// checksum model files. Crc32("123456789") == 0xCBF43926.
//
// Thread safety: pure functions over a compile-time table.
#ifndef KNNCLUSTER_CORE_BASE_CRC32_H_
#define KNNCLUSTER_CORE_BASE_CRC32_H_

#include <cstdint>
#include <string_view>

namespace knncluster {

// Continues a CRC over more bytes: Crc32(ab) == ExtendCrc32(Crc32(a), b). Start from 0.
uint32_t ExtendCrc32(uint32_t crc, std::string_view bytes);

inline uint32_t Crc32(std::string_view bytes) { return ExtendCrc32(0, bytes); }

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_BASE_CRC32_H_
