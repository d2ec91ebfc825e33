#include "coordinator/grid_search_convert.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "core/base/status_macros.h"
#include "rpc/convert.h"
#include "rpc/grid_convert.h"

namespace knncluster::coordinator {

v1::GridSearchMode ModeToProto(GridSearchMode m) {
  switch (m) {
    case GridSearchMode::kReplicated:
      return v1::GRID_SEARCH_MODE_REPLICATED;
    case GridSearchMode::kSharded:
      return v1::GRID_SEARCH_MODE_SHARDED;
    case GridSearchMode::kAuto:
      break;
  }
  return v1::GRID_SEARCH_MODE_AUTO;
}

v1::GridSearchState StateToProto(GridSearchState s) {
  switch (s) {
    case GridSearchState::kQueued:
      return v1::GRID_SEARCH_QUEUED;
    case GridSearchState::kRunning:
      return v1::GRID_SEARCH_RUNNING;
    case GridSearchState::kRefitting:
      return v1::GRID_SEARCH_REFITTING;
    case GridSearchState::kSucceeded:
      return v1::GRID_SEARCH_SUCCEEDED;
    case GridSearchState::kFailed:
      return v1::GRID_SEARCH_FAILED;
    case GridSearchState::kCancelled:
      return v1::GRID_SEARCH_CANCELLED;
  }
  return v1::GRID_SEARCH_QUEUED;
}

void InfoToProto(const GridSearchProgress& p, v1::GridSearchInfo* out) {
  out->set_id(p.id);
  out->set_state(StateToProto(p.state));
  out->set_dataset(p.dataset);
  out->set_task(p.classifier ? v1::TASK_CLASSIFIER : v1::TASK_REGRESSOR);
  out->set_mode(ModeToProto(p.mode));
  out->set_n_candidates(p.n_candidates);
  out->set_n_splits(p.n_splits);
  out->set_jobs_total(p.jobs_total);
  out->set_jobs_done(p.jobs_done);
  out->set_jobs_requeued(p.jobs_requeued);
  out->set_neighbor_searches(p.neighbor_searches);
  out->set_dataset_transfers(p.dataset_transfers);
  out->set_elapsed_seconds(p.elapsed_seconds);
  out->set_eta_seconds(p.eta_seconds);
  out->set_refit_model(p.refit_model);
  if (!p.error.ok()) {
    out->set_error(absl::StrCat(absl::StatusCodeToString(p.error.code()), ": ", p.error.message()));
  }
  out->set_started_unix_millis(absl::ToUnixMillis(p.started));
  out->set_scoring(ScoringName(p.scoring));
}

absl::StatusOr<GridSearchSpec> SpecFromProto(const v1::StartGridSearchRequest& r) {
  GridSearchSpec spec;
  KNN_RETURN_IF_ERROR(rpc::ValidateName(r.dataset(), "dataset"));
  spec.dataset = r.dataset();
  switch (r.task()) {
    case v1::TASK_CLASSIFIER:
      spec.classifier = true;
      break;
    case v1::TASK_REGRESSOR:
      spec.classifier = false;
      break;
    default:
      return absl::InvalidArgumentError(
          "task: a grid search takes TASK_CLASSIFIER or TASK_REGRESSOR");
  }
  KNN_ASSIGN_OR_RETURN(spec.base, rpc::FromProto(r.base(), "base"));
  for (int g = 0; g < r.param_grid_size(); ++g) {
    KNN_ASSIGN_OR_RETURN(ParamGrid grid,
                         rpc::FromProto(r.param_grid(g), absl::StrCat("param_grid[", g, "]")));
    spec.param_grid.push_back(std::move(grid));
  }
  if (r.cv() > 1000000) {
    return absl::InvalidArgumentError(absl::StrCat("cv: at most 1000000 folds, got ", r.cv()));
  }
  spec.cv = r.cv() == 0 ? 5 : static_cast<int>(r.cv());
  spec.shuffle = r.shuffle();
  if (r.has_random_state()) spec.random_state = r.random_state();
  for (const v1::Fold& f : r.folds()) spec.folds.push_back(rpc::FromProto(f));
  KNN_ASSIGN_OR_RETURN(spec.scoring, rpc::ScoringFromName(r.scoring(), spec.classifier, "scoring"));
  spec.refit = !r.has_refit() || r.refit();
  spec.refit_model = r.refit_model();
  spec.replace_refit_model = r.replace_refit_model();
  switch (r.mode()) {
    case v1::GRID_SEARCH_MODE_AUTO:
      spec.mode = GridSearchMode::kAuto;
      break;
    case v1::GRID_SEARCH_MODE_REPLICATED:
      spec.mode = GridSearchMode::kReplicated;
      break;
    case v1::GRID_SEARCH_MODE_SHARDED:
      spec.mode = GridSearchMode::kSharded;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("mode: unknown value ", r.mode()));
  }
  return spec;
}

