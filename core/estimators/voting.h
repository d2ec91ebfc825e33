// The prediction rules of the k-NN estimators, written once as pure functions over neighbour
// lists: single-process estimators call them on an index's answer, and the cluster's coordinator
// calls them on neighbours merged from its workers, so both predict the same bits.
//
// The rules reproduce scikit-learn 1.2.1 (sklearn/neighbors/_classification.py, _regression.py,
// _base.py::_get_weights, utils/extmath.py::weighted_mode) down to the order of floating-point
// operations:
//   * weights: uniform gives every neighbour 1. distance gives 1/d; when any 1/d is infinite (a
//     neighbour at distance 0), only those neighbours vote, with weight 1 each, the rest 0.
//   * class probabilities (predict_proba): the weights are added to their class in neighbour
//     order, then divided by the sum over classes (numpy's pairwise sum); an all-zero row is left
//     zero. Uniform weights therefore give count / k.
//   * class vote (predict): each class's weight is a numpy sum over the k neighbours (weights of
//     other classes counted as 0); the winner is the first class, in ascending code order, whose
//     weight is strictly greater than every smaller code's (ties go to the smallest code, as
//     scipy.stats.mode and weighted_mode do). With distance weights this can differ in the last
//     bit from the argmax of the probabilities, exactly as it does in scikit-learn.
//   * regression: uniform is the numpy mean of the neighbours' targets; distance is
//     sum(y * w) / sum(w), both numpy sums.
// "Numpy sum" means numpy's pairwise summation (NumpySum below), the order np.sum uses along a
// contiguous axis, so results match scikit-learn to the last bit whenever the distances do.
//
// Inputs: one query's neighbours sorted by the ordering of top_k.h (distance ascending, ties by
// training index), as true distances (not reduced ones). Labels are class codes 0..C-1 of the
// training rows (the estimator's encoding of classes_).
//
// Thread safety: every function is pure.
#ifndef KNNCLUSTER_CORE_ESTIMATORS_VOTING_H_
#define KNNCLUSTER_CORE_ESTIMATORS_VOTING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/matrix.h"
#include "core/base/thread_pool.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"

namespace knncluster {

// np.add.reduce over a contiguous double array: pairwise summation with 8 accumulators in blocks
// of up to 128 values (numpy's pairwise_sum), applied to consecutive chunks of 8192 values (the
// iterator's buffer size) that are added left to right. Bit-identical to np.sum / np.mean's sum.
double NumpySum(absl::Span<const double> values);

// scikit-learn's _get_weights for one query: writes one weight per neighbour to `out`.
// REQUIRES: out.size() == distances.size() (distances are ignored for kUniform).
void NeighborWeights(absl::Span<const double> distances, Weights weights, absl::Span<double> out);

// --- One query ------------------------------------------------------------------------------
// REQUIRES (all three): indices non-empty; distances.size() == indices.size() for kDistance
// (may be empty for kUniform); 0 <= indices[j] < labels.size() (or targets.size());
// 0 <= labels[i] < n_classes.

// predict_proba for one query: writes n_classes probabilities to `out` (out.size() == n_classes).
void ClassProbabilities(absl::Span<const double> distances, absl::Span<const int64_t> indices,
                        absl::Span<const int32_t> labels, Weights weights, absl::Span<double> out);

// predict for one query: the winning class code.
int32_t VoteClass(absl::Span<const double> distances, absl::Span<const int64_t> indices,
                  absl::Span<const int32_t> labels, int32_t n_classes, Weights weights);

// KNeighborsRegressor.predict for one query.
double RegressionValue(absl::Span<const double> distances, absl::Span<const int64_t> indices,
                       absl::Span<const double> targets, Weights weights);

// --- A batch of queries (an index's or a merge's KNeighborsResult) ----------------------------
// These check their inputs and return InvalidArgument naming the field ("neighbors.indices[3][1]:
// training index 99 out of range [0, 50)", "labels[7]: class code 12 out of range [0, 10)")
// instead of relying on REQUIRES. Queries are spread over `pool` (null: the calling thread).

// n x n_classes probabilities; column c is class code c.
absl::StatusOr<Matrix> ClassProbabilitiesBatch(const KNeighborsResult& neighbors,
                                               absl::Span<const int32_t> labels, int32_t n_classes,
                                               Weights weights, ThreadPool* pool);
// The winning class code of each query.
absl::StatusOr<std::vector<int32_t>> VoteClassBatch(const KNeighborsResult& neighbors,
                                                    absl::Span<const int32_t> labels,
                                                    int32_t n_classes, Weights weights,
                                                    ThreadPool* pool);
// The regression prediction of each query.
absl::StatusOr<std::vector<double>> RegressionBatch(const KNeighborsResult& neighbors,
                                                    absl::Span<const double> targets,
                                                    Weights weights, ThreadPool* pool);

// --- Label encoding and the outlier score -----------------------------------------------------

// The classifier's encoding of its training labels, written once (estimator, grid search and the
// cluster's coordinator): classes = sorted distinct labels, codes[i] = position of y[i] in
// classes. Labels must be finite integers ("<field>[7]: class labels must be integers, got
// 2.5"); with n_class_names > 0 they must also be codes into that many class names.
struct EncodedLabels {
  std::vector<double> classes;
  std::vector<int32_t> codes;
};
absl::StatusOr<EncodedLabels> EncodeClassLabels(absl::Span<const double> y,
                                                size_t n_class_names = 0,
                                                const std::string& field = "y");

// The outlier score of training row `self` from its k + 1 nearest neighbours (row `query` of
// `neighbors`): the distance to its k-th nearest neighbour other than itself. When the row is
// not among its own k + 1 (more than k others coincide with it), that is entry k - 1.
double LeaveSelfOutDistance(const KNeighborsResult& neighbors, size_t query, int64_t self,
                            size_t k);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_ESTIMATORS_VOTING_H_
