// ShardFiles alone: names, the payload round trip, and what RestoreAll does with files it cannot
// use. The worker's restart end to end is in worker_test.cc.
#include "worker/shard_files.h"

#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/durable_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster::worker {
namespace {

using ::testing::HasSubstr;

class ShardFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "shard_files.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static v1::ShardHeader Header(const std::string& id, uint64_t rows, uint64_t cols) {
    v1::ShardHeader h;
    h.set_shard_id(id);
    h.set_rows(rows);
    h.set_cols(cols);
    h.set_first_global_index(7);
    h.mutable_index_params()->set_leaf_size(3);
    return h;
  }

  std::string dir_;
};

TEST_F(ShardFilesTest, NamesAreSafeAndDistinct) {
  EXPECT_EQ(ShardFiles::FileName("m/3"), "m%2F3");
  EXPECT_EQ(ShardFiles::FileName("a.b_c-d"), "a.b_c-d");
  EXPECT_EQ(ShardFiles::FileName(".."), "%2E.");
  EXPECT_EQ(ShardFiles::FileName("x%y"), "x%25y");
  // Ids up to 256 printable characters: names stay under 201 bytes and distinct.
  std::set<std::string> names;
  for (char c : std::string("/%ab")) {
    for (size_t n : {150, 199, 200, 256}) {
      const std::string id = std::string(n - 1, c) + "z";
      const std::string name = ShardFiles::FileName(id);
      EXPECT_LE(name.size(), 200u) << id;
      EXPECT_EQ(name.find('/'), std::string::npos);
      EXPECT_TRUE(names.insert(name).second) << id;
    }
  }
}

TEST_F(ShardFilesTest, RoundTripsAndQuarantinesWhatRestoreRejects) {
  ShardFiles files(dir_);
  const std::vector<double> a = {1.5, -0.0, 3.25, 1e300, 5, 6};
  ASSERT_TRUE(files.Write(Header("m/0", 3, 2), a).ok());
  ASSERT_TRUE(files.Write(Header("m/1", 1, 2), std::vector<double>{9, 8}).ok());
  ASSERT_TRUE(files.Write(Header("gone", 1, 1), std::vector<double>{1}).ok());
  ASSERT_TRUE(files.Remove("gone").ok());
  ASSERT_TRUE(files.Remove("never-there").ok());

  std::vector<StoredShard> seen;
  absl::StatusOr<int> restored = files.RestoreAll([&](StoredShard s) -> absl::Status {
    if (s.header.shard_id() == "m/1") return absl::DataLossError("rejected for the test");
    seen.push_back(std::move(s));
    return absl::OkStatus();
  });
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(*restored, 1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].header.SerializeAsString(), Header("m/0", 3, 2).SerializeAsString());
  ASSERT_EQ(seen[0].values.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(std::memcmp(&seen[0].values[i], &a[i], sizeof(double)), 0) << i;  // -0.0 too
  }
  ASSERT_EQ(files.quarantined().size(), 1u);
  EXPECT_THAT(files.quarantined()[0], HasSubstr(dir_ + "/quarantine/m%2F1."));
  EXPECT_THAT(files.quarantined()[0], HasSubstr("rejected for the test"));
  EXPECT_FALSE(std::filesystem::exists(files.PathOf("m/1")));

  // A file holding another id than its name says is not trusted either.
  std::filesystem::copy_file(files.PathOf("m/0"), dir_ + "/shards/renamed");
  ShardFiles again(dir_);
  restored = again.RestoreAll([](StoredShard) { return absl::OkStatus(); });
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(*restored, 1);
  ASSERT_EQ(again.quarantined().size(), 1u);
  EXPECT_THAT(again.quarantined()[0], HasSubstr("belongs in another file"));
}

// Labels (format version 2) are kept after the rows and read back by Read only: RestoreAll,
// which rebuilds the index, never holds them. Version-1 files (no labels) are still read.
TEST_F(ShardFilesTest, LabelsRoundTripThroughReadOnlyAndVersionOneStillReads) {
  ShardFiles files(dir_);
  v1::ShardHeader h = Header("m/0", 3, 2);
  h.set_has_labels(true);
  h.add_class_names("a");
  h.add_class_names("b");
  const std::vector<double> x = {1, 2, 3, 4, 5, 6}, y = {1, 0, 1};
  ASSERT_TRUE(files.Write(h, x, y).ok());
  absl::StatusOr<StoredShard> read = files.Read("m/0");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->header.SerializeAsString(), h.SerializeAsString());
  EXPECT_EQ(read->values, x);
  EXPECT_EQ(read->labels, y);
  EXPECT_EQ(files.Read("m/9").status().code(), absl::StatusCode::kNotFound);

  // Version 1, as builds before labels wrote it: u32 n | header | rows.
  const v1::ShardHeader old = Header("old", 1, 2);
  const std::string head = old.SerializeAsString();
  std::string payload;
  for (int i = 0; i < 4; ++i) payload.push_back(static_cast<char>(head.size() >> (8 * i)));
  payload += head;
  const double row[2] = {7.5, -1};
  payload.append(reinterpret_cast<const char*>(row), sizeof row);
  std::ofstream(files.PathOf("old"), std::ios::binary | std::ios::trunc)
      << EncodeDurableFile(DurableFileFormat{"KNNSHRD\n", 1, 1, "shard file"}, payload);
  read = files.Read("old");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->values, (std::vector<double>{7.5, -1}));
  EXPECT_TRUE(read->labels.empty());

  std::vector<StoredShard> seen;
  ASSERT_TRUE(files
                  .RestoreAll([&](StoredShard s) {
                    seen.push_back(std::move(s));
                    return absl::OkStatus();
                  })
                  .ok());
  ASSERT_EQ(seen.size(), 2u);
  for (const StoredShard& s : seen) EXPECT_TRUE(s.labels.empty()) << s.header.shard_id();
  EXPECT_TRUE(files.quarantined().empty());
}

}  // namespace
}  // namespace knncluster::worker
