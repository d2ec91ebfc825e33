#include "coordinator/model_catalog.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "core/base/durable_file.h"
#include "core/base/status_macros.h"
#include "rpc/convert.h"

namespace knncluster::coordinator {

namespace {

namespace fs = std::filesystem;

constexpr DurableFileFormat kModelFormat{"KNNMODL\n", 1, 1, "model record"};
constexpr char kSuffix[] = ".model";

template <typename Repeated>
std::vector<typename Repeated::value_type> ToVector(const Repeated& r) {
  return {r.begin(), r.end()};
}

}  // namespace

v1::ModelRecord ToRecord(const ModelEntry& e) {
  v1::ModelRecord r;
  r.set_name(e.name);
  r.set_task(rpc::ToProto(e.task));
  rpc::ToProto(e.params, r.mutable_params());
  r.set_contamination(e.contamination);
  if (e.threshold.has_value()) r.set_threshold(*e.threshold);
  r.set_dataset(e.dataset);
  r.set_rows(e.rows);
  r.set_cols(e.cols);
  for (const std::string& f : e.feature_names) r.add_feature_names(f);
  r.set_generation(e.generation);
  r.set_replication(static_cast<uint32_t>(e.replication));
  if (e.labels != nullptr) {
    for (const std::string& n : e.labels->class_names) r.add_class_names(n);
  }
  for (const Placement& p : e.shards) {
    v1::ShardRecord* s = r.add_shards();
    s->set_shard_id(p.location.shard_id);
    s->set_first_global_index(p.location.first_global_index);
    s->set_rows(p.location.rows);
    if (p.location.global_ids != nullptr) {
      s->set_spatial(true);
      s->mutable_global_ids()->Assign(p.location.global_ids->begin(),
                                      p.location.global_ids->end());
    }
    s->mutable_box_lo()->Assign(p.location.box_lo.begin(), p.location.box_lo.end());
    s->mutable_box_hi()->Assign(p.location.box_hi.begin(), p.location.box_hi.end());
    s->set_halo(p.location.halo);
    s->set_halo_rows(p.location.halo_rows);
    for (const Replica& c : p.replicas) {
      v1::ReplicaRecord* rr = s->add_replicas();
      rr->set_worker_id(c.worker_id);
      rr->set_placed_at_unix_micros(c.placed_at == absl::InfinitePast()
                                        ? 0
                                        : absl::ToUnixMicros(c.placed_at));
      rr->set_lost(c.lost);
    }
  }
  if (e.routing != nullptr) {
    v1::RoutingGridRecord* g = r.mutable_routing();
    g->set_k(e.routing->k);
    g->set_cells_per_dim(e.routing->cells_per_dim);
    g->mutable_lo()->Assign(e.routing->lo.begin(), e.routing->lo.end());
    g->mutable_width()->Assign(e.routing->width.begin(), e.routing->width.end());
    g->mutable_kth_dist()->Assign(e.routing->kth_dist.begin(), e.routing->kth_dist.end());
  }
  return r;
}

absl::StatusOr<std::shared_ptr<ModelEntry>> FromRecord(const v1::ModelRecord& r) {
  auto e = std::make_shared<ModelEntry>();
  e->name = r.name();
  if (e->name.empty()) return absl::InvalidArgumentError("name: empty");
  KNN_ASSIGN_OR_RETURN(e->task, rpc::FromProto(r.task(), "task"));
  KNN_ASSIGN_OR_RETURN(e->params, rpc::FromProto(r.params(), "params"));
  e->contamination = r.contamination();
  if (r.has_threshold()) e->threshold = r.threshold();
  e->dataset = r.dataset();
  e->rows = r.rows();
  e->cols = r.cols();
  e->feature_names = ToVector(r.feature_names());
  e->generation = r.generation();
  e->replication = static_cast<int>(std::max<uint32_t>(1, r.replication()));
  if (r.shards_size() == 0) return absl::InvalidArgumentError("shards: none");
  uint64_t rows = 0;
  for (int i = 0; i < r.shards_size(); ++i) {
    const v1::ShardRecord& s = r.shards(i);
    const std::string field = absl::StrCat("shards[", i, "]");
    Placement p;
    p.location.shard_id = s.shard_id();
    p.location.first_global_index = s.first_global_index();
    p.location.rows = s.rows();
    if (s.spatial()) {
      if (static_cast<uint64_t>(s.global_ids_size()) != s.rows()) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".global_ids: ", s.global_ids_size(),
                                                       " ids for ", s.rows(), " rows"));
      }
      p.location.global_ids =
          std::make_shared<const std::vector<int64_t>>(ToVector(s.global_ids()));
    } else if (s.first_global_index() < 0 ||
               static_cast<uint64_t>(s.first_global_index()) + s.rows() > r.rows()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": rows outside the training set"));
    }
    if ((s.box_lo_size() != 0 || s.box_hi_size() != 0) &&
        (static_cast<uint64_t>(s.box_lo_size()) != r.cols() ||
         static_cast<uint64_t>(s.box_hi_size()) != r.cols())) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".box: not one bound per column"));
    }
    p.location.box_lo = ToVector(s.box_lo());
    p.location.box_hi = ToVector(s.box_hi());
    if (!(s.halo() >= 0) || std::isinf(s.halo()) || s.halo_rows() > s.rows() ||
        ((s.halo() > 0 || s.halo_rows() > 0) && (!s.spatial() || s.box_lo_size() == 0))) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".halo: ", s.halo(), " with ", s.halo_rows(), " of ", s.rows(),
          " rows (a halo needs a spatial shard with a box and is part of its rows)"));
    }
    p.location.halo = s.halo();
    p.location.halo_rows = s.halo_rows();
    for (const v1::ReplicaRecord& c : s.replicas()) {
      p.replicas.push_back({c.worker_id(),
                            c.placed_at_unix_micros() == 0
                                ? absl::InfinitePast()
                                : absl::FromUnixMicros(c.placed_at_unix_micros()),
                            c.lost()});
    }
    p.SyncLocation();
    rows += s.rows() - s.halo_rows();  // each row is its own in exactly one shard
    e->shards.push_back(std::move(p));
  }
  if (rows != r.rows()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shards: ", rows, " rows in all (halos not counted) for a training set of ", r.rows()));
  }
  if (r.has_routing()) {
    const v1::RoutingGridRecord& g = r.routing();
    auto grid = std::make_shared<RoutingGrid>();
    grid->k = g.k();
    grid->cells_per_dim = g.cells_per_dim();
    grid->lo = ToVector(g.lo());
    grid->width = ToVector(g.width());
    grid->kth_dist = ToVector(g.kth_dist());
    size_t cells = 1;
    for (size_t j = 0; j < grid->lo.size(); ++j) cells *= grid->cells_per_dim;
    if (grid->cells_per_dim < 1 || grid->lo.size() != r.cols() ||
        grid->width.size() != r.cols() || grid->kth_dist.size() != cells) {
      return absl::InvalidArgumentError("routing: inconsistent grid");
    }
    KNN_ASSIGN_OR_RETURN(const Minkowski metric, Minkowski::Create(e->params.p));
    grid->ComputeSoleShards(e->Locations(), metric);
    e->routing = std::move(grid);
  }
  return e;
}

