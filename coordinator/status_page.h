// The coordinator's read-only status page (GET / on the HTTP port with --status-page), as Dask's
// and Ray's dashboards show a cluster: workers and their health, datasets with their shards and
// replicas, models, grid searches with live progress and, once finished, the heatmap of
// mean_test_score. Plain server-rendered HTML with inline CSS and inline SVG: no script, no build
// step, no external asset; the page reloads itself every few seconds (meta refresh).
//
// It shows names, shapes, parameters and states, never rows or labels. Every name is
// HTML-escaped (names are the users'). The workers, datasets and models come from the same
// v1::ClusterStatus GetClusterStatus answers (CoordinatorService::FillClusterStatus), so the page
// and `knnctl status` agree.
//
// Elements carry ids / data attributes for tests and scripts: table#workers, #datasets, #models,
// #grid-searches, one <tr data-worker-id=...>, data-dataset, data-model, data-grid-search per row,
// and svg.heatmap per finished search. Thread safety: pure functions.
#ifndef KNNCLUSTER_COORDINATOR_STATUS_PAGE_H_
#define KNNCLUSTER_COORDINATOR_STATUS_PAGE_H_

#include <optional>
#include <string>
#include <vector>

#include "coordinator/grid_search_manager.h"
#include "knncluster/v1/coordinator.pb.h"

namespace knncluster::coordinator {

struct StatusPageSearch {
  v1::GridSearchInfo info;
  std::optional<double> best_score;  // succeeded searches
  std::string best_params;           // "n_neighbors=5, p=2"
  std::string heatmap_svg;           // an <svg> element; empty when there is none
};

struct StatusPageData {
  std::string coordinator_address;
  int refresh_seconds = 3;
  v1::ClusterStatus cluster;
  std::vector<StatusPageSearch> searches;  // oldest first
};

std::string RenderStatusPage(const StatusPageData& data);

// "queued", "running", "refitting", "succeeded", "failed", "cancelled".
std::string GridSearchStateName(GridSearchState s);

}  // namespace knncluster::coordinator

#endif  // KNNCLUSTER_COORDINATOR_STATUS_PAGE_H_
