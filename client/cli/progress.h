// How knnctl shows a grid search's progress: on a terminal a bar redrawn in place with '\r'
// (jobs done / total, elapsed, estimated time left); otherwise plain lines, one per change
// (state, jobs done, jobs re-queued), at most one per `min_interval` unless the state changes:
//   grid-search gs-0123456789ab: 5/15 jobs, 1.2 s elapsed, ~2.4 s left
// The formatting functions are pure; ProgressPrinter writes to a FILE and flushes each update.
//
// Thread safety: a ProgressPrinter is used by one thread at a time.
#ifndef KNNCLUSTER_CLIENT_CLI_PROGRESS_H_
#define KNNCLUSTER_CLIENT_CLI_PROGRESS_H_

#include <cstdio>
#include <functional>
#include <string>

#include "absl/time/time.h"
#include "client/cli/engine.h"

namespace knncluster::cli {

// "0.4 s", "12.3 s", "2m05s", "1h02m".
std::string FormatSeconds(double seconds);
// The plain line (no newline).
std::string ProgressLine(const GridSearchStatus& s);
// The bar (no '\r', no newline); `width` is the bar's inner width in characters.
std::string ProgressBar(const GridSearchStatus& s, int width);

class ProgressPrinter {
 public:
  enum class Style { kNone, kBar, kLines };
  // `now` may be null (absl::Now).
  ProgressPrinter(std::FILE* out, Style style, absl::Duration min_interval = absl::Seconds(0.5),
                  std::function<absl::Time()> now = nullptr);
  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

  void Update(const GridSearchStatus& s);
  // Ends the bar's line (so that what follows starts on a fresh one). Idempotent.
  void Finish();

 private:
  std::FILE* out_;
  Style style_;
  absl::Duration min_interval_;
  std::function<absl::Time()> now_;
  std::string last_key_;    // what the last printed line showed (state, jobs)
  std::string last_state_;
  absl::Time last_time_ = absl::InfinitePast();
  size_t bar_length_ = 0;   // characters of the bar on screen; 0: none
};

}  // namespace knncluster::cli

#endif  // KNNCLUSTER_CLIENT_CLI_PROGRESS_H_
