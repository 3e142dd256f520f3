"""``holdsgm vocode`` as a function: a log-mel (from a WAV, computed with the run's features, or from an
``.npy`` array) through a trained vocoder into a WAV, with the spectrogram figure and, against a reference
WAV, the speech metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .inference import MIN_FRAMES, PEAK, vocode
from .loading import LoadedRun


def load_mel(path, n_mels: int) -> torch.Tensor:
    """A float log-mel ``(n_mels, frames)`` (or ``(1, n_mels, frames)``) from an ``.npy`` file; DataError
    naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"mel file {p} does not exist")
    try:
        a = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {p} as a .npy array: {' '.join(str(e).split())}") from None
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.shape[0] != n_mels or not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{p}: expected a float log-mel of shape ({n_mels}, frames), got {a.dtype} {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{p}: the log-mel contains NaN or inf")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def vocode_to_file(run: LoadedRun, out, *, wav=None, mel=None, nfe: int | None = None, sampler: str | None = None,
                   grid: str | None = None, seed: int = 0, figure: bool = True, metrics: bool = False,
                   progress: bool = False, refine: int | None = None, project: int | None = None) -> dict:
    """Vocode the log-mel of ``wav`` (a reference WAV) or ``mel`` (an ``.npy`` file) with ``run`` and write
    ``out`` (a ``.wav``), plus ``out.png`` comparing the input and output spectrograms when ``figure``;
    ``refine`` / ``project``: rounds of the mel-consistency projection after the sample / on each step's data
    prediction (:func:`~holdsgm.runs.inference.vocode`).
    ``metrics`` (needs ``wav``) adds PESQ, ESTOI, MR-STFT and MCD against the reference. Returns a summary:
    the :class:`~holdsgm.runs.inference.Vocoded` fields, the paths written and the metrics."""
    from ..audio import log_mel, spectrogram_figure, utterance_metrics, write_wav
    from ..audio.io import read_wav_noting

    out = Path(out)
    if out.suffix.lower() != ".wav":
        raise ConfigError(f"--out must name a .wav file, got {out}")
    if (wav is None) == (mel is None):
        raise ConfigError("give exactly one of a reference WAV (--wav) and a log-mel array (--mel)")
    if metrics and wav is None:
        raise ConfigError("--metrics needs --wav (a reference)")
    info = run.dataset_info
    if not info.is_speech:
        raise ConfigError(f"{run.run_dir} is not a vocoder run (trained on {info.name!r}, not speech)")
    a = info.speech
    sr, hop = int(a["sr"]), int(a["hop"])
    features = (a["n_fft"], hop, a["n_mels"], a["fmin"], a["fmax"])
    ref, notes = None, list[str]()
    if wav is not None:
        ref, notes = read_wav_noting(wav, sr)
        if len(ref) < MIN_FRAMES * hop:
            raise DataError(f"{wav} is too short: {len(ref)} samples at {sr} Hz; the vocoder needs at least "
                            f"{MIN_FRAMES * hop} ({MIN_FRAMES} frames of {hop})")
        ref = ref[: len(ref) // hop * hop]
        mel_in = log_mel(ref, sr, *features)
    else:
        mel_in = load_mel(mel, int(a["n_mels"]))
    res = vocode(run, mel_in, nfe=nfe, sampler=sampler, grid=grid, seed=seed, progress=progress, refine=refine,
                project=project)
    write_wav(out, res.wave, sr)
    if res.gain != 1.0:
        notes.append(f"the output peaked at {PEAK / res.gain:.3f}: scaled by {res.gain:.3f} so that nothing clips")
    summary: dict = {"out": str(out), "sr": sr, "audio_seconds": res.wave.numel() / sr, "nfe": res.nfe,
                     "sampler": res.sampler, "grid": res.grid, "seed": res.seed, "refine": res.refine,
                     "project": res.project,
                     "seconds": res.seconds,
                     "rtf": res.rtf, "gain": res.gain, "notes": notes, "figure": None, "metrics": None}
    if figure:
        label = "reference (from --wav)" if ref is not None else "input mel (--mel)"
        panels = {label: mel_in, f"vocoded, NFE {res.nfe}": log_mel(res.wave, sr, *features)}
        summary["figure"] = str(spectrogram_figure(out.with_suffix(".png"), panels, sr, hop,
                                                   title=f"{run.run_dir.name}: {res.sampler}, NFE {res.nfe}"))
    if ref is not None and metrics:
        summary["metrics"] = {k: v for k, v in utterance_metrics(ref, res.wave, sr).items() if k != "seconds"}
    return summary
