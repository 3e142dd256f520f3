"""Models shipped with the package: the default voice.

A shipped model is a folder ``holdsgm/pretrained/<name>/`` of package data holding, per part (``vocoder``,
``tts``: the text-to-speech model, ``resgrad``: its residual refiner, where shipped), a safetensors file of its
EMA weights (float16: half the size, cast back to float32 when loaded) and one ``manifest.json``::

    {"format": "holdsgm-pretrained", "version": 1, "name": "slt",
     "vocoder": {"weights": "vocoder.safetensors", "sha256": ..., "bytes": ..., "dtype": "float16",
                 "step": ..., "config": ..., "network": ..., "sde": ..., "dataset": ..., "eps_model": ...,
                 "trained_by": {"command": ..., "commit": ...}, "metrics": {...}}}

Everything is JSON or safetensors: loading runs no pickle (like every checkpoint, see
:mod:`holdsgm.engine.checkpoint`). :func:`export_part` writes a part from a trained run (its newest
valid checkpoint); :func:`load_pretrained` gives a :class:`~holdsgm.runs.loading.LoadedRun` as
:func:`~holdsgm.runs.loading.load_run` does for a run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..engine.checkpoint import load_checkpoint, load_weights_into
from ..errors import CheckpointError, ConfigError
from ..files import atomic_write, writable_dir
from .loading import LoadedRun, build_from_state, ready_run
from .reports import jsonable

FORMAT, VERSION, MANIFEST = "holdsgm-pretrained", 1, "manifest.json"
DEFAULT_VOICE = "slt"
PARTS = ("vocoder", "tts", "resgrad")
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def read_manifest(folder) -> dict:
    """The manifest of a shipped model folder; CheckpointError (one line) when missing or malformed."""
    f = Path(folder) / MANIFEST
    try:
        man = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder} holds no shipped model ({MANIFEST} is missing)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f} is not a readable manifest: {e}") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise CheckpointError(f"{f} is not a holdsgm pretrained manifest")
    return man


def export_part(run_dir, name: str = DEFAULT_VOICE, part: str = "vocoder", *, command: str, commit: str,
                metrics: dict | None = None, root=PRETRAINED_DIR, dtype=torch.float16) -> Path:
    """Write ``part`` of the shipped model ``name`` from the run ``run_dir`` (its newest valid checkpoint's
    EMA weights, as ``dtype``), with the ``command`` and ``commit`` that trained it and its measured
    ``metrics``; other parts already in the manifest are kept. Returns the weight file's path."""
    if part not in PARTS:
        raise ConfigError(f"unknown part {part!r}; choices: {', '.join(PARTS)}")
    from safetensors.torch import save

    ck = load_checkpoint(run_dir)
    folder = writable_dir(Path(root) / name, "the pretrained folder")
    weights = {k: v.to(dtype).contiguous() for k, v in ck.ema.items()}
    data = save(weights, metadata={"format": FORMAT, "part": part})
    wfile = f"{part}.safetensors"
    try:
        man = read_manifest(folder)
    except CheckpointError:
        man = {"format": FORMAT, "version": VERSION, "name": name}
    st = ck.state
    man[part] = {"weights": wfile, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                 "dtype": str(dtype).removeprefix("torch."), "step": ck.step,
                 "config": jsonable(st["config"]), "network": jsonable(st["network"]),
                 "sde": jsonable(st["sde"]), "dataset": jsonable(st["dataset"]),
                 "eps_model": jsonable(st.get("eps_model", {})),
                 "trained_by": {"command": command, "commit": commit, "run": str(ck.path)},
                 "metrics": jsonable(metrics or {})}
    atomic_write(folder / wfile, data)
    atomic_write(folder / MANIFEST, (json.dumps(man, indent=1) + "\n").encode())
    return folder / wfile


def available(root=PRETRAINED_DIR) -> list[str]:
    """Names of the shipped models (folders with a manifest)."""
    r = Path(root)
    return sorted(p.name for p in r.iterdir() if (p / MANIFEST).is_file()) if r.is_dir() else []


def load_pretrained(name: str = DEFAULT_VOICE, part: str = "vocoder", device="cpu", root=PRETRAINED_DIR) -> LoadedRun:
    """The shipped model ``name``'s ``part`` as a :class:`~holdsgm.runs.loading.LoadedRun` (float32, eval
    mode, no gradients). CheckpointError when it is missing, altered (sha256) or malformed."""
    from safetensors.torch import load

    folder = Path(os.fspath(root)) / name
    man = read_manifest(folder)
    if part not in man:
        raise CheckpointError(f"the shipped model {name!r} has no {part} (it has: "
                              f"{', '.join(p for p in PARTS if p in man) or 'nothing'})")
    m = man[part]
    wpath = folder / m["weights"]
    try:
        data = wpath.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {wpath}: {e.strerror or e}") from None
    if hashlib.sha256(data).hexdigest() != m["sha256"]:
        raise CheckpointError(f"{wpath} does not match its manifest (sha256): the file is damaged or was replaced")
    net, sde, config = build_from_state(m, wpath)
    try:
        weights = {k: v.float() for k, v in load(data).items()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{wpath} is not a readable safetensors file ({' '.join(str(e).split())[:120]})") \
            from None
    load_weights_into(net, weights, wpath)
    return ready_run(net, sde, config, m, int(m.get("step", 0)), folder, "ema", device)

