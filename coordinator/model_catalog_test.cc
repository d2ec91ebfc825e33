#include "coordinator/model_catalog.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster::coordinator {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "model_catalog_XXXXXX").string();
  return mkdtemp(tmpl.data());
}

// A spatial model with two shards, three copies (one lost) and a routing grid.
std::shared_ptr<ModelEntry> SampleEntry() {
  auto e = std::make_shared<ModelEntry>();
  e->name = "digits-knn";
  e->task = Model::Task::kOutlier;
  e->params.n_neighbors = 7;
  e->params.p = 1.5;
  e->contamination = 0.05;
  e->threshold = 3.25;
  e->dataset = "digits.train-0.2-1337";
  e->rows = 5;
  e->cols = 2;
  e->feature_names = {"a", "b"};
  e->generation = 42;
  e->replication = 2;
  e->labels = std::make_shared<const ModelLabels>();
  Placement p0, p1;
  p0.location.shard_id = "digits-knn@42/0";
  p0.location.rows = 2;
  p0.location.global_ids = std::make_shared<const std::vector<int64_t>>(std::vector<int64_t>{1, 4});
  p0.location.box_lo = {0, 1};
  p0.location.box_hi = {2, 3};
  p0.replicas = {{"w1", absl::FromUnixMicros(1700000000123456), false}, {"w2", absl::InfinitePast(), true}};
  p0.SyncLocation();
  p1.location.shard_id = "digits-knn@42/1";
  p1.location.rows = 3;
  p1.location.global_ids = std::make_shared<const std::vector<int64_t>>(std::vector<int64_t>{0, 2, 3});
  p1.location.box_lo = {-1, 0};
  p1.location.box_hi = {5, 6};
  p1.replicas = {{"w3", absl::FromUnixMicros(1700000000000001), false}};
  p1.SyncLocation();
  e->shards = {p0, p1};
  auto grid = std::make_shared<RoutingGrid>();
  grid->k = 7;
  grid->cells_per_dim = 2;
  grid->lo = {-1, 0};
  grid->width = {3, 3};
  grid->kth_dist = {1, 2, 3, 4};
  e->routing = grid;
  return e;
}

TEST(ModelCatalogTest, RecordRoundTripsEveryField) {
  const std::shared_ptr<ModelEntry> e = SampleEntry();
  absl::StatusOr<std::shared_ptr<ModelEntry>> back = FromRecord(ToRecord(*e));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToRecord(**back).SerializeAsString(), ToRecord(*e).SerializeAsString());
  EXPECT_EQ((*back)->threshold, 3.25);
  EXPECT_EQ((*back)->replication, 2);
  EXPECT_EQ(*(*back)->shards[1].location.global_ids, (std::vector<int64_t>{0, 2, 3}));
  EXPECT_EQ((*back)->shards[0].replicas[0].placed_at, absl::FromUnixMicros(1700000000123456));
  EXPECT_EQ((*back)->shards[0].location.worker_ids, std::vector<std::string>{"w1"});  // w2 lost
  EXPECT_EQ((*back)->routing->kth_dist, (std::vector<double>{1, 2, 3, 4}));
}

TEST(ModelCatalogTest, InconsistentRecordsAreRefusedNamingTheField) {
  v1::ModelRecord r = ToRecord(*SampleEntry());
  r.mutable_shards(1)->mutable_global_ids()->RemoveLast();
  EXPECT_THAT(std::string(FromRecord(r).status().message()), HasSubstr("shards[1].global_ids"));
  r = ToRecord(*SampleEntry());
  r.set_rows(6);
  EXPECT_THAT(std::string(FromRecord(r).status().message()), HasSubstr("shards: 5 rows"));
  r = ToRecord(*SampleEntry());
  r.mutable_routing()->mutable_kth_dist()->RemoveLast();
  EXPECT_THAT(std::string(FromRecord(r).status().message()), HasSubstr("routing"));
}

