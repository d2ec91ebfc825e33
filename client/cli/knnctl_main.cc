// knnctl: the command line of knncluster. In local mode (today) every command runs in-process on
// the core library; the cluster issue adds --coordinator. This file only parses the command line
// (CLI11, for its per-subcommand --help) and prints; the commands live in commands.cc.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <iostream>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/engine.h"
#include "core/base/thread_pool.h"

namespace knncluster::cli {
namespace {

std::string CodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

// Adds the options that choose the rows a command works on.
void AddDataOptions(CLI::App* cmd, DataSourceOptions* d, std::optional<uint32_t>* random_state,
                    bool with_split = true) {
  cmd->add_option("--dataset", d->dataset, "built-in dataset (digits)");
  cmd->add_option("--data", d->data_file, "data file: .csv or .npy (float32/64, int32/64, C order)");
  cmd->add_option("--label-column", d->label_column,
                  "label column: index (-1 = last, the default for CSV), header name, or none");
  cmd->add_option("--labels", d->labels_file, "labels as a 1-D .npy file (for .npy data)");
  if (with_split) {
    cmd->add_option("--split", d->split, "rows to use: all, train or test part of the split")
        ->check(CLI::IsMember({"all", "train", "test"}))
        ->capture_default_str();
  }
  cmd->add_option("--test-size", d->test_size, "test part: a fraction (0.2) or a count (360)")
      ->capture_default_str();
  cmd->add_option("--random-state", *random_state, "seed of the shuffle (unset: random)");
  cmd->add_flag("!--no-shuffle", d->shuffle, "split without shuffling");
}

void AddModelOptions(CLI::App* cmd, ModelOptions* m) {
  cmd->add_option("--task", m->task, "classifier, regressor or outlier")
      ->check(CLI::IsMember({"classifier", "regressor", "outlier"}))
      ->capture_default_str();
  cmd->add_option("--n-neighbors,-k", m->n_neighbors,
                  "number of neighbours (default 5; 1 for outlier detection)");
  cmd->add_option("--weights", m->weights, "uniform or distance")->capture_default_str();
  cmd->add_option("--algorithm", m->algorithm, "auto, kd_tree, ball_tree or brute")
      ->capture_default_str();
  cmd->add_option("--leaf-size", m->leaf_size, "tree leaf size")->capture_default_str();
  cmd->add_option("--p", m->p, "Minkowski order: a number >= 1, or inf")->capture_default_str();
  cmd->add_option("--contamination", m->contamination,
                  "outlier: fraction of training rows above the fitted threshold")
      ->capture_default_str();
  cmd->add_option("--threshold", m->threshold, "outlier: distance threshold (overrides contamination)");
}

int Run(int argc, char** argv) {
  CLI::App app{"knnctl: exact k-nearest-neighbour learning (scikit-learn's KNN tutorial, at scale)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options (--json, --threads) also work after the subcommand
  bool json = false;
  int threads = 0;
  app.add_flag("--json", json, "print machine-readable JSON (stable field names)");
  app.add_option("--threads", threads, "threads for searches (default: all cores)");
  std::string coordinator;
  app.add_option("--coordinator", coordinator,
                 "run against the cluster at HOST:PORT (default: in-process); models are then "
                 "named, and data is uploaded once");
  app.set_version_flag("--version", "knnctl 0.1.0");

  DataSourceOptions data;
  std::optional<uint32_t> random_state;
  ModelOptions model;
  std::string model_path, out_path;
  std::optional<int> k;
  std::optional<double> radius;
  bool proba = false;
  size_t limit = 0;
  TutorialOptions tutorial;
  int count = 10, scale = 8;

  auto* split = app.add_subcommand("split", "train/test split identical to scikit-learn's "
                                            "train_test_split; prints the indices");
  AddDataOptions(split, &data, &random_state, /*with_split=*/false);

  auto* fit = app.add_subcommand("fit", "fit a model on the selected rows and save it (--model)");
  AddDataOptions(fit, &data, &random_state);
  AddModelOptions(fit, &model);
  fit->add_option("--model", model_path, "model file to write")->required();

  auto* score = app.add_subcommand("score", "score a saved model on the selected rows "
                                            "(accuracy, R², or outlier fraction)");
  AddDataOptions(score, &data, &random_state);
  score->add_option("--model", model_path, "model file")->required();

  auto* predict = app.add_subcommand("predict", "predict the selected rows with a saved model");
  AddDataOptions(predict, &data, &random_state);
  predict->add_option("--model", model_path, "model file")->required();
  predict->add_flag("--proba", proba, "print class probabilities (classifier)");
  predict->add_option("--limit", limit, "print at most this many rows (0: all)");

  auto* kneighbors = app.add_subcommand("kneighbors", "nearest training rows of the selected rows, "
                                                      "ordered by (distance, training index)");
  AddDataOptions(kneighbors, &data, &random_state);
  kneighbors->add_option("--model", model_path, "model file")->required();
  kneighbors->add_option("--n-neighbors,-k", k, "neighbours per query (default: the model's)");
  kneighbors->add_option("--radius", radius,
                         "all training rows within this distance instead (radius_neighbors)");
  kneighbors->add_option("--limit", limit, "print at most this many rows (0: all)");

  auto* save = app.add_subcommand("save", "check a model file and write it to --out");
  save->add_option("--model", model_path, "model file to read")->required();
  save->add_option("--out", out_path, "model file to write")->required();

  auto* load = app.add_subcommand("load", "check a model file and describe it");
  std::string load_file;
  load->add_option("--model", model_path,
                   "model file (local) or, on a cluster, the name to import as (default: the file's stem)");
  load->add_option("--file", load_file, "on a cluster: the model file to import");

  GridSearchCommandOptions grid;
  std::string grid_k, grid_p, grid_weights, grid_algorithm, grid_leaf;
  auto* gs = app.add_subcommand("grid-search", "exhaustive grid search with cross-validation "
                                               "(scikit-learn's GridSearchCV)");
  AddDataOptions(gs, &data, &random_state);
  gs->add_option("--task", grid.task, "classifier or regressor")->capture_default_str();
  gs->add_option("--n-neighbors,-k", grid_k, "values: 1,3,5 or a range 2:20:2 (stop exclusive)");
  gs->add_option("--p", grid_p, "values: 1,2,3 or inf");
  gs->add_option("--weights", grid_weights, "values: uniform,distance");
  gs->add_option("--algorithm", grid_algorithm, "values: auto,kd_tree,ball_tree,brute");
  gs->add_option("--leaf-size", grid_leaf, "values: 10,30 or a range");
  gs->add_option("--grid", grid.grids,
                 "a further grid: \"n_neighbors=1:10;p=1,2\" (repeatable, as a list of dicts)");
  gs->add_option("--cv", grid.cv, "number of folds (StratifiedKFold for classifiers, KFold for "
                                  "regressors)")->capture_default_str();
  gs->add_flag("--shuffle", grid.shuffle, "shuffle before splitting into folds (--random-state)");
  gs->add_option("--scoring", grid.scoring,
                 "accuracy, balanced_accuracy, f1_macro | r2, neg_mean_squared_error");
  gs->add_option("--refit-model", grid.refit_model, "save the best candidate refit on all rows");

  auto* tut = app.add_subcommand("tutorial", "run scikit-learn's KNN tutorial on digits");
  tut->add_option("--model", tutorial.model,
                  "model file (default: a temp file) or, on a cluster, model name");
  tut->add_option("--algorithm", tutorial.algorithm, "search algorithm")->capture_default_str();
  tut->add_option("--n-neighbors,-k", tutorial.n_neighbors, "neighbours")->capture_default_str();
  tut->add_option("--p", tutorial.p, "Minkowski order")->capture_default_str();
  tut->add_option("--test-size", tutorial.test_size, "test part of the split")->capture_default_str();
  tut->add_option("--random-state", tutorial.random_state, "split seed")->capture_default_str();

  auto* status = app.add_subcommand("status", "workers, liveness, shards, datasets and models of "
                                              "the cluster (--coordinator)");

  auto* show = app.add_subcommand("show-digits", "write the first digits side by side as a PNG");
  show->add_option("--count", count, "how many digits")->capture_default_str();
  show->add_option("--scale", scale, "pixels per cell")->capture_default_str();
  show->add_option("--out", out_path, "PNG file to write")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  data.random_state = random_state;
  model.n_neighbors_set = fit->count("--n-neighbors") > 0;

  ThreadPool pool(threads);
  std::unique_ptr<Engine> engine =
      coordinator.empty() ? MakeLocalEngine(&pool) : MakeClusterEngine(coordinator);
  absl::StatusOr<Output> out;
  if (*split) {
    out = RunSplit(engine.get(), data);
  } else if (*fit) {
    out = RunFit(engine.get(), data, model, model_path);
  } else if (*score) {
    out = RunScore(engine.get(), model_path, data);
  } else if (*predict) {
    out = RunPredict(engine.get(), model_path, data, proba, limit);
  } else if (*kneighbors) {
    out = RunKNeighbors(engine.get(), model_path, data, k, radius, limit);
  } else if (*save) {
    out = RunSave(engine.get(), model_path, out_path);
  } else if (*load) {
    const std::string file = load_file.empty() ? model_path : load_file;
    std::string name = model_path;
    if (name.empty() || name == file) name = std::filesystem::path(file).stem().string();
    if (file.empty()) {
      out = absl::InvalidArgumentError("load: give --model FILE (local) or --file FILE (cluster)");
    } else {
      out = RunLoad(engine.get(), file, name);
    }
  } else if (*gs) {
    std::vector<std::string> parts;
    if (!grid_k.empty()) parts.push_back("n_neighbors=" + grid_k);
    if (!grid_p.empty()) parts.push_back("p=" + grid_p);
    if (!grid_weights.empty()) parts.push_back("weights=" + grid_weights);
    if (!grid_algorithm.empty()) parts.push_back("algorithm=" + grid_algorithm);
    if (!grid_leaf.empty()) parts.push_back("leaf_size=" + grid_leaf);
    if (!parts.empty()) {
      std::string first;
      for (const auto& part : parts) first += part + ";";
      grid.grids.insert(grid.grids.begin(), first);
    }
    out = RunGridSearch(data, grid, &pool);
  } else if (*tut) {
    out = RunTutorial(engine.get(), tutorial, &pool);
  } else if (*status) {
    out = RunClusterStatus(coordinator);
  } else if (*show) {
    out = RunShowDigits(count, scale, out_path);
  }
  if (!out.ok()) {
    std::cerr << "knnctl: " << out.status().message() << "\n";
    if (json) {
      nlohmann::ordered_json err;
      err["error"] = {{"code", CodeName(out.status().code())},
                      {"message", std::string(out.status().message())}};
      std::cout << err.dump(2) << "\n";
    }
    return 1;
  }
  if (json) {
    std::cout << out->json.dump(2) << "\n";
  } else {
    std::cout << out->text;
  }
  return 0;
}

}  // namespace
}  // namespace knncluster::cli

int main(int argc, char** argv) { return knncluster::cli::Run(argc, argv); }
