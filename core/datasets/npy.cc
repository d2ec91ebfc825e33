#include "core/datasets/npy.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/datasets/io_internal.h"

namespace knncluster {
namespace {

using datasets_internal::QuoteForMessage;

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr size_t kPreludeV1 = 10;  // magic, 2 version bytes, uint16 header length
constexpr size_t kPreludeV2 = 12;  // ... uint32 header length (versions 2.0 and 3.0)
constexpr size_t kAlignment = 64;  // numpy pads magic + header to a multiple of this
constexpr int64_t kMaxExactInt = int64_t{1} << 53;  // larger int64s may not survive as doubles

bool HostIsLittleEndian() {
  const uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

uint64_t ReadLittleEndian(const unsigned char* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// What the header describes.
struct NpyHeader {
  char kind = 0;        // 'f' or 'i'
  size_t itemsize = 0;  // 4 or 8
  std::string descr;
  std::vector<uint64_t> shape;
};

std::string ShapeString(const std::vector<uint64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

// A parser for the Python dict literal in a .npy header, e.g.
// {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  absl::StatusOr<NpyHeader> Parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    bool fortran = false;
    KNN_RETURN_IF_ERROR(Expect('{'));
    while (true) {
      SkipSpace();
      if (Peek() == '}') {
        ++pos_;
        break;
      }
      KNN_ASSIGN_OR_RETURN(std::string key, ParseString());
      KNN_RETURN_IF_ERROR(Expect(':'));
      SkipSpace();
      if (key == "descr" && !have_descr) {
        if (Peek() == '[') {
          return Error("has a structured dtype (a list of fields); save a plain numeric array");
        }
        KNN_ASSIGN_OR_RETURN(h.descr, ParseString());
        have_descr = true;
      } else if (key == "fortran_order" && !have_order) {
        KNN_ASSIGN_OR_RETURN(fortran, ParseBool());
        have_order = true;
      } else if (key == "shape" && !have_shape) {
        KNN_ASSIGN_OR_RETURN(h.shape, ParseShape());
        have_shape = true;
      } else {
        return Error(absl::StrFormat("has an unexpected or repeated key '%s'", key));
      }
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
      } else if (Peek() != '}') {
        return Error("is malformed: expected ',' or '}'");
      }
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("is malformed: text after the closing '}'");
    if (!have_descr || !have_order || !have_shape) {
      return Error("lacks one of the keys 'descr', 'fortran_order', 'shape'");
    }
    if (fortran) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: the array is Fortran-ordered; save it with np.ascontiguousarray", source_));
    }
    return h;
  }

 private:
  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: .npy header %s: %s", source_, what, QuoteForMessage(text_)));
  }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  absl::Status Expect(char c) {
    SkipSpace();
    if (Peek() != c) return Error(absl::StrFormat("is malformed: expected '%c'", c));
    ++pos_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ParseString() {
    SkipSpace();
    const char quote = Peek();
    if (quote != '\'' && quote != '"') return Error("is malformed: expected a quoted string");
    const size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) return Error("is malformed: unterminated string");
    std::string s(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return s;
  }
  absl::StatusOr<bool> ParseBool() {
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    return Error("is malformed: 'fortran_order' is not True or False");
  }
  absl::StatusOr<std::vector<uint64_t>> ParseShape() {
    std::vector<uint64_t> shape;
    KNN_RETURN_IF_ERROR(Expect('('));
    while (true) {
      SkipSpace();
      if (Peek() == ')') {
        ++pos_;
        return shape;
      }
      if (Peek() < '0' || Peek() > '9') {
        return Error("is malformed: 'shape' is not a tuple of non-negative integers");
      }
      uint64_t v = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        const uint64_t digit = static_cast<uint64_t>(Peek() - '0');
        if (v > (UINT64_MAX - digit) / 10) return Error("has a dimension too large");
        v = v * 10 + digit;
        ++pos_;
      }
      if (Peek() == 'L') ++pos_;  // Python 2 long, as old numpy wrote
      shape.push_back(v);
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
      } else if (Peek() != ')') {
        return Error("is malformed: expected ',' or ')' in 'shape'");
      }
    }
  }

