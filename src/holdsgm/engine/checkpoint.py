"""Crash-safe checkpoint files: writing, verifying, finding, pruning and reading them (the loaders of a
trained run, which build its network and SDE from a checkpoint, are :mod:`holdsgm.runs.loading`).

A checkpoint is a folder ``RUN/checkpoints/ckpt-<step:08d>/`` holding

* ``model.safetensors``, ``ema.safetensors``: the network's and the EMA's weights (safetensors: no code);
* ``state.pt``: everything else (optimizer state, step, RNG states, batch-sampler state, the resolved
  config, the SDE's dict, the network's kind + config, data-set info), written with ``torch.save`` and
  read only with ``torch.load(weights_only=True)``, which refuses any pickled object other than tensors
  and plain containers, so loading never executes code;
* ``manifest.json``: the byte size and sha256 of each of the files above, written last.

Every file is written atomically (temporary file in the same folder, flush + fsync, ``os.replace``,
fsync of the folder), and a checkpoint counts only once its manifest exists and matches the files. A
process killed at any moment therefore leaves the previous checkpoints intact, and at worst an
incomplete folder that loaders skip with a warning (as EDM2's training loop keeps its last snapshot).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..files import atomic_write, fsync_dir

log = logging.getLogger("holdsgm.train")

FORMAT = "holdsgm-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHT_FILES = {"model": "model.safetensors", "ema": "ema.safetensors"}
STATE_FILE = "state.pt"
CKPT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^ckpt-(\d+)$")


# ---------------------------------------------------------------------- atomic files


def _checkpoint_hook(name: str, hooks) -> Callable[[str], None] | None:
    """The crash-safety tests' hook for one checkpoint file (None outside those tests)."""
    if hooks is None:
        return None
    return lambda point: hooks.checkpoint_file(name, point)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- writing


def _tensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    return save(clean, metadata=metadata)


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"ckpt-{step:08d}"


def save_checkpoint(run_dir, step: int, model_state: dict, ema_state: dict, state: dict, hooks=None) -> Path:
    """Write checkpoint ``step`` of ``run_dir`` (see the module docstring), verify it, and return its folder.

    If a complete checkpoint of this step already exists it is kept as it is (re-writing it in place
    would leave no valid copy if the process died half-way). A folder of this step that does not verify
    (an interrupted write, or damage) is replaced only after the new checkpoint is written and verified
    beside it, so nothing is lost if this process dies at any moment. ``hooks``: the crash-safety tests'
    fault points (:class:`~holdsgm.engine.faults.Faults`), None otherwise.
    """
    path = checkpoint_dir(Path(run_dir), step)
    target, old = path, None
    if path.exists():
        try:
            verify_checkpoint(path)
            return path
        except CheckpointError:
            target, old = path.with_name(f".{path.name}.tmp-{os.getpid()}"), path
            if target.exists():
                shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob(".*.tmp-*"):  # left by a writer that was killed mid-file
        stale.unlink(missing_ok=True)
    meta = {"format": FORMAT, "step": str(step)}
    blobs = {
        WEIGHT_FILES["model"]: _tensors_bytes(model_state, meta),
        WEIGHT_FILES["ema"]: _tensors_bytes(ema_state, meta),
        STATE_FILE: _torch_bytes(state),
    }
    for name, data in blobs.items():
        atomic_write(target / name, data, _checkpoint_hook(name, hooks))
    if hooks is not None:
        hooks.reached("ckpt:before-manifest")
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "time": time.time(),
        "files": {
            name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in blobs.items()
        },
    }
    atomic_write(target / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode(), _checkpoint_hook(MANIFEST, hooks))
    verify_checkpoint(target)  # read back: what is on disk is what was meant
    if old is not None:  # swap the verified new folder in, then drop the one it replaces
        aside = old.with_name(f".{old.name}.replaced-{os.getpid()}")
        os.replace(old, aside)
        os.replace(target, path)
        fsync_dir(path.parent)
        shutil.rmtree(aside, ignore_errors=True)
    if hooks is not None:
        hooks.reached("ckpt:done")
    return path


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, folder) of every ``ckpt-*`` folder of a run, complete or not, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def prune_checkpoints(run_dir, keep: int, newest: Path) -> list[Path]:
    """Keep the newest ``keep`` valid checkpoints; remove older valid ones. Returns the removed folders.

    ``newest`` is the checkpoint this process has just written and verified (:func:`save_checkpoint` reads
    it back); only checkpoints older than it that verify are ever removed. Folders that do not (incomplete
    or damaged) are left where they are for the user to inspect. The manifest goes first, so a crash during
    removal leaves an incomplete (skipped) folder, never a half-deleted one that looks valid.
    """
    ckpts = [(s, p) for s, p in list_checkpoints(run_dir) if p != Path(newest)]
    m = _CKPT_RE.match(Path(newest).name)
    if m is None:
        raise ValueError(f"{newest} is not a checkpoint folder (ckpt-<step>)")
    newest_step = int(m.group(1))
    older = [p for s, p in ckpts if s < newest_step]
    valid = []
    for p in older:
        try:
            verify_checkpoint(p)
            valid.append(p)
        except CheckpointError:
            pass
    doomed = valid[: max(0, len(valid) - (keep - 1))]
    for p in doomed:
        try:
            (p / MANIFEST).unlink(missing_ok=True)
            fsync_dir(p)
            shutil.rmtree(p)
        except OSError as e:  # pragma: no cover - e.g. a read-only copy
            log.warning("could not remove old checkpoint %s: %s", p, e)
    return doomed


