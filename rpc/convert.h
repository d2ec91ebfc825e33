// Conversions between wire types (knncluster::v1) and core types (knncluster), written once and
// used by the worker, the coordinator and the C++ client. Every FromProto validates: a bad value
// is an InvalidArgument whose message names the field (prefixed with `field`, e.g.
// "queries.rows: expected 64 features, got 63"), so a handler can reject a request before it
// touches shared state.
// Thread-safe: pure functions.
#ifndef KNNCLUSTER_RPC_CONVERT_H_
#define KNNCLUSTER_RPC_CONVERT_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "core/base/matrix.h"
#include "core/base/names.h"
#include "core/estimators/model_io.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"
#include "knncluster/v1/common.pb.h"

namespace knncluster::rpc {

// Matrix: shape and length checked (values.size() == rows * cols); with `require_finite`, every
// value finite ("queries.values[3][7]: value nan is not finite").
absl::StatusOr<Matrix> FromProto(const v1::Matrix& m, const std::string& field,
                                 bool require_finite = true);
void ToProto(MatrixView m, v1::Matrix* out);

// NeighborsParams: unset fields take scikit-learn's defaults; values validated
// ("params.n_neighbors: must be >= 1, got 0", "params.p: ...").
absl::StatusOr<NeighborsParams> FromProto(const v1::NeighborsParams& p, const std::string& field);
void ToProto(const NeighborsParams& p, v1::NeighborsParams* out);

v1::Algorithm ToProto(Algorithm a);
absl::StatusOr<Algorithm> FromProto(v1::Algorithm a, const std::string& field);
v1::Task ToProto(Model::Task t);
absl::StatusOr<Model::Task> FromProto(v1::Task t, const std::string& field);

// Neighbors (either reduced or true distances; the caller knows which).
void ToProto(const KNeighborsResult& r, v1::Neighbors* out);
absl::StatusOr<KNeighborsResult> FromProto(const v1::Neighbors& n, const std::string& field);
// A sink (core's NeighborsSink) writing an answer straight into `out`'s arrays, which must be
// empty: the indices into `indices32` when `compact` (the caller knows every index is below 2^31
// and the reader asked for it), else into `indices`. InvalidArgument naming "k" when rows * k
// values do not fit in one message's field.
NeighborsSink NeighborsSinkInto(v1::Neighbors* out, bool compact = false);
// Whether an answer may use Neighbors.indices32: the reader asked for it and every index is below
// `id_end` <= 2^31.
bool CompactIndices(bool requested, uint64_t id_end);
// The checks of FromProto(Neighbors) alone, for a caller reading the arrays in place: it holds
// num_queries x k distances and as many indices in exactly one of indices / indices32 (both
// empty when there are none).
absl::Status CheckShape(const v1::Neighbors& n, const std::string& field);
// The indices of a Neighbors that passed CheckShape, in place.
IdsIn IndicesOf(const v1::Neighbors& n);
// The smallest and the largest of those indices ({0, -1} when there are none), in one
// branch-free pass over whichever field holds them.
std::pair<int64_t, int64_t> IndexRange(const v1::Neighbors& n);

// Names of datasets and models: the core's one rule (core/base/names.h).
using ::knncluster::ValidateName;

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_CONVERT_H_
