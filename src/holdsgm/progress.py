"""Progress on stderr for work that takes more than a few seconds: a tqdm bar on a terminal, plain lines
(at most one every ``interval`` seconds, and one at the end) when stderr is a file or a pipe, nothing when
disabled. Results go to stdout; progress never does.

    with progress(total=200, desc="sampling", unit="NFE") as bar:
        ...; bar.update(1)
"""

from __future__ import annotations

import sys
import time

#: seconds between two plain progress lines when stderr is not a terminal ($HOLDSGM_PROGRESS_INTERVAL)
LINE_INTERVAL = 10.0


def _interval() -> float:
    import os

    try:
        return float(os.environ.get("HOLDSGM_PROGRESS_INTERVAL", LINE_INTERVAL))
    except ValueError:
        return LINE_INTERVAL


class _Lines:
    """The plain-line stand-in for a tqdm bar (same ``update`` / ``set_postfix`` / ``close`` calls)."""

    def __init__(self, total: float | None, desc: str, unit: str, interval: float, stream):
        self.total, self.desc, self.unit, self.interval, self.stream = total, desc, unit, interval, stream
        self.n: float = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False

    def update(self, k: float = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str, refresh: bool = False) -> None:
        self.desc = desc

    def _line(self, now: float) -> None:
        done = f"{self.n:g}" + (f"/{self.total:g} {self.unit} ({100 * self.n / self.total:.0f}%)"
                                if self.total else f" {self.unit}")
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done}, {now - self.start:.0f} s{extra}", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.n:
                self._line(time.monotonic())

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Off(_Lines):
    """Progress switched off: the same calls, no output."""

    def __init__(self):
        super().__init__(None, "", "", float("inf"), None)

    def _line(self, now: float) -> None:
        pass


def progress(total: float | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
             interval: float | None = None, leave: bool = True):
    """A progress indicator on stderr: tqdm on a terminal, plain lines otherwise, silent when not ``enabled``."""
    if not enabled:
        return _Off()
    stream = sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, leave=leave)
    return _Lines(total, desc, unit, _interval() if interval is None else interval, stream)


def ticking(fn, bar):
    """``fn`` that advances ``bar`` by one at every call (e.g. a score function: progress in NFE)."""
    def call(*args, **kwargs):
        out = fn(*args, **kwargs)
        bar.update(1)
        return out

    return call
