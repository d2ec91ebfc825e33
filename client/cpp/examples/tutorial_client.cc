// The digits tutorial through the C++ client library: upload scikit-learn's digits to a
// coordinator, split them there (test_size=0.2, random_state=1337), fit a 20-nearest-neighbours
// classifier on the training part, predict and score the test part.
//
//   tutorial_client [HOST:PORT]     (default: $KNNCLUSTER_ADDRESS)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "knncluster/client.h"

namespace kc = knncluster::client;

namespace {

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "tutorial_client: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("KNNCLUSTER_ADDRESS");
  kc::ClientOptions options;
  options.address = argc > 1 ? argv[1] : env != nullptr ? env : "";
  if (options.address.empty()) {
    std::fprintf(stderr, "usage: tutorial_client HOST:PORT (or set KNNCLUSTER_ADDRESS)\n");
    return 2;
  }
  auto client = kc::Client::Create(options);
  if (!client.ok()) return Fail("connect", client.status());
  kc::Client& c = **client;

  // Start afresh: remove what an earlier run left (a model keeps its training rows in use, and
  // split parts keep their dataset). NOT_FOUND is what a first run gets.
  const auto removed = [](const absl::Status& s) { return s.ok() || absl::IsNotFound(s); };
  if (absl::Status s = c.DeleteModel("tutorial-knn"); !removed(s)) return Fail("delete", s);
  for (const char* name : {"tutorial-digits.train", "tutorial-digits.test", "tutorial-digits"}) {
    if (absl::Status s = c.DeleteDataset(name); !removed(s)) return Fail("delete", s);
  }

  // The data: embedded in the library, uploaded under a name.
  auto digits = kc::LoadDigits();
  if (!digits.ok()) return Fail("load digits", digits.status());
  auto uploaded = c.UploadDataset("tutorial-digits", *digits);
  if (!uploaded.ok()) return Fail("upload", uploaded.status());
  std::printf("uploaded %s: %llu rows x %llu columns\n", uploaded->name.c_str(),
              static_cast<unsigned long long>(uploaded->rows),
              static_cast<unsigned long long>(uploaded->cols));

  // scikit-learn's train_test_split, on the coordinator: the parts are views of the upload.
  kc::SplitRequest split;
  split.dataset = uploaded->name;
  split.test_fraction = 0.2;
  split.random_state = 1337;
  split.train_name = "tutorial-digits.train";
  split.test_name = "tutorial-digits.test";
  split.return_indices = true;  // to check the predictions against our copy of the labels
  auto parts = c.SplitDataset(split);
  if (!parts.ok()) return Fail("split", parts.status());
  std::printf("split: %llu training rows, %llu test rows\n",
              static_cast<unsigned long long>(parts->train.rows),
              static_cast<unsigned long long>(parts->test.rows));

  // KNeighborsClassifier(n_neighbors=20), sharded over the workers.
  kc::FitRequest fit;
  fit.model = "tutorial-knn";
  fit.dataset = parts->train.name;
  fit.task = kc::Task::kClassifier;
  fit.params.n_neighbors = 20;
  auto model = c.Fit(fit);
  if (!model.ok()) return Fail("fit", model.status());
  std::printf("fitted %s: %s, n_neighbors=%d, algorithm=%s, %llu rows in %zu shards\n",
              model->name.c_str(), kc::TaskName(model->task).c_str(), model->params.n_neighbors,
              kc::AlgorithmName(model->params.algorithm).c_str(),
              static_cast<unsigned long long>(model->rows), model->shards.size());

  // Predict the test rows (named: they are on the coordinator already) and count the hits.
  auto predictions = c.Predict(model->name, kc::Queries::OfDataset(parts->test.name));
  if (!predictions.ok()) return Fail("predict", predictions.status());
  size_t correct = 0;
  for (size_t i = 0; i < parts->test_indices.size(); ++i) {
    correct += predictions->predictions[i] == digits->targets[parts->test_indices[i]];
  }
  std::printf("predicted %zu test rows: %zu correct\n", predictions->predictions.size(), correct);

  // The server's score of the same rows.
  auto score = c.Score(model->name, kc::Queries::OfDataset(parts->test.name));
  if (!score.ok()) return Fail("score", score.status());
  std::printf("test %s: %.17g (%llu of %llu)\n", score->metric.c_str(), score->score,
              static_cast<unsigned long long>(score->n_correct),
              static_cast<unsigned long long>(score->n_samples));

  // Rows can also travel with the call: the 3 nearest training rows of the first test row.
  const size_t row = static_cast<size_t>(parts->test_indices[0]);
  const absl::Span<const double> first(digits->features.data() + row * digits->cols, digits->cols);
  auto neighbors = c.KNeighbors(model->name, kc::Queries::Inline(digits->cols, first), 3);
  if (!neighbors.ok()) return Fail("kneighbors", neighbors.status());
  std::printf("nearest training rows of test row 0:");
  for (size_t j = 0; j < neighbors->k; ++j) {
    std::printf(" %lld (distance %.4f)", static_cast<long long>(neighbors->index(0, j)),
                neighbors->distance(0, j));
  }
  std::printf("\n");
  return 0;
}
