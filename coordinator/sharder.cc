#include "coordinator/sharder.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace knncluster::coordinator {

std::string ShardId(const std::string& model, uint64_t generation, size_t index) {
  return absl::StrCat(model, "@", generation, "/", index);
}

absl::StatusOr<std::vector<ShardSpec>> PlanShards(const std::string& model, uint64_t generation,
                                                  uint64_t rows,
                                                  const std::vector<std::string>& worker_ids,
                                                  const ShardingOptions& options) {
  if (rows == 0) return absl::InvalidArgumentError("dataset: the training set has no rows");
  if (worker_ids.empty()) return absl::UnavailableError("no live workers to hold the shards");
  const uint64_t per_worker = static_cast<uint64_t>(std::max(1, options.shards_per_worker));
  const uint64_t min_rows = std::max<uint64_t>(1, options.min_rows_per_shard);
  uint64_t n_shards = per_worker * worker_ids.size();
  n_shards = std::min(n_shards, std::max<uint64_t>(1, rows / min_rows));
  std::vector<ShardSpec> shards;
  shards.reserve(n_shards);
  const uint64_t base = rows / n_shards;
  const uint64_t extra = rows % n_shards;
  uint64_t begin = 0;
  for (uint64_t i = 0; i < n_shards; ++i) {
    ShardSpec s;
    s.shard_id = ShardId(model, generation, i);
    s.worker_id = worker_ids[i % worker_ids.size()];
    s.first_global_index = static_cast<int64_t>(begin);
    s.rows = base + (i < extra ? 1 : 0);
    begin += s.rows;
    shards.push_back(std::move(s));
  }
  return shards;
}

namespace {

void Split(MatrixView data, std::vector<int64_t>::iterator begin,
           std::vector<int64_t>::iterator end, size_t n_parts, std::vector<SpatialPart>* out) {
  const size_t dim = data.cols();
  if (n_parts <= 1) {
    SpatialPart part;
    part.ids.assign(begin, end);
    std::sort(part.ids.begin(), part.ids.end());
    part.lo.assign(dim, std::numeric_limits<double>::infinity());
    part.hi.assign(dim, -std::numeric_limits<double>::infinity());
    for (int64_t id : part.ids) {
      const double* row = data.row(static_cast<size_t>(id));
      for (size_t j = 0; j < dim; ++j) {
        part.lo[j] = std::min(part.lo[j], row[j]);
        part.hi[j] = std::max(part.hi[j], row[j]);
      }
    }
    out->push_back(std::move(part));
    return;
  }
  std::vector<double> lo(dim, std::numeric_limits<double>::infinity());
  std::vector<double> hi(dim, -std::numeric_limits<double>::infinity());
  for (auto it = begin; it != end; ++it) {
    const double* row = data.row(static_cast<size_t>(*it));
    for (size_t j = 0; j < dim; ++j) {
      lo[j] = std::min(lo[j], row[j]);
      hi[j] = std::max(hi[j], row[j]);
    }
  }
  size_t widest = 0;
  for (size_t j = 1; j < dim; ++j) {
    if (hi[j] - lo[j] > hi[widest] - lo[widest]) widest = j;
  }
  const size_t left_parts = n_parts / 2;
  const size_t n = static_cast<size_t>(end - begin);
  const auto mid = begin + static_cast<std::ptrdiff_t>(n * left_parts / n_parts);
  std::nth_element(begin, mid, end, [&](int64_t a, int64_t b) {
    const double va = data.row(static_cast<size_t>(a))[widest];
    const double vb = data.row(static_cast<size_t>(b))[widest];
    return va < vb || (va == vb && a < b);
  });
  Split(data, begin, mid, left_parts, out);
  Split(data, mid, end, n_parts - left_parts, out);
}

}  // namespace

std::vector<SpatialPart> PartitionSpatially(MatrixView data, size_t n_parts) {
  std::vector<SpatialPart> out;
  if (n_parts == 0 || data.rows() < n_parts) return out;
  std::vector<int64_t> ids(data.rows());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  Split(data, ids.begin(), ids.end(), n_parts, &out);
  return out;
}

double HaloWidth(const std::vector<SpatialPart>& parts, uint64_t rows, size_t k) {
  if (parts.empty() || rows == 0 || k == 0) return 0;
  const size_t dim = parts[0].lo.size();
  double volume = 1;
  for (size_t j = 0; j < dim; ++j) {
    double lo = parts[0].lo[j], hi = parts[0].hi[j];
    for (const SpatialPart& p : parts) {
      lo = std::min(lo, p.lo[j]);
      hi = std::max(hi, p.hi[j]);
    }
    volume *= hi - lo;
  }
  if (!(volume > 0) || !std::isfinite(volume) || dim == 0) return 0;
  const double side = std::pow(volume * static_cast<double>(k) / static_cast<double>(rows),
                               1.0 / static_cast<double>(dim));
  return std::isfinite(side) ? 2 * side : 0;
}

void AddHalos(MatrixView data, double halo, std::vector<SpatialPart>* parts) {
  const size_t dim = data.cols();
  for (SpatialPart& p : *parts) p.halo_ids.clear();
  if (!(halo > 0)) return;
  std::vector<int> part_of(data.rows(), -1);
  for (size_t i = 0; i < parts->size(); ++i) {
    for (int64_t id : (*parts)[i].ids) part_of[static_cast<size_t>(id)] = static_cast<int>(i);
  }
  // Each box grown by the halo and a few units of rounding, so that no row within `halo` of it
  // is left out by the rounding of these sums (a few rows more cost nothing).
  std::vector<std::vector<double>> lo(parts->size()), hi(parts->size());
  for (size_t i = 0; i < parts->size(); ++i) {
    for (size_t j = 0; j < dim; ++j) {
      const SpatialPart& p = (*parts)[i];
      const double scale = std::max({std::abs(p.lo[j]), std::abs(p.hi[j]), halo});
      const double grow = halo + 16 * std::numeric_limits<double>::epsilon() * scale;
      lo[i].push_back(p.lo[j] - grow);
      hi[i].push_back(p.hi[j] + grow);
    }
  }
  for (size_t r = 0; r < data.rows(); ++r) {  // ascending, so each halo_ids is too
    const double* row = data.row(r);
    for (size_t i = 0; i < parts->size(); ++i) {
      SpatialPart& p = (*parts)[i];
      if (part_of[r] == static_cast<int>(i)) continue;
      bool near = true;
      for (size_t j = 0; j < dim && near; ++j) near = row[j] >= lo[i][j] && row[j] <= hi[i][j];
      if (near) p.halo_ids.push_back(static_cast<int64_t>(r));
    }
  }
}

}  // namespace knncluster::coordinator
