#include "rpc/content_hash.h"

#include <openssl/evp.h>

#include <cstdint>
#include <cstring>
#include <memory>

namespace knncluster::rpc {
namespace {

static_assert(sizeof(double) == 8, "IEEE-754 doubles");

void AddU64(EVP_MD_CTX* ctx, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
  EVP_DigestUpdate(ctx, b, sizeof(b));
}

// Doubles as little-endian bytes (the in-memory bytes on little-endian machines).
void AddDoubles(EVP_MD_CTX* ctx, const double* v, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n > 0) EVP_DigestUpdate(ctx, v, n * sizeof(double));
#else
  for (size_t i = 0; i < n; ++i) {
    uint64_t bits;
    std::memcpy(&bits, &v[i], sizeof(bits));
    AddU64(ctx, bits);
  }
#endif
}

}  // namespace

std::string DatasetContentHash(MatrixView features, absl::Span<const double> labels) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  static constexpr char kTag[] = "knncluster-dataset-v1";
  EVP_DigestUpdate(ctx.get(), kTag, sizeof(kTag) - 1);
  AddU64(ctx.get(), features.rows());
  AddU64(ctx.get(), features.cols());
  AddU64(ctx.get(), labels.empty() ? 0 : 1);
  for (size_t r = 0; r < features.rows(); ++r) {
    AddDoubles(ctx.get(), features.row(r), features.cols());
  }
  AddDoubles(ctx.get(), labels.data(), labels.size());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

}  // namespace knncluster::rpc
