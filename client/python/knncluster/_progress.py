"""A one-line progress bar on a terminal, for long uploads and grid searches.

It draws only when its stream is a terminal (or KNNCLUSTER_PROGRESS=1 forces it; =0 turns it
off), and only once the work has run for ``delay`` seconds, so short calls print nothing.
Not thread-safe: one bar is driven by one thread.
"""
import os
import sys
import time

# Seconds of work before the bar shows (tests set it to 0).
DEFAULT_DELAY = 0.5


def _enabled(stream):
    forced = os.environ.get("KNNCLUSTER_PROGRESS", "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed stream
        return False


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds >= 3600:
        return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)
    return "%d:%02d" % (seconds // 60, seconds % 60)


class Progress:
    """``with Progress("upload", total, unit="MB") as bar: bar.update(done)``."""

    WIDTH = 28

    def __init__(self, desc, total, unit="", stream=None, delay=None, scale=1.0):
        self.desc = desc
        self.total = total
        self.unit = unit
        self.scale = scale  # shown values are done / scale (e.g. bytes -> MB)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _enabled(self.stream)
        self.delay = DEFAULT_DELAY if delay is None else delay
        self.start = time.monotonic()
        self.drawn = False
        self.done = 0
        self.extra = ""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(success=exc_type is None)
        return False

    def update(self, done, total=None, extra=None):
        """Sets the amount done (not an increment), and optionally the total and a suffix."""
        self.done = done
        if total is not None:
            self.total = total
        if extra is not None:
            self.extra = extra
        if self.enabled and time.monotonic() - self.start >= self.delay:
            self._draw()

    def _draw(self):
        total = self.total or 0
        frac = min(1.0, self.done / total) if total else 0.0
        filled = int(frac * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        fmt = (lambda v: "%.1f" % (v / self.scale)) if self.scale != 1.0 else str
        line = "%s [%s] %3d%% %s/%s%s %s" % (
            self.desc, bar, int(frac * 100), fmt(self.done), fmt(total),
            (" " + self.unit) if self.unit else "", _duration(time.monotonic() - self.start))
        if self.extra:
            line += " " + self.extra
        self.stream.write("\r" + line.ljust(79) + "\r" if len(line) < 79 else "\r" + line + "\r")
        self.stream.flush()
        self.drawn = True

    def close(self, success=True):
        """Ends the line (drawing a last, full state when the bar was shown)."""
        if self.drawn:
            if success and self.total:
                self.done = self.total
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
