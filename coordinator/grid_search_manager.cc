#include "coordinator/grid_search_manager.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <filesystem>
#include <limits>
#include <set>
#include <thread>
#include <utility>

#include <grpcpp/client_context.h>

#include "absl/cleanup/cleanup.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "coordinator/grid_search_convert.h"
#include "core/base/durable_file.h"
#include "core/base/names.h"
#include "core/base/status_macros.h"
#include "core/estimators/voting.h"
#include "core/index/metric.h"
#include "knncluster/v1/storage.pb.h"
#include "knncluster/v1/worker.grpc.pb.h"
#include "rpc/content_hash.h"
#include "rpc/convert.h"
#include "rpc/grid_convert.h"
#include "rpc/status.h"

namespace knncluster::coordinator {

bool IsTerminal(GridSearchState s) {
  return s == GridSearchState::kSucceeded || s == GridSearchState::kFailed ||
         s == GridSearchState::kCancelled;
}

struct GridSearchManager::Search {
  // Fixed at Start.
  std::string id;
  GridSearchSpec spec;
  std::vector<NeighborsParams> candidates;
  std::vector<std::vector<std::string>> keys;
  std::vector<TrainTestIndices> folds;
  std::vector<FoldJob> jobs;
  std::vector<double> y;      // the dataset's labels as stored (sent to workers)
  std::vector<double> codes;  // class codes (classifier) or the targets (regressor)
  int32_t n_classes = 0;
  std::vector<double> classes;
  std::vector<std::string> class_names;
  uint64_t rows = 0, cols = 0;
  // Set by the driver before any runner starts.
  std::shared_ptr<const Matrix> X;  // replicated mode
  std::string content_hash;         // replicated mode
  std::string shards_model;         // sharded mode

  mutable absl::Mutex mu;
  GridSearchProgress progress ABSL_GUARDED_BY(mu);
  std::deque<size_t> queue ABSL_GUARDED_BY(mu);
  std::vector<char> done ABSL_GUARDED_BY(mu);
  std::vector<std::vector<double>> scores ABSL_GUARDED_BY(mu);
  std::vector<std::vector<double>> fit_times ABSL_GUARDED_BY(mu);
  std::vector<std::vector<double>> score_times ABSL_GUARDED_BY(mu);
  bool cancel ABSL_GUARDED_BY(mu) = false;
  // Cancelled by Shutdown, not by a client: its record stays unfinished, so it restarts.
  bool interrupted ABSL_GUARDED_BY(mu) = false;
  absl::Status fatal ABSL_GUARDED_BY(mu);  // the first error that fails the search
  std::set<grpc::ClientContext*> calls ABSL_GUARDED_BY(mu);
  std::set<std::string> unsuitable ABSL_GUARDED_BY(mu);  // workers that refused it (budget)
  absl::Status unsuitable_why ABSL_GUARDED_BY(mu);
  std::map<std::string, int> runners_on ABSL_GUARDED_BY(mu);
  std::vector<std::thread> runners ABSL_GUARDED_BY(mu);
  absl::Time unavailable_since ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
  CvResults cv ABSL_GUARDED_BY(mu);
  std::atomic<bool> exited{false};  // the driver has returned

  bool Stopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return cancel || !fatal.ok(); }
  bool AllDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return progress.jobs_done == progress.jobs_total;
  }
  void Bump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { ++progress.version; }
  void Fail(absl::Status st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (fatal.ok()) fatal = std::move(st);
    for (grpc::ClientContext* c : calls) c->TryCancel();
  }
  // Takes the next job; nullopt when there is none or the search is stopping.
  std::optional<size_t> Take() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (Stopping() || queue.empty()) return std::nullopt;
    const size_t j = queue.front();
    queue.pop_front();
    return j;
  }
  void Requeue(size_t j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    queue.push_front(j);
    ++progress.jobs_requeued;
    Bump();
  }
  void Record(size_t j, const FoldJobResult& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const FoldJob& job = jobs[j];
    if (done[j]) return;
    done[j] = 1;
    for (size_t i = 0; i < job.candidates.size(); ++i) {
      const size_t c = job.candidates[i];
      scores[c][job.fold] = r.scores[i];
      fit_times[c][job.fold] = r.fit_seconds;
      score_times[c][job.fold] = r.score_seconds;
    }
    ++progress.jobs_done;
    ++progress.neighbor_searches;
    unavailable_since = absl::InfiniteFuture();
    Bump();
  }
  GridSearchProgress Snapshot() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    GridSearchProgress p = progress;
    if (!IsTerminal(p.state)) {
      p.elapsed_seconds = std::max(0.0, absl::ToDoubleSeconds(absl::Now() - p.started));
      if (p.jobs_done > 0 && p.jobs_done < p.jobs_total) {
        p.eta_seconds = p.elapsed_seconds / p.jobs_done * (p.jobs_total - p.jobs_done);
      } else if (p.jobs_done == p.jobs_total) {
        p.eta_seconds = 0;
      }
    }
    return p;
  }
};

