// knnctl: the command line of knncluster. Every command runs in-process on the core library, or
// against a cluster with --coordinator. This file only parses the command line
// (CLI11, for its per-subcommand --help) and prints; the commands live in commands.cc.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/engine.h"
#include "client/cli/interrupt.h"
#include "client/cli/progress.h"
#include "client/cpp/cancel_token.h"
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

// The bearer token in `path`, without surrounding whitespace.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  if (in) content << in.rdbuf();
  if (!in || in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("--token-file: cannot read \"", path, "\""));
  }
  std::string token(absl::StripAsciiWhitespace(content.str()));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--token-file: \"", path, "\" is empty"));
  }
  return token;
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
  std::string token_file;
  client::TlsOptions tls;
  app.add_option("--token-file", token_file,
                 "file holding the cluster's bearer token (sent as \"authorization: Bearer "
                 "<token>\"); default: $KNNCLUSTER_TOKEN when set");
  app.add_option("--tls-ca", tls.root_ca_file,
                 "connect with TLS, trusting this CA's PEM certificate (the cluster's ca.pem)");
  app.add_option("--tls-cert", tls.cert_file,
                 "with TLS: this client's PEM certificate, for mutual TLS (not needed by the "
                 "coordinator)");
  app.add_option("--tls-key", tls.key_file, "with TLS: the private key of --tls-cert");
  app.add_option("--tls-server-name", tls.server_name,
                 "with TLS: the name the coordinator's certificate must carry, when not the "
                 "host of --coordinator");
  bool use_tls = false;
  app.add_flag("--tls", use_tls,
               "connect with TLS (implied by any --tls-* option); without --tls-ca, the "
               "system's root certificates are trusted");
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
  std::vector<std::string> grid_params;
  std::string grid_k, grid_p, grid_weights, grid_algorithm, grid_leaf;
  auto* gs = app.add_subcommand(
      "grid-search",
      "exhaustive grid search with cross-validation (scikit-learn's GridSearchCV); on a cluster "
      "it runs on the coordinator, and Ctrl-C detaches from it (--attach ID re-attaches)");
  AddDataOptions(gs, &data, &random_state);
  gs->add_option("--task", grid.task, "classifier or regressor")->capture_default_str();
  gs->add_option("--param", grid_params,
                 "KEY=VALUES for the grid (repeatable), KEY one of n_neighbors, p, weights, "
                 "algorithm, leaf_size; VALUES a list 1,3,5 or numpy arange start:stop[:step] "
                 "(p=1:4 is 1,2,3; p also takes inf), items may mix: 1:10:2,15");
  gs->add_option("--n-neighbors,-k", grid_k, "shorthand for --param n_neighbors=VALUES");
  gs->add_option("--p", grid_p, "shorthand for --param p=VALUES");
  gs->add_option("--weights", grid_weights, "shorthand for --param weights=VALUES");
  gs->add_option("--algorithm", grid_algorithm, "shorthand for --param algorithm=VALUES");
  gs->add_option("--leaf-size", grid_leaf, "shorthand for --param leaf_size=VALUES");
  gs->add_option("--grid", grid.grids,
                 "a further grid \"n_neighbors=1:10;p=1,2\" (repeatable; with --param, the grids "
                 "are scikit-learn's list of dicts)");
  gs->add_option("--cv", grid.cv,
                 "number of folds (StratifiedKFold for classifiers, KFold for regressors), or a "
                 "JSON file of explicit folds [{\"train\": [...], \"test\": [...]}, ...]")
      ->capture_default_str();
  gs->add_flag("--shuffle", grid.shuffle, "shuffle before splitting into folds (--random-state)");
  gs->add_option("--scoring", grid.scoring,
                 "accuracy (default), balanced_accuracy, f1_macro | r2 (default), "
                 "neg_mean_squared_error");
  gs->add_flag("!--no-refit", grid.refit, "do not fit the best candidate on all rows");
  gs->add_option("--refit-model", grid.refit_model,
                 "the refit best model: a file to save it to (local; without it, none is kept) "
                 "or a model name (cluster; default <id>-best)");
  auto* mode = gs->add_option("--mode", grid.mode,
                              "cluster: auto, replicated (every worker holds the data) or "
                              "sharded")
                   ->check(CLI::IsMember({"auto", "replicated", "sharded"}));
  gs->add_option("--attach", grid.attach,
                 "cluster: watch the search ID (after a detach) and print its result");
  gs->add_option("--cancel", grid.cancel, "cluster: cancel the search ID");
  gs->add_flag("--list", grid.list, "cluster: list the grid searches");
  gs->add_flag("--cancel-on-interrupt", grid.cancel_on_interrupt,
               "cluster: Ctrl-C cancels the search (default: detach and print its id)");
  gs->add_option("--heatmap", grid.heatmap,
                 "write an SVG heatmap of the mean test score over two parameters");
  gs->add_option("--heatmap-x", grid.heatmap_x,
                 "the heatmap's x parameter (default: the grid's key with most values)");
  gs->add_option("--heatmap-y", grid.heatmap_y,
                 "the heatmap's y parameter (default: the key with the next most values)");

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

  // Ctrl-C while watching a cluster's grid search detaches (or cancels, --cancel-on-interrupt)
  // instead of killing knnctl; a second Ctrl-C quits at once. The waiter must exist before any
  // other thread (the pool's, gRPC's) so that they all inherit SIGINT blocked.
  client::CancelToken interrupt;
  std::optional<SigintWaiter> sigint;
  if (*gs && !coordinator.empty() && grid.cancel.empty() && !grid.list) {
    sigint.emplace([&interrupt](int count) {
      if (count == 1) {
        interrupt.Cancel();
      } else {
        std::_Exit(130);
      }
    });
  }

  client::ClientOptions connect;
  connect.address = coordinator;
  if (use_tls || !tls.root_ca_file.empty() || !tls.cert_file.empty() || !tls.key_file.empty() ||
      !tls.server_name.empty()) {
    connect.tls = tls;
  }
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(token_file);
    if (!token.ok()) {
      std::cerr << "knnctl: " << token.status().message() << "\n";
      return 2;
    }
    connect.token = *std::move(token);
  } else if (const char* env = std::getenv("KNNCLUSTER_TOKEN"); env != nullptr) {
    connect.token = std::string(absl::StripAsciiWhitespace(env));
  }

  ThreadPool pool(threads);
  std::unique_ptr<Engine> engine =
      coordinator.empty() ? MakeLocalEngine(&pool) : MakeClusterEngine(connect);
  ProgressPrinter printer(stdout, json                     ? ProgressPrinter::Style::kNone
                                  : isatty(STDOUT_FILENO) ? ProgressPrinter::Style::kBar
                                                          : ProgressPrinter::Style::kLines);
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
    for (const std::string& p : grid_params) grid.params.emplace_back("--param", p);
    const std::pair<const char*, std::string*> shorthands[] = {
        {"n_neighbors", &grid_k}, {"p", &grid_p}, {"weights", &grid_weights},
        {"algorithm", &grid_algorithm}, {"leaf_size", &grid_leaf}};
    for (const auto& [key, values] : shorthands) {
      if (values->empty()) continue;
      std::string flag = absl::StrCat("--", key);
      std::replace(flag.begin(), flag.end(), '_', '-');
      grid.params.emplace_back(flag, absl::StrCat(key, "=", *values));
    }
    grid.mode_set = mode->count() > 0;
    grid.program = argv[0];
    grid.coordinator = coordinator;
    out = RunGridSearch(engine.get(), data, grid,
                        [&printer](const GridSearchStatus& s) { printer.Update(s); }, &interrupt);
    printer.Finish();
  } else if (*tut) {
    out = RunTutorial(engine.get(), tutorial);
  } else if (*status) {
    out = RunClusterStatus(connect);
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
  return out->exit_code;
}

}  // namespace
}  // namespace knncluster::cli

int main(int argc, char** argv) { return knncluster::cli::Run(argc, argv); }
