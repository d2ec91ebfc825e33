#include "core/estimators/model_io.h"

#include <dirent.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

using ::testing::HasSubstr;

uint64_t Bits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

std::vector<uint64_t> Bits(const std::vector<double>& v) {
  std::vector<uint64_t> out;
  for (double x : v) out.push_back(Bits(x));
  return out;
}

void ExpectSameModel(const Model& a, const Model& b) {
  EXPECT_EQ(a.task, b.task);
  EXPECT_EQ(a.params.n_neighbors, b.params.n_neighbors);
  EXPECT_EQ(a.params.weights, b.params.weights);
  EXPECT_EQ(a.params.algorithm, b.params.algorithm);
  EXPECT_EQ(a.params.leaf_size, b.params.leaf_size);
  EXPECT_EQ(Bits(a.params.p), Bits(b.params.p));
  EXPECT_EQ(Bits(a.contamination), Bits(b.contamination));
  ASSERT_EQ(a.threshold.has_value(), b.threshold.has_value());
  if (a.threshold) {
    EXPECT_EQ(Bits(*a.threshold), Bits(*b.threshold));
  }
  EXPECT_EQ(a.X.rows(), b.X.rows());
  EXPECT_EQ(a.X.cols(), b.X.cols());
  EXPECT_EQ(Bits(a.X.values()), Bits(b.X.values()));
  EXPECT_EQ(Bits(a.y), Bits(b.y));
  EXPECT_EQ(a.class_names, b.class_names);
  EXPECT_EQ(a.feature_names, b.feature_names);
  EXPECT_EQ(a.dataset_name, b.dataset_name);
}

// A model exercising every field and awkward doubles (-0.0, the smallest subnormal, the largest
// finite, a NaN with a payload in y, p = +inf).
Model RichModel() {
  Model m;
  m.task = Model::Task::kOutlier;
  m.params.n_neighbors = 7;
  m.params.weights = Weights::kDistance;
  m.params.algorithm = Algorithm::kBallTree;
  m.params.leaf_size = 13;
  m.params.p = std::numeric_limits<double>::infinity();
  m.contamination = 0.07;
  m.threshold = 1.0 / 3;
  m.X = Matrix(3, 2,
               {-0.0, std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::max(),
                1e-300, -2.5, 0.1});
  m.y = {};
  m.feature_names = {"width", std::string("h\0eight", 7)};
  m.dataset_name = "d\xc3\xa9j\xc3\xa0 vu";
  return m;
}

Model ClassifierModel() {
  Model m;
  m.task = Model::Task::kClassifier;
  m.params.n_neighbors = 2;
  m.params.p = 1.5;
  m.X = Matrix(4, 1, {0, 1, 2, 3});
  uint64_t nan_bits = 0x7ff8000000000123ULL;
  double nan;
  std::memcpy(&nan, &nan_bits, sizeof nan);
  m.y = {0, 1, 1, nan};
  m.class_names = {"cat", "dog", ""};
  return m;
}

TEST(Crc32Test, MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
  EXPECT_EQ(ExtendCrc32(Crc32("12345"), "6789"), 0xCBF43926u);
}

TEST(ModelIoTest, RoundTripIsBitExact) {
  for (const Model& m : {RichModel(), ClassifierModel(), Model{}}) {
    const std::string bytes = SerializeModel(m);
    EXPECT_EQ(bytes.substr(0, 8), "KNNMODEL");
    absl::StatusOr<Model> back = ParseModel(bytes, "<memory>");
    ASSERT_TRUE(back.ok()) << back.status();
    ExpectSameModel(m, *back);
    EXPECT_EQ(SerializeModel(*back), bytes);
  }
}

TEST(ModelIoTest, EveryFlippedByteIsAnError) {
  const std::string bytes = SerializeModel(RichModel());
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80, 0xFF}) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      absl::StatusOr<Model> got = ParseModel(bad, "m.knn");
      ASSERT_FALSE(got.ok()) << "byte " << i << " mask " << int{mask};
      EXPECT_THAT(std::string(got.status().message()), HasSubstr("m.knn")) << i;
      if (i >= 20 && i + 4 < bytes.size()) {
        EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << i;
        EXPECT_THAT(std::string(got.status().message()), HasSubstr("checksum mismatch")) << i;
      }
    }
  }
}

TEST(ModelIoTest, EveryTruncationIsAnError) {
  const std::string bytes = SerializeModel(ClassifierModel());
  for (size_t n = 0; n < bytes.size(); ++n) {
    absl::StatusOr<Model> got = ParseModel(bytes.substr(0, n), "m.knn");
    ASSERT_FALSE(got.ok()) << n;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << n << got.status();
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("truncated")) << n;
  }
  absl::StatusOr<Model> got = ParseModel(bytes + "x", "m.knn");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("unexpected bytes after"));
}

