#include "core/estimators/voting.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "core/base/status_macros.h"

namespace knncluster {

namespace {

// numpy/core/src/umath/loops_utils.h.src: pairwise_sum's unroll factor and block size.
constexpr size_t kUnroll = 8;
constexpr size_t kPairwiseBlock = 128;
// numpy's default ufunc buffer size (np.getbufsize()): a reduction hands the inner loop at most
// this many elements at a time.
constexpr size_t kNumpyBufferSize = 8192;
// Queries per ParallelFor task.
constexpr size_t kQueryBlock = 256;
// Up to this k the uniform vote counts by comparing all pairs; above it, it sorts.
constexpr size_t kCountAllPairsMaxK = 64;

// Scratch for one query; k is usually small.
using Scratch = absl::InlinedVector<double, 32>;

double PairwiseSum(const double* a, size_t n) {
  if (n < kUnroll) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= kPairwiseBlock) {
    double r[kUnroll];
    for (size_t j = 0; j < kUnroll; ++j) r[j] = a[j];
    size_t i = kUnroll;
    for (; i < n - (n % kUnroll); i += kUnroll) {
      for (size_t j = 0; j < kUnroll; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % kUnroll;
  return PairwiseSum(a, n2) + PairwiseSum(a + n2, n - n2);
}

// The neighbours' class codes, in neighbour order.
using Codes = absl::InlinedVector<int32_t, 32>;
Codes NeighborCodes(absl::Span<const int64_t> indices, absl::Span<const int32_t> labels) {
  Codes codes(indices.size());
  for (size_t j = 0; j < indices.size(); ++j) codes[j] = labels[static_cast<size_t>(indices[j])];
  return codes;
}

// The winner of VoteClass given per-neighbour weights (the neighbours' codes).
int32_t VoteWithWeights(absl::Span<const double> w, absl::Span<const int32_t> codes) {
  const size_t k = codes.size();
  // Only classes present among the neighbours can have a positive weight; weighted_mode visits
  // all classes in ascending order, but an absent class sums to 0 and never beats the running
  // best (which starts at class 0 with weight 0, as weighted_mode's zeros do).
  Codes present(codes.begin(), codes.end());
  std::sort(present.begin(), present.end());
  present.erase(std::unique(present.begin(), present.end()), present.end());
  int32_t best = 0;
  double best_weight = 0;
  Scratch template_row(k);
  for (int32_t c : present) {
    // weighted_mode: template = zeros; template[a == score] = w[a == score]; np.sum(template).
    for (size_t j = 0; j < k; ++j) template_row[j] = codes[j] == c ? w[j] : 0.0;
    const double weight = NumpySum(template_row);
    if (weight > best_weight) {
      best = c;
      best_weight = weight;
    }
  }
  return best;
}

// VoteWithWeights with every weight 1: a class's template row sums to its count exactly (sums of
// ones and zeros below 2^53 do not round, in any order), so the winner is the most frequent
// class, the smallest code among equals, as the ascending visit with a strict `>` picks.
int32_t VoteUniform(absl::Span<const int32_t> codes) {
  const size_t k = codes.size();
  if (k <= kCountAllPairsMaxK) {
    // Count each neighbour's class over all k (comparisons the compiler vectorises; a sort's
    // branches on random labels would be mispredicted).
    int32_t best = codes[0];
    size_t best_count = 0;
    for (size_t j = 0; j < k; ++j) {
      size_t count = 0;
      for (size_t i = 0; i < k; ++i) count += codes[i] == codes[j];
      const bool wins = count > best_count || (count == best_count && codes[j] < best);
      best = wins ? codes[j] : best;
      best_count = wins ? count : best_count;
    }
    return best;
  }
  Codes sorted(codes.begin(), codes.end());
  std::sort(sorted.begin(), sorted.end());
  int32_t best = sorted[0];
  size_t best_count = 0;
  for (size_t begin = 0; begin < k;) {
    size_t end = begin + 1;
    while (end < k && sorted[end] == sorted[begin]) ++end;
    if (end - begin > best_count) {
      best = sorted[begin];
      best_count = end - begin;
    }
    begin = end;
  }
  return best;
}

// VoteClass from the neighbours' codes.
int32_t VoteCodes(absl::Span<const double> distances, absl::Span<const int32_t> codes,
                  Weights weights) {
  if (weights == Weights::kUniform) return VoteUniform(codes);
  Scratch w(codes.size());
  NeighborWeights(distances, weights, absl::MakeSpan(w));
  return VoteWithWeights(w, codes);
}

absl::Status CheckNeighbors(const KNeighborsResult& neighbors, size_t n_train) {
  if (neighbors.k < 1) {
    return absl::InvalidArgumentError("neighbors.k: must be >= 1, got 0");
  }
  const size_t total = neighbors.num_queries * neighbors.k;
  if (neighbors.indices.size() != total || neighbors.distances.size() != total) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "neighbors: expected %d x %d indices and distances, got %d indices and %d distances",
        neighbors.num_queries, neighbors.k, neighbors.indices.size(), neighbors.distances.size()));
  }
  for (size_t i = 0; i < total; ++i) {
    const int64_t id = neighbors.indices[i];
    if (id < 0 || static_cast<uint64_t>(id) >= n_train) {
      return absl::InvalidArgumentError(
          absl::StrFormat("neighbors.indices[%d][%d]: training index %d out of range [0, %d)",
                          i / neighbors.k, i % neighbors.k, id, n_train));
    }
  }
  return absl::OkStatus();
}

// Checks the neighbours and their labels, and returns every neighbour's class code (row-major,
// as neighbors.indices), gathered over the pool in passes of independent reads, which the CPU
// overlaps, rather than scattered through each query's vote (the labels of a large training set
// are not in cache).
absl::StatusOr<std::vector<int32_t>> GatherCodes(const KNeighborsResult& neighbors,
                                                 absl::Span<const int32_t> labels,
                                                 int32_t n_classes, ThreadPool* pool) {
  if (n_classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("n_classes: must be >= 1, got %d", n_classes));
  }
  KNN_RETURN_IF_ERROR(CheckNeighbors(neighbors, labels.size()));
  const size_t total = neighbors.indices.size();
  std::vector<int32_t> codes(total);
  constexpr size_t kBlock = 4096;
  constexpr size_t kNone = ~size_t{0};
  absl::Mutex mu;
  size_t first_bad = kNone;  // the first neighbour whose label is out of range
  ParallelFor(pool, (total + kBlock - 1) / kBlock, [&](size_t b) {
    const size_t end = std::min(total, (b + 1) * kBlock);
    bool bad = false;
    for (size_t i = b * kBlock; i < end; ++i) {
      codes[i] = labels[static_cast<size_t>(neighbors.indices[i])];
      bad = bad || codes[i] < 0 || codes[i] >= n_classes;
    }
    if (!bad) return;
    for (size_t i = b * kBlock; i < end; ++i) {
      if (codes[i] < 0 || codes[i] >= n_classes) {
        absl::MutexLock lock(&mu);
        first_bad = std::min(first_bad, i);
        return;
      }
    }
  });
  if (first_bad != kNone) {
    return absl::InvalidArgumentError(
        absl::StrFormat("labels[%d]: class code %d out of range [0, %d)",
                        neighbors.indices[first_bad], codes[first_bad], n_classes));
  }
  return codes;
}