  std::string_view text_;
  std::string_view source_;
  size_t pos_ = 0;
};

// Checks the dtype string and fills kind/itemsize.
absl::Status CheckDtype(std::string_view source, NpyHeader* h) {
  const std::string& d = h->descr;
  const std::string supported = "supported: <f4, <f8, <i4, <i8";
  if (d.size() >= 2 && d.substr(1) == "O") {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: dtype '%s' is an object array (pickled Python objects), which is never loaded; "
        "save a numeric array (%s)",
        source, d, supported));
  }
  const bool known = d.size() == 3 && (d[1] == 'f' || d[1] == 'i') && (d[2] == '4' || d[2] == '8');
  if (!known) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: unsupported dtype '%s' (%s); convert with arr.astype('<f8')", source, d, supported));
  }
  if (d[0] == '>' || ((d[0] == '=' || d[0] == '|') && !HostIsLittleEndian())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: dtype '%s' is big-endian, which is not supported; convert with arr.astype('<%s')",
        source, d, d.substr(1)));
  }
  if (d[0] != '<' && d[0] != '=' && d[0] != '|') {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: unsupported dtype '%s' (%s)", source, d, supported));
  }
  h->kind = d[1];
  h->itemsize = static_cast<size_t>(d[2] - '0');
  return absl::OkStatus();
}

absl::StatusOr<Matrix> ParseNpyImpl(std::string_view bytes, std::string_view source,
                                    bool allow_nonfinite) {
  if (bytes.size() < kPreludeV1 || bytes.substr(0, kMagic.size()) != kMagic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: not a .npy file (it does not start with the magic string \"\\x93NUMPY\")", source));
  }
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  const int major = u[6], minor = u[7];
  if (major < 1 || major > 3 || minor != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: unsupported .npy format version %d.%d (supported: 1.0, 2.0, 3.0)",
                        source, major, minor));
  }
  const size_t prelude = major == 1 ? kPreludeV1 : kPreludeV2;
  if (bytes.size() < prelude) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: truncated .npy file: %d bytes, no complete header", source, bytes.size()));
  }
  const uint64_t header_len = ReadLittleEndian(u + 8, prelude - 8);
  if (header_len > bytes.size() - prelude) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: truncated .npy file: the header claims %d bytes but only %d follow",
                        source, header_len, bytes.size() - prelude));
  }
  const std::string_view header_text = bytes.substr(prelude, header_len);
  KNN_ASSIGN_OR_RETURN(NpyHeader h, HeaderParser(header_text, source).Parse());
  KNN_RETURN_IF_ERROR(CheckDtype(source, &h));
  if (h.shape.empty() || h.shape.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: shape %s has %d dimensions; expected a 1-D or 2-D array", source,
                        ShapeString(h.shape), h.shape.size()));
  }
  const uint64_t rows = h.shape[0];
  const uint64_t cols = h.shape.size() == 2 ? h.shape[1] : 1;
  // (n, 0) carries no data bytes whatever n is: without this check 14 bytes of header made a
  // matrix of 2^62 empty rows, which every consumer then loops over.
  if (cols == 0 && rows != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: shape %s has rows of 0 columns; a matrix needs at least one column", source,
        ShapeString(h.shape)));
  }
  const std::string_view data = bytes.substr(prelude + header_len);
  uint64_t need = 0;
  if (__builtin_mul_overflow(rows, cols, &need) ||
      __builtin_mul_overflow(need, h.itemsize, &need)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: shape %s is too large", source, ShapeString(h.shape)));
  }
  if (data.size() < need) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: truncated .npy file: shape %s of '%s' needs %d data bytes, the file has %d", source,
        ShapeString(h.shape), h.descr, need, data.size()));
  }
  if (data.size() > need) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %d trailing bytes after the %d data bytes of shape %s of '%s'", source,
                        data.size() - need, need, ShapeString(h.shape), h.descr));
  }

  Matrix m(static_cast<size_t>(rows), static_cast<size_t>(cols));
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  double* out = m.data();
  const size_t n = static_cast<size_t>(rows * cols);
  for (size_t i = 0; i < n; ++i, p += h.itemsize) {
    const uint64_t raw = ReadLittleEndian(p, h.itemsize);
    double v;
    if (h.kind == 'f' && h.itemsize == 8) {
      std::memcpy(&v, &raw, sizeof(v));
    } else if (h.kind == 'f') {
      const uint32_t r32 = static_cast<uint32_t>(raw);
      float f;
      std::memcpy(&f, &r32, sizeof(f));
      v = f;
    } else if (h.itemsize == 4) {
      v = static_cast<int32_t>(static_cast<uint32_t>(raw));
    } else {
      const int64_t i64 = static_cast<int64_t>(raw);
      v = static_cast<double>(i64);
      if (i64 > kMaxExactInt || i64 < -kMaxExactInt) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: row %d, column %d (0-based): %d is not exactly representable as a double", source,
            i / cols, i % cols, i64));
      }
    }
    if (!allow_nonfinite && !std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: row %d, column %d (0-based): non-finite value %g (pass allow_nonfinite to accept "
          "it)",
          source, i / cols, i % cols, v));
    }
    out[i] = v;
  }
  return m;
}

}  // namespace