namespace {

constexpr DurableFileFormat kGridSearchFormat{"KNNGRID\n", 1, 1, "grid search record"};

std::string NewSearchId() {
  absl::BitGen gen;
  return absl::StrFormat("gs-%012x", absl::Uniform<uint64_t>(gen, 0, uint64_t{1} << 48));
}

// Failures of the worker (or of reaching it), after which the job runs elsewhere; anything else
// is the request's problem and fails the search.
bool IsWorkerFailure(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kCancelled || code == absl::StatusCode::kAborted ||
         code == absl::StatusCode::kUnknown;
}

// Rows `ids` of a dataset (any order), read from the store in blocks, in `ids` order.
absl::StatusOr<Matrix> GatherRows(const DatasetStore& store, const std::string& dataset,
                                  absl::Span<const int64_t> ids, uint64_t cols) {
  std::vector<size_t> order(ids.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a] < ids[b]; });
  Matrix out(ids.size(), cols);
  constexpr uint64_t kBlock = 65536;
  size_t i = 0;
  while (i < order.size()) {
    const uint64_t begin = static_cast<uint64_t>(ids[order[i]]);
    const uint64_t end = begin + kBlock;
    size_t last = i;
    while (last < order.size() && static_cast<uint64_t>(ids[order[last]]) < end) ++last;
    const uint64_t read_end = static_cast<uint64_t>(ids[order[last - 1]]) + 1;
    KNN_ASSIGN_OR_RETURN(Matrix block, store.ReadRows(dataset, begin, read_end));
    for (size_t k = i; k < last; ++k) {
      const double* src = block.row(static_cast<size_t>(ids[order[k]]) - begin);
      std::copy(src, src + cols, out.row(order[k]));
    }
    i = last;
  }
  return out;
}

}  // namespace

GridSearchManager::GridSearchManager(DatasetStore* store, WorkerPool* workers,
                                     ModelRegistry* registry, ModelManager* models,
                                     ScatterGather* search, GridSearchManagerOptions options)
    : store_(store),
      workers_(workers),
      registry_(registry),
      models_(models),
      search_(search),
      options_(std::move(options)) {}

GridSearchManager::~GridSearchManager() { Shutdown(); }

// ---- Start -----------------------------------------------------------------------------------

absl::StatusOr<GridSearchProgress> GridSearchManager::Start(GridSearchSpec spec) {
  return StartSearch(std::move(spec), nullptr);
}

absl::StatusOr<GridSearchProgress> GridSearchManager::StartSearch(
    GridSearchSpec spec, const GridSearchProgress* recovered) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return absl::UnavailableError("the coordinator is shutting down");
  }
  auto s = std::make_shared<Search>();
  s->id = recovered != nullptr ? recovered->id : NewSearchId();
  KNN_ASSIGN_OR_RETURN(DatasetMeta meta, store_->Describe(spec.dataset));
  if (meta.rows == 0) {
    return absl::InvalidArgumentError(absl::StrCat("dataset: \"", spec.dataset, "\" has no rows"));
  }
  if (meta.labels == LabelKind::kNone) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dataset: \"", spec.dataset, "\" has no labels; a grid search scores labelled rows"));
  }
  KNN_RETURN_IF_ERROR(CheckScoringForTask(spec.scoring, spec.classifier));
  s->rows = meta.rows;
  s->cols = meta.cols;
  KNN_ASSIGN_OR_RETURN(s->y, store_->ReadLabels(spec.dataset));
  if (s->y.size() != meta.rows) {
    return absl::InternalError(absl::StrFormat("dataset %s: %d labels for %d rows", spec.dataset,
                                               s->y.size(), meta.rows));
  }
  if (spec.classifier) {
    s->class_names = meta.class_names;
    KNN_ASSIGN_OR_RETURN(EncodedLabels enc,
                         EncodeClassLabels(s->y, s->class_names.size(), "dataset.labels"));
    s->classes = std::move(enc.classes);
    s->codes.assign(enc.codes.begin(), enc.codes.end());
    s->n_classes = static_cast<int32_t>(s->classes.size());
  } else {
    s->codes = s->y;
  }

  std::vector<ParamGrid> grids = spec.param_grid;
  if (grids.empty()) grids.emplace_back();
  KNN_ASSIGN_OR_RETURN(s->candidates, ExpandParamGrid(grids, spec.base, &s->keys));
  if (spec.folds.empty() && spec.cv < 2) {
    return absl::InvalidArgumentError(absl::StrCat("cv: must be at least 2, got ", spec.cv));
  }
  GridSearchOptions fold_options;
  fold_options.classifier = spec.classifier;
  fold_options.cv = spec.cv;
  fold_options.shuffle = spec.shuffle;
  fold_options.random_state = spec.random_state;
  fold_options.folds = spec.folds;
  KNN_ASSIGN_OR_RETURN(s->folds, MakeFolds(fold_options, s->codes));
  int max_k = 0;
  for (const NeighborsParams& c : s->candidates) max_k = std::max(max_k, c.n_neighbors);
  for (size_t f = 0; f < s->folds.size(); ++f) {
    if (static_cast<size_t>(max_k) > s->folds[f].train.size()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "param_grid: n_neighbors=%d needs %d training rows, but fold %d trains on %d", max_k,
          max_k, f, s->folds[f].train.size()));
    }
  }
  s->jobs = PlanFoldJobs(s->candidates, s->folds.size());

  if (spec.refit) {
    if (spec.refit_model.empty()) spec.refit_model = s->id + "-best";
    KNN_RETURN_IF_ERROR(ValidateName(spec.refit_model, "refit_model"));
    // A restarted search's refit name is its own (it may have fitted it before the restart).
    if (recovered != nullptr) spec.replace_refit_model = true;
    if (!spec.replace_refit_model && registry_->Contains(spec.refit_model)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "refit_model: a model named \"", spec.refit_model,
          "\" exists; choose another name or set replace_refit_model"));
    }
  } else {
    spec.refit_model.clear();
  }

  const size_t n_cand = s->candidates.size(), n_folds = s->folds.size();
  s->spec = std::move(spec);
  {
    absl::MutexLock lock(&s->mu);
    GridSearchProgress& p = s->progress;
    p.id = s->id;
    p.state = GridSearchState::kQueued;
    p.dataset = s->spec.dataset;
    p.classifier = s->spec.classifier;
    p.mode = s->spec.mode;
    p.scoring = s->spec.scoring;
    p.n_candidates = static_cast<uint32_t>(n_cand);
    p.n_splits = static_cast<uint32_t>(n_folds);
    p.jobs_total = static_cast<uint32_t>(s->jobs.size());
    p.refit_model = s->spec.refit_model;
    p.started = absl::Now();
    p.version = 1;
    if (recovered != nullptr) {
      // Every job runs again; the clock keeps the original start.
      p.started = recovered->started;
      p.jobs_requeued = recovered->jobs_requeued + p.jobs_total;
      p.dataset_transfers = recovered->dataset_transfers;
    }
    for (size_t j = 0; j < s->jobs.size(); ++j) s->queue.push_back(j);
    s->done.assign(s->jobs.size(), 0);
    s->scores.assign(n_cand, std::vector<double>(n_folds));
    s->fit_times = s->scores;
    s->score_times = s->scores;
  }
  // Saved before the id is returned: a search acknowledged is a search kept.
  KNN_RETURN_IF_ERROR(Save(*s));
  // The dataset stays while the search reads it.
  registry_->PinDataset(s->spec.dataset);

  std::vector<std::thread> exited;
  GridSearchProgress progress;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) {
      registry_->UnpinDataset(s->spec.dataset);
      return absl::UnavailableError("the coordinator is shutting down");
    }
    for (auto it = drivers_.begin(); it != drivers_.end();) {
      if (it->first->exited.load()) {
        exited.push_back(std::move(it->second));
        it = drivers_.erase(it);
      } else {
        ++it;
      }
    }
    searches_[s->id] = s;
    order_.push_back(s->id);
    {
      absl::MutexLock slock(&s->mu);
      progress = s->Snapshot();
    }
    drivers_.emplace_back(s, std::thread([this, s] { Drive(s); }));
  }
  for (std::thread& t : exited) t.join();
  return progress;
}

