"""Progress that suits where it runs.

On a terminal: tqdm bars (they vanish when done) and, when each one closes, one line with the stage's count and
duration. Anywhere else (cron, ``mlflow run``, CI logs), where ``\\r`` bar frames would fill the log: one line when a
stage starts, one per ~10 % with counts and rate, and one at its end with its duration. ``--no-progress`` shows
nothing. ``MUSICBENCH_PROGRESS=bars|lines`` overrides the choice (e.g. lines in a terminal that records its output).

Every bar in the harness is made here (``bar``), with tqdm's arguments, so a stage's progress reads the same wherever
it comes from; ``stage_done`` prints the duration of a stage that has no bar (retrieval).
"""

from __future__ import annotations

import os
import sys
import threading
import time

#: a line outside a terminal every this fraction of the total
LINE_STEP = 0.10


def _stream():
    return sys.stderr


def lines_mode() -> bool:
    """True when progress is written as lines: not a terminal (or ``MUSICBENCH_PROGRESS=lines``)."""
    chosen = os.environ.get("MUSICBENCH_PROGRESS", "").strip().lower()
    if chosen in ("bars", "lines"):
        return chosen == "lines"
    try:
        return not _stream().isatty()
    except (AttributeError, ValueError):
        return True


def _write(text: str) -> None:
    stream = _stream()
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):  # a closed stream must not fail the run
        pass


def _rate(count: float, seconds: float, unit: str) -> str:
    if seconds <= 0 or count <= 0:
        return ""
    rate = count / seconds
    return f", {rate:.1f} {unit}/s" if rate >= 1 else f", {seconds / count:.2f} s/{unit}"


class LineProgress:
    """tqdm's ``update``/``close`` interface, written as lines (thread-safe: callbacks of worker pools update it)."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, echo_start: bool = True):
        self.total, self.desc, self.unit = int(total or 0), desc, unit
        self.n = self.initial = int(initial or 0)
        self.started = time.perf_counter()
        self._lock = threading.Lock()
        self._next = self._step_after(self.n)
        self._closed = False
        if echo_start:
            cached = f" ({self.initial} already done)" if self.initial else ""
            _write(f"{self.desc}: {self.total} {self.unit}s{cached}")

    def _step_after(self, n: int) -> int:
        if self.total <= 0:
            return 1 << 62
        step = max(1, round(self.total * LINE_STEP))
        return (n // step + 1) * step

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            if self.n >= self._next and self.n < self.total:
                self._next = self._step_after(self.n)
                seconds = time.perf_counter() - self.started
                percent = 100.0 * self.n / self.total
                _write(
                    f"{self.desc}: {self.n}/{self.total} {self.unit}s ({percent:.0f} %)"
                    f"{_rate(self.n - self.initial, seconds, self.unit)}"
                )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _write(done_line(self.desc, self.n, self.total, self.unit, time.perf_counter() - self.started, self.initial))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def done_line(desc: str, n: int, total: int, unit: str, seconds: float, initial: int = 0) -> str:
    cached = f", {initial} already done" if initial else ""
    return f"{desc}: done, {n}/{total} {unit}s in {seconds:.1f} s{_rate(n - initial, seconds, unit)}{cached}"


class _Bar:
    """A tqdm bar (a terminal) that prints the stage's line with its duration when it closes."""

    def __init__(self, **kwargs):
        from tqdm.auto import tqdm

        self._bar = tqdm(**kwargs)
        self.started = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    @property
    def n(self) -> int:
        return self._bar.n

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        bar = self._bar
        bar.close()
        seconds = time.perf_counter() - self.started
        _write(done_line(bar.desc, bar.n, bar.total or bar.n, bar.unit, seconds, getattr(bar, "initial", 0)))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def bar(total: int, desc: str, unit: str = "it", disable: bool = False, initial: int = 0, leave: bool = False):
    """A progress bar for one stage: tqdm on a terminal, lines elsewhere, nothing when ``disable``."""
    if disable:
        return _Silent()
    if lines_mode():
        return LineProgress(total, desc, unit, initial)
    return _Bar(total=total, desc=desc, unit=unit, initial=initial, leave=leave)


def stage_done(name: str, seconds: float, enabled: bool = True, detail: str = "") -> None:
    """One line for a stage without a bar: its duration."""
    if enabled:
        _write(f"{name}: done in {seconds:.1f} s" + (f" ({detail})" if detail else ""))
