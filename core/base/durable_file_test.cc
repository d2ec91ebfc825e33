#include "core/base/durable_file.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const DurableFileFormat kFormat{"KNNTEST\n", 3, 2, "test file"};

class DurableFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "durable_file_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void Spit(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }

  std::string dir_;
};

TEST_F(DurableFileTest, RoundTripsEveryByte) {
  std::string payload;
  for (int i = 0; i < 100000; ++i) payload.push_back(static_cast<char>(i * 131));
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteDurableFile(path, kFormat, payload).ok());
  absl::StatusOr<DurableContents> got = ReadDurableFile(path, kFormat);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->version, 3u);
  EXPECT_EQ(got->payload, payload);
  EXPECT_EQ(fs::file_size(path), kDurableHeaderSize + payload.size());
  // Empty payloads too, and overwriting.
  ASSERT_TRUE(WriteDurableFile(path, kFormat, "").ok());
  got = ReadDurableFile(path, kFormat);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->payload, "");
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST_F(DurableFileTest, MissingFileIsNotFound) {
  absl::StatusOr<DurableContents> got = ReadDurableFile(dir_ + "/nope", kFormat);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(), HasSubstr(dir_ + "/nope"));
}

TEST_F(DurableFileTest, EveryTruncationIsDataLoss) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteDurableFile(path, kFormat, "payload of some length").ok());
  const std::string bytes = Slurp(path);
  for (size_t n = 0; n < bytes.size(); ++n) {
    absl::StatusOr<DurableContents> got = ParseDurableFile(path, bytes.substr(0, n), kFormat);
    ASSERT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << n;
    EXPECT_THAT(got.status().message(), HasSubstr(path));
  }
  Spit(path, bytes.substr(0, bytes.size() - 3));
  absl::StatusOr<DurableContents> got = ReadDurableFile(path, kFormat);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(got.status().message(), HasSubstr("truncated"));
  // Bytes appended after the payload are caught too.
  Spit(path, bytes + "x");
  EXPECT_EQ(ReadDurableFile(path, kFormat).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(DurableFileTest, EveryBitFlipIsCaught) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteDurableFile(path, kFormat, "0123456789abcdef").ok());
  const std::string bytes = Slurp(path);
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = bytes;
      damaged[i] = static_cast<char>(damaged[i] ^ (1 << bit));
      absl::StatusOr<DurableContents> got = ParseDurableFile(path, damaged, kFormat);
      ASSERT_FALSE(got.ok()) << "byte " << i << " bit " << bit;
      // A flipped version bit may look like another version: refused, never misread.
      if (i >= 8 && i < 12) {
        EXPECT_TRUE(got.status().code() == absl::StatusCode::kDataLoss ||
                    got.status().code() == absl::StatusCode::kFailedPrecondition);
      } else {
        EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << i;
      }
    }
  }
  std::string damaged = bytes;
  damaged[kDurableHeaderSize + 4] ^= 0x10;
  Spit(path, damaged);
  absl::StatusOr<DurableContents> got = ReadDurableFile(path, kFormat);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(got.status().message(), HasSubstr("checksum"));
  EXPECT_THAT(got.status().message(), HasSubstr(path));
}

TEST_F(DurableFileTest, WrongMagicIsNamed) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteDurableFile(path, DurableFileFormat{"KNNOTHR\n", 3, 1, "other"}, "x").ok());
  absl::StatusOr<DurableContents> got = ReadDurableFile(path, kFormat);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(got.status().message(), HasSubstr("not a test file"));
}

