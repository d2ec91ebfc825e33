#include "coordinator/status_page.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/model_selection/heatmap_svg.h"

namespace knncluster::coordinator {

namespace {

std::string H(const std::string& text) { return XmlEscape(text); }

std::string Bytes(uint64_t b) {
  if (b >= (uint64_t{1} << 30)) return absl::StrFormat("%.1f GiB", b / double(uint64_t{1} << 30));
  if (b >= (uint64_t{1} << 20)) return absl::StrFormat("%.1f MiB", b / double(uint64_t{1} << 20));
  if (b >= 1024) return absl::StrFormat("%.1f KiB", b / 1024.0);
  return absl::StrCat(b, " B");
}

std::string ParamsText(const v1::NeighborsParams& p) {
  std::vector<std::string> parts;
  if (p.has_n_neighbors()) parts.push_back(absl::StrCat("n_neighbors=", p.n_neighbors()));
  parts.push_back(absl::StrCat("algorithm=", v1::Algorithm_Name(p.algorithm())));
  parts.push_back(absl::StrCat("weights=", v1::Weights_Name(p.weights())));
  if (p.has_p()) parts.push_back(absl::StrCat("p=", ShortestDecimal(p.p())));
  if (p.has_leaf_size()) parts.push_back(absl::StrCat("leaf_size=", p.leaf_size()));
  return absl::StrJoin(parts, ", ");
}

const char* kStyle = R"css(
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eee} td.num{text-align:right;font-variant-numeric:tabular-nums}
.alive{color:#116611;font-weight:600} .dead{color:#b00020;font-weight:600}
.bar{width:12em;height:.9em;background:#e5e5e5;border-radius:3px;display:inline-block;vertical-align:middle}
.bar>span{display:block;height:100%;background:#3b82f6;border-radius:3px}
.muted{color:#777} .heatmap{margin:.5em 0 1em} code{font-size:.95em}
)css";

}  // namespace

std::string GridSearchStateName(GridSearchState s) {
  switch (s) {
    case GridSearchState::kQueued: return "queued";
    case GridSearchState::kRunning: return "running";
    case GridSearchState::kRefitting: return "refitting";
    case GridSearchState::kSucceeded: return "succeeded";
    case GridSearchState::kFailed: return "failed";
    case GridSearchState::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string RenderStatusPage(const StatusPageData& data) {
  const v1::ClusterStatus& c = data.cluster;
  std::map<std::string, bool> alive;
  size_t n_alive = 0;
  for (const v1::WorkerInfo& w : c.workers()) {
    alive[w.worker_id()] = w.state() == v1::WORKER_ALIVE;
    n_alive += w.state() == v1::WORKER_ALIVE;
  }
  std::string o;
  absl::StrAppend(&o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
                  "<meta http-equiv=\"refresh\" content=\"", data.refresh_seconds, "\">",
                  "<title>knncluster status</title><style>", kStyle, "</style></head><body>\n");
  absl::StrAppend(&o, "<h1>knncluster</h1><p class=\"muted\">coordinator <code>",
                  H(data.coordinator_address), "</code> &middot; ", n_alive, " of ",
                  c.workers_size(), " workers alive &middot; ", c.datasets_size(),
                  " datasets &middot; ", c.models_size(), " models &middot; as of ",
                  H(absl::FormatTime("%Y-%m-%d %H:%M:%S %Z", absl::Now(), absl::UTCTimeZone())),
                  " (refreshes every ", data.refresh_seconds, " s)</p>\n");

  // Workers.
  absl::StrAppend(&o, "<h2>Workers</h2>\n<table id=\"workers\"><thead><tr><th>id</th><th>address"
                      "</th><th>state</th><th>last heartbeat</th><th>rows</th><th>shards</th>"
                      "<th>memory (RSS)</th><th>budget</th><th>cores</th></tr></thead><tbody>\n");
  for (const v1::WorkerInfo& w : c.workers()) {
    const bool up = w.state() == v1::WORKER_ALIVE;
    absl::StrAppend(
        &o, "<tr data-worker-id=\"", H(w.worker_id()), "\" data-state=\"", up ? "alive" : "dead",
        "\"><td><code>", H(w.worker_id()), "</code></td><td><code>", H(w.address()),
        "</code></td><td class=\"", up ? "alive" : "dead", "\">", up ? "alive" : "dead",
        "</td><td class=\"num\">",
        w.millis_since_heartbeat() < 0 ? std::string("never")
                                       : absl::StrFormat("%.1f s ago", w.millis_since_heartbeat() / 1000.0),
        "</td><td class=\"num\">", w.rows(), "</td><td class=\"num\">", w.shard_ids_size(),
        "</td><td class=\"num\">", Bytes(w.rss_bytes()), "</td><td class=\"num\">",
        w.memory_budget_bytes() ? Bytes(w.memory_budget_bytes()) : std::string("-"),
        "</td><td class=\"num\">", w.cores(), "</td></tr>\n");
  }
  if (c.workers_size() == 0) absl::StrAppend(&o, "<tr><td colspan=\"9\" class=\"muted\">none</td></tr>\n");
  absl::StrAppend(&o, "</tbody></table>\n");

  // Datasets.
  absl::StrAppend(&o, "<h2>Datasets</h2>\n<table id=\"datasets\"><thead><tr><th>name</th><th>rows"
                      "</th><th>cols</th><th>labels</th><th>view of</th></tr></thead><tbody>\n");
  for (const v1::DatasetInfo& d : c.datasets()) {
    absl::StrAppend(&o, "<tr data-dataset=\"", H(d.name()), "\"><td><code>", H(d.name()),
                    "</code></td><td class=\"num\">", d.rows(), "</td><td class=\"num\">",
                    d.cols(), "</td><td>", H(v1::LabelKind_Name(d.labels())), "</td><td>",
                    d.view_of().empty() ? "" : absl::StrCat("<code>", H(d.view_of()), "</code>"),
                    "</td></tr>\n");
  }
  if (c.datasets_size() == 0) absl::StrAppend(&o, "<tr><td colspan=\"5\" class=\"muted\">none</td></tr>\n");
  absl::StrAppend(&o, "</tbody></table>\n");

  // Models, with their shards and where each copy lives.
  absl::StrAppend(&o, "<h2>Models</h2>\n<table id=\"models\"><thead><tr><th>name</th><th>task"
                      "</th><th>params</th><th>dataset</th><th>rows</th><th>shards: replicas"
                      "</th></tr></thead><tbody>\n");
  for (const v1::ModelInfo& m : c.models()) {
    std::string shards;
    for (const v1::ShardPlacement& s : m.shards()) {
      std::vector<std::string> replicas;
      for (const std::string& w : s.replica_worker_ids()) {
        const bool up = alive.count(w) && alive[w];
        replicas.push_back(absl::StrCat("<span class=\"", up ? "alive" : "dead", "\" data-worker=\"",
                                        H(w), "\">", H(w), "</span>"));
      }
      absl::StrAppend(&shards, "<div data-shard=\"", H(s.shard_id()), "\"><code>", H(s.shard_id()),
                      "</code> (", s.rows(), " rows): ",
                      replicas.empty() ? "<span class=\"dead\">no copy</span>"
                                       : absl::StrJoin(replicas, ", "),
                      "</div>");
    }
    absl::StrAppend(&o, "<tr data-model=\"", H(m.name()), "\"><td><code>", H(m.name()),
                    "</code></td><td>", H(v1::Task_Name(m.task())), "</td><td>",
                    H(ParamsText(m.params())), "</td><td><code>", H(m.dataset()),
                    "</code></td><td class=\"num\">", m.rows(), "</td><td>", shards,
                    "</td></tr>\n");
  }
  if (c.models_size() == 0) absl::StrAppend(&o, "<tr><td colspan=\"6\" class=\"muted\">none</td></tr>\n");
  absl::StrAppend(&o, "</tbody></table>\n");

  // Grid searches.
  absl::StrAppend(&o, "<h2>Grid searches</h2>\n<table id=\"grid-searches\"><thead><tr><th>id</th>"
                      "<th>state</th><th>dataset</th><th>progress</th><th>elapsed</th>"
                      "<th>best score</th><th>best params</th></tr></thead><tbody>\n");
  for (const StatusPageSearch& s : data.searches) {
    const v1::GridSearchInfo& i = s.info;
    const double fraction =
        i.jobs_total() == 0 ? 0 : std::min(1.0, double(i.jobs_done()) / i.jobs_total());
    std::string state = v1::GridSearchState_Name(i.state());
    if (state.rfind("GRID_SEARCH_", 0) == 0) state = state.substr(12);
    absl::StrAppend(
        &o, "<tr data-grid-search=\"", H(i.id()), "\" data-jobs-done=\"", i.jobs_done(),
        "\" data-jobs-total=\"", i.jobs_total(), "\"><td><code>", H(i.id()), "</code></td><td>",
        H(state), i.error().empty() ? "" : absl::StrCat("<div class=\"dead\">", H(i.error()), "</div>"),
        "</td><td><code>", H(i.dataset()), "</code></td><td><span class=\"bar\" role=\"progressbar\" "
        "aria-valuemin=\"0\" aria-valuemax=\"", i.jobs_total(), "\" aria-valuenow=\"", i.jobs_done(),
        "\"><span style=\"width:", absl::StrFormat("%.1f", 100 * fraction), "%\"></span></span> ",
        i.jobs_done(), " / ", i.jobs_total(), " jobs</td><td class=\"num\">",
        absl::StrFormat("%.1f s", i.elapsed_seconds()), "</td><td class=\"num\">",
        s.best_score.has_value() ? ShortestDecimal(*s.best_score) : std::string("-"), "</td><td>",
        H(s.best_params), "</td></tr>\n");
  }
  if (data.searches.empty()) absl::StrAppend(&o, "<tr><td colspan=\"7\" class=\"muted\">none</td></tr>\n");
  absl::StrAppend(&o, "</tbody></table>\n");
  for (const StatusPageSearch& s : data.searches) {
    if (s.heatmap_svg.empty()) continue;
    absl::StrAppend(&o, "<div class=\"heatmap\" data-grid-search=\"", H(s.info.id()), "\"><h3>",
                    H(s.info.id()), "</h3>", s.heatmap_svg, "</div>\n");
  }
  absl::StrAppend(&o, "</body></html>\n");
  return o;
}

}  // namespace knncluster::coordinator
