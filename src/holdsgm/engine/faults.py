"""Test-only fault injection: a hook object the engine calls at named points, built from environment
variables by :meth:`Faults.from_env` (None, and nothing is called, when none is set).

The crash-safety tests run ``holdsgm train`` in a subprocess and use these to hit precise moments:

* ``HOLDSGM_TEST_KILL_AT="<point>[@k]"``: the process SIGKILLs itself the k-th time (default 1) it
  reaches ``<point>``. Points: ``step`` (after an optimiser step), ``ckpt:<file>:partial`` (half of a
  checkpoint file written to its temporary name), ``ckpt:<file>:written`` (file renamed into place),
  ``ckpt:before-manifest`` and ``ckpt:done``. ``<file>`` is ``model.safetensors``, ``ema.safetensors``,
  ``state.pt`` or ``manifest.json``; ``*`` matches any file.
* ``HOLDSGM_TEST_STEP_SLEEP=<seconds>``: sleep after every training step (to make random kill times
  land inside training).
* ``HOLDSGM_TEST_CKPT_SLEEP=<seconds>``: sleep in the middle of writing every checkpoint file.
* ``HOLDSGM_TEST_NAN_AT_STEP=<k>``: make the loss of step k (0-based) NaN.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import time

KILL_AT = "HOLDSGM_TEST_KILL_AT"
STEP_SLEEP = "HOLDSGM_TEST_STEP_SLEEP"
CKPT_SLEEP = "HOLDSGM_TEST_CKPT_SLEEP"
NAN_AT_STEP = "HOLDSGM_TEST_NAN_AT_STEP"


def _float(name: str) -> float:
    try:
        return float(os.environ.get(name, "") or 0.0)
    except ValueError:
        return 0.0


def _int(name: str) -> int | None:
    v = os.environ.get(name)
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return None


class Faults:
    """The fault points of one training process."""

    def __init__(self, kill_at: str = "", step_sleep: float = 0.0, ckpt_sleep: float = 0.0,
                 nan_at_step: int | None = None):
        self.kill_at, self.step_sleep, self.ckpt_sleep, self.nan_at_step = kill_at, step_sleep, ckpt_sleep, nan_at_step
        self._counts: dict[str, int] = {}

    @classmethod
    def from_env(cls) -> Faults | None:
        """The faults the environment asks for, or None (the normal case: no hook at all)."""
        f = cls(os.environ.get(KILL_AT, ""), _float(STEP_SLEEP), _float(CKPT_SLEEP), _int(NAN_AT_STEP))
        return f if (f.kill_at or f.step_sleep or f.ckpt_sleep or f.nan_at_step is not None) else None

    def reached(self, point: str) -> None:
        """SIGKILL this process the k-th time it reaches a point matching ``kill_at``."""
        if not self.kill_at:
            return
        pattern, _, k = self.kill_at.partition("@")
        if not fnmatch.fnmatchcase(point, pattern):
            return
        self._counts[pattern] = self._counts.get(pattern, 0) + 1
        if self._counts[pattern] == (int(k) if k else 1):
            os.kill(os.getpid(), signal.SIGKILL)

    def checkpoint_file(self, name: str, point: str) -> None:
        """A checkpoint file half written (``point='partial'``) or renamed into place (``'written'``)."""
        if point == "partial" and self.ckpt_sleep > 0:
            time.sleep(self.ckpt_sleep)
        self.reached(f"ckpt:{name}:{point}")

    def loss(self, step: int, loss):
        """The loss of step ``step``, NaN at ``nan_at_step``."""
        return loss * float("nan") if step == self.nan_at_step else loss

    def after_step(self) -> None:
        if self.step_sleep:
            time.sleep(self.step_sleep)
        self.reached("step")