// Runs fn(q, distances, indices) for each query, blocked over the pool.
template <typename F>
void ForEachQuery(const KNeighborsResult& neighbors, ThreadPool* pool, F fn) {
  const size_t k = neighbors.k;
  const size_t blocks = (neighbors.num_queries + kQueryBlock - 1) / kQueryBlock;
  ParallelFor(pool, blocks, [&](size_t b) {
    const size_t end = std::min(neighbors.num_queries, (b + 1) * kQueryBlock);
    for (size_t q = b * kQueryBlock; q < end; ++q) {
      fn(q, absl::MakeConstSpan(neighbors.distances.data() + q * k, k),
         absl::MakeConstSpan(neighbors.indices.data() + q * k, k));
    }
  });
}

}  // namespace

double NumpySum(absl::Span<const double> values) {
  double sum = 0.;
  for (size_t begin = 0; begin < values.size(); begin += kNumpyBufferSize) {
    sum += PairwiseSum(values.data() + begin, std::min(kNumpyBufferSize, values.size() - begin));
  }
  return sum;
}

void NeighborWeights(absl::Span<const double> distances, Weights weights, absl::Span<double> out) {
  assert(out.size() == distances.size() || weights == Weights::kUniform);
  if (weights == Weights::kUniform) {
    std::fill(out.begin(), out.end(), 1.0);
    return;
  }
  bool any_inf = false;
  for (size_t j = 0; j < distances.size(); ++j) {
    out[j] = 1.0 / distances[j];
    any_inf = any_inf || std::isinf(out[j]);
  }
  if (any_inf) {
    for (double& w : out) w = std::isinf(w) ? 1.0 : 0.0;
  }
}

namespace {
// ClassProbabilities from the neighbours' codes.
void ProbabilitiesOfCodes(absl::Span<const double> distances, absl::Span<const int32_t> codes,
                          Weights weights, absl::Span<double> out) {
  Scratch w(codes.size());
  NeighborWeights(distances, weights, absl::MakeSpan(w));
  std::fill(out.begin(), out.end(), 0.0);
  for (size_t j = 0; j < codes.size(); ++j) out[static_cast<size_t>(codes[j])] += w[j];
  double normalizer = NumpySum(out);
  if (normalizer == 0.0) normalizer = 1.0;
  for (double& v : out) v /= normalizer;
}
}  // namespace

void ClassProbabilities(absl::Span<const double> distances, absl::Span<const int64_t> indices,
                        absl::Span<const int32_t> labels, Weights weights, absl::Span<double> out) {
  assert(!indices.empty());
  ProbabilitiesOfCodes(distances, NeighborCodes(indices, labels), weights, out);
}

