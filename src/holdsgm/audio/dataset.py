"""Speech data: a loader for the LJSpeech layout and for any folder of WAVs, a deterministic split by
id, and seeded random training segments (wave + the matching log-mel frames) for the vocoder.

LJSpeech layout (Ito & Johnson 2017; what ``holdsgm data speech`` writes)::

    DIR/metadata.csv     one line per utterance: ``id|text|normalized text`` (UTF-8, no header; the third
                         field may be missing, then the text is used)
    DIR/wavs/<id>.wav

Anything else is read as a folder of ``.wav`` files (recursively; id = path relative to the folder,
without the extension, with ``/`` separators; no text). Audio is mixed down to mono (mean of the
channels) and resampled to ``sr`` with soxr (``HQ``, the engine behind ``librosa.resample``'s default
``soxr_hq``). Everything is held in memory as float32 (LJSpeech's 24 h would take ~5.5 GB at 16 kHz:
use ``limit`` for a part). Every user error is a one-line :class:`~holdsgm.errors.DataError` naming the
file (and the line of ``metadata.csv``).
"""

from __future__ import annotations

import hashlib
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ._deps import require
from .features import FMAX, FMIN, HOP, N_FFT, N_MELS, SR, log_mel

METADATA = "metadata.csv"


@dataclass
class SpeechItem:
    """One utterance: ``wave`` is float32 mono (L,) at the dataset's rate; ``text`` may be empty."""

    id: str
    wave: np.ndarray
    text: str = ""
    normalized_text: str = ""
    path: str = ""

    @property
    def num_samples(self) -> int:
        return int(self.wave.shape[0])


@dataclass
class SpeechDataset:
    """Utterances in memory, in file order (LJSpeech: metadata order; folders: sorted paths)."""

    items: list[SpeechItem]
    sr: int
    name: str = ""
    layout: str = "folder"  # "ljspeech" or "folder"
    _mels: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> SpeechItem:
        return self.items[i]

    def __iter__(self):
        return iter(self.items)

    @property
    def ids(self) -> list[str]:
        return [it.id for it in self.items]

    @property
    def seconds(self) -> float:
        """Total duration in seconds."""
        return sum(it.num_samples for it in self.items) / self.sr

    def split(self, test_fraction: float = 0.1, seed: int = 0) -> tuple[SpeechDataset, SpeechDataset]:
        """Deterministic (train, test) split by id: the ``round(N * test_fraction)`` ids (at least 1, and
        at least 1 left for train) with the smallest ``sha1(f"{seed}|{id}")`` go to test. Depends only on
        the ids and the seed, not on the order or on the audio; adding utterances moves none of the
        others between the parts except to keep the test size. Both parts keep the original order."""
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) \
                or not 0 < test_fraction < 1:
            raise DataError(f"test_fraction must be a number in (0, 1), got {test_fraction!r:.60}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise DataError(f"seed must be an integer, got {seed!r:.60}")
        n = len(self)
        n_test = max(1, round(n * test_fraction))
        if n - n_test < 1:
            raise DataError(f"cannot split {self.name or 'speech data'} of {n} utterance(s): both parts need "
                            f"at least one")
        keys = [hashlib.sha1(f"{seed}|{it.id}".encode()).hexdigest() for it in self.items]
        test = set(sorted(range(n), key=lambda i: keys[i])[:n_test])
        part = lambda keep: SpeechDataset([it for i, it in enumerate(self.items) if keep(i)],
                                          self.sr, self.name, self.layout)
        return part(lambda i: i not in test), part(lambda i: i in test)

    def mel(self, i: int, n_fft: int = N_FFT, hop: int = HOP, n_mels: int = N_MELS, fmin: float = FMIN,
            fmax: float = FMAX) -> Tensor:
        """:func:`~holdsgm.audio.features.log_mel` of utterance ``i`` (n_mels, L // hop), cached."""
        key = (i, n_fft, hop, n_mels, float(fmin), float(fmax))
        if key not in self._mels:
            self._mels[key] = log_mel(self.items[i].wave, self.sr, n_fft, hop, n_mels, fmin, fmax)
        return self._mels[key]


def _read_wav(path: Path, sr: int, notes: list[str] | None = None) -> np.ndarray:
    """A mono float32 wave at ``sr``; ``notes``, if given, gets a line per conversion made."""
    sf = require("soundfile")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise DataError(f"cannot read WAV {path}: {' '.join(str(e).split())}") from None
    if data.shape[0] == 0:
        raise DataError(f"WAV {path} holds no samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise DataError(f"WAV {path} contains NaN or inf samples")
    if notes is not None and data.shape[1] > 1:
        notes.append(f"{path.name} has {data.shape[1]} channels: mixed down to mono (their mean)")
    if file_sr != sr:
        soxr = require("soxr")
        wave = soxr.resample(wave, file_sr, sr, "HQ")
        if notes is not None:
            notes.append(f"{path.name} is at {file_sr} Hz: resampled to {sr} Hz (soxr HQ)")
    return np.ascontiguousarray(wave, dtype=np.float32)


def _read_metadata(meta: Path) -> list[tuple[str, str, str, int]]:
    """(id, text, normalized text, line number) per non-blank line of an LJSpeech metadata.csv."""
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{meta} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"cannot read {meta}: {e.strerror or e}") from None
    rows, seen = [], set()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) not in (2, 3):
            raise DataError(f"{meta}:{lineno}: expected 'id|text|normalized text' (2 or 3 fields "
                            f"separated by '|'), got {len(fields)} field(s): {line!r:.80}")
        uid = fields[0].strip()
        if not uid or "/" in uid or "\\" in uid or uid in (".", ".."):
            raise DataError(f"{meta}:{lineno}: bad id {uid!r:.60} (must be a non-empty file name stem)")
        if uid in seen:
            raise DataError(f"{meta}:{lineno}: id {uid!r:.60} appears twice")
        seen.add(uid)
        text = fields[1].strip()
        rows.append((uid, text, fields[2].strip() if len(fields) == 3 else text, lineno))
    if not rows:
        raise DataError(f"{meta} lists no utterances")
    return rows


