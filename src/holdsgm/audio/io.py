"""Reading and writing single WAV files, and the vocoder's spectrogram figure."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..files import atomic_write
from ..plotting import pyplot, save_figure
from ._deps import require
from .dataset import _read_wav
from .features import SR, as_wave_tensor


def read_wav(path, sr: int = SR) -> Tensor:
    """A WAV file as a mono float32 tensor (L,) at ``sr`` (channels averaged, resampled with soxr);
    DataError naming the file when it is missing, unreadable, empty or not finite."""
    return read_wav_noting(path, sr)[0]


def read_wav_noting(path, sr: int = SR) -> tuple[Tensor, list[str]]:
    """:func:`read_wav` and a note for each conversion made (channels mixed down, rate resampled)."""
    p = Path(os.fspath(path))
    if not p.is_file():
        raise DataError(f"WAV file {p} does not exist")
    notes: list[str] = []
    wave = _read_wav(p, sr, notes)  # DataError on a corrupt, empty or non-finite file
    return torch.from_numpy(wave), notes


def write_wav(path, wave, sr: int = SR) -> Path:
    """Write a mono wave (values clipped to [-1, 1]) as 16-bit PCM, atomically (the file holds its old
    content or the whole new wave, never a part); creates the parent folder."""
    sf = require("soundfile")
    x = as_wave_tensor(wave).detach().to("cpu", torch.float32).reshape(-1).numpy()
    if not np.isfinite(x).all():
        raise DataError(f"refusing to write {path}: the wave contains NaN or inf")
    p = Path(os.fspath(path))
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), int(sr), format="WAV", subtype="PCM_16")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, buf.getvalue())
    except OSError as e:
        raise DataError(f"cannot write {p}: {e.strerror or e}") from None
    return p


def spectrogram_figure(path, mels: dict, sr: int = SR, hop: int = 256, title: str = "") -> Path:
    """A PNG with one log-mel panel per entry of ``mels`` ({label: (n_mels, frames)}, e.g. reference and
    vocoder output), on a shared colour scale, time in seconds."""
    plt = pyplot()
    arrays = {k: as_wave_tensor(m).detach().to("cpu", torch.float32).numpy() for k, m in mels.items()}
    lo = min(float(np.quantile(a, 0.02)) for a in arrays.values())
    hi = max(float(a.max()) for a in arrays.values())
    fig, axes = plt.subplots(len(arrays), 1, figsize=(9, 2.3 * len(arrays) + 0.4), squeeze=False,
                             sharex=True, constrained_layout=True)
    for ax, (label, a) in zip(axes[:, 0], arrays.items()):
        im = ax.imshow(a, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma",
                       extent=(0, a.shape[1] * hop / sr, 0, a.shape[0]))
        ax.set_ylabel("mel bin")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="log-mel", shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, os.fspath(path), tight=False)
