// Grid search types <-> their wire messages: the service's answers (GridSearchInfo,
// GridSearchResult), its requests (StartGridSearchRequest) and the records GridSearchManager keeps
// in the data directory (storage.proto), which reuse those messages. Written once, for both.
// Thread safety: pure functions.
#ifndef KNNCLUSTER_COORDINATOR_GRID_SEARCH_CONVERT_H_
#define KNNCLUSTER_COORDINATOR_GRID_SEARCH_CONVERT_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/grid_search_manager.h"
#include "knncluster/v1/coordinator.pb.h"

namespace knncluster::coordinator {

v1::GridSearchMode ModeToProto(GridSearchMode m);
v1::GridSearchState StateToProto(GridSearchState s);

// The request's spec, validated: InvalidArgument naming the field.
absl::StatusOr<GridSearchSpec> SpecFromProto(const v1::StartGridSearchRequest& r);
// The inverse: SpecFromProto(SpecToProto(s)) == s for any spec SpecFromProto made.
void SpecToProto(const GridSearchSpec& spec, v1::StartGridSearchRequest* out);

void InfoToProto(const GridSearchProgress& p, v1::GridSearchInfo* out);
// The inverse, for stored records (the error comes separately: info.error is text); version 1.
absl::StatusOr<GridSearchProgress> InfoFromProto(const v1::GridSearchInfo& info,
                                                 absl::Status error);

// GetGridSearchResult's answer.
void ResultToProto(const GridSearchOutcome& r, v1::GridSearchResult* out);
// The inverse (r.info unused: `progress` is the search's); ResultToProto of it gives `r` again.
absl::StatusOr<GridSearchOutcome> OutcomeFromProto(const v1::GridSearchResult& r,
                                                   GridSearchProgress progress);

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_GRID_SEARCH_CONVERT_H_
