#include "client/cli/progress.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace knncluster::cli {

std::string FormatSeconds(double seconds) {
  if (!(seconds >= 0)) seconds = 0;
  if (seconds < 60) return absl::StrFormat("%.1f s", seconds);
  const auto s = static_cast<long long>(std::llround(seconds));
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

namespace {

std::string Jobs(const GridSearchStatus& s) {
  std::string t = absl::StrFormat("%d/%d jobs", s.jobs_done, s.jobs_total);
  if (s.jobs_requeued > 0) absl::StrAppendFormat(&t, " (%d re-queued)", s.jobs_requeued);
  return t;
}

std::string Left(const GridSearchStatus& s) {
  return s.eta_seconds >= 0 ? absl::StrCat(", ~", FormatSeconds(s.eta_seconds), " left") : "";
}

}  // namespace

std::string ProgressLine(const GridSearchStatus& s) {
  const std::string head = absl::StrCat("grid-search ", s.id, ": ");
  const std::string elapsed = FormatSeconds(s.elapsed_seconds);
  if (s.state == "QUEUED") return absl::StrCat(head, "queued, ", Jobs(s), ", ", elapsed, " elapsed");
  if (s.state == "REFITTING") {
    return absl::StrCat(head, Jobs(s), ", refitting the best candidate, ", elapsed, " elapsed");
  }
  if (s.state == "SUCCEEDED") return absl::StrCat(head, "done, ", Jobs(s), " in ", elapsed);
  if (s.state == "FAILED") return absl::StrCat(head, "failed after ", elapsed, ": ", s.error);
  if (s.state == "CANCELLED") {
    return absl::StrCat(head, "cancelled, ", Jobs(s), ", ", elapsed, " elapsed");
  }
  return absl::StrCat(head, Jobs(s), ", ", elapsed, " elapsed", Left(s));
}

std::string ProgressBar(const GridSearchStatus& s, int width) {
  width = std::max(width, 1);
  const double fraction =
      s.jobs_total == 0 ? 0.0 : std::min(1.0, static_cast<double>(s.jobs_done) / s.jobs_total);
  const int filled = static_cast<int>(std::floor(fraction * width));
  std::string bar = absl::StrCat(s.id, " [", std::string(filled, '#'),
                                 std::string(width - filled, '.'), "] ",
                                 absl::StrFormat("%3.0f%% ", 100 * fraction), Jobs(s), ", ",
                                 FormatSeconds(s.elapsed_seconds));
  if (s.state == "RUNNING") {
    absl::StrAppend(&bar, s.eta_seconds >= 0 ? absl::StrCat(", ~", FormatSeconds(s.eta_seconds),
                                                            " left")
                                             : "");
  } else {
    absl::StrAppend(&bar, ", ", absl::AsciiStrToLower(s.state));
  }
  return bar;
}

ProgressPrinter::ProgressPrinter(std::FILE* out, Style style, absl::Duration min_interval,
                                 std::function<absl::Time()> now)
    : out_(out), style_(style), min_interval_(min_interval), now_(std::move(now)) {
  if (!now_) now_ = [] { return absl::Now(); };
}

void ProgressPrinter::Update(const GridSearchStatus& s) {
  if (style_ == Style::kNone) return;
  if (style_ == Style::kBar) {
    const std::string bar = ProgressBar(s, 30);
    // Blank out what a longer previous bar left behind.
    const std::string pad(bar_length_ > bar.size() ? bar_length_ - bar.size() : 0, ' ');
    std::fprintf(out_, "\r%s%s", bar.c_str(), pad.c_str());
    std::fflush(out_);
    bar_length_ = std::max<size_t>(bar.size(), 1);
    return;
  }
  const std::string key = absl::StrCat(s.id, " ", s.state, " ", s.jobs_done, "/", s.jobs_total,
                                       " ", s.jobs_requeued);
  if (key == last_key_) return;
  const absl::Time now = now_();
  const bool state_changed = s.state != last_state_;
  if (!state_changed && now - last_time_ < min_interval_) return;  // later events carry it
  std::fprintf(out_, "%s\n", ProgressLine(s).c_str());
  std::fflush(out_);
  last_key_ = key;
  last_state_ = s.state;
  last_time_ = now;
}

void ProgressPrinter::Finish() {
  if (bar_length_ == 0) return;
  std::fputs("\n", out_);
  std::fflush(out_);
  bar_length_ = 0;
}

}  // namespace knncluster::cli
