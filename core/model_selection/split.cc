#include "core/model_selection/split.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/model_selection/random_state.h"

namespace knncluster {
namespace {

std::string TestSizeString(const TestSize& test_size) {
  return test_size.is_fraction() ? absl::StrCat(test_size.fraction())
                                 : absl::StrCat(test_size.count());
}

// scikit-learn's _validate_shuffle_split(n_samples, test_size, train_size=None) -> n_test.
absl::StatusOr<int64_t> ValidateTestSize(int64_t n_samples, const TestSize& test_size) {
  if (n_samples < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_samples: must be non-negative, got ", n_samples));
  }
  // Written so that NaN fails too; scikit-learn lets NaN through to ceil(), which raises.
  const bool in_range = test_size.is_fraction()
                            ? (test_size.fraction() > 0 && test_size.fraction() < 1)
                            : (test_size.count() > 0 && test_size.count() < n_samples);
  if (!in_range) {
    return absl::InvalidArgumentError(
        absl::StrCat("test_size: must be in (0, 1) as a fraction or in [1, ", n_samples,
                     ") as a count, got ", TestSizeString(test_size)));
  }
  const int64_t n_test =
      test_size.is_fraction()
          ? static_cast<int64_t>(std::ceil(test_size.fraction() * static_cast<double>(n_samples)))
          : test_size.count();
  if (n_samples - n_test <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("test_size: with n_samples=", n_samples,
                                                   " and test_size=", TestSizeString(test_size),
                                                   " the resulting train set would be empty"));
  }
  return n_test;
}

// The checks _BaseKFold makes in __init__ and split(), in the same order.
absl::Status ValidateKFold(int64_t n_splits, bool shuffle,
                           const std::optional<uint32_t>& random_state, int64_t n_samples) {
  if (n_splits < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n_splits: k-fold cross-validation requires at least 2 splits, got ", n_splits));
  }
  if (!shuffle && random_state.has_value()) {
    return absl::InvalidArgumentError(
        "random_state: has no effect when shuffle is false; leave it unset or set shuffle");
  }
  if (n_splits > n_samples) {
    return absl::InvalidArgumentError(
        absl::StrCat("n_splits: cannot be greater than the number "
                     "of samples, got n_splits=",
                     n_splits, " with n_samples=", n_samples));
  }
  return absl::OkStatus();
}

// BaseCrossValidator.split for test masks given as a fold number per sample: test is
// where(fold == i), train the rest, both ascending.
std::vector<TrainTestIndices> SplitsFromFoldOfSample(absl::Span<const int64_t> fold_of_sample,
                                                     int64_t n_splits) {
  std::vector<TrainTestIndices> splits(static_cast<size_t>(n_splits));
  for (int64_t i = 0; i < n_splits; ++i) {
    TrainTestIndices& split = splits[static_cast<size_t>(i)];
    for (size_t s = 0; s < fold_of_sample.size(); ++s) {
      (fold_of_sample[s] == i ? split.test : split.train).push_back(static_cast<int64_t>(s));
    }
  }
  return splits;
}

}  // namespace

absl::StatusOr<TrainTestIndices> TrainTestSplit(int64_t n_samples, TestSize test_size,
                                                std::optional<uint32_t> random_state,
                                                bool shuffle) {
  KNN_ASSIGN_OR_RETURN(const int64_t n_test, ValidateTestSize(n_samples, test_size));
  const int64_t n_train = n_samples - n_test;
  std::vector<int64_t> order;
  if (shuffle) {
    // train_test_split re-validates (n_test, n_train) as counts in ShuffleSplit; they always pass.
    order = RandomState::FromOptionalSeed(random_state).Permutation(n_samples);
  } else {
    order.resize(static_cast<size_t>(n_samples));
    std::iota(order.begin(), order.end(), int64_t{0});
  }
  TrainTestIndices split;
  if (shuffle) {
    split.test.assign(order.begin(), order.begin() + n_test);
    split.train.assign(order.begin() + n_test, order.end());
  } else {
    split.train.assign(order.begin(), order.begin() + n_train);
    split.test.assign(order.begin() + n_train, order.end());
  }
  return split;
}