# ---------------------------------------------------------------------- verifying and reading


def _read_manifest(path: Path) -> dict:
    mpath = path / MANIFEST
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a checkpoint folder")
    if not mpath.exists():
        raise CheckpointError(f"checkpoint {path} is incomplete (no {MANIFEST}; the writer was interrupted)")
    try:
        raw = mpath.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {mpath}: {e.strerror or e}") from None
    if not raw:
        raise CheckpointError(f"{mpath} is empty")
    try:
        man = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{mpath} is corrupt (not valid JSON)") from None
    if not (isinstance(man, dict) and man.get("format") == FORMAT and isinstance(man.get("files"), dict)):
        raise CheckpointError(f"{mpath} is not a holdsgm checkpoint manifest")
    if man.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{mpath} has format version {man.get('version')}; this holdsgm reads up to "
            f"{VERSION} (upgrade holdsgm)"
        )
    return man


def verify_checkpoint(path) -> dict:
    """Check a checkpoint folder against its manifest (presence, size, sha256); returns the manifest."""
    path = Path(path)
    man = _read_manifest(path)
    for name in (*WEIGHT_FILES.values(), STATE_FILE):
        entry = man["files"].get(name)
        f = path / name
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path / MANIFEST} lists no {name}")
        if not f.exists():
            raise CheckpointError(f"{f} is missing")
        size = f.stat().st_size
        want = int(entry.get("bytes", -1))
        if size == 0 and want != 0:
            raise CheckpointError(f"{f} is empty (expected {want} bytes)")
        if size < want:
            raise CheckpointError(f"{f} is truncated ({size} of {want} bytes)")
        if size != want:
            raise CheckpointError(f"{f} has {size} bytes, expected {want} (corrupt)")
        if _sha256(f) != entry.get("sha256"):
            raise CheckpointError(f"{f} is corrupt (sha256 does not match the manifest)")
    return man


def find_checkpoint(run_dir, *, warn: bool = True) -> Path | None:
    """The newest checkpoint of a run that verifies; incomplete/corrupt ones are skipped with a warning."""
    found, broken = scan_checkpoints(run_dir, newest_only=True)
    if warn:
        for p, reason in broken:
            log.warning("skipping checkpoint %s: %s", p.name, reason)
    return found


def scan_checkpoints(run_dir, *, newest_only: bool = False) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the newest checkpoint that verifies, [(folder, why it does not) for the others that do not]).

    With ``newest_only`` the scan stops at the first valid checkpoint from the newest (older folders are
    not read); otherwise every folder is checked."""
    found, broken = None, []
    for _step, p in reversed(list_checkpoints(run_dir)):
        if found is not None and newest_only:
            break
        try:
            verify_checkpoint(p)
            found = found or p
        except CheckpointError as e:
            broken.append((p, str(e)))
    return found, broken


def _read_bytes(f: Path) -> bytes:
    """The bytes of a checkpoint file; CheckpointError (naming the file) if it is missing, unreadable or empty."""
    try:
        data = f.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{f} does not exist") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {f}: {e.strerror or e}") from None
    if not data:
        raise CheckpointError(f"{f} is empty")
    return data


def read_weights(f: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; CheckpointError (naming the file) if it is not one."""
    from safetensors.torch import load

    f = Path(f)
    data = _read_bytes(f)
    try:
        return load(data)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError, ValueError, ...
        raise CheckpointError(
            f"{f} is not a readable safetensors file ({' '.join(str(e).split())[:120]})"
        ) from None


