"""The frame domain of the SDE vocoder: an orthogonal MDCT and a mel-derived per-coefficient noise scale
(docs/maths.md, section 9).

**MDCT** (modified discrete cosine transform; Princen & Bradley 1986, the lapped transform of MP3/AAC/
Opus). With ``M`` = the mel hop (256 at 16 kHz), frame ``t`` takes the ``2M`` samples starting at
``t*M - M/2`` (so it is centred where mel frame ``t`` is, see :mod:`holdsgm.audio.features`), multiplies
them by the sine window ``w[n] = sin(pi (n + 1/2) / 2M)`` and projects them on

    phi_k[n] = sqrt(2 / M) cos(pi / M (n + 1/2 + M/2)(k + 1/2)),   k = 0..M-1.

Because ``w[n]^2 + w[n + M]^2 = 1`` (Princen-Bradley), the time-domain aliasing of neighbouring frames
cancels and the whole transform, with the signal read circularly at its two ends, is an orthogonal
``L x L`` matrix ``Q`` for a signal of ``L = N*M`` samples (``N >= 2`` frames): ``Q Q^T = I`` (tested).
So an isotropic linear SDE on the coefficients ``Q x`` *is* the same SDE on the wave (its kernel
``N(Q mu, Q Sigma Q^T) = N(Q mu, Sigma)`` for isotropic ``Sigma``): VP/CLD/HOLD, their exact kernels,
samplers and likelihood carry over unchanged, at the frame rate (62.5 frames of 256 coefficients per
second) instead of 16 000 samples per second.

**Spectral prior** (PriorGrad's data-dependent scale, Lee et al. 2022, taken to time-frequency as in
SpecGrad, Koizumi et al. 2022): coefficient ``(k, t)`` is scaled by

    sigma[k, t] = max(c * E[k, t], floor),   E = P exp(mel)

where ``P`` (M, n_mels) reads the mel's linear magnitude back at the MDCT bin's frequency
``(k + 1/2) sr / 2M`` (each mel band's mean magnitude ``mel_j / sum_f A_jf``, interpolated across bands
with the filterbank's weights ``A``; exact for a flat spectrum) and ``c`` is a data-set constant
(:func:`spectral_scale`: the RMS ratio of the training set's MDCT coefficients to ``E``). The SDE then
runs on the whitened coefficients ``x~ = Q x / sigma``: a diagonal change of coordinates, exact like
PriorGrad's (see :mod:`holdsgm.audio.priorgrad`), after which every coefficient has about unit variance
and the prior already carries the mel's spectral envelope.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import DataError
from .features import FMAX, FMIN, HOP, N_FFT, N_MELS, SR, as_wave_tensor, mel_basis

#: the smallest noise scale, relative to a unit-variance coefficient (digital silence stays finite)
SPECTRAL_FLOOR = 1e-4
#: the bound, in whitened units, on the data predictions the vocoder's sampler steps use (not on its output).
#: At large t, HOLD's data prediction amplifies the network's eps error ~100-fold (E[x0 | u_T] moves by 115 per
#: unit of eps); measured on the step-2000 HOLD vocoder, 2 utterances, NFE 6: MCD 4.25 -> 2.47 dB and output
#: peak 19.9 -> 2.0 with the bound 3 (6: 2.88 dB), and stage two diverged without it (loss 14 -> 570 in 150 steps)
SPECTRAL_CLIP = 3.0
_CACHE: dict[tuple, Tensor] = {}
_BASES: dict[tuple, tuple[Tensor, Tensor]] = {}


def _basis(m: int, device, dtype) -> tuple[Tensor, Tensor]:
    """(window (2M,), basis (2M, M)) of the orthonormal MDCT, cached per device and dtype."""
    key = ("mdct", m, torch.device(device or "cpu"), dtype)
    if key not in _BASES:
        n = torch.arange(2 * m, dtype=torch.float64)
        k = torch.arange(m, dtype=torch.float64)
        window = torch.sin(math.pi * (n + 0.5) / (2 * m))
        basis = math.sqrt(2.0 / m) * torch.cos(math.pi / m * (n[:, None] + 0.5 + m / 2) * (k[None] + 0.5))
        _BASES[key] = (window.to(device=device, dtype=dtype), basis.to(device=device, dtype=dtype))
    return _BASES[key]


def _check_length(length: int, m: int) -> int:
    if length % m or length // m < 2:
        raise DataError(f"the MDCT needs a whole number of at least 2 frames of {m} samples, got {length} samples")
    return length // m


def mdct(wave, m: int = HOP) -> Tensor:
    """Orthonormal MDCT of ``wave`` (..., L) with ``L = N * m``: coefficients (..., m, N) (frequency as
    channels, frames along the last axis; the signal is read circularly at its ends)."""
    x = as_wave_tensor(wave)
    n_frames = _check_length(x.shape[-1], m)
    window, basis = _basis(m, x.device, x.dtype)
    h = m // 2
    padded = torch.cat([x[..., -h:], x, x[..., : m - h]], dim=-1)  # L + m samples: frames start at t*m
    frames = padded.unfold(-1, 2 * m, m)[..., :n_frames, :]  # (..., N, 2m)
    return torch.matmul(frames * window, basis).transpose(-1, -2)


def imdct(coef: Tensor, m: int | None = None) -> Tensor:
    """Inverse of :func:`mdct` (its transpose): coefficients (..., m, N) -> wave (..., N * m)."""
    m = coef.shape[-2] if m is None else m
    if coef.dim() < 2 or coef.shape[-2] != m:
        raise DataError(f"imdct expects coefficients (..., {m}, frames), got {tuple(coef.shape)}")
    n_frames = coef.shape[-1]
    _check_length(n_frames * m, m)
    window, basis = _basis(m, coef.device, coef.dtype)
    frames = torch.matmul(coef.transpose(-1, -2), basis.T) * window  # (..., N, 2m)
    first, second = frames[..., :m], frames[..., m:]
    lead = frames.shape[:-2]
    zero = frames.new_zeros(*lead, 1, m)
    blocks = torch.cat([first, zero], dim=-2) + torch.cat([zero, second], dim=-2)  # (..., N + 1, m)
    y = blocks.reshape(*lead, (n_frames + 1) * m)
    h = m // 2
    body = y[..., h: h + n_frames * m].clone()
    body[..., -h:] += y[..., :h]  # padded samples 0..h-1 are the signal's last h
    body[..., : m - h] += y[..., h + n_frames * m:]  # the last m - h padded samples are its first
    return body


def mel_to_mdct_matrix(m: int = HOP, sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
                       fmax: float = FMAX, device=None, dtype=torch.float32) -> Tensor:
    """``P`` (m, n_mels): the linear magnitude at each MDCT bin's frequency from a linear mel (see the
    module docstring)."""
    key = ("p", m, sr, n_fft, n_mels, float(fmin), float(fmax), torch.device(device or "cpu"), dtype)
    if key not in _CACHE:
        a = mel_basis(sr, n_fft, n_mels, fmin, fmax).double()  # (n_mels, n_fft // 2 + 1)
        freqs = (torch.arange(m, dtype=torch.float64) + 0.5) * sr / (2 * m)
        stft_freqs = torch.arange(a.shape[1], dtype=torch.float64) * sr / n_fft
        # the filterbank's weights at the MDCT bins' frequencies (linear interpolation between STFT bins)
        idx = torch.clamp(torch.searchsorted(stft_freqs, freqs), 1, a.shape[1] - 1)
        frac = (freqs - stft_freqs[idx - 1]) / (stft_freqs[idx] - stft_freqs[idx - 1])
        w = a[:, idx - 1] * (1 - frac) + a[:, idx] * frac  # (n_mels, m)
        band_mean = 1.0 / a.sum(dim=1).clamp_min(1e-12)  # mel_j / sum_f A_jf is band j's mean magnitude
        weights = w / w.sum(dim=0, keepdim=True).clamp_min(1e-12)
        # bins no band covers (beyond fmax, below the first band's centre weight) take the nearest band
        empty = w.sum(dim=0) <= 1e-12
        if empty.any():
            centres = (a * stft_freqs).sum(dim=1) / a.sum(dim=1).clamp_min(1e-12)
            nearest = torch.argmin((freqs[empty][:, None] - centres[None]).abs(), dim=1)
            weights[:, empty] = 0.0
            weights[nearest, torch.nonzero(empty)[:, 0]] = 1.0
        _CACHE[key] = (weights.T * band_mean[None]).to(device=device, dtype=dtype)
    return _CACHE[key]


def spectral_envelope(logmel: Tensor, m: int = HOP, **mel_kw) -> Tensor:
    """``E = P exp(mel)``: (..., n_mels, N) -> (..., m, N)."""
    p = mel_to_mdct_matrix(m, n_mels=logmel.shape[-2], device=logmel.device, dtype=logmel.dtype, **mel_kw)
    return torch.matmul(p, torch.exp(logmel))


def spectral_std(logmel: Tensor, scale: float, floor: float = SPECTRAL_FLOOR, m: int = HOP) -> Tensor:
    """``sigma = max(scale * E, floor)`` (..., m, N) from a log-mel (..., n_mels, N)."""
    if logmel.dim() < 2:
        raise DataError(f"spectral_std needs a log-mel (..., n_mels, frames), got shape {tuple(logmel.shape)}")
    return (float(scale) * spectral_envelope(logmel, m)).clamp_min(float(floor))


def _utterance_coefficients(waves, logmels, m: int):
    """(mdct(wave), log-mel) in float64 per utterance of at least two frames, both cut to whole frames."""
    for w, mel in zip(waves, logmels):
        w = as_wave_tensor(w)
        n = min(w.shape[-1] // m, mel.shape[-1])
        if n >= 2:
            yield mdct(w[..., : n * m].double(), m), mel[..., :n].double()


def spectral_scale(waves, logmels, m: int = HOP) -> float:
    """The data-set constant ``c``: ``sqrt(sum (Q x)^2 / sum E^2)`` over utterances (waves cut to whole
    frames, with their log-mels)."""
    num = den = 0.0
    for coef, mel in _utterance_coefficients(waves, logmels, m):
        num += float(coef.square().sum())
        den += float(spectral_envelope(mel, m).square().sum())
    if not den > 0:
        raise DataError("spectral_scale needs at least one utterance of two frames or more")
    return math.sqrt(num / den)


def whitened_variance(waves, logmels, scale: float, floor: float = SPECTRAL_FLOOR, m: int = HOP) -> float:
    """The mean square of the whitened coefficients ``mdct(x) / sigma`` over utterances (the variance of
    the SDE's data in the frame domain; about 1 by the choice of ``scale``)."""
    num, count = 0.0, 0
    for coef, mel in _utterance_coefficients(waves, logmels, m):
        x = coef / spectral_std(mel, scale, floor, m)
        num, count = num + float(x.square().sum()), count + x.numel()
    if not count:
        raise DataError("whitened_variance needs at least one utterance of two frames or more")
    return num / count


class SpectralNet(torch.nn.Module):
    """A frame-domain network as the EpsModel calls it: ``forward(u~, t, y) = net(u~, t, y)`` on the
    whitened MDCT coefficients (the network sees them directly), carrying the
    :class:`SpectralCoordinates` that the vocoder pass needs (its prior shape and decoding). It holds no
    parameters of its own (checkpoints keep the wrapped network's state dict)."""

    def __init__(self, net, coords: SpectralCoordinates):
        super().__init__()
        self.net, self.coords = net, coords

    def forward(self, u: Tensor, t: Tensor, y: Tensor | None = None, **kwargs) -> Tensor:
        if y is None:
            raise DataError("the spectral vocoder needs the conditioning log-mel y")
        return self.net(u, t, y, **kwargs)


class SpectralCoordinates:
    """The vocoder's SDE coordinates in the frame domain: ``encode(wave, mel) = mdct(wave) / sigma`` and
    ``decode(x~, mel) = imdct(sigma * x~)``, with ``sigma = spectral_std(mel, scale, floor)``."""

    def __init__(self, scale: float, floor: float = SPECTRAL_FLOOR, hop: int = HOP, clip: float = SPECTRAL_CLIP):
        self.scale, self.floor, self.hop, self.clip = float(scale), float(floor), int(hop), float(clip)

    def std(self, mel: Tensor) -> Tensor:
        return spectral_std(mel, self.scale, self.floor, self.hop)

    def shape(self, mel: Tensor) -> tuple[int, ...]:
        return (mel.shape[0], self.hop, mel.shape[-1])

    def encode(self, wave: Tensor, mel: Tensor) -> Tensor:
        """(B, 1, N * hop) waves -> (B, hop, N) whitened coefficients."""
        return mdct(wave[:, 0], self.hop) / self.std(mel).to(wave.dtype)

    def decode(self, x: Tensor, mel: Tensor) -> Tensor:
        """(B, hop, N) whitened coefficients -> (B, 1, N * hop) waves."""
        return imdct(x * self.std(mel).to(x.dtype), self.hop)[:, None]