// ---- Driver ----------------------------------------------------------------------------------

absl::StatusOr<GridSearchMode> GridSearchManager::ResolveMode(const Search& s) const {
  if (s.spec.mode != GridSearchMode::kAuto) return s.spec.mode;
  // Replicated needs the dataset twice on a worker: its cached copy and a fold's gathered rows.
  const uint64_t bytes = s.rows * (s.cols + 1) * sizeof(double);
  uint64_t budget = std::numeric_limits<uint64_t>::max();
  for (const WorkerSnapshot& w : workers_->Snapshot()) {
    if (w.alive && w.memory_budget_bytes > 0) budget = std::min(budget, w.memory_budget_bytes);
  }
  return 2 * bytes <= budget ? GridSearchMode::kReplicated : GridSearchMode::kSharded;
}

void GridSearchManager::Drive(const std::shared_ptr<Search>& s) {
  absl::Status status;
  absl::StatusOr<GridSearchMode> mode = ResolveMode(*s);
  if (!mode.ok()) {
    status = mode.status();
  } else {
    {
      absl::MutexLock lock(&s->mu);
      s->progress.mode = *mode;
      if (!s->cancel) s->progress.state = GridSearchState::kRunning;
      s->Bump();
    }
    // Best effort: the record saved at Start already restarts the search after a crash.
    Save(*s).IgnoreError();
    status = *mode == GridSearchMode::kReplicated ? RunReplicated(s) : RunSharded(s);
  }
  bool cancelled = false;
  if (status.ok()) {
    absl::MutexLock lock(&s->mu);
    cancelled = s->cancel;
    if (!cancelled) {
      s->cv = AggregateCvResults(s->candidates, s->scores, s->spec.scoring, &s->fit_times,
                                 &s->score_times);
      s->cv.param_keys = s->keys;
      s->cv.neighbor_searches = s->progress.neighbor_searches;
      if (s->spec.refit) {
        s->progress.state = GridSearchState::kRefitting;
        s->Bump();
      }
    }
  }
  if (status.ok() && !cancelled && s->spec.refit) {
    FitSpec fit;
    fit.model = s->spec.refit_model;
    fit.dataset = s->spec.dataset;
    fit.task = s->spec.classifier ? Model::Task::kClassifier : Model::Task::kRegressor;
    {
      absl::MutexLock lock(&s->mu);
      fit.params = s->cv.best_params;
    }
    fit.replace = s->spec.replace_refit_model;
    absl::StatusOr<std::shared_ptr<const ModelEntry>> fitted =
        models_->Fit(fit, absl::Now() + options_.job_deadline);
    if (!fitted.ok()) {
      status = absl::Status(fitted.status().code(),
                            absl::StrCat("refit of the best candidate as model \"", fit.model,
                                         "\": ", fitted.status().message()));
    }
  }
  Finish(s, status);
  s->exited.store(true);
}

