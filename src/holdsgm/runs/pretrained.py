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
from pathlib import Path

import torch

from ..engine.checkpoint import load_checkpoint, load_weights_into
from ..errors import CheckpointError, ConfigError
from ..files import atomic_write, writable_dir
from .loading import LoadedRun, build_from_state, ready_run
from .reports import jsonable
from .shipped import DEFAULT_VOICE, FORMAT, MANIFEST, PARTS, PRETRAINED_DIR, VERSION, read_manifest, read_part

__all__ = ["DEFAULT_VOICE", "FORMAT", "MANIFEST", "PARTS", "PRETRAINED_DIR", "VERSION", "available", "export_part",
           "load_pretrained", "read_manifest", "read_part"]


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
    m, weights, wpath = read_part(name, part, root)
    net, sde, config = build_from_state(m, wpath)
    load_weights_into(net, weights, wpath)
    return ready_run(net, sde, config, m, int(m.get("step", 0)), wpath.parent, "ema", device)
