"""The run folder: making it, finding where a run resumes, and moving an old run aside (``restart``).

A run folder holds ``checkpoints/ckpt-<step>/`` (:mod:`holdsgm.engine.checkpoint`), the statistics log, the
config and TensorBoard files. Nothing here deletes anything: a folder whose checkpoints all fail to load is a
CheckpointError that says how to recover, and ``restart`` moves the old files to ``old-<time>/``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..errors import CheckpointError
from ..files import writable_dir
from .checkpoint import scan_checkpoints
from .stats import STATS_FILE

log = logging.getLogger("holdsgm.train")

#: ``restart`` moves a run's checkpoints and logs to ``RUN/<RESTART_PREFIX><time>/``
RESTART_PREFIX = "old-"
CONFIG_FILE = "config.yaml"


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run folder and check it is writable (one clear OSError otherwise)."""
    writable_dir(run_dir, "run folder")


def find_resume_point(run_dir: Path) -> Path | None:
    """The newest valid checkpoint of ``run_dir``, None when it holds none; CheckpointError when it holds
    checkpoints and none loads (nothing is changed then). Damaged ones are named in warnings."""
    found, broken = scan_checkpoints(run_dir)
    if found is None and broken:
        names = "; ".join(f"{p.name}: {_reason(r, p)}" for p, r in broken[:3])
        more = f" (and {len(broken) - 3} more)" if len(broken) > 3 else ""
        raise CheckpointError(
            f"run folder {run_dir} holds {len(broken)} checkpoint(s) and none can be loaded ({names}"
            f"{more}); nothing was changed. To start over and keep them, run again with --restart (they "
            f"are moved to {run_dir}/{RESTART_PREFIX}<time>/), or train into another --out folder")
    if found is None:
        return None
    step = int(found.name.split("-")[-1])
    for p, r in broken:
        if int(p.name.split("-")[-1]) > step:
            log.warning("checkpoint %s cannot be loaded (%s); resuming from %s: the run re-creates this step "
                        "and replaces the folder only then", p.name, _reason(r, p), found.name)
        else:
            log.warning("checkpoint %s cannot be loaded (%s); left in place", p.name, _reason(r, p))
    return found


def move_aside(run_dir: Path) -> Path:
    """Move a run's checkpoints, logs and config into ``run_dir/old-<time>/`` (``restart``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest, k = run_dir / f"{RESTART_PREFIX}{stamp}", 1
    while dest.exists():
        k += 1
        dest = run_dir / f"{RESTART_PREFIX}{stamp}-{k}"
    dest.mkdir()
    for name in ("checkpoints", STATS_FILE, CONFIG_FILE, "tb"):
        if (run_dir / name).exists():
            os.replace(run_dir / name, dest / name)
    return dest


def _reason(message: str, folder: Path) -> str:
    """A checkpoint error message without the folder's path (it is named beside it)."""
    return message.replace(f"checkpoint {folder} ", "").replace(f"{folder}{os.sep}", "")