void GridSearchManager::Finish(const std::shared_ptr<Search>& s, absl::Status status) {
  registry_->UnpinDataset(s->spec.dataset);
  // Every runner has ended: what only the jobs needed goes (finished searches are kept).
  s->X.reset();
  s->y = {};
  s->codes = {};
  s->folds = {};
  s->spec.folds = {};
  {
    absl::MutexLock lock(&s->mu);
    GridSearchProgress& p = s->progress;
    p.elapsed_seconds = absl::ToDoubleSeconds(absl::Now() - p.started);
    p.eta_seconds = 0;
    if (s->cancel || !status.ok()) p.refit_model.clear();  // no model was made
    if (s->cancel) {
      p.state = GridSearchState::kCancelled;
      p.error = absl::CancelledError(absl::StrCat("grid search ", s->id, " was cancelled"));
    } else if (!status.ok()) {
      p.state = GridSearchState::kFailed;
      p.error = status;
    } else {
      p.state = GridSearchState::kSucceeded;
    }
    s->Bump();
  }
  bool interrupted;
  {
    absl::MutexLock lock(&s->mu);
    interrupted = s->interrupted;
  }
  // Not saved when Shutdown stopped it: the record saved before stays unfinished, and the next
  // start runs the search again. Best effort otherwise (nobody is left to tell).
  if (!interrupted) Save(*s).IgnoreError();
  std::vector<std::string> dropped;
  {
    absl::MutexLock lock(&mu_);
    dropped = DropOldFinished(s.get());
  }
  RemoveFiles(dropped);
}

std::vector<std::string> GridSearchManager::DropOldFinished(const Search* keep) {
  size_t finished = 0;
  for (const std::string& id : order_) {
    absl::MutexLock slock(&searches_[id]->mu);
    if (IsTerminal(searches_[id]->progress.state)) ++finished;
  }
  std::vector<std::string> dropped;
  for (auto it = order_.begin(); it != order_.end() && finished > options_.max_finished;) {
    const std::shared_ptr<Search>& old = searches_[*it];
    bool terminal;
    {
      absl::MutexLock slock(&old->mu);
      terminal = IsTerminal(old->progress.state);
    }
    if (terminal && old.get() != keep) {
      dropped.push_back(*it);
      searches_.erase(*it);
      it = order_.erase(it);
      --finished;
    } else {
      ++it;
    }
  }
  return dropped;
}

// ---- Persistence -----------------------------------------------------------------------------

std::string GridSearchManager::PathOf(const std::string& id) const {
  return absl::StrCat(options_.data_dir, "/grid_searches/", id);
}

void GridSearchManager::RemoveFiles(const std::vector<std::string>& ids) const {
  if (options_.data_dir.empty()) return;
  for (const std::string& id : ids) {
    std::error_code ec;
    std::filesystem::remove(PathOf(id), ec);
  }
}

absl::Status GridSearchManager::Save(const Search& s) const {
  if (options_.data_dir.empty()) return absl::OkStatus();
  v1::GridSearchRecord record;
  record.set_id(s.id);
  SpecToProto(s.spec, record.mutable_spec());
  {
    absl::MutexLock lock(&s.mu);
    const GridSearchProgress p = s.Snapshot();
    InfoToProto(p, record.mutable_info());
    if (!p.error.ok()) {
      record.set_error_code(static_cast<int32_t>(p.error.code()));
      record.set_error_message(std::string(p.error.message()));
    }
    if (p.state == GridSearchState::kSucceeded) {
      GridSearchOutcome outcome;
      outcome.progress = p;
      outcome.cv_results = s.cv;
      outcome.classes = s.classes;
      outcome.class_names = s.class_names;
      ResultToProto(outcome, record.mutable_result());
      record.mutable_result()->clear_info();  // record.info is the one copy
    }
  }
  std::error_code ec;
  const std::string dir = absl::StrCat(options_.data_dir, "/grid_searches");
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  return WriteDurableFile(PathOf(s.id), kGridSearchFormat, record.SerializeAsString());
}

