"""Intelligibility, offline: transcribe with pocketsphinx (CMU Sphinx; its wheel ships an en-us acoustic
model, language model and dictionary; nothing is downloaded) and score the word error rate with jiwer.

WER is a corpus statistic: :func:`word_errors` gives an utterance's (errors, reference words), and
:func:`corpus_wer` sums them (``sum errors / sum words``, as NIST's sclite does) with a bootstrap 95 %
interval over utterances. Texts are normalised first (:func:`normalise_words`: lower case, letters,
digits and apostrophes only), so punctuation and case do not count as errors.
"""

from __future__ import annotations

import re
import threading

import numpy as np

from ..errors import DataError
from ._deps import require
from .features import as_wave_tensor

_DECODER = None
_LOCK = threading.Lock()


def _decoder():
    global _DECODER
    if _DECODER is None:
        ps = require("pocketsphinx")
        _DECODER = ps.Decoder(loglevel="FATAL")
    return _DECODER


def transcribe(wave, sr: int = 16000) -> str:
    """pocketsphinx's transcript of a mono wave at 16 kHz (values in [-1, 1]; clipped to it)."""
    if int(sr) != 16000:
        raise DataError(f"the recogniser needs 16 kHz audio, got {sr} Hz")
    x = as_wave_tensor(wave).detach().to("cpu").double().reshape(-1).numpy()
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    with _LOCK:  # one decoder, not thread-safe
        d = _decoder()
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
    return "" if hyp is None else hyp.hypstr


def normalise_words(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters, digits, apostrophes; hyphens split words)."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) of one utterance (jiwer's alignment)."""
    jiwer = require("jiwer")
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    if not ref:
        raise DataError(f"the reference text {reference!r:.60} has no words")
    out = jiwer.process_words(" ".join(ref), " ".join(hyp) if hyp else "")
    return out.substitutions + out.deletions + out.insertions, len(ref)


def corpus_wer(pairs: list[tuple[int, int]], n_boot: int = 2000, seed: int = 0) -> dict:
    """``{wer, lo, hi, errors, words, n}`` from per-utterance (errors, words): the pooled WER and the
    percentile bootstrap 95 % interval over utterances."""
    if not pairs:
        raise DataError("corpus_wer needs at least one utterance")
    e = np.array([p[0] for p in pairs], dtype=np.float64)
    w = np.array([p[1] for p in pairs], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))
    boot = e[idx].sum(axis=1) / w[idx].sum(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"wer": float(e.sum() / w.sum()), "lo": float(lo), "hi": float(hi), "errors": int(e.sum()),
            "words": int(w.sum()), "n": len(pairs)}
