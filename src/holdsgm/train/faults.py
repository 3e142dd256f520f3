"""Test-only fault injection, driven by environment variables. Unset (the default), nothing happens.

The crash-safety tests run ``holdsgm train`` in a subprocess and use these to hit precise moments:

* ``HOLDSGM_TEST_KILL_AT="<point>[@k]"``: the process SIGKILLs itself the k-th time (default 1) it
  reaches ``<point>``. Points: ``step`` (after an optimiser step), ``ckpt:<file>:partial`` (half of a
  checkpoint file written to its temporary name), ``ckpt:<file>:written`` (file renamed into place),
  ``ckpt:before-manifest`` and ``ckpt:done``. ``<file>`` is ``model.safetensors``, ``ema.safetensors``,
  ``state.pt`` or ``manifest.json``; ``*`` matches any file.
* ``HOLDSGM_TEST_STEP_SLEEP=<seconds>``: sleep after every training step (to make random kill times
  land inside training).
* ``HOLDSGM_TEST_CKPT_SLEEP=<seconds>``: sleep in the middle of writing every checkpoint file.
* ``HOLDSGM_TEST_NAN_AT_STEP=<k>``: replace the training batch of step k (0-based) by NaN.
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

_counts: dict[str, int] = {}


def reached(point: str) -> None:
    """Called at named points; kills the process when ``HOLDSGM_TEST_KILL_AT`` says so."""
    spec = os.environ.get(KILL_AT)
    if not spec:
        return
    pattern, _, k = spec.partition("@")
    if not fnmatch.fnmatchcase(point, pattern):
        return
    _counts[pattern] = _counts.get(pattern, 0) + 1
    if _counts[pattern] == (int(k) if k else 1):
        os.kill(os.getpid(), signal.SIGKILL)


def float_env(name: str) -> float:
    try:
        return float(os.environ.get(name, "") or 0.0)
    except ValueError:
        return 0.0


def int_env(name: str) -> int | None:
    v = os.environ.get(name)
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return None


def ckpt_sleep() -> None:
    s = float_env(CKPT_SLEEP)
    if s > 0:
        time.sleep(s)