TEST(ModelIoTest, BadMagicAndNewerVersionsAreRejectedClearly) {
  std::string bytes = SerializeModel(ClassifierModel());
  std::string bad = bytes;
  bad.replace(0, 8, "KNNMODEX");
  absl::Status s = ParseModel(bad, "x.bin").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "x.bin: not a knncluster model file (bad magic)");
  EXPECT_EQ(ParseModel("PK\x03\x04", "a.zip").status().code(), absl::StatusCode::kInvalidArgument);
  for (uint8_t version : {2, 7}) {
    bad = bytes;
    bad[8] = static_cast<char>(version);
    s = ParseModel(bad, "m.knn").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), absl::StrCat("m.knn: model format version ", version,
                                        " is newer than this build supports (1)"));
  }
  bad = bytes;
  bad[8] = 0;
  EXPECT_EQ(ParseModel(bad, "m.knn").status().code(), absl::StatusCode::kInvalidArgument);
}

void PutU64(std::string* s, size_t pos, uint64_t v) {
  for (int i = 0; i < 8; ++i) (*s)[pos + i] = static_cast<char>(v >> (8 * i));
}

// Recomputes the trailing checksum so that a forged length reaches the payload parser.
void Reseal(std::string* s) {
  const uint32_t crc = Crc32(std::string_view(*s).substr(0, s->size() - 4));
  for (int i = 0; i < 4; ++i) (*s)[s->size() - 4 + i] = static_cast<char>(crc >> (8 * i));
}

TEST(ModelIoTest, HugeLengthsAreErrorsNotAllocations) {
  const Model m = ClassifierModel();
  const std::string bytes = SerializeModel(m);
  for (uint64_t huge : {uint64_t{1} << 63, ~uint64_t{0}, uint64_t{1} << 40}) {
    // The header's payload length.
    std::string bad = bytes;
    PutU64(&bad, 12, huge);
    absl::Status s = ParseModel(bad, "m.knn").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(s.message()), HasSubstr("truncated"));
    // Lengths inside the payload, with a valid checksum: dataset_name's length, X.rows, X.cols,
    // y's size. Offsets: 20-byte header, 36 bytes of scalars, then the name (8 + 0 bytes).
    for (size_t offset : {56, 64, 72, 64 + 16 + 4 * 8}) {
      bad = bytes;
      PutU64(&bad, offset, huge);
      Reseal(&bad);
      s = ParseModel(bad, "m.knn").status();
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << offset;
      EXPECT_THAT(std::string(s.message()), HasSubstr("corrupt model payload")) << offset << s;
    }
  }
  // X.rows * X.cols overflowing 64 bits must not wrap to a small count.
  std::string bad = bytes;
  PutU64(&bad, 64, uint64_t{1} << 33);
  PutU64(&bad, 72, uint64_t{1} << 33);
  Reseal(&bad);
  EXPECT_EQ(ParseModel(bad, "m.knn").status().code(), absl::StatusCode::kDataLoss);
  // An unknown enum value or a y that does not match X is corruption too.
  bad = bytes;
  bad[20] = 9;  // task
  Reseal(&bad);
  EXPECT_THAT(std::string(ParseModel(bad, "m.knn").status().message()), HasSubstr("task"));
  Model short_y = m;
  short_y.y.pop_back();
  EXPECT_THAT(std::string(ParseModel(SerializeModel(short_y), "m.knn").status().message()),
              HasSubstr("y: 3 values for a classifier with 4 training rows"));
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
  }
  closedir(d);
  return names;
}

TEST(ModelIoTest, SaveAndLoadThroughARealFile) {
  std::string dir = absl::StrCat(::testing::TempDir(), "model_io_test_XXXXXX");
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string path = dir + "/model.knn";
  ASSERT_TRUE(SaveModel(path, RichModel()).ok());
  absl::StatusOr<Model> back = LoadModel(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameModel(RichModel(), *back);
  // Overwriting replaces the file atomically and leaves no temporary behind.
  ASSERT_TRUE(SaveModel(path, ClassifierModel()).ok());
  back = LoadModel(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameModel(ClassifierModel(), *back);
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"model.knn"});
  // A corrupted file on disk names the path.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(30);
    f.put('\x5a');
  }
  absl::Status s = LoadModel(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));

  EXPECT_EQ(LoadModel(dir + "/missing.knn").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SaveModel(dir + "/no/such/dir/model.knn", RichModel()).code(),
            absl::StatusCode::kNotFound);
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace knncluster
