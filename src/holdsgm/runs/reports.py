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

from ..files import atomic_write, writable_dir


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
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (dumps(obj) + "\n").encode())
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def make_out_dir(path) -> Path:
    """Create an output folder (and check it is writable); OSError naming it otherwise."""
    return writable_dir(path, "output folder")


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


def save_image_files(x, folder, data_range=(-1.0, 1.0)) -> Path:
    """One PNG per image of ``x`` (N, C, H, W) in ``folder`` (``000000.png``, ...), 8-bit, mapped from
    ``data_range`` (what FID tools read). Written into a temporary folder beside it, then renamed into place
    (an older ``folder`` of this command's output is replaced only then), so an interrupted run leaves no
    partial set. Returns the folder."""
    import shutil

    from PIL import Image

    folder = Path(folder)
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"--save-images needs images (N, 1 or 3, H, W), got shape {tuple(a.shape)}")
    lo, hi = data_range if data_range is not None else (float(a.min()), float(a.max()))
    u8 = np.clip(np.rint((a - lo) / max(hi - lo, 1e-12) * 255), 0, 255).astype(np.uint8)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        width = max(6, len(str(len(u8) - 1)))
        for i, img in enumerate(u8):
            im = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
            im.save(tmp / f"{i:0{width}d}.png")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
