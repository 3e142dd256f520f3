"""What every benchmark records beside its numbers: a run's training budget, the commit, the machine."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def budget(run) -> dict:
    """Training steps and wall-clock minutes of a loaded run (its newest checkpoint); for a stage-two run also
    the stage-one run's."""
    from holdsgm.engine import load_checkpoint

    ck = load_checkpoint(run.path)
    b = {"steps": ck.step, "minutes": round(float(ck.state.get("elapsed", 0.0)) / 60, 1)}
    origin = ck.state.get("stage2_origin")
    if origin:  # stage two: the stage-one run's steps and minutes come first
        b.update(stage1_steps=origin["init_step"], stage1_minutes=round(origin["init_seconds"] / 60, 1))
    return b


def commit() -> str:
    """The repository's short commit hash ('' outside git), '+' when the working tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""
    return head + ("+" if head and dirty else "")


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch thread(s), "
            f"load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}")
