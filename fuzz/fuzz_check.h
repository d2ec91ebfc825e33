// FUZZ_CHECK: the fuzz targets' invariant check. A loader may refuse any input, but what it
// accepts must be self-consistent; a violated invariant aborts, which libFuzzer reports as a crash
// and saves the input. Harness code only (never linked into the libraries).
#ifndef KNNCLUSTER_FUZZ_FUZZ_CHECK_H_
#define KNNCLUSTER_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

#endif  // KNNCLUSTER_FUZZ_FUZZ_CHECK_H_
