// knnctl's spelling of a grid search: parameter values on the command line and the `cv` option.
//   --param n_neighbors=2:20:2     numpy's arange(start, stop[, step]): 2, 4, ..., 18
//   --param p=1:4                  arange(1, 4) = 1, 2, 3 (p takes non-integers: 1:2:0.25)
//   --param p=1,2,inf              a list; items may mix values and ranges: 1:3,5,inf
//   --param weights=uniform,distance   --param algorithm=kd_tree,brute   --param leaf_size=10:50:10
//   --grid "n_neighbors=1:10;p=1,2"    a whole grid, KEY=VALUES items separated by ';'
//   --cv 5 | --cv folds.json        a number of folds or explicit folds: a JSON list of
//                                   {"train": [...], "test": [...]} (or [train, test] pairs)
// Errors are InvalidArgument naming the flag and the key ("--param n_neighbors: \"x\" is not an
// integer").
// Thread-safe: pure functions (ParseCv reads a file).
#ifndef KNNCLUSTER_CLIENT_CLI_PARAM_SPEC_H_
#define KNNCLUSTER_CLIENT_CLI_PARAM_SPEC_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model_selection/grid_search.h"
#include "core/model_selection/split.h"

namespace knncluster::cli {

// The most values one key may take (an arange typo should not allocate a billion candidates).
inline constexpr size_t kMaxParamValues = 100000;

// numpy.arange over integers and over doubles (numpy's float arange: ceil((stop - start) / step)
// values start + i * ((start + step) - start)). `label` names the flag in errors.
absl::StatusOr<std::vector<int>> ArangeInt(const std::string& label, long long start,
                                           long long stop, long long step);
absl::StatusOr<std::vector<double>> ArangeDouble(const std::string& label, double start,
                                                 double stop, double step);

// Sets `key` of `grid` from `values` (a list of values and ranges, see above). `label` prefixes
// errors ("--param p", "--n-neighbors"). InvalidArgument when the key is already set in `grid`.
absl::Status SetParamValues(const std::string& label, const std::string& key,
                            const std::string& values, ParamGrid* grid);

// "KEY=VALUES" into `grid`; `flag` is the option it came from ("--param").
absl::Status ParseParamAssignment(const std::string& flag, const std::string& assignment,
                                  ParamGrid* grid);

// "KEY=VALUES;KEY=VALUES" as one grid.
absl::StatusOr<ParamGrid> ParseGridSpec(const std::string& flag, const std::string& text);

// The keys a grid sets, in scikit-learn's (sorted) order.
std::vector<std::string> GridKeys(const ParamGrid& grid);

struct CvSpec {
  int n_splits = 5;                     // when folds is empty
  std::vector<TrainTestIndices> folds;  // explicit folds
};
// "5" (>= 2) or a JSON file of folds.
absl::StatusOr<CvSpec> ParseCv(const std::string& text);

}  // namespace knncluster::cli

#endif  // KNNCLUSTER_CLIENT_CLI_PARAM_SPEC_H_