def load_speech(path, sr: int = SR, *, recursive: bool = True, limit: int | None = None) -> SpeechDataset:
    """Load speech from ``path``: the LJSpeech layout when ``path/metadata.csv`` exists, else every
    ``.wav`` under ``path`` (``recursive``). Audio is mono float32 at ``sr``. ``limit``: read only the
    first ``limit`` utterances (in metadata order / sorted path order). DataError (naming the file) for
    a missing folder, no WAVs, an unreadable or corrupt WAV, a malformed metadata line, or a metadata id
    without its ``wavs/<id>.wav``."""
    if isinstance(sr, bool) or not isinstance(sr, numbers.Integral) or sr <= 0:
        raise DataError(f"sr must be a positive integer, got {sr!r:.60}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral)
                              or limit < 1):
        raise DataError(f"limit must be a positive integer or None, got {limit!r:.60}")
    root = Path(os.fspath(path)).expanduser()
    if not root.exists():
        raise DataError(f"speech data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"speech data path {root} is not a folder (expected an LJSpeech folder with "
                        f"{METADATA} and wavs/, or a folder of .wav files)")
    items: list[SpeechItem] = []
    meta = root / METADATA
    if meta.is_file():
        layout = "ljspeech"
        rows = _read_metadata(meta)
        for uid, _text, _norm, lineno in rows:  # check every row before reading any audio
            if not (root / "wavs" / f"{uid}.wav").is_file():
                raise DataError(f"{meta}:{lineno}: id {uid!r:.60} has no audio file "
                                f"{root / 'wavs' / (uid + '.wav')}")
        for uid, text, norm, _ in rows[:limit]:
            wav = root / "wavs" / f"{uid}.wav"
            items.append(SpeechItem(uid, _read_wav(wav, sr), text, norm, str(wav)))
    else:
        layout = "folder"
        pattern = root.rglob("*") if recursive else root.glob("*")
        files = sorted(p for p in pattern if p.suffix.lower() == ".wav" and p.is_file())
        if not files:
            raise DataError(f"no .wav files in {root}{' (searched recursively)' if recursive else ''} and no "
                            f"{METADATA}")
        seen: dict[str, Path] = {}
        for f in files[:limit]:
            uid = f.relative_to(root).with_suffix("").as_posix()
            if uid in seen:
                raise DataError(f"WAVs {seen[uid]} and {f} give the same id {uid!r:.60}")
            seen[uid] = f
            items.append(SpeechItem(uid, _read_wav(f, sr), path=str(f)))
    return SpeechDataset(items, int(sr), root.name, layout)


def random_segments(dataset: SpeechDataset, batch_size: int, segment_frames: int, seed: int = 0, *,
                    n_fft: int = N_FFT, hop: int = HOP, n_mels: int = N_MELS, fmin: float = FMIN,
                    fmax: float = FMAX) -> tuple[Tensor, Tensor]:
    """``batch_size`` random training segments: waves (B, 1, segment_frames * hop) float32 and their
    log-mels (B, n_mels, segment_frames).

    Utterances are drawn uniformly with replacement and a start frame ``s`` uniformly among the frames
    of the utterance's mel (computed once on the whole utterance and cached, so it matches what the
    vocoder sees at inference); the wave is ``wave[s*hop : (s + segment_frames)*hop]`` (aligned to the
    hop). An utterance shorter than the segment is zero-padded at the end and its mel is that of the
    padded wave. Deterministic in ``seed`` (numpy's default_rng); pass e.g. ``seed + step`` per step.
    """
    for v, name, lo in ((batch_size, "batch_size", 1), (segment_frames, "segment_frames", 1),
                        (seed, "seed", 0)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise DataError(f"{name} must be an integer >= {lo}, got {v!r:.60}")
    if not len(dataset):
        raise DataError("random_segments needs a non-empty dataset")
    mel_kw: dict[str, Any] = {"n_fft": n_fft, "hop": hop, "n_mels": n_mels, "fmin": fmin, "fmax": fmax}
    rng = np.random.default_rng(seed)
    length = segment_frames * hop
    waves, mels = [], []
    for i in rng.integers(0, len(dataset), size=batch_size):
        w = dataset.items[int(i)].wave
        frames = len(w) // hop
        if frames >= segment_frames:
            s = int(rng.integers(0, frames - segment_frames + 1))
            waves.append(torch.from_numpy(w[s * hop: s * hop + length]))
            mels.append(dataset.mel(int(i), **mel_kw)[:, s: s + segment_frames])
        else:
            padded = torch.from_numpy(np.pad(w, (0, length - len(w))))  # frames < segment: len < length
            waves.append(padded)
            mels.append(log_mel(padded, dataset.sr, **mel_kw))
    return torch.stack(waves)[:, None], torch.stack(mels)