absl::StatusOr<std::vector<TrainTestIndices>> KFold::Split(int64_t n_samples) const {
  KNN_RETURN_IF_ERROR(ValidateKFold(n_splits_, shuffle_, random_state_, n_samples));
  std::vector<int64_t> indices(static_cast<size_t>(n_samples));
  std::iota(indices.begin(), indices.end(), int64_t{0});
  if (shuffle_) RandomState::FromOptionalSeed(random_state_).Shuffle(absl::MakeSpan(indices));

  // _iter_test_indices yields the slice indices[start:stop], but BaseCrossValidator.split turns
  // it into a mask, so scikit-learn returns both test and train in ascending index order.
  std::vector<int64_t> fold_of_sample(indices.size());
  int64_t start = 0;
  for (int64_t i = 0; i < n_splits_; ++i) {
    const int64_t fold_size = n_samples / n_splits_ + (i < n_samples % n_splits_ ? 1 : 0);
    for (int64_t p = start; p < start + fold_size; ++p) {
      fold_of_sample[static_cast<size_t>(indices[static_cast<size_t>(p)])] = i;
    }
    start += fold_size;
  }
  return SplitsFromFoldOfSample(fold_of_sample, n_splits_);
}

absl::StatusOr<std::vector<TrainTestIndices>> StratifiedKFold::Split(
    absl::Span<const int64_t> class_labels) const {
  const int64_t n_samples = static_cast<int64_t>(class_labels.size());
  KNN_RETURN_IF_ERROR(ValidateKFold(n_splits_, shuffle_, random_state_, n_samples));

  // np.unique + inverse, re-encoded by order of first appearance, as _make_test_folds does.
  absl::flat_hash_map<int64_t, int64_t> code_of_label;
  std::vector<std::vector<int64_t>> members;  // members[k]: samples of class k, ascending
  for (int64_t s = 0; s < n_samples; ++s) {
    auto [it, inserted] = code_of_label.try_emplace(class_labels[static_cast<size_t>(s)],
                                                    static_cast<int64_t>(members.size()));
    if (inserted) members.emplace_back();
    members[static_cast<size_t>(it->second)].push_back(s);
  }
  const size_t n_classes = members.size();
  size_t largest_class = 0;
  for (const auto& m : members) largest_class = std::max(largest_class, m.size());
  if (static_cast<int64_t>(largest_class) < n_splits_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n_splits: cannot be greater than the number of members in each class of class_labels, "
        "got n_splits=",
        n_splits_, " with at most ", largest_class, " members per class"));
  }

  // allocation[i][k] = bincount(sort(y_encoded)[i::n_splits])[k]. Class k occupies the
  // contiguous run [offset_k, offset_k + size_k) of the sorted codes.
  const size_t n_splits = static_cast<size_t>(n_splits_);
  std::vector<std::vector<int64_t>> allocation(n_splits, std::vector<int64_t>(n_classes, 0));
  size_t offset = 0;
  for (size_t k = 0; k < n_classes; ++k) {
    for (size_t p = offset; p < offset + members[k].size(); ++p) ++allocation[p % n_splits][k];
    offset += members[k].size();
  }

  // One generator for all classes, drawn from in class order (sklearn's single rng).
  std::optional<RandomState> rng;
  if (shuffle_) rng.emplace(RandomState::FromOptionalSeed(random_state_));
  std::vector<int64_t> fold_of_sample(static_cast<size_t>(n_samples));
  std::vector<int64_t> folds_for_class;
  for (size_t k = 0; k < n_classes; ++k) {
    folds_for_class.clear();
    for (size_t i = 0; i < n_splits; ++i) {
      folds_for_class.insert(folds_for_class.end(), static_cast<size_t>(allocation[i][k]),
                             static_cast<int64_t>(i));
    }
    if (rng.has_value()) rng->Shuffle(absl::MakeSpan(folds_for_class));
    for (size_t m = 0; m < members[k].size(); ++m) {
      fold_of_sample[static_cast<size_t>(members[k][m])] = folds_for_class[m];
    }
  }
  return SplitsFromFoldOfSample(fold_of_sample, n_splits_);
}

}  // namespace knncluster
