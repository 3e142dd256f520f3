"""Reading the models shipped with the package (``holdsgm/pretrained/<name>/``: a ``manifest.json`` and one
safetensors file per part; the format is described in :mod:`holdsgm.runs.pretrained`), without building
anything: the manifest, and a part's description and float32 weights, sha256-checked. No pickle runs.

This module sits below :mod:`.build` and :mod:`.loading`, so that building a run can read a shipped part (a
ResGrad run on the shipped text-to-speech model: ``data.base: pretrained`` or ``pretrained:NAME``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from torch import Tensor

from ..errors import CheckpointError

FORMAT, VERSION, MANIFEST = "holdsgm-pretrained", 1, "manifest.json"
DEFAULT_VOICE = "slt"
PARTS = ("vocoder", "tts", "resgrad")
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
#: how a config names a shipped model where it names a run folder (``data.base``)
PREFIX = "pretrained"


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


def read_part(name: str = DEFAULT_VOICE, part: str = "vocoder", root=PRETRAINED_DIR) -> tuple[dict, dict[str, Tensor],
                                                                                              Path]:
    """(the manifest's entry, the EMA weights as float32, the weight file) of the shipped model ``name``'s
    ``part``. CheckpointError when it is missing, altered (sha256) or malformed."""
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
    try:
        weights = {k: v.float() for k, v in load(data).items()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{wpath} is not a readable safetensors file ({' '.join(str(e).split())[:120]})") \
            from None
    return m, weights, wpath


def shipped_name(spec) -> str | None:
    """The shipped model a run reference names (``pretrained`` -> the default voice, ``pretrained:NAME`` ->
    NAME), or None for a run folder."""
    s = os.fspath(spec)
    if s == PREFIX:
        return DEFAULT_VOICE
    if s.startswith(PREFIX + ":"):
        return s[len(PREFIX) + 1:] or DEFAULT_VOICE
    return None