absl::Status GridSearchManager::Recover() {
  if (options_.data_dir.empty()) return absl::OkStatus();
  namespace fs = std::filesystem;
  const std::string dir = absl::StrCat(options_.data_dir, "/grid_searches");
  const std::string quarantine = absl::StrCat(options_.data_dir, "/quarantine");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  KNN_RETURN_IF_ERROR(RemoveDurableTempFiles(dir).status());
  std::vector<v1::GridSearchRecord> records;
  std::vector<std::string> errors;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    const std::string path = it->path().string();
    absl::Status status;
    v1::GridSearchRecord record;
    absl::StatusOr<DurableContents> contents = ReadDurableFile(path, kGridSearchFormat);
    if (!contents.ok()) {
      status = contents.status();
    } else if (!record.ParseFromString(contents->payload)) {
      status = absl::DataLossError(absl::StrCat(path, ": cannot parse the grid search record"));
    } else if (record.id() != it->path().filename().string()) {
      status = absl::DataLossError(
          absl::StrCat(path, ": holds grid search \"", record.id(), "\", not its file's name"));
    }
    if (status.ok()) {
      records.push_back(std::move(record));
      continue;
    }
    absl::StatusOr<std::string> moved = QuarantineFile(path, quarantine);
    errors.push_back(absl::StrCat(moved.ok() ? *moved : path, ": ", status.ToString()));
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  // Oldest first, as order_ keeps them.
  std::sort(records.begin(), records.end(),
            [](const v1::GridSearchRecord& a, const v1::GridSearchRecord& b) {
              return std::make_pair(a.info().started_unix_millis(), a.id()) <
                     std::make_pair(b.info().started_unix_millis(), b.id());
            });
  for (const v1::GridSearchRecord& record : records) {
    const absl::Status error =
        record.error_code() == 0
            ? absl::OkStatus()
            : absl::Status(static_cast<absl::StatusCode>(record.error_code()),
                           record.error_message());
    absl::StatusOr<GridSearchProgress> progress = InfoFromProto(record.info(), error);
    if (!progress.ok()) {
      errors.push_back(absl::StrCat(PathOf(record.id()), ": ", progress.status().ToString()));
      continue;
    }
    progress->id = record.id();
    auto s = std::make_shared<Search>();
    s->id = record.id();
    const bool unfinished = !IsTerminal(progress->state);
    if (unfinished) {
      // Interrupted by the restart: run it again from its spec, under its id.
      absl::StatusOr<GridSearchSpec> spec = SpecFromProto(record.spec());
      absl::StatusOr<GridSearchProgress> restarted =
          spec.ok() ? StartSearch(std::move(*spec), &*progress) : spec.status();
      if (restarted.ok()) continue;
      progress->state = GridSearchState::kFailed;
      progress->error = absl::FailedPreconditionError(absl::StrCat(
          "grid search ", record.id(),
          " was interrupted by a coordinator restart and could not start again: ",
          restarted.status().ToString()));
      progress->eta_seconds = 0;
      progress->refit_model.clear();
    } else if (progress->state == GridSearchState::kSucceeded) {
      absl::StatusOr<GridSearchOutcome> outcome = OutcomeFromProto(record.result(), *progress);
      if (!outcome.ok()) {
        errors.push_back(absl::StrCat(PathOf(record.id()), ": ", outcome.status().ToString()));
        continue;
      }
      s->cv = std::move(outcome->cv_results);
      s->classes = std::move(outcome->classes);
      s->class_names = std::move(outcome->class_names);
    }
    {
      absl::MutexLock slock(&s->mu);
      s->progress = *progress;
    }
    s->exited.store(true);
    if (unfinished) Save(*s).IgnoreError();  // now failed
    absl::MutexLock lock(&mu_);
    searches_[s->id] = s;
    order_.push_back(s->id);
  }
  std::vector<std::string> dropped;
  {
    absl::MutexLock lock(&mu_);
    // A restarted search went to the end of order_ in StartSearch: put every search back in
    // the order it was first started.
    std::sort(order_.begin(), order_.end(), [this](const std::string& a, const std::string& b)
                                                ABSL_NO_THREAD_SAFETY_ANALYSIS {
      absl::Time ta, tb;
      {
        absl::MutexLock la(&searches_[a]->mu);
        ta = searches_[a]->progress.started;
      }
      {
        absl::MutexLock lb(&searches_[b]->mu);
        tb = searches_[b]->progress.started;
      }
      return std::make_pair(ta, a) < std::make_pair(tb, b);
    });
    dropped = DropOldFinished(nullptr);
    recover_errors_.insert(recover_errors_.end(), errors.begin(), errors.end());
  }
  RemoveFiles(dropped);
  return absl::OkStatus();
}

std::vector<std::string> GridSearchManager::recover_errors() const {
  absl::MutexLock lock(&mu_);
  return recover_errors_;
}

// ---- Replicated mode -------------------------------------------------------------------------

absl::Status GridSearchManager::RunReplicated(const std::shared_ptr<Search>& s) {
  KNN_ASSIGN_OR_RETURN(Matrix X, store_->ReadRows(s->spec.dataset, 0, s->rows));
  s->X = std::make_shared<const Matrix>(std::move(X));
  s->content_hash = rpc::DatasetContentHash(*s->X, s->y);
  const int configured = options_.slots_per_worker;
  absl::Time no_workers_since = absl::InfiniteFuture();
  while (true) {
    const std::vector<WorkerSnapshot> snapshot = workers_->Snapshot();
    std::vector<WorkerHandle> live = workers_->LiveWorkers();
    {
      absl::MutexLock lock(&s->mu);
      if (s->Stopping() || s->AllDone()) break;
      std::vector<WorkerHandle> usable;
      for (WorkerHandle& w : live) {
        if (!s->unsuitable.count(w.id)) usable.push_back(std::move(w));
      }
      if (usable.empty()) {
        if (!live.empty() && !s->unsuitable_why.ok()) {
          s->Fail(s->unsuitable_why);
          break;
        }
        const absl::Time now = absl::Now();
        if (no_workers_since == absl::InfiniteFuture()) no_workers_since = now;
        if (now - no_workers_since > options_.no_worker_timeout) {
          s->Fail(absl::UnavailableError(absl::StrCat(
              "no live workers to run the search's jobs for ",
              absl::FormatDuration(options_.no_worker_timeout))));
          break;
        }
      } else {
        no_workers_since = absl::InfiniteFuture();
      }
      for (const WorkerHandle& w : usable) {
        int slots = configured;
        if (slots <= 0) {
          slots = 2;
          for (const WorkerSnapshot& ws : snapshot) {
            if (ws.id == w.id) slots = std::max<int>(2, static_cast<int>(ws.cores));
          }
        }
        int& running = s->runners_on[w.id];
        while (running < slots && running < static_cast<int>(s->queue.size())) {
          ++running;
          s->runners.emplace_back([this, s, w] { ReplicatedRunner(s, w); });
        }
      }
      auto changed = [](Search* x) ABSL_EXCLUSIVE_LOCKS_REQUIRED(x->mu) {
        return x->Stopping() || x->AllDone();
      };
      s->mu.AwaitWithTimeout(absl::Condition(+changed, s.get()), absl::Milliseconds(200));
    }
  }
  std::vector<std::thread> runners;
  {
    absl::MutexLock lock(&s->mu);
    if (s->cancel) {
      for (grpc::ClientContext* c : s->calls) c->TryCancel();
    }
    runners.swap(s->runners);
  }
  for (std::thread& t : runners) t.join();
  absl::MutexLock lock(&s->mu);
  return s->fatal;
}

