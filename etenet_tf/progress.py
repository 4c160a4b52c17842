"""Progress of long work on stderr: a bar with count, rate and ETA, or one
summary line.

On a terminal, `Progress` draws one line in the style of Keras' `Progbar`
(the training stages' bar): `caption  120/1000 ━━━━━━━━━━━━ 12% 3.4 videos/s
ETA 0:04:19`, redrawn at most every `interval` seconds. When stderr is not a
terminal (a log file, a pipe, a batch system), or with `--noprogress`,
nothing is drawn and `finish` prints the one summary line alone, so logs
get one line per stage instead of thousands of carriage returns.

Results printed while a bar is shown go through `Progress.print`, which
clears the bar, prints the line (stdout or stderr) and draws the bar again
below it.
"""

import shutil
import sys
import time

_DONE_COLOUR, _TODO_COLOUR, _RESET = "\x1b[32m", "\x1b[37m", "\x1b[0m"


def is_terminal(stream):
    """Whether `stream` is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


def format_duration(seconds):
    """`0:04:19` (hours:minutes:seconds)."""
    seconds = int(round(max(seconds, 0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Count, rate and ETA of `total` items on stderr.

    Args:
        label: what is running, first on the line (e.g. `caption`).
        total: items to do in all (None: unknown, no ETA).
        unit: what an item is, for the rate (`videos`).
        done: items already done before this run (a resumed run); the rate
            and ETA count only the items done by this run.
        show: draw a bar (False: `--noprogress`); never drawn when `stream`
            is not a terminal.
        stream: where the bar goes (default: `sys.stderr` at call time).
        interval: least seconds between two redraws.
    """

    def __init__(self, label, total, *, unit="videos", done=0, show=True, stream=None,
                 interval=0.2):
        self.label, self.total, self.unit = label, total, unit
        self.done = self.initial = done
        self.stream = stream or sys.stderr
        self.live = bool(show) and is_terminal(self.stream)
        self.interval = interval
        self.start = time.monotonic()
        self._drawn_at = None
        self._shown = False
        self._draw()

    @property
    def elapsed(self):
        return time.monotonic() - self.start

    @property
    def rate(self):
        """Items per second done by this run (0 before the first)."""
        elapsed = self.elapsed
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def advance(self, count=1):
        """`count` more items are done."""
        self.done += count
        finished = self.total is not None and self.done >= self.total
        if finished or self._drawn_at is None or \
                time.monotonic() - self._drawn_at >= self.interval:
            self._draw()

    def line(self, width=None):
        """The bar's text without colours, at most `width` characters wide."""
        return self._line(width, colour=False)

    def _line(self, width=None, colour=True):
        width = width or shutil.get_terminal_size((100, 24)).columns
        rate = self.rate
        head, tail = [self.label], []
        cells = 0
        if self.total:
            digits = len(str(self.total))
            head.append(f"{self.done:>{digits}}/{self.total}")
            share = min(self.done / self.total, 1.0)
            tail.append(f"{share:4.0%}")
        else:
            head.append(f"{self.done} {self.unit}")
        tail.append(f"{rate:.2f} {self.unit}/s" if rate else f"- {self.unit}/s")
        if self.total is not None and self.done < self.total:
            left = (self.total - self.done) / rate if rate else None
            tail.append(f"ETA {format_duration(left)}" if left is not None else "ETA -")
        elif self.done > self.initial:
            tail.append(f"in {format_duration(self.elapsed)}")
        text = " ".join(head + tail)
        if self.total:  # a bar of up to 30 cells in the room left (none on a narrow screen)
            cells = min(30, width - 2 - len(text))
        if cells < 10:
            return text[: max(width - 1, 20)]
        full = int(min(self.done / self.total, 1.0) * cells)
        bar = (f"{_DONE_COLOUR}{'━' * full}{_TODO_COLOUR}{'━' * (cells - full)}{_RESET}"
               if colour else "━" * full + "─" * (cells - full))
        return " ".join(head + [bar] + tail)

    def _draw(self):
        if not self.live:
            return
        self._drawn_at = time.monotonic()
        self.stream.write("\r" + self._line() + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def clear(self):
        """Removes the bar from the screen (it comes back on the next draw)."""
        if self.live and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def print(self, text, file=None):
        """Prints a line (on stdout by default) without tearing the bar."""
        self.clear()
        file = file or sys.stdout
        print(text, file=file, flush=True)
        if self.live:
            self._draw()

    def finish(self, summary=None):
        """Ends the bar's line and prints `summary` (a line) on stderr."""
        if self.live and self._shown:
            self._draw()  # the final count
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
        if summary:
            print(summary, file=self.stream, flush=True)

    def abandon(self):
        """Ends the bar's line (on an error or Ctrl-C) so the next line starts clean."""
        if self.live and self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None:
            self.abandon()
