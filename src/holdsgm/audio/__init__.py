"""Speech audio for the SDE vocoder (mel -> waveform, issue #5): a local espeak-ng corpus, a loader for
LJSpeech-style folders, the one log-mel feature, the Griffin-Lim baseline, the mel-consistency projection,
offline metrics (PESQ, ESTOI, MR-STFT, MCD, optional DNSMOS), training losses, PriorGrad's data-dependent noise
scale, WAV I/O and the spectrogram figure.

Needs the ``audio`` extra (soundfile, librosa, soxr, pesq, pystoi; imported on first use) and, for the
corpus, the espeak-ng program. Nothing is downloaded. Nothing here knows about SDEs.
"""

from __future__ import annotations

from .corpus import CorpusSummary, build_speech_corpus
from .dataset import SpeechDataset, SpeechItem, load_speech, random_segments
from .features import FMAX, FMIN, HOP, N_FFT, N_MELS, SR, griffin_lim, log_mel, mel_basis, mel_consistent
from .io import read_wav, spectrogram_figure, write_wav
from .mdct import SpectralCoordinates, SpectralNet, imdct, mdct, spectral_scale, spectral_std
from .metrics import (
    aggregate_metrics,
    dnsmos,
    estoi,
    l2_loss,
    mel_cepstral_distortion,
    mrstft_distance,
    mrstft_loss,
    pesq_wb,
    rtf,
    utterance_metrics,
)
from .priorgrad import PriorGradNet, frame_energy, max_frame_energy, priorgrad_std

__all__ = [
    "FMAX", "FMIN", "HOP", "N_FFT", "N_MELS", "SR", "CorpusSummary", "PriorGradNet", "SpectralCoordinates",
    "SpectralNet", "imdct", "mdct", "spectral_scale", "spectral_std", "SpeechDataset", "SpeechItem",
    "aggregate_metrics", "build_speech_corpus", "dnsmos", "estoi", "frame_energy", "griffin_lim", "l2_loss",
    "load_speech", "log_mel", "max_frame_energy", "mel_basis", "mel_consistent", "mel_cepstral_distortion",
    "mrstft_distance", "mrstft_loss", "pesq_wb", "priorgrad_std", "random_segments", "read_wav", "rtf",
    "spectrogram_figure", "utterance_metrics", "write_wav",
]