void GridSearchManager::ReplicatedRunner(const std::shared_ptr<Search>& s, WorkerHandle worker) {
  auto leave = [&] {
    absl::MutexLock lock(&s->mu);
    --s->runners_on[worker.id];
  };
  while (true) {
    std::optional<size_t> j;
    {
      absl::MutexLock lock(&s->mu);
      j = s->Take();
    }
    if (!j.has_value()) return leave();
    {
      bool sent = false;
      absl::Status put = EnsureCached(*s, worker, &sent);
      if (IsWorkerFailure(put.code())) workers_->ReportCallFailure(worker.id, put);
      absl::MutexLock lock(&s->mu);
      if (sent) {
        ++s->progress.dataset_transfers;
        s->Bump();
      }
      if (!put.ok()) {
        s->Requeue(*j);
        --s->progress.jobs_requeued;  // the job never ran
        if (put.code() == absl::StatusCode::kResourceExhausted) {
          s->unsuitable.insert(worker.id);
          s->unsuitable_why = absl::ResourceExhaustedError(absl::StrCat(
              "no worker can hold dataset \"", s->spec.dataset, "\" for a replicated search (",
              worker.Describe(), ": ", put.message(), "); use the sharded mode"));
        } else if (IsWorkerFailure(put.code())) {
          // Marked dead above; its job runs elsewhere.
        } else {
          s->Fail(absl::Status(put.code(), absl::StrCat("sending dataset \"", s->spec.dataset,
                                                         "\" to ", worker.Describe(), ": ",
                                                         put.message())));
        }
        --s->runners_on[worker.id];
        return;
      }
    }

    v1::RunFoldJobRequest request;
    request.set_content_hash(s->content_hash);
    rpc::ToProto(s->jobs[*j], s->folds[s->jobs[*j].fold], s->candidates, s->spec.classifier,
                 s->spec.scoring, request.mutable_job());
    v1::RunFoldJobResponse response;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.job_deadline));
    absl::Notification finished;
    grpc::Status grpc_status;
    {
      absl::MutexLock lock(&s->mu);
      s->calls.insert(&ctx);
      if (s->Stopping()) ctx.TryCancel();
    }
    worker.stub->async()->RunFoldJob(&ctx, &request, &response, [&](grpc::Status st) {
      grpc_status = std::move(st);
      finished.Notify();
    });
    // A worker declared dead (missed heartbeats) is not waited for.
    while (!finished.WaitForNotificationWithTimeout(absl::Milliseconds(200))) {
      if (!workers_->IsAlive(worker.id)) ctx.TryCancel();
    }
    const absl::Status st = rpc::FromGrpcStatus(grpc_status);
    // The pool's and the manager's locks are taken before the search's, never inside it.
    if (st.ok()) {
      workers_->ReportCallSuccess(worker.id, absl::Now());
    } else if (st.code() == absl::StatusCode::kNotFound) {
      // The worker no longer holds the dataset (it restarted or evicted it): send it again.
      ForgetCached(worker.id, s->content_hash);
    } else if (IsWorkerFailure(st.code()) && workers_->IsAlive(worker.id)) {
      workers_->ReportCallFailure(worker.id, st);
    }
    absl::MutexLock lock(&s->mu);
    s->calls.erase(&ctx);
    if (st.ok()) {
      FoldJobResult r = rpc::FromProto(response.result());
      if (r.scores.size() != s->jobs[*j].candidates.size()) {
        s->Fail(absl::InternalError(absl::StrFormat(
            "%s answered %d scores for a job of %d candidates", worker.Describe(),
            r.scores.size(), s->jobs[*j].candidates.size())));
        --s->runners_on[worker.id];
        return;
      }
      s->Record(*j, r);
      continue;
    }
    if (s->cancel) {
      --s->runners_on[worker.id];
      return;
    }
    if (st.code() == absl::StatusCode::kNotFound) {
      s->Requeue(*j);
      continue;
    }
    if (IsWorkerFailure(st.code())) {
      s->Requeue(*j);
      --s->runners_on[worker.id];
      return;
    }
    s->Fail(absl::Status(st.code(), absl::StrFormat("fold %d job on %s: %s", s->jobs[*j].fold,
                                                    worker.Describe(), st.message())));
    --s->runners_on[worker.id];
    return;
  }
}

absl::Status GridSearchManager::EnsureCached(Search& s, const WorkerHandle& worker,
                                             bool* sent) {
  *sent = false;
  const std::string key = absl::StrCat(worker.id, "/", s.content_hash);
  {
    absl::MutexLock lock(&mu_);
    struct Arg {
      const std::set<std::string>* sending;
      const std::string* key;
    } arg{&sending_, &key};
    // One transfer per worker and dataset at a time; the others wait for it.
    mu_.Await(absl::Condition(
        +[](Arg* a) { return a->sending->count(*a->key) == 0; }, &arg));
    if (cached_[worker.id].count(s.content_hash) > 0) return absl::OkStatus();
    sending_.insert(key);
  }
  absl::Status st = PutDataset(s, worker);
  absl::MutexLock lock(&mu_);
  sending_.erase(key);
  if (st.ok()) {
    cached_[worker.id].insert(s.content_hash);
    *sent = true;
  }
  return st;
}

void GridSearchManager::ForgetCached(const std::string& worker_id, const std::string& hash) {
  absl::MutexLock lock(&mu_);
  cached_[worker_id].erase(hash);
}