// A shard with a halo holds rows of another shard too: the record keeps the halo, and its rows
// are counted once (as the other shard's own) against the training set.
TEST(ModelCatalogTest, HalosRoundTripAndTheirRowsCountOnce) {
  std::shared_ptr<ModelEntry> e = SampleEntry();
  Placement& p0 = e->shards[0];
  p0.location.global_ids =
      std::make_shared<const std::vector<int64_t>>(std::vector<int64_t>{1, 2, 4});  // 2: halo
  p0.location.rows = 3;
  p0.location.halo = 0.75;
  p0.location.halo_rows = 1;
  absl::StatusOr<std::shared_ptr<ModelEntry>> back = FromRecord(ToRecord(*e));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->shards[0].location.halo, 0.75);
  EXPECT_EQ((*back)->shards[0].location.halo_rows, 1u);
  EXPECT_EQ((*back)->shards[1].location.halo, 0.0);
  // Counted as its own rows, the halo would make 6 rows of 5.
  v1::ModelRecord r = ToRecord(*e);
  r.mutable_shards(0)->set_halo_rows(0);
  EXPECT_THAT(std::string(FromRecord(r).status().message()), HasSubstr("shards: 6 rows"));
  for (auto bad : {-1.0, HUGE_VAL}) {
    r = ToRecord(*e);
    r.mutable_shards(0)->set_halo(bad);
    EXPECT_THAT(std::string(FromRecord(r).status().message()), HasSubstr("shards[0].halo"));
  }
  r = ToRecord(*e);
  r.mutable_shards(0)->set_halo_rows(4);  // more than the shard's rows
  EXPECT_THAT(std::string(FromRecord(r).status().message()), HasSubstr("shards[0].halo"));
}

TEST(ModelCatalogTest, SyncWritesTheNewestEntryAndLoadQuarantinesDamagedFiles) {
  const std::string dir = TempDir();
  absl::StatusOr<std::unique_ptr<ModelCatalog>> catalog = ModelCatalog::Open(dir);
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  ModelRegistry registry;
  std::shared_ptr<ModelEntry> a = SampleEntry();
  std::shared_ptr<ModelEntry> b = SampleEntry();
  b->name = "other";
  ASSERT_TRUE(registry.Put(a, false).ok());
  ASSERT_TRUE(registry.Put(b, false).ok());
  ASSERT_TRUE((*catalog)->Sync(registry, "digits-knn").ok());
  ASSERT_TRUE((*catalog)->Sync(registry, "other").ok());
  // A copy added later is what the file holds after the next Sync.
  ASSERT_TRUE(registry.AddReplica("digits-knn", 42, "digits-knn@42/1", "w9", absl::Now()));
  ASSERT_TRUE((*catalog)->Sync(registry, "digits-knn").ok());
  ModelCatalog::Loaded loaded = (*catalog)->Load();
  ASSERT_EQ(loaded.records.size(), 2u);
  EXPECT_TRUE(loaded.errors.empty());
  EXPECT_EQ(loaded.records[0].name(), "digits-knn");
  EXPECT_EQ(loaded.records[0].shards(1).replicas(1).worker_id(), "w9");
  // Removed from the registry: the file goes.
  ASSERT_TRUE(registry.Remove("other").ok());
  ASSERT_TRUE((*catalog)->Sync(registry, "other").ok());
  EXPECT_FALSE(std::filesystem::exists((*catalog)->PathOf("other")));
  // One flipped byte: reported naming the file, moved to quarantine, never loaded.
  const std::string path = (*catalog)->PathOf("digits-knn");
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  loaded = (*catalog)->Load();
  EXPECT_TRUE(loaded.records.empty());
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_THAT(std::string(loaded.errors[0].message()), HasSubstr(path));
  EXPECT_THAT(std::string(loaded.errors[0].message()), HasSubstr("quarantine"));
  EXPECT_FALSE(std::filesystem::exists(path));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace knncluster::coordinator