def read_state(f: Path) -> dict:
    """The ``state.pt`` dict, read with ``weights_only=True`` (no code runs); CheckpointError otherwise."""
    f = Path(f)
    data = _read_bytes(f)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means: not a safe holdsgm state
        msg = " ".join(str(e).split())
        if "unsupported global" in msg.lower():  # a well-formed pickle that names code (a class, a function)
            raise CheckpointError(
                f"{f} contains pickled objects other than tensors and plain data; refusing "
                f"to load it (loading could run arbitrary code)"
            ) from None
        # anything else (bad zip archive, bad pickle opcodes, truncation) is damage, not a threat
        raise CheckpointError(f"{f} is corrupt: not a readable holdsgm state file (torch.load failed: "
                              f"{_torch_reason(msg)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{f} is not a holdsgm checkpoint state")
    return state


def _torch_reason(msg: str) -> str:
    """The informative part of a torch.load error message (torch wraps it in a long weights_only notice)."""
    for marker in ("WeightsUnpickler error:", "PytorchStreamReader "):
        if marker in msg:
            msg = msg.split(marker, 1)[1] if marker.endswith(":") else marker + msg.split(marker, 1)[1]
            break
    return msg.split(" Check the documentation")[0].split(". This is an internal")[0].strip()[:100]


@dataclass
class Checkpoint:
    """A loaded checkpoint: its folder, step, the two weight dicts and the training state."""

    path: Path
    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    state: dict
    manifest: dict = field(default_factory=dict)


def _resolve(path) -> Path:
    """A checkpoint folder from a checkpoint folder, a file in one, or a run folder (newest valid)."""
    p = Path(os.fspath(path))
    if not p.exists():
        raise CheckpointError(f"{p} does not exist")
    if p.is_file():
        if p.name in (MANIFEST, STATE_FILE, *WEIGHT_FILES.values()):
            return p.parent
        if p.stat().st_size == 0:
            raise CheckpointError(f"{p} is empty")
        raise CheckpointError(f"{p} is not a holdsgm checkpoint (give a run folder or a checkpoint folder)")
    if (p / MANIFEST).exists() or _CKPT_RE.match(p.name):
        return p
    ckpts = list_checkpoints(p)
    if not ckpts:
        what = "is empty" if not any(p.iterdir()) else "has no checkpoints"
        raise CheckpointError(f"run folder {p} {what}")
    found = find_checkpoint(p)
    if found is None:
        raise CheckpointError(f"run folder {p} has no valid checkpoint ({len(ckpts)} incomplete or corrupt)")
    return found


def load_checkpoint(path, *, verify: bool = True) -> Checkpoint:
    """Load a checkpoint folder (or the newest valid checkpoint of a run folder).

    Raises :class:`CheckpointError` (one line, naming the file) if it is missing, empty, truncated,
    corrupt (sha256 mismatch, unreadable safetensors) or contains pickled code.
    """
    folder = _resolve(path)
    man = verify_checkpoint(folder) if verify else _read_manifest(folder)
    model = read_weights(folder / WEIGHT_FILES["model"])
    ema = read_weights(folder / WEIGHT_FILES["ema"])
    state = read_state(folder / STATE_FILE)
    return Checkpoint(folder, int(state.get("step", man.get("step", 0))), model, ema, state, man)


def load_weights_into(net: nn.Module, weights: dict[str, torch.Tensor], source) -> None:
    """Strict ``net.load_state_dict(weights)``; CheckpointError naming ``source`` on another architecture."""
    own = net.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[0]}")
        if shapes:
            k = shapes[0]
            parts.append(
                f"shape mismatch for {k}: checkpoint {tuple(weights[k].shape)} vs network "
                f"{tuple(own[k].shape)}"
            )
        raise CheckpointError(f"{source} holds weights of another architecture: {'; '.join(parts)}")
    net.load_state_dict(weights, strict=True)
