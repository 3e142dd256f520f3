import numpy as np
import pytest

SR = 16000


def speech_like(seconds: float = 2.5, seed: int = 0, sr: int = SR) -> np.ndarray:
    """A voiced, speech-like test signal: 19 harmonics of a gliding 110-170 Hz f0 under a 4 Hz
    syllable-rate envelope with pauses, plus a little breath noise; peak 0.5, float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    x = x * np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2 + 0.01 * rng.standard_normal(len(t))
    return 0.5 * x / np.abs(x).max()


@pytest.fixture(scope="session")
def speech():
    return speech_like


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    """A 4-utterance espeak-ng corpus. Without espeak-ng this raises the builder's HoldsgmError (how to
    install it) and the tests that use it fail: CI installs espeak-ng, nothing is skipped."""
    from holdsgm.audio import build_speech_corpus

    out = tmp_path_factory.mktemp("speech") / "corpus"
    build_speech_corpus(out, 4, seed=7, jobs=2)
    return out
