#include "rpc/convert.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"

namespace knncluster::rpc {

absl::StatusOr<Matrix> FromProto(const v1::Matrix& m, const std::string& field,
                                 bool require_finite) {
  if (m.cols() == 0 && m.rows() > 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".cols: must be >= 1"));
  }
  // Checked by division so that a huge rows * cols cannot overflow.
  const uint64_t n = static_cast<uint64_t>(m.values_size());
  if ((m.cols() == 0 ? n != 0 : (n % m.cols() != 0 || n / m.cols() != m.rows()))) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.values: expected rows * cols = %d * %d values, got %d", field, m.rows(), m.cols(), n));
  }
  Matrix out(m.rows(), m.cols(), std::vector<double>(m.values().begin(), m.values().end()));
  if (require_finite) KNN_RETURN_IF_ERROR(CheckFinite(out, field));
  return out;
}

void ToProto(MatrixView m, v1::Matrix* out) {
  out->set_rows(m.rows());
  out->set_cols(m.cols());
  out->mutable_values()->Assign(m.data(), m.data() + m.rows() * m.cols());
}

v1::Algorithm ToProto(Algorithm a) {
  switch (a) {
    case Algorithm::kKdTree:
      return v1::ALGORITHM_KD_TREE;
    case Algorithm::kBallTree:
      return v1::ALGORITHM_BALL_TREE;
    case Algorithm::kBrute:
      return v1::ALGORITHM_BRUTE;
    case Algorithm::kAuto:
      break;
  }
  return v1::ALGORITHM_AUTO;
}

absl::StatusOr<Algorithm> FromProto(v1::Algorithm a, const std::string& field) {
  switch (a) {
    case v1::ALGORITHM_AUTO:
      return Algorithm::kAuto;
    case v1::ALGORITHM_KD_TREE:
      return Algorithm::kKdTree;
    case v1::ALGORITHM_BALL_TREE:
      return Algorithm::kBallTree;
    case v1::ALGORITHM_BRUTE:
      return Algorithm::kBrute;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrFormat("%s: unknown algorithm %d", field, a));
}

v1::Task ToProto(Model::Task t) {
  switch (t) {
    case Model::Task::kRegressor:
      return v1::TASK_REGRESSOR;
    case Model::Task::kOutlier:
      return v1::TASK_OUTLIER;
    case Model::Task::kClassifier:
      break;
  }
  return v1::TASK_CLASSIFIER;
}

absl::StatusOr<Model::Task> FromProto(v1::Task t, const std::string& field) {
  switch (t) {
    case v1::TASK_CLASSIFIER:
      return Model::Task::kClassifier;
    case v1::TASK_REGRESSOR:
      return Model::Task::kRegressor;
    case v1::TASK_OUTLIER:
      return Model::Task::kOutlier;
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrFormat("%s: unknown task %d", field, t));
}

absl::StatusOr<NeighborsParams> FromProto(const v1::NeighborsParams& p, const std::string& field) {
  NeighborsParams out;
  if (p.has_n_neighbors()) out.n_neighbors = p.n_neighbors();
  if (p.has_leaf_size()) out.leaf_size = p.leaf_size();
  switch (p.weights()) {
    case v1::WEIGHTS_UNIFORM:
      out.weights = Weights::kUniform;
      break;
    case v1::WEIGHTS_DISTANCE:
      out.weights = Weights::kDistance;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("%s.weights: unknown weights %d", field, p.weights()));
  }
  KNN_ASSIGN_OR_RETURN(out.algorithm, FromProto(p.algorithm(), absl::StrCat(field, ".algorithm")));
  switch (p.metric()) {
    case v1::METRIC_MINKOWSKI:
      if (p.has_p()) out.p = p.p();
      if (!(out.p >= 1) || std::isinf(out.p)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s.p: the Minkowski order must be a finite number >= 1 (use METRIC_CHEBYSHEV for "
            "infinity), got %g", field, out.p));
      }
      break;
    case v1::METRIC_CHEBYSHEV:
      out.p = HUGE_VAL;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("%s.metric: unknown metric %d", field, p.metric()));
  }
  absl::Status st = out.Validate();
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ".", st.message()));
  return out;
}

