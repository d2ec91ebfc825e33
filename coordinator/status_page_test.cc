#include "coordinator/status_page.h"

#include <string>

#include "gtest/gtest.h"

namespace knncluster::coordinator {
namespace {

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(StatusPageTest, ListsEverythingAndEscapesEveryName) {
  StatusPageData d;
  d.coordinator_address = "10.0.0.1:7000";
  v1::WorkerInfo* w = d.cluster.add_workers();
  w->set_worker_id("w<1>");
  w->set_address("a\"b:1");
  w->set_state(v1::WORKER_ALIVE);
  w->set_millis_since_heartbeat(250);
  w->add_shard_ids("s1");
  w->set_rows(10);
  v1::WorkerInfo* dead = d.cluster.add_workers();
  dead->set_worker_id("w2");
  dead->set_state(v1::WORKER_DEAD);
  dead->set_millis_since_heartbeat(-1);
  v1::DatasetInfo* ds = d.cluster.add_datasets();
  ds->set_name("<script>alert(1)</script>");
  ds->set_rows(10);
  ds->set_cols(3);
  v1::ModelInfo* m = d.cluster.add_models();
  m->set_name("m&m");
  m->set_dataset("<script>alert(1)</script>");
  m->mutable_params()->set_n_neighbors(5);
  v1::ShardPlacement* s = m->add_shards();
  s->set_shard_id("s1");
  s->set_rows(10);
  s->add_replica_worker_ids("w<1>");
  s->add_replica_worker_ids("w2");
  StatusPageSearch& g = d.searches.emplace_back();
  g.info.set_id("gs-1");
  g.info.set_state(v1::GRID_SEARCH_RUNNING);
  g.info.set_jobs_done(3);
  g.info.set_jobs_total(12);
  g.info.set_error("");
  const std::string page = RenderStatusPage(d);

  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(Count(page, "&lt;script&gt;alert(1)&lt;/script&gt;"), 3);  // row attr, cell, model
  EXPECT_NE(page.find("data-worker-id=\"w&lt;1&gt;\" data-state=\"alive\""), std::string::npos);
  EXPECT_NE(page.find("data-worker-id=\"w2\" data-state=\"dead\""), std::string::npos);
  EXPECT_NE(page.find("a&quot;b:1"), std::string::npos);
  EXPECT_NE(page.find("data-model=\"m&amp;m\""), std::string::npos);
  EXPECT_NE(page.find("never"), std::string::npos);  // w2 never heard from
  // The shard's copies, coloured by their worker's liveness.
  EXPECT_NE(page.find("<span class=\"alive\" data-worker=\"w&lt;1&gt;\">"), std::string::npos);
  EXPECT_NE(page.find("<span class=\"dead\" data-worker=\"w2\">"), std::string::npos);
  // Progress: 3 of 12 jobs = 25%.
  EXPECT_NE(page.find("data-jobs-done=\"3\" data-jobs-total=\"12\""), std::string::npos);
  EXPECT_NE(page.find("width:25.0%"), std::string::npos);
  EXPECT_NE(page.find("RUNNING"), std::string::npos);
  EXPECT_NE(page.find("<meta http-equiv=\"refresh\" content=\"3\">"), std::string::npos);
  EXPECT_EQ(page.find("http://"), std::string::npos);  // no external asset
}

TEST(StatusPageTest, EmptyClusterSaysNone) {
  const std::string page = RenderStatusPage(StatusPageData{});
  EXPECT_EQ(Count(page, ">none<"), 4);
}

}  // namespace
}  // namespace knncluster::coordinator
