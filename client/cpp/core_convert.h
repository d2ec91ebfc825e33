// Conversions between the public client types (<knncluster/client.h>, namespace
// knncluster::client) and the core's (namespace knncluster), written once for the client library
// (which reaches the wire through rpc/convert.h and the core types) and for knnctl's cluster
// engine (whose commands work on core types). Not installed.
//
// Thread-safe: pure functions.
#ifndef KNNCLUSTER_CLIENT_CPP_CORE_CONVERT_H_
#define KNNCLUSTER_CLIENT_CPP_CORE_CONVERT_H_

#include "core/datasets/dataset.h"
#include "core/estimators/model_io.h"
#include "core/estimators/params.h"
#include "core/index/neighbor_index.h"
#include "core/model_selection/grid_search.h"
#include "core/model_selection/split.h"
#include "knncluster/client.h"

namespace knncluster::client {

Task FromCore(Model::Task task);
Model::Task ToCore(Task task);

NeighborsParams FromCore(const ::knncluster::NeighborsParams& p);
::knncluster::NeighborsParams ToCore(const NeighborsParams& p);

Neighbors FromCore(const KNeighborsResult& r);
KNeighborsResult ToCore(const Neighbors& n);

ParamGrid FromCore(const ::knncluster::ParamGrid& g);
::knncluster::ParamGrid ToCore(const ParamGrid& g);

Fold FromCore(const TrainTestIndices& f);
TrainTestIndices ToCore(const Fold& f);

// params, keys, scores and times; the best_* fields and scoring are GridSearchResult's.
CvResults FromCore(const ::knncluster::CvResults& r);
// best_* from the arguments; scoring and neighbor_searches are left to the caller.
::knncluster::CvResults ToCore(const CvResults& r, size_t best_index, double best_score,
                               const NeighborsParams& best_params);

// A copy of the core's dataset, and a view of it (borrowing `d`).
Dataset FromCore(const ::knncluster::Dataset& d);
DatasetView ViewOf(const ::knncluster::Dataset& d);

}  // namespace knncluster::client

#endif  // KNNCLUSTER_CLIENT_CPP_CORE_CONVERT_H_