void SpecToProto(const GridSearchSpec& spec, v1::StartGridSearchRequest* out) {
  out->Clear();
  out->set_dataset(spec.dataset);
  out->set_task(spec.classifier ? v1::TASK_CLASSIFIER : v1::TASK_REGRESSOR);
  rpc::ToProto(spec.base, out->mutable_base());
  for (const ParamGrid& g : spec.param_grid) {
    // Every grid in a spec came from FromProto, so it converts back.
    rpc::ToProto(g, out->add_param_grid()).IgnoreError();
  }
  out->set_cv(static_cast<uint32_t>(spec.cv));
  out->set_shuffle(spec.shuffle);
  if (spec.random_state.has_value()) out->set_random_state(*spec.random_state);
  for (const TrainTestIndices& f : spec.folds) rpc::ToProto(f, out->add_folds());
  out->set_scoring(ScoringName(spec.scoring));
  out->set_refit(spec.refit);
  out->set_refit_model(spec.refit_model);
  out->set_replace_refit_model(spec.replace_refit_model);
  out->set_mode(ModeToProto(spec.mode));
}

absl::StatusOr<GridSearchProgress> InfoFromProto(const v1::GridSearchInfo& info,
                                                 absl::Status error) {
  GridSearchProgress p;
  p.id = info.id();
  switch (info.state()) {
    case v1::GRID_SEARCH_QUEUED:
      p.state = GridSearchState::kQueued;
      break;
    case v1::GRID_SEARCH_RUNNING:
      p.state = GridSearchState::kRunning;
      break;
    case v1::GRID_SEARCH_REFITTING:
      p.state = GridSearchState::kRefitting;
      break;
    case v1::GRID_SEARCH_SUCCEEDED:
      p.state = GridSearchState::kSucceeded;
      break;
    case v1::GRID_SEARCH_FAILED:
      p.state = GridSearchState::kFailed;
      break;
    case v1::GRID_SEARCH_CANCELLED:
      p.state = GridSearchState::kCancelled;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("info.state: unknown value ", info.state()));
  }
  p.dataset = info.dataset();
  p.classifier = info.task() != v1::TASK_REGRESSOR;
  switch (info.mode()) {
    case v1::GRID_SEARCH_MODE_REPLICATED:
      p.mode = GridSearchMode::kReplicated;
      break;
    case v1::GRID_SEARCH_MODE_SHARDED:
      p.mode = GridSearchMode::kSharded;
      break;
    default:
      p.mode = GridSearchMode::kAuto;
  }
  KNN_ASSIGN_OR_RETURN(p.scoring, rpc::ScoringFromName(info.scoring(), p.classifier, "info.scoring"));
  p.n_candidates = info.n_candidates();
  p.n_splits = info.n_splits();
  p.jobs_total = info.jobs_total();
  p.jobs_done = info.jobs_done();
  p.jobs_requeued = info.jobs_requeued();
  p.neighbor_searches = info.neighbor_searches();
  p.dataset_transfers = info.dataset_transfers();
  p.elapsed_seconds = info.elapsed_seconds();
  p.eta_seconds = info.eta_seconds();
  p.refit_model = info.refit_model();
  p.error = std::move(error);
  p.started = absl::FromUnixMillis(info.started_unix_millis());
  p.version = 1;
  return p;
}

void ResultToProto(const GridSearchOutcome& r, v1::GridSearchResult* out) {
  InfoToProto(r.progress, out->mutable_info());
  rpc::ToProto(r.cv_results, out->mutable_cv_results());
  out->set_best_index(static_cast<uint32_t>(r.cv_results.best_index));
  out->set_best_score(r.cv_results.best_score);
  rpc::ToProto(r.cv_results.best_params, out->mutable_best_params());
  out->set_refit_model(r.progress.refit_model);
  for (double c : r.classes) out->add_classes(c);
  for (const std::string& n : r.class_names) out->add_class_names(n);
}

absl::StatusOr<GridSearchOutcome> OutcomeFromProto(const v1::GridSearchResult& r,
                                                   GridSearchProgress progress) {
  GridSearchOutcome out;
  KNN_ASSIGN_OR_RETURN(out.cv_results, rpc::FromProto(r.cv_results(), "result.cv_results"));
  // As computed, not as re-derived from the ranks.
  out.cv_results.best_index = r.best_index();
  out.cv_results.best_score = r.best_score();
  KNN_ASSIGN_OR_RETURN(out.cv_results.best_params,
                       rpc::FromProto(r.best_params(), "result.best_params"));
  out.cv_results.scoring = progress.scoring;
  out.cv_results.neighbor_searches = progress.neighbor_searches;
  out.classes.assign(r.classes().begin(), r.classes().end());
  out.class_names.assign(r.class_names().begin(), r.class_names().end());
  out.progress = std::move(progress);
  return out;
}

}  // namespace knncluster::coordinator