absl::StatusOr<std::unique_ptr<ModelCatalog>> ModelCatalog::Open(const std::string& data_dir) {
  const std::string dir = absl::StrCat(data_dir, "/models");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat(dir, ": cannot create the directory: ", ec.message()));
  }
  KNN_RETURN_IF_ERROR(RemoveDurableTempFiles(dir).status());
  return std::unique_ptr<ModelCatalog>(
      new ModelCatalog(dir, absl::StrCat(data_dir, "/quarantine")));
}

std::string ModelCatalog::PathOf(const std::string& name) const {
  return absl::StrCat(dir_, "/", name, kSuffix);
}

absl::Status ModelCatalog::Sync(const ModelRegistry& registry, const std::string& name) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::shared_ptr<const ModelEntry>> entry = registry.Get(name);
  if (!entry.ok()) {
    std::error_code ec;
    fs::remove(PathOf(name), ec);
    if (ec) {
      return absl::InternalError(absl::StrCat(PathOf(name), ": cannot remove: ", ec.message()));
    }
    return absl::OkStatus();
  }
  return WriteDurableFile(PathOf(name), kModelFormat, ToRecord(**entry).SerializeAsString());
}

ModelCatalog::Loaded ModelCatalog::Load() {
  absl::MutexLock lock(&mu_);
  Loaded out;
  std::vector<std::string> paths;
  std::error_code ec;
  for (const fs::directory_entry& f : fs::directory_iterator(dir_, ec)) {
    const std::string file = f.path().filename().string();
    if (file.size() > sizeof(kSuffix) - 1 && absl::EndsWith(file, kSuffix)) {
      paths.push_back(f.path().string());
    }
  }
  if (ec) {
    out.errors.push_back(
        absl::InternalError(absl::StrCat(dir_, ": cannot list: ", ec.message())));
  }
  std::sort(paths.begin(), paths.end());
  for (const std::string& path : paths) {
    absl::StatusOr<DurableContents> contents = ReadDurableFile(path, kModelFormat);
    absl::Status st = contents.status();
    v1::ModelRecord record;
    if (st.ok() && !record.ParseFromString(contents->payload)) {
      st = absl::DataLossError(absl::StrCat(path, ": not a model record"));
    }
    if (st.ok()) {
      if (PathOf(record.name()) != path) {
        st = absl::DataLossError(absl::StrCat(path, ": the record names model \"", record.name(),
                                              "\""));
      }
    }
    if (st.ok()) {
      out.records.push_back(std::move(record));
      continue;
    }
    absl::StatusOr<std::string> moved = QuarantineFile(path, quarantine_dir_);
    out.errors.push_back(absl::Status(
        st.code(), absl::StrCat(st.message(),
                                moved.ok() ? absl::StrCat(" (moved to ", *moved, ")")
                                           : absl::StrCat(" (not moved: ",
                                                          moved.status().message(), ")"))));
  }
  return out;
}

absl::StatusOr<std::string> ModelCatalog::Quarantine(const std::string& name) {
  absl::MutexLock lock(&mu_);
  return QuarantineFile(PathOf(name), quarantine_dir_);
}

}  // namespace knncluster::coordinator
