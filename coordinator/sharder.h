// Sharder: how a model's training rows are cut into shards and spread over the live workers.
// Shards are contiguous ranges of the training set as fitted, so row r of shard s has global
// index first_global_index + r, which is its training index: the workers report global ids and
// the coordinator never translates them. Spatial shards (PartitionSpatially: for low-dimensional
// data, so that queries can be routed) instead list their rows' global indices explicitly, and
// the worker reports those.
//
// Shard ids are unique per fit: "<model>@<generation>/<i>" ('@' and '/' cannot occur in a model
// name, so the id is unambiguous; the generation changes on every fit, so a refit never collides
// with the shards of the model it replaces).
//
// Thread safety: pure functions.
#ifndef KNNCLUSTER_COORDINATOR_SHARDER_H_
#define KNNCLUSTER_COORDINATOR_SHARDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/matrix.h"

namespace knncluster::coordinator {

struct ShardSpec {
  std::string shard_id;
  std::string worker_id;
  int64_t first_global_index = 0;
  uint64_t rows = 0;
};

struct ShardingOptions {
  // Shards per live worker: 1 keeps one RPC's work per worker per batch in one index; more
  // shards spread the rows of a dead worker over several survivors when they are re-sent.
  int shards_per_worker = 1;
  // No shard is cut smaller than this (fewer shards for small sets), except the only one.
  uint64_t min_rows_per_shard = 1;
};

// "<model>@<generation>/<index>".
std::string ShardId(const std::string& model, uint64_t generation, size_t index);

// Cuts [0, rows) into contiguous, near-equal shards (sizes differ by at most one; larger ones
// first) and deals them round-robin over `worker_ids` (given in the order to use).
// InvalidArgument when rows == 0; Unavailable "no live workers" when worker_ids is empty.
absl::StatusOr<std::vector<ShardSpec>> PlanShards(const std::string& model, uint64_t generation,
                                                  uint64_t rows,
                                                  const std::vector<std::string>& worker_ids,
                                                  const ShardingOptions& options = {});

// A spatial partition of training rows (issue 3, routing): each part's rows (global indices,
// ascending) and the bounding box [lo, hi] of those rows, per dimension.
struct SpatialPart {
  std::vector<int64_t> ids;
  std::vector<double> lo;
  std::vector<double> hi;
  // The part's halo (AddHalos): the other parts' rows near its box, ascending; the shard holds
  // them too, so that a query whose neighbours all lie within the halo needs this shard alone.
  std::vector<int64_t> halo_ids;
};

// Cuts the rows of `data` (row i has global index i) into `n_parts` regions by recursive median
// splits of the widest-spread dimension (ties broken by row index, so part sizes differ by at
// most one), like the KD tree's build. Parts are in region order; empty when n_parts == 0 or
// data has fewer rows than n_parts.
std::vector<SpatialPart> PartitionSpatially(MatrixView data, size_t n_parts);

// The halo width for searches of k neighbours over `rows` rows filling `parts`: twice the side
// of a cube holding k rows at the parts' mean density (the bounding box of all parts). For
// uniform data that is ~3x the mean k-th neighbour distance, so nearly every query inside a
// part finds all its neighbours in the part and its halo. 0 when the parts span no volume.
double HaloWidth(const std::vector<SpatialPart>& parts, uint64_t rows, size_t k);

// Fills each part's halo_ids: the rows of the other parts inside its box grown by `halo` in every
// dimension (and by a few units of rounding), which include every row within Minkowski distance
// `halo` of the box for any p.
void AddHalos(MatrixView data, double halo, std::vector<SpatialPart>* parts);

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_SHARDER_H_