TEST_F(DurableFileTest, NewerVersionIsRefusedOlderIsReturnedOrRefused) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteDurableFile(path, DurableFileFormat{"KNNTEST\n", 4, 1, "x"}, "v4").ok());
  absl::StatusOr<DurableContents> got = ReadDurableFile(path, kFormat);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(got.status().message(),
              HasSubstr("format version 4 is newer than this build supports (3)"));

  ASSERT_TRUE(WriteDurableFile(path, DurableFileFormat{"KNNTEST\n", 2, 1, "x"}, "v2").ok());
  got = ReadDurableFile(path, kFormat);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->version, 2u);  // the caller upgrades
  EXPECT_EQ(got->payload, "v2");

  ASSERT_TRUE(WriteDurableFile(path, DurableFileFormat{"KNNTEST\n", 1, 1, "x"}, "v1").ok());
  got = ReadDurableFile(path, kFormat);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(got.status().message(), HasSubstr("older than this build can read (oldest 2)"));
}

TEST_F(DurableFileTest, CrashLeftoversAreRecognisedAndRemoved) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteDurableFile(path, kFormat, "committed").ok());
  // A crash between write and rename leaves a (possibly partial) temporary file.
  Spit(path + ".tmp-123-abc-1-0", "half writ");
  Spit(dir_ + "/other.tmp-9", "");
  EXPECT_TRUE(IsDurableTempFile("f.tmp-123-abc-1-0"));
  EXPECT_FALSE(IsDurableTempFile("f"));
  absl::StatusOr<int> removed = RemoveDurableTempFiles(dir_);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 2);
  EXPECT_EQ(ReadDurableFile(path, kFormat)->payload, "committed");
  EXPECT_EQ(*RemoveDurableTempFiles(dir_ + "/missing"), 0);
}

TEST_F(DurableFileTest, QuarantineMovesTheFileAside) {
  const std::string path = dir_ + "/f";
  Spit(path, "junk");
  absl::StatusOr<std::string> moved = QuarantineFile(path, dir_ + "/quarantine");
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(Slurp(*moved), "junk");
  Spit(path, "junk2");
  absl::StatusOr<std::string> again = QuarantineFile(path, dir_ + "/quarantine");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_NE(*again, *moved);  // never overwrites an earlier one
}

TEST_F(DurableFileTest, DataDirFormatIsWrittenCheckedAndUpgraded) {
  const std::string dir = dir_ + "/data";
  absl::StatusOr<uint32_t> found = CheckDataDirFormat(dir, "knncluster-test", 2);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, 0u);
  EXPECT_EQ(Slurp(dir + "/FORMAT"), "knncluster-test 2\n");
  found = CheckDataDirFormat(dir, "knncluster-test", 2);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, 2u);

  // Another kind of directory.
  found = CheckDataDirFormat(dir, "knncluster-other", 2);
  EXPECT_EQ(found.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(found.status().message(), HasSubstr("is a knncluster-test data directory"));

  // Newer: refused, the marker untouched.
  found = CheckDataDirFormat(dir, "knncluster-test", 1);
  EXPECT_EQ(found.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(found.status().message(),
              HasSubstr("data directory format version 2 is newer than this build supports (1)"));
  EXPECT_EQ(Slurp(dir + "/FORMAT"), "knncluster-test 2\n");

  // Older: refused without an upgrade, upgraded with one.
  found = CheckDataDirFormat(dir, "knncluster-test", 3);
  EXPECT_EQ(found.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(found.status().message(), HasSubstr("older than this build can upgrade"));
  uint32_t upgraded_from = 99;
  found = CheckDataDirFormat(dir, "knncluster-test", 3, [&](uint32_t from) {
    upgraded_from = from;
    return absl::OkStatus();
  });
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(upgraded_from, 2u);
  EXPECT_EQ(Slurp(dir + "/FORMAT"), "knncluster-test 3\n");

  // A failed upgrade leaves the old marker.
  found = CheckDataDirFormat(dir, "knncluster-test", 4,
                             [](uint32_t) { return absl::InternalError("nope"); });
  EXPECT_EQ(found.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Slurp(dir + "/FORMAT"), "knncluster-test 3\n");

  Spit(dir + "/FORMAT", "garbage\n");
  found = CheckDataDirFormat(dir, "knncluster-test", 3);
  EXPECT_EQ(found.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(found.status().message(), HasSubstr(dir + "/FORMAT"));
}

}  // namespace
}  // namespace knncluster
