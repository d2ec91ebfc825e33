#include "client/cli/progress.h"

#include <cstdio>
#include <cstdlib>

#include "gtest/gtest.h"

namespace knncluster::cli {
namespace {

GridSearchStatus Running(uint32_t done, double elapsed, double eta) {
  GridSearchStatus s;
  s.id = "gs-0123456789ab";
  s.state = "RUNNING";
  s.jobs_total = 15;
  s.jobs_done = done;
  s.elapsed_seconds = elapsed;
  s.eta_seconds = eta;
  return s;
}

TEST(ProgressTest, Lines) {
  EXPECT_EQ(FormatSeconds(1.23), "1.2 s");
  EXPECT_EQ(FormatSeconds(125), "2m05s");
  EXPECT_EQ(FormatSeconds(3725), "1h02m");
  EXPECT_EQ(FormatSeconds(-1), "0.0 s");
  EXPECT_EQ(ProgressLine(Running(5, 1.2, 2.4)),
            "grid-search gs-0123456789ab: 5/15 jobs, 1.2 s elapsed, ~2.4 s left");
  EXPECT_EQ(ProgressLine(Running(0, 0, -1)), "grid-search gs-0123456789ab: 0/15 jobs, 0.0 s elapsed");
  GridSearchStatus s = Running(15, 3.25, 0);
  s.jobs_requeued = 2;
  s.state = "SUCCEEDED";
  EXPECT_EQ(ProgressLine(s), "grid-search gs-0123456789ab: done, 15/15 jobs (2 re-queued) in 3.2 s");
  s.state = "FAILED";
  s.error = "UNAVAILABLE: no live worker";
  EXPECT_EQ(ProgressLine(s),
            "grid-search gs-0123456789ab: failed after 3.2 s: UNAVAILABLE: no live worker");
  EXPECT_EQ(ProgressBar(Running(5, 1.2, 2.4), 15),
            "gs-0123456789ab [#####..........]  33% 5/15 jobs, 1.2 s, ~2.4 s left");
  GridSearchStatus q = Running(0, 0.1, -1);
  q.state = "QUEUED";
  EXPECT_EQ(ProgressBar(q, 4), "gs-0123456789ab [....]   0% 0/15 jobs, 0.1 s, queued");
}

// Captures what a printer writes.
class Captured {
 public:
  Captured() : file_(std::tmpfile()) {}
  ~Captured() { std::fclose(file_); }
  std::FILE* file() { return file_; }
  std::string Text() {
    std::fflush(file_);
    std::rewind(file_);
    std::string s;
    int c;
    while ((c = std::fgetc(file_)) != EOF) s += static_cast<char>(c);
    return s;
  }

 private:
  std::FILE* file_;
};

TEST(ProgressTest, LinesOnePerChangeThrottled) {
  Captured out;
  absl::Time now = absl::UnixEpoch();
  ProgressPrinter p(out.file(), ProgressPrinter::Style::kLines, absl::Seconds(0.5),
                    [&] { return now; });
  p.Update(Running(0, 0, -1));           // printed (first)
  p.Update(Running(0, 0.25, -1));        // no change
  now += absl::Seconds(0.1);
  p.Update(Running(1, 0.35, 4));         // a change, but too soon
  now += absl::Seconds(0.5);
  p.Update(Running(1, 0.8, 4));          // the pending change, now printed
  p.Update(Running(1, 0.9, 4));          // no change
  GridSearchStatus done = Running(15, 1.0, 0);
  done.state = "SUCCEEDED";
  p.Update(done);                        // a state change: printed at once
  p.Finish();                            // nothing to end
  EXPECT_EQ(out.Text(),
            "grid-search gs-0123456789ab: 0/15 jobs, 0.0 s elapsed\n"
            "grid-search gs-0123456789ab: 1/15 jobs, 0.8 s elapsed, ~4.0 s left\n"
            "grid-search gs-0123456789ab: done, 15/15 jobs in 1.0 s\n");
}

TEST(ProgressTest, BarRedrawsInPlace) {
  Captured out;
  ProgressPrinter p(out.file(), ProgressPrinter::Style::kBar);
  p.Update(Running(5, 10.5, 21));
  p.Update(Running(6, 1, 2));  // shorter: padded over the old one
  p.Finish();
  p.Finish();
  const std::string a = ProgressBar(Running(5, 10.5, 21), 30);
  const std::string b = ProgressBar(Running(6, 1, 2), 30);
  ASSERT_GT(a.size(), b.size());
  EXPECT_EQ(out.Text(), "\r" + a + "\r" + b + std::string(a.size() - b.size(), ' ') + "\n");
}

TEST(ProgressTest, NoneWritesNothing) {
  Captured out;
  ProgressPrinter p(out.file(), ProgressPrinter::Style::kNone);
  p.Update(Running(5, 1, 1));
  p.Finish();
  EXPECT_EQ(out.Text(), "");
}

}  // namespace
}  // namespace knncluster::cli