int32_t VoteClass(absl::Span<const double> distances, absl::Span<const int64_t> indices,
                  absl::Span<const int32_t> labels, int32_t n_classes, Weights weights) {
  assert(!indices.empty() && n_classes >= 1);
  (void)n_classes;  // codes are < n_classes by REQUIRES; absent classes never win
  return VoteCodes(distances, NeighborCodes(indices, labels), weights);
}

double RegressionValue(absl::Span<const double> distances, absl::Span<const int64_t> indices,
                       absl::Span<const double> targets, Weights weights) {
  assert(!indices.empty());
  const size_t k = indices.size();
  Scratch y(k);
  for (size_t j = 0; j < k; ++j) y[j] = targets[static_cast<size_t>(indices[j])];
  if (weights == Weights::kUniform) {
    // np.mean(_y[neigh_ind], axis=1): the sum, then a true division by the count.
    return NumpySum(y) / static_cast<double>(k);
  }
  Scratch w(k);
  NeighborWeights(distances, weights, absl::MakeSpan(w));
  const double denom = NumpySum(w);
  for (size_t j = 0; j < k; ++j) y[j] *= w[j];
  return NumpySum(y) / denom;
}

absl::StatusOr<Matrix> ClassProbabilitiesBatch(const KNeighborsResult& neighbors,
                                               absl::Span<const int32_t> labels, int32_t n_classes,
                                               Weights weights, ThreadPool* pool) {
  KNN_ASSIGN_OR_RETURN(const std::vector<int32_t> neighbor_codes,
                       GatherCodes(neighbors, labels, n_classes, pool));
  Matrix proba(neighbors.num_queries, static_cast<size_t>(n_classes));
  const size_t k = neighbors.k;
  ForEachQuery(neighbors, pool,
               [&](size_t q, absl::Span<const double> d, absl::Span<const int64_t>) {
                 ProbabilitiesOfCodes(
                     d, absl::MakeConstSpan(neighbor_codes.data() + q * k, k), weights,
                     absl::MakeSpan(proba.row(q), static_cast<size_t>(n_classes)));
               });
  return proba;
}

absl::StatusOr<std::vector<int32_t>> VoteClassBatch(const KNeighborsResult& neighbors,
                                                    absl::Span<const int32_t> labels,
                                                    int32_t n_classes, Weights weights,
                                                    ThreadPool* pool) {
  KNN_ASSIGN_OR_RETURN(const std::vector<int32_t> neighbor_codes,
                       GatherCodes(neighbors, labels, n_classes, pool));
  std::vector<int32_t> codes(neighbors.num_queries);
  const size_t k = neighbors.k;
  ForEachQuery(neighbors, pool,
               [&](size_t q, absl::Span<const double> d, absl::Span<const int64_t>) {
                 codes[q] = VoteCodes(d, absl::MakeConstSpan(neighbor_codes.data() + q * k, k),
                                      weights);
               });
  return codes;
}

absl::StatusOr<std::vector<double>> RegressionBatch(const KNeighborsResult& neighbors,
                                                    absl::Span<const double> targets,
                                                    Weights weights, ThreadPool* pool) {
  KNN_RETURN_IF_ERROR(CheckNeighbors(neighbors, targets.size()));
  std::vector<double> values(neighbors.num_queries);
  ForEachQuery(neighbors, pool,
               [&](size_t q, absl::Span<const double> d, absl::Span<const int64_t> idx) {
                 values[q] = RegressionValue(d, idx, targets, weights);
               });
  return values;
}

absl::StatusOr<EncodedLabels> EncodeClassLabels(absl::Span<const double> y, size_t n_class_names,
                                                const std::string& field) {
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i]) || y[i] != std::floor(y[i])) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s[%d]: class labels must be integers, got %g", field, i, y[i]));
    }
    if (n_class_names > 0 && (y[i] < 0 || y[i] >= static_cast<double>(n_class_names))) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s[%d]: label %g is not a code into the %d class_names", field, i, y[i],
          n_class_names));
    }
  }
  EncodedLabels out;
  out.classes.assign(y.begin(), y.end());
  std::sort(out.classes.begin(), out.classes.end());
  out.classes.erase(std::unique(out.classes.begin(), out.classes.end()), out.classes.end());
  // Codes are int32; more classes than that cannot come from fewer rows in practice.
  if (out.classes.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": too many distinct classes"));
  }
  out.codes.resize(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    out.codes[i] = static_cast<int32_t>(
        std::lower_bound(out.classes.begin(), out.classes.end(), y[i]) - out.classes.begin());
  }
  return out;
}

double LeaveSelfOutDistance(const KNeighborsResult& neighbors, size_t query, int64_t self,
                            size_t k) {
  size_t taken = 0;
  double score = 0;
  for (size_t j = 0; j < neighbors.k && taken < k; ++j) {
    if (neighbors.index(query, j) == self) continue;
    score = neighbors.distance(query, j);
    ++taken;
  }
  return score;
}

}  // namespace knncluster
