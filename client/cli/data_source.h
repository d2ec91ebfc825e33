// Where a knnctl command takes its rows from: a built-in dataset (--dataset digits) or a file
// (--data FILE.csv|FILE.npy, --label-column), optionally narrowed to the train or test part of a
// scikit-learn-identical train_test_split (--split train|test, --test-size, --random-state).
// Thread-safe: plain functions.
#ifndef KNNCLUSTER_CLIENT_CLI_DATA_SOURCE_H_
#define KNNCLUSTER_CLIENT_CLI_DATA_SOURCE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/datasets/dataset.h"
#include "core/model_selection/split.h"

namespace knncluster::cli {

struct DataSourceOptions {
  std::string dataset;       // built-in name, or empty
  std::string data_file;     // .csv or .npy path, or empty
  std::string label_column;  // index ("-1" = last), header name, or "none"; empty = default
  std::string labels_file;   // .npy labels for an .npy data file, or empty
  std::string split = "all"; // all | train | test
  std::string test_size = "0.25";
  std::optional<uint32_t> random_state;
  bool shuffle = true;
};

// "0.2" is a fraction, "360" a count (scikit-learn's float / int distinction).
absl::StatusOr<TestSize> ParseTestSize(const std::string& text);

// Loads the whole dataset named by the options (ignores the split).
absl::StatusOr<Dataset> LoadSource(const DataSourceOptions& options);

// The train/test split the options describe, over n rows.
absl::StatusOr<TrainTestIndices> SplitFor(const DataSourceOptions& options, int64_t n);

// The rows the options select: the whole dataset, or its train or test part (rows in
// scikit-learn's order, so row i of the result is training index i).
absl::StatusOr<Dataset> LoadSelection(const DataSourceOptions& options);

// The rows `rows` of `d`, in that order.
Dataset Subset(const Dataset& d, const std::vector<int64_t>& rows);

}  // namespace knncluster::cli

#endif  // KNNCLUSTER_CLIENT_CLI_DATA_SOURCE_H_