absl::Status GridSearchManager::PutDataset(Search& s, const WorkerHandle& worker) const {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.put_deadline));
  {
    absl::MutexLock lock(&s.mu);
    s.calls.insert(&ctx);  // so that Cancel and Shutdown can cancel it
    if (s.Stopping()) ctx.TryCancel();
  }
  absl::Cleanup unregister = [&] {
    absl::MutexLock lock(&s.mu);
    s.calls.erase(&ctx);
  };
  v1::PutDatasetResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::PutDatasetRequest>> writer =
      worker.stub->PutDataset(&ctx, &response);
  v1::PutDatasetRequest msg;
  v1::PutDatasetHeader* h = msg.mutable_header();
  h->set_content_hash(s.content_hash);
  h->set_rows(s.rows);
  h->set_cols(s.cols);
  h->set_has_labels(true);
  bool open = writer->Write(msg);
  const size_t row_bytes = std::max<size_t>(1, s.cols * sizeof(double));
  const size_t chunk_rows = std::max<size_t>(1, options_.put_chunk_bytes / row_bytes);
  for (size_t begin = 0; open && begin < s.rows; begin += chunk_rows) {
    const size_t end = std::min<size_t>(s.rows, begin + chunk_rows);
    msg.Clear();
    rpc::ToProto(s.X->view().Slice(begin, end), msg.mutable_rows());
    open = writer->Write(msg);
  }
  const size_t chunk_labels = std::max<size_t>(1, options_.put_chunk_bytes / sizeof(double));
  for (size_t begin = 0; open && begin < s.y.size(); begin += chunk_labels) {
    const size_t end = std::min(s.y.size(), begin + chunk_labels);
    msg.Clear();
    msg.mutable_labels()->mutable_values()->Assign(s.y.begin() + begin, s.y.begin() + end);
    open = writer->Write(msg);
  }
  if (open) writer->WritesDone();
  return rpc::FromGrpcStatus(writer->Finish());
}

// ---- Sharded mode ----------------------------------------------------------------------------

absl::Status GridSearchManager::RunSharded(const std::shared_ptr<Search>& s) {
  s->shards_model = s->id + ".shards";
  FitSpec fit;
  fit.model = s->shards_model;
  fit.dataset = s->spec.dataset;
  fit.task = s->spec.classifier ? Model::Task::kClassifier : Model::Task::kRegressor;
  fit.params.n_neighbors = 1;
  fit.params.algorithm = Algorithm::kBrute;  // workers build each fold's own index
  // The name is this search's own: one left by a run before a coordinator restart is replaced.
  fit.replace = true;
  KNN_RETURN_IF_ERROR(models_->Fit(fit, absl::Now() + options_.job_deadline).status());
  const int parallel = options_.sharded_parallel_jobs > 0 ? options_.sharded_parallel_jobs : 2;
  std::vector<std::thread> runners;
  for (int i = 0; i < parallel; ++i) runners.emplace_back([this, s] { ShardedRunner(s); });
  for (std::thread& t : runners) t.join();
  (void)models_->Delete(s->shards_model);
  absl::MutexLock lock(&s->mu);
  if (s->fatal.ok() && !s->cancel && !s->AllDone()) {
    return absl::InternalError("sharded grid search ended with jobs left");
  }
  return s->fatal;
}

void GridSearchManager::ShardedRunner(const std::shared_ptr<Search>& s) {
  while (true) {
    std::optional<size_t> j;
    {
      absl::MutexLock lock(&s->mu);
      j = s->Take();
    }
    if (!j.has_value()) return;
    absl::StatusOr<FoldJobResult> r = RunShardedJob(*s, *j);
    absl::MutexLock lock(&s->mu);
    if (r.ok()) {
      s->Record(*j, *r);
      continue;
    }
    if (s->cancel) return;
    if (IsWorkerFailure(r.status().code())) {
      // A shard's worker failed (unreachable, silent, or shutting down and cancelling its
      // calls): the repair loop re-sends its shards; run the job again.
      const absl::Time now = absl::Now();
      if (s->unavailable_since == absl::InfiniteFuture()) s->unavailable_since = now;
      if (now - s->unavailable_since > options_.no_worker_timeout) {
        s->Fail(r.status());
        return;
      }
      s->Requeue(*j);
      s->mu.AwaitWithTimeout(absl::Condition(+[](Search* x) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                                 x->mu) { return x->Stopping(); },
                                             &*s),
                             absl::Milliseconds(200));
      continue;
    }
    s->Fail(absl::Status(r.status().code(), absl::StrFormat("fold %d job: %s", s->jobs[*j].fold,
                                                            r.status().message())));
    return;
  }
}

