// Train/test splits and k-fold cross-validation that reproduce scikit-learn 1.2.1 index for
// index: TrainTestSplit (train_test_split / ShuffleSplit), KFold and StratifiedKFold. With the
// same integer random_state they return exactly the arrays scikit-learn returns, in the same
// order, because they draw from RandomState (a bit-exact numpy.random.RandomState) in the same
// sequence. random_state == nullopt is scikit-learn's None: a fresh, non-reproducible seed.
//
// Ownership: every result is returned by value. Splitters are small immutable values.
// Thread-safety: the functions are pure given a seed; Split() is const and may be called
// concurrently (each call builds its own RandomState, as scikit-learn's check_random_state does
// for an integer seed, so repeated calls with a seed return identical splits).
//
// Not supported (yet): train_size in TrainTestSplit, stratify= in TrainTestSplit, a shared
// RandomState object as random_state. scikit-learn's UserWarning "The least populated class in y
// has only x members, which is less than n_splits" has no counterpart (libraries do not log);
// the split itself is unaffected.
#ifndef KNNCLUSTER_CORE_MODEL_SELECTION_SPLIT_H_
#define KNNCLUSTER_CORE_MODEL_SELECTION_SPLIT_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace knncluster {

// Row indices of one split, in the order scikit-learn returns them: ascending for KFold and
// StratifiedKFold, permutation order for a shuffled TrainTestSplit.
struct TrainTestIndices {
  std::vector<int64_t> train;
  std::vector<int64_t> test;
};

// scikit-learn's test_size: a Python float is a fraction of the samples, a Python int a count.
class TestSize {
 public:
  // REQUIRES (checked by TrainTestSplit): 0 < fraction < 1.
  static TestSize Fraction(double fraction) { return TestSize(true, fraction, 0); }
  // REQUIRES (checked by TrainTestSplit): 1 <= count < n_samples.
  static TestSize Count(int64_t count) { return TestSize(false, 0.0, count); }

  bool is_fraction() const { return is_fraction_; }
  double fraction() const { return fraction_; }
  int64_t count() const { return count_; }

 private:
  TestSize(bool is_fraction, double fraction, int64_t count)
      : is_fraction_(is_fraction), fraction_(fraction), count_(count) {}

  bool is_fraction_;
  double fraction_;
  int64_t count_;
};

// train_test_split(arange(n_samples), test_size=..., random_state=..., shuffle=...).
// Sizes follow _validate_shuffle_split: n_test = ceil(fraction * n_samples) or the count, and
// n_train = n_samples - n_test. With shuffle, perm = RandomState(seed).permutation(n_samples),
// test = perm[:n_test], train = perm[n_test:]. Without shuffle, train = [0, n_train) and
// test = [n_train, n_samples), and random_state is ignored (as in scikit-learn).
// Errors (InvalidArgument): n_samples < 0; test_size out of range; an empty train set.
absl::StatusOr<TrainTestIndices> TrainTestSplit(int64_t n_samples, TestSize test_size,
                                                std::optional<uint32_t> random_state,
                                                bool shuffle = true);

// sklearn.model_selection.KFold. Fold sizes are n // k + 1 for the first n % k folds and n // k
// for the rest; with shuffle, the index array is shuffled once before it is cut into folds.
// Each fold's test set is the samples in one contiguous slice of the (possibly shuffled)
// indices; scikit-learn returns it through a boolean mask, so test and train are both ascending.
class KFold {
 public:
  explicit KFold(int64_t n_splits, bool shuffle = false,
                 std::optional<uint32_t> random_state = std::nullopt)
      : n_splits_(n_splits), shuffle_(shuffle), random_state_(random_state) {}

  // Errors (InvalidArgument): n_splits < 2; random_state set while shuffle is false (scikit-learn
  // raises: it would have no effect); n_splits > n_samples.
  absl::StatusOr<std::vector<TrainTestIndices>> Split(int64_t n_samples) const;

  int64_t n_splits() const { return n_splits_; }

 private:
  int64_t n_splits_;
  bool shuffle_;
  std::optional<uint32_t> random_state_;
};

// sklearn.model_selection.StratifiedKFold (_make_test_folds of 1.2). Classes are numbered by
// first appearance in class_labels; each class's members are dealt to folds in contiguous blocks
// sized by a round robin over the sorted labels, and with shuffle each class's block pattern is
// shuffled (one RandomState, classes in first-appearance order). Both train and test are
// ascending.
class StratifiedKFold {
 public:
  explicit StratifiedKFold(int64_t n_splits, bool shuffle = false,
                           std::optional<uint32_t> random_state = std::nullopt)
      : n_splits_(n_splits), shuffle_(shuffle), random_state_(random_state) {}

  // class_labels[i] is the class of sample i (any int64 codes).
  // Errors (InvalidArgument): as KFold::Split with n_samples = class_labels.size(), and
  // n_splits greater than the size of every class.
  absl::StatusOr<std::vector<TrainTestIndices>> Split(absl::Span<const int64_t> class_labels) const;

  int64_t n_splits() const { return n_splits_; }

 private:
  int64_t n_splits_;
  bool shuffle_;
  std::optional<uint32_t> random_state_;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_MODEL_SELECTION_SPLIT_H_
