// RandomState: a bit-exact copy of the parts of NumPy's legacy np.random.RandomState(seed)
// (NumPy 1.24) that scikit-learn's splitters use: MT19937 seeded by init_genrand, the masked
// rejection sampler `random_interval`, and the Fisher-Yates `shuffle` / `permutation` built on it.
// Same seed, same calls => same numbers as NumPy, so splits match scikit-learn index for index.
//
// Ownership: a value type holding the 2.5 KB generator state; copy it to fork a stream.
// Thread-safety: not thread-safe; every draw mutates the state. Use one instance per thread.
#ifndef KNNCLUSTER_CORE_MODEL_SELECTION_RANDOM_STATE_H_
#define KNNCLUSTER_CORE_MODEL_SELECTION_RANDOM_STATE_H_

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "absl/types/span.h"

namespace knncluster {

class RandomState {
 public:
  // np.random.RandomState(seed) for an integer seed in [0, 2^32): NumPy's `_legacy_seeding`
  // calls mt19937_seed(seed), which is the reference init_genrand. std::mt19937's seeding
  // constructor is specified by the standard to be exactly that algorithm.
  explicit RandomState(uint32_t seed) : mt_(seed) {}

  // scikit-learn's check_random_state for the two forms we accept: a seed gives
  // RandomState(seed); nullopt (Python's None) gives a generator seeded from std::random_device,
  // i.e. a different stream on every call, as NumPy's global generator would be.
  static RandomState FromOptionalSeed(std::optional<uint32_t> random_state);

  // The next raw 32-bit MT19937 output (NumPy's next_uint32).
  uint32_t NextUint32() { return static_cast<uint32_t>(mt_()); }

  // NumPy's legacy next_uint64: two 32-bit outputs, the first one in the high half.
  uint64_t NextUint64();

  // NumPy's legacy random_interval(max): uniform in [0, max] by masked rejection sampling.
  // Masks 32-bit draws when max <= 0xffffffff, 64-bit draws otherwise; max == 0 draws nothing.
  uint64_t RandomInterval(uint64_t max);

  // RandomState.shuffle on a 1-d array: for i = n-1 down to 1, swap values[i] with
  // values[RandomInterval(i)]. Draws n-1 intervals (none for n <= 1).
  void Shuffle(absl::Span<int64_t> values);

  // RandomState.permutation(n) == shuffle(arange(n)). n <= 0 gives an empty vector (as arange).
  std::vector<int64_t> Permutation(int64_t n);

 private:
  std::mt19937 mt_;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_MODEL_SELECTION_RANDOM_STATE_H_