absl::StatusOr<FoldJobResult> GridSearchManager::RunShardedJob(Search& s, size_t j) {
  const FoldJob& job = s.jobs[j];
  const TrainTestIndices& fold = s.folds[job.fold];
  KNN_ASSIGN_OR_RETURN(std::shared_ptr<const ModelEntry> model, registry_->Get(s.shards_model));
  for (const Placement& p : model->shards) {
    if (p.location.worker_ids.empty()) {
      return absl::UnavailableError(
          absl::StrCat("shard ", p.location.shard_id, " is being re-sent"));
    }
  }
  v1::FoldSubset subset;
  subset.set_key(absl::StrCat(s.id, "/", j));
  std::vector<char> in_train(s.rows, 0);
  for (int64_t i : fold.train) in_train[static_cast<size_t>(i)] = 1;
  for (uint64_t i = 0; i < s.rows; ++i) {
    if (!in_train[i]) subset.add_excluded(static_cast<int64_t>(i));
  }
  NeighborsParams index_params;
  index_params.algorithm = job.algorithm;
  index_params.leaf_size = job.leaf_size;
  index_params.p = job.p;
  rpc::ToProto(index_params, subset.mutable_index_params());
  KNN_ASSIGN_OR_RETURN(Minkowski metric, Minkowski::Create(job.p));

  const absl::Time start = absl::Now();
  const size_t K = static_cast<size_t>(job.max_neighbors);
  KNeighborsResult all;
  all.num_queries = fold.test.size();
  all.k = K;
  all.distances.resize(all.num_queries * K);
  all.indices.resize(all.num_queries * K);
  const std::vector<ShardLocation> shards = model->Locations();
  for (size_t begin = 0; begin < fold.test.size(); begin += options_.sharded_batch_rows) {
    const size_t end = std::min(fold.test.size(), begin + options_.sharded_batch_rows);
    KNN_ASSIGN_OR_RETURN(
        Matrix queries,
        GatherRows(*store_, s.spec.dataset,
                   absl::MakeConstSpan(fold.test).subspan(begin, end - begin), s.cols));
    KNN_ASSIGN_OR_RETURN(KNeighborsResult nb,
                         search_->SearchRdist(shards, queries, K,
                                              absl::Now() + options_.job_deadline, &subset));
    if (nb.k != K || nb.num_queries != end - begin) {
      return absl::InternalError(absl::StrFormat("sharded search answered %d x %d for %d x %d",
                                                 nb.num_queries, nb.k, end - begin, K));
    }
    ToTrueDistances(metric, &nb);
    std::copy(nb.distances.begin(), nb.distances.end(), all.distances.begin() + begin * K);
    std::copy(nb.indices.begin(), nb.indices.end(), all.indices.begin() + begin * K);
  }
  FoldJobResult r;
  KNN_ASSIGN_OR_RETURN(r.scores,
                       ScoreFoldCandidates(all, s.codes, s.codes, s.spec.classifier, s.n_classes,
                                           fold, job, s.candidates, s.spec.scoring));
  // The workers build the fold's index inside the first search call: in this mode the whole job
  // counts as score time.
  r.score_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return r;
}

// ---- Queries ---------------------------------------------------------------------------------

absl::StatusOr<GridSearchProgress> GridSearchManager::Watch(const std::string& id,
                                                            uint64_t after_version,
                                                            absl::Duration timeout) const {
  std::shared_ptr<Search> s;
  {
    absl::MutexLock lock(&mu_);
    auto it = searches_.find(id);
    if (it == searches_.end()) {
      return absl::NotFoundError(absl::StrCat("id: no grid search \"", id, "\""));
    }
    s = it->second;
  }
  struct Arg {
    Search* s;
    uint64_t after;
  } arg{s.get(), after_version};
  absl::MutexLock lock(&s->mu);
  s->mu.AwaitWithTimeout(
      absl::Condition(+[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return a->s->progress.version > a->after;
      },
                      &arg),
      timeout);
  return s->Snapshot();
}

absl::StatusOr<GridSearchProgress> GridSearchManager::Cancel(const std::string& id) {
  std::shared_ptr<Search> s;
  {
    absl::MutexLock lock(&mu_);
    auto it = searches_.find(id);
    if (it == searches_.end()) {
      return absl::NotFoundError(absl::StrCat("id: no grid search \"", id, "\""));
    }
    s = it->second;
  }
  absl::MutexLock lock(&s->mu);
  if (!IsTerminal(s->progress.state) && !s->cancel) {
    s->cancel = true;
    for (grpc::ClientContext* c : s->calls) c->TryCancel();
    s->Bump();
  }
  // The state afterwards: jobs in flight are cancelled, so the search ends promptly.
  s->mu.AwaitWithTimeout(absl::Condition(+[](Search* x) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                           return IsTerminal(x->progress.state);
                         },
                                         s.get()),
                         absl::Seconds(10));
  return s->Snapshot();
}

std::vector<GridSearchProgress> GridSearchManager::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<GridSearchProgress> out;
  for (const std::string& id : order_) {
    const std::shared_ptr<Search>& s = searches_.at(id);
    absl::MutexLock slock(&s->mu);
    out.push_back(s->Snapshot());
  }
  return out;
}

absl::StatusOr<GridSearchOutcome> GridSearchManager::Result(const std::string& id) const {
  std::shared_ptr<Search> s;
  {
    absl::MutexLock lock(&mu_);
    auto it = searches_.find(id);
    if (it == searches_.end()) {
      return absl::NotFoundError(absl::StrCat("id: no grid search \"", id, "\""));
    }
    s = it->second;
  }
  absl::MutexLock lock(&s->mu);
  const GridSearchProgress& p = s->progress;
  switch (p.state) {
    case GridSearchState::kSucceeded:
      break;
    case GridSearchState::kFailed:
    case GridSearchState::kCancelled:
      return p.error;
    default:
      return absl::FailedPreconditionError(absl::StrFormat(
          "grid search %s is still running (%d of %d jobs done)", id, p.jobs_done, p.jobs_total));
  }
  GridSearchOutcome out;
  out.progress = s->Snapshot();
  out.cv_results = s->cv;
  out.classes = s->classes;
  out.class_names = s->class_names;
  return out;
}

void GridSearchManager::Shutdown() {
  std::vector<std::pair<std::shared_ptr<Search>, std::thread>> drivers;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    drivers.swap(drivers_);
  }
  for (auto& [s, t] : drivers) {
    {
      absl::MutexLock lock(&s->mu);
      if (!IsTerminal(s->progress.state)) {
        if (!s->cancel) s->interrupted = true;
        s->cancel = true;
        for (grpc::ClientContext* c : s->calls) c->TryCancel();
        s->Bump();
      }
    }
    t.join();
  }
}

}  // namespace knncluster::coordinator
