// Conversions for grid search (grid_search.proto and the Coordinator's grid-search messages),
// written once for the coordinator, the worker and the clients. As in convert.h, every FromProto
// validates and names the field.
// Thread-safe: pure functions.
#ifndef KNNCLUSTER_RPC_GRID_CONVERT_H_
#define KNNCLUSTER_RPC_GRID_CONVERT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/estimators/params.h"
#include "core/model_selection/grid_search.h"
#include "core/model_selection/split.h"
#include "knncluster/v1/coordinator.pb.h"
#include "knncluster/v1/grid_search.pb.h"

namespace knncluster::rpc {

// ParamGrid: enums become the core's names; values are validated later by ExpandParamGrid
// (which names "param_grid[i].<key>[j]"); here only out-of-range enums are refused.
absl::StatusOr<ParamGrid> FromProto(const v1::ParamGrid& g, const std::string& field);
// InvalidArgument for an unknown algorithm or weights name.
absl::Status ToProto(const ParamGrid& g, v1::ParamGrid* out);

TrainTestIndices FromProto(const v1::Fold& f);
void ToProto(const TrainTestIndices& f, v1::Fold* out);

// Scoring by scikit-learn's name; empty: the task's default (accuracy / r2).
absl::StatusOr<Scoring> ScoringFromName(const std::string& name, bool classifier,
                                        const std::string& field);

// One fold job as a worker runs it: job.candidates indexes `candidates`, job.fold is 0.
struct FoldJobWork {
  bool classifier = true;
  TrainTestIndices fold;
  FoldJob job;
  std::vector<NeighborsParams> candidates;
  Scoring scoring = Scoring::kAccuracy;
};
// Validates the spec against nothing but itself (the worker checks indices against its dataset):
// non-empty fold parts, max_neighbors >= every candidate's n_neighbors, a known scoring that fits
// the task.
absl::StatusOr<FoldJobWork> FromProto(const v1::FoldJobSpec& s, const std::string& field);
// `job` of a plan over `all_candidates` (job.candidates index it).
void ToProto(const FoldJob& job, const TrainTestIndices& fold,
             absl::Span<const NeighborsParams> all_candidates, bool classifier, Scoring scoring,
             v1::FoldJobSpec* out);

void ToProto(const FoldJobResult& r, v1::FoldJobResult* out);
FoldJobResult FromProto(const v1::FoldJobResult& r);

// cv_results_ (scores, times, ranks, params and their keys).
void ToProto(const CvResults& r, v1::CvResults* out);
// InvalidArgument when the arrays disagree in length.
absl::StatusOr<CvResults> FromProto(const v1::CvResults& r, const std::string& field);

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_GRID_CONVERT_H_
