"""Small output helpers shared by the training CLI commands: JSON files, logging, output folders."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch


def jsonable(obj):
    """Plain JSON types for numbers/tensors/arrays/paths; non-finite floats become null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj) -> str:
    return json.dumps(jsonable(obj), indent=2)


def write_json(path, obj) -> Path:
    """Write ``obj`` as JSON atomically (parent folders created); OSError names the path."""
    from .checkpoint import atomic_write

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (dumps(obj) + "\n").encode())
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def make_out_dir(path) -> Path:
    """Create an output folder (and check it is writable); OSError naming it otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to output folder {path}: {e.strerror or e}") from None
    return path


def check_writable_file(path) -> Path:
    """Fail early (OSError naming ``path``) if ``path`` cannot be written; creates its parent folders."""
    path = Path(path)
    try:
        make_out_dir(path.parent)
    except OSError as e:
        raise OSError(f"cannot write {path}: {str(e).rsplit(': ', 1)[-1]}") from None
    if path.is_dir():
        raise OSError(f"cannot write {path}: it is a folder")
    return path


def setup_logging(quiet: bool = False) -> None:
    """Route holdsgm's log messages to stderr as plain lines (INFO, or WARNING when quiet)."""
    logger = logging.getLogger("holdsgm")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    if not any(getattr(h, "_holdsgm", False) for h in logger.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._holdsgm = True  # type: ignore[attr-defined]
        logger.addHandler(h)
