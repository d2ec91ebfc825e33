#include "core/model_selection/random_state.h"

#include <numeric>
#include <utility>

namespace knncluster {

RandomState RandomState::FromOptionalSeed(std::optional<uint32_t> random_state) {
  if (random_state.has_value()) return RandomState(*random_state);
  std::random_device device;
  return RandomState(static_cast<uint32_t>(device()));
}

uint64_t RandomState::NextUint64() {
  // NumPy writes `(uint64_t)mt19937_next(s) << 32 | mt19937_next(s)`; the compiled wheels
  // evaluate the left call first, which the parity test checks through randint.
  const uint64_t high = NextUint32();
  const uint64_t low = NextUint32();
  return (high << 32) | low;
}

uint64_t RandomState::RandomInterval(uint64_t max) {
  if (max == 0) return 0;
  // Smallest all-ones mask >= max.
  uint64_t mask = max;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  uint64_t value;
  if (max <= 0xffffffffULL) {
    while ((value = (NextUint32() & mask)) > max) {
    }
  } else {
    while ((value = (NextUint64() & mask)) > max) {
    }
  }
  return value;
}

void RandomState::Shuffle(absl::Span<int64_t> values) {
  for (size_t i = values.size(); i-- > 1;) {
    const uint64_t j = RandomInterval(i);
    std::swap(values[i], values[j]);
  }
}

std::vector<int64_t> RandomState::Permutation(int64_t n) {
  std::vector<int64_t> values(n > 0 ? static_cast<size_t>(n) : 0);
  std::iota(values.begin(), values.end(), int64_t{0});
  Shuffle(absl::MakeSpan(values));
  return values;
}

}  // namespace knncluster