void ToProto(const NeighborsParams& p, v1::NeighborsParams* out) {
  out->set_n_neighbors(p.n_neighbors);
  out->set_weights(p.weights == Weights::kDistance ? v1::WEIGHTS_DISTANCE : v1::WEIGHTS_UNIFORM);
  out->set_algorithm(ToProto(p.algorithm));
  out->set_leaf_size(p.leaf_size);
  if (std::isinf(p.p)) {
    out->set_metric(v1::METRIC_CHEBYSHEV);
    out->clear_p();
  } else {
    out->set_metric(v1::METRIC_MINKOWSKI);
    out->set_p(p.p);
  }
}

void ToProto(const KNeighborsResult& r, v1::Neighbors* out) {
  out->set_num_queries(r.num_queries);
  out->set_k(static_cast<uint32_t>(r.k));
  out->mutable_distances()->Assign(r.distances.begin(), r.distances.end());
  out->mutable_indices()->Assign(r.indices.begin(), r.indices.end());
}

NeighborsSink NeighborsSinkInto(v1::Neighbors* out, bool compact) {
  return [out, compact](size_t rows, size_t k) -> absl::StatusOr<std::pair<double*, IdsOut>> {
    // A repeated field holds at most INT_MAX values (and a message 64 MiB in any case).
    if (k != 0 && rows > static_cast<size_t>(std::numeric_limits<int>::max()) / k) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "k: %d queries x %d neighbours do not fit in one response; send smaller batches", rows,
          k));
    }
    const int values = static_cast<int>(rows * k);
    out->set_num_queries(rows);
    out->set_k(static_cast<uint32_t>(k));
    out->mutable_distances()->Reserve(values);
    double* distances = out->mutable_distances()->AddNAlreadyReserved(values);
    if (compact) {
      out->mutable_indices32()->Reserve(values);
      return std::make_pair(distances,
                            IdsOut(out->mutable_indices32()->AddNAlreadyReserved(values)));
    }
    out->mutable_indices()->Reserve(values);
    return std::make_pair(distances, IdsOut(out->mutable_indices()->AddNAlreadyReserved(values)));
  };
}

bool CompactIndices(bool requested, uint64_t id_end) {
  return requested && id_end <= (uint64_t{1} << 31);
}

absl::Status CheckShape(const v1::Neighbors& n, const std::string& field) {
  const uint64_t total = n.num_queries() * static_cast<uint64_t>(n.k());
  const uint64_t wide = static_cast<uint64_t>(n.indices_size());
  const uint64_t narrow = static_cast<uint64_t>(n.indices32_size());
  if ((n.k() != 0 && total / n.k() != n.num_queries()) ||
      static_cast<uint64_t>(n.distances_size()) != total || (wide != 0 && narrow != 0) ||
      wide + narrow != total) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: expected %d x %d distances and as many indices in one of indices and indices32, got "
        "%d, %d and %d",
        field, n.num_queries(), n.k(), n.distances_size(), n.indices_size(), n.indices32_size()));
  }
  return absl::OkStatus();
}

IdsIn IndicesOf(const v1::Neighbors& n) {
  return n.indices32_size() > 0 ? IdsIn(n.indices32().data()) : IdsIn(n.indices().data());
}

namespace {
template <typename Field>
std::pair<int64_t, int64_t> RangeOf(const Field& ids) {
  if (ids.empty()) return {0, -1};
  int64_t lo = ids[0], hi = ids[0];
  for (const auto id : ids) {
    lo = std::min<int64_t>(lo, id);
    hi = std::max<int64_t>(hi, id);
  }
  return {lo, hi};
}
}  // namespace

std::pair<int64_t, int64_t> IndexRange(const v1::Neighbors& n) {
  return n.indices32_size() > 0 ? RangeOf(n.indices32()) : RangeOf(n.indices());
}

absl::StatusOr<KNeighborsResult> FromProto(const v1::Neighbors& n, const std::string& field) {
  KNN_RETURN_IF_ERROR(CheckShape(n, field));
  KNeighborsResult r;
  r.num_queries = n.num_queries();
  r.k = n.k();
  r.distances.assign(n.distances().begin(), n.distances().end());
  if (n.indices32_size() > 0) {
    r.indices.assign(n.indices32().begin(), n.indices32().end());
  } else {
    r.indices.assign(n.indices().begin(), n.indices().end());
  }
  return r;
}

}  // namespace knncluster::rpc