absl::StatusOr<Matrix> ParseNpy(std::string_view bytes, std::string_view source_name,
                                bool allow_nonfinite) {
  try {
    return ParseNpyImpl(bytes, source_name, allow_nonfinite);
  } catch (const std::exception& e) {  // std::bad_alloc; nothing else throws
    return absl::ResourceExhaustedError(absl::StrFormat("%s: %s", source_name, e.what()));
  }
}

absl::StatusOr<Matrix> LoadNpy(const std::string& path, bool allow_nonfinite) {
  KNN_ASSIGN_OR_RETURN(std::string bytes, datasets_internal::ReadFile(path));
  return ParseNpy(bytes, path, allow_nonfinite);
}

absl::StatusOr<std::vector<double>> ParseNpyVector(std::string_view bytes,
                                                   std::string_view source_name,
                                                   bool allow_nonfinite) {
  KNN_ASSIGN_OR_RETURN(Matrix m, ParseNpy(bytes, source_name, allow_nonfinite));
  if (m.cols() != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: expected a vector of shape (n,) or (n, 1), got shape (%d, %d)",
                        source_name, m.rows(), m.cols()));
  }
  return m.values();
}

absl::StatusOr<std::vector<double>> LoadNpyVector(const std::string& path, bool allow_nonfinite) {
  KNN_ASSIGN_OR_RETURN(std::string bytes, datasets_internal::ReadFile(path));
  return ParseNpyVector(bytes, path, allow_nonfinite);
}

std::string EncodeNpy(MatrixView m) {
  std::string header = absl::StrFormat(
      "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }", m.rows(), m.cols());
  // Pad with spaces and end with '\n' so the data starts on a kAlignment boundary.
  const size_t unpadded = kPreludeV1 + header.size() + 1;
  header.append((kAlignment - unpadded % kAlignment) % kAlignment, ' ');
  header.push_back('\n');
  std::string out(kMagic);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.reserve(out.size() + m.rows() * m.cols() * 8);
  for (size_t i = 0; i < m.rows(); ++i) {
    for (size_t j = 0; j < m.cols(); ++j) {
      const double v = m.at(i, j);
      uint64_t raw;
      std::memcpy(&raw, &v, sizeof(raw));
      for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>((raw >> (8 * b)) & 0xff));
    }
  }
  return out;
}

absl::Status SaveNpy(const std::string& path, MatrixView m) {
  return datasets_internal::WriteFile(path, EncodeNpy(m));
}

}  // namespace knncluster
