"""The one log-mel spectrogram used everywhere (vocoder conditioning, training segments, MCD), and the
Griffin-Lim baseline vocoder that inverts it.

Framing (HiFi-GAN's convention, Kong et al. 2020): the wave is reflect-padded by ``(n_fft - hop) // 2``
samples on the left and ``n_fft - hop - (n_fft - hop) // 2`` on the right, then framed with
``center=False``; so frame ``t`` covers samples ``[t*hop - (n_fft-hop)/2, t*hop + (n_fft+hop)/2)``, i.e. it
is centred on the middle of the hop-sized block ``[t*hop, (t+1)*hop)``, and

    frames = len(wave) // hop        (exactly; the last ``len % hop`` samples get no frame of their own).

A wave of ``frames * hop`` samples therefore matches a mel of ``frames`` frames one to one, and slicing
frames ``[a, b)`` of an utterance's mel matches samples ``[a*hop, b*hop)`` of its wave (what the vocoder
is trained on). Magnitude (not power) spectrum of a periodic Hann window of ``n_fft`` samples, computed
as ``sqrt(re^2 + im^2 + 1e-9)`` (finite gradients at 0), mapped by librosa's Slaney mel filterbank
(``librosa.filters.mel``, Slaney scale and area normalisation) and ``log(clamp(mel, 1e-5))`` (natural
log; floor ``log 1e-5 = -11.51``).
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from ._deps import require

SR, N_FFT, HOP, N_MELS, FMIN, FMAX = 16000, 1024, 256, 80, 0.0, 8000.0
LOG_FLOOR = 1e-5


def _check_int(v, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise DataError(f"{name} must be an integer >= {lo}, got {v!r:.60}")
    return int(v)


def _check_stft(sr, n_fft, hop, n_mels, fmin, fmax) -> None:
    _check_int(sr, "sr", 1)
    _check_int(n_fft, "n_fft", 2)
    _check_int(hop, "hop", 1)
    _check_int(n_mels, "n_mels", 1)
    if hop > n_fft:
        raise DataError(f"hop ({hop}) must not exceed n_fft ({n_fft})")
    if not (0 <= float(fmin) < float(fmax) <= sr / 2):
        raise DataError(f"need 0 <= fmin < fmax <= sr/2 = {sr / 2:g}, got fmin={fmin}, fmax={fmax}")


@functools.lru_cache(maxsize=16)
def _mel_basis_np(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    librosa = require("librosa")
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


_TENSOR_CACHE: dict[tuple, Tensor] = {}


def mel_basis(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
              fmax: float = FMAX, device=None, dtype=torch.float32) -> Tensor:
    """librosa's Slaney mel filterbank (n_mels, n_fft // 2 + 1) as a tensor (cached per device/dtype)."""
    key = ("mel", sr, n_fft, n_mels, float(fmin), float(fmax), torch.device(device or "cpu"), dtype)
    if key not in _TENSOR_CACHE:
        basis = _mel_basis_np(sr, n_fft, n_mels, float(fmin), float(fmax))
        _TENSOR_CACHE[key] = torch.from_numpy(basis).to(device=device, dtype=dtype)
    return _TENSOR_CACHE[key]


def _hann(n: int, device, dtype) -> Tensor:
    key = ("hann", n, torch.device(device or "cpu"), dtype)
    if key not in _TENSOR_CACHE:
        _TENSOR_CACHE[key] = torch.hann_window(n, periodic=True, device=device, dtype=dtype)
    return _TENSOR_CACHE[key]


def as_wave_tensor(wave) -> Tensor:
    """A float tensor view of ``wave`` (numpy arrays and lists become float32 CPU tensors; float64
    tensors stay float64; integer tensors become float32)."""
    if isinstance(wave, Tensor):
        return wave if wave.dtype in (torch.float32, torch.float64) else wave.float()
    return torch.as_tensor(np.asarray(wave, dtype=np.float32))


def stft_padding(n_fft: int = N_FFT, hop: int = HOP) -> tuple[int, int]:
    """(left, right) reflect padding of :func:`log_mel`: they add up to ``n_fft - hop``."""
    left = (n_fft - hop) // 2
    return left, n_fft - hop - left


def _framed_stft(x: Tensor, n_fft: int, hop: int) -> Tensor:
    """Complex STFT (B, n_fft // 2 + 1, L // hop) of waves (B, L) in :func:`log_mel`'s framing (reflect padding
    by :func:`stft_padding`, periodic Hann window, ``center=False``)."""
    pad_l, pad_r = stft_padding(n_fft, hop)
    padded = F.pad(x[:, None], (pad_l, pad_r), mode="reflect")[:, 0]
    return torch.stft(padded, n_fft, hop_length=hop, win_length=n_fft, window=_hann(n_fft, x.device, x.dtype),
                      center=False, return_complex=True)


def _magnitude(spec: Tensor) -> Tensor:
    """``sqrt(re^2 + im^2 + 1e-9)``: the magnitude with finite gradients at 0."""
    return torch.sqrt(spec.real.square() + spec.imag.square() + 1e-9)


def log_mel(wave, sr: int = SR, n_fft: int = N_FFT, hop: int = HOP, n_mels: int = N_MELS,
            fmin: float = FMIN, fmax: float = FMAX) -> Tensor:
    """Log-mel spectrogram ``log(clamp(M |STFT(wave)|, 1e-5))`` of shape ``(..., n_mels, len // hop)``.

    ``wave``: (..., L) tensor or array (any leading batch dims, any device; numpy becomes float32).
    Runs in torch, so it is batched, differentiable and works on GPU; item ``i`` of a batch equals the
    mel of item ``i`` alone. Framing: see the module docstring (frames = L // hop exactly). Needs
    ``L >= hop`` and ``L`` greater than the reflect padding ``(n_fft - hop + 1) // 2``.
    """
    _check_stft(sr, n_fft, hop, n_mels, fmin, fmax)
    x = as_wave_tensor(wave)
    if x.dim() == 0:
        raise DataError("log_mel needs a wave of shape (..., L), got a scalar")
    lead, length = x.shape[:-1], x.shape[-1]
    pad_l, pad_r = stft_padding(n_fft, hop)
    if length < hop or length <= max(pad_l, pad_r):
        raise DataError(f"log_mel needs at least {max(hop, pad_r + 1)} samples (n_fft={n_fft}, hop={hop}), "
                        f"got {length}")
    spec = _framed_stft(x.reshape(-1, length), n_fft, hop)
    mel = torch.matmul(mel_basis(sr, n_fft, n_mels, fmin, fmax, x.device, x.dtype), _magnitude(spec))
    out = torch.log(torch.clamp(mel, min=LOG_FLOOR))
    return out.reshape(*lead, n_mels, out.shape[-1])


def griffin_lim(mel, sr: int = SR, n_fft: int = N_FFT, hop: int = HOP, fmin: float = FMIN,
                fmax: float = FMAX, n_iter: int = 32, momentum: float = 0.99, seed: int = 0) -> Tensor:
    """Griffin-Lim baseline vocoder: log-mel (..., n_mels, frames) -> wave (..., frames * hop).

    ``exp(mel)`` is mapped back to a linear magnitude by non-negative least squares
    (``librosa.feature.inverse.mel_to_stft``, same Slaney filterbank), then ``librosa.griffinlim``
    (fast Griffin-Lim, Perraudin et al. 2013, ``momentum``; random initial phase from ``seed``) with
    ``center=False`` and the output cut to ``[pad_left, pad_left + frames * hop)``, so that it is sample-
    aligned with the wave the mel came from (see the module docstring). Returns a float32 tensor on the
    mel's device (the work is done in numpy on CPU).
    """
    _check_stft(sr, n_fft, hop, 1, fmin, fmax)
    _check_int(n_iter, "n_iter", 1)
    librosa = require("librosa")
    m = as_wave_tensor(mel)
    device = m.device
    if m.dim() < 2:
        raise DataError(f"griffin_lim needs a log-mel of shape (..., n_mels, frames), got {tuple(m.shape)}")
    frames = m.shape[-1]
    mag_mel = np.exp(m.detach().to("cpu", torch.float32).numpy())
    lin = librosa.feature.inverse.mel_to_stft(mag_mel, sr=sr, n_fft=n_fft, power=1.0, fmin=fmin, fmax=fmax)
    y = librosa.griffinlim(lin, n_iter=n_iter, hop_length=hop, win_length=n_fft, n_fft=n_fft, window="hann",
                           center=False, momentum=momentum, init="random",
                           random_state=np.random.default_rng(seed))
    pad_l, _ = stft_padding(n_fft, hop)
    y = y[..., pad_l: pad_l + frames * hop]
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(device)


def _overlap_add(frames: Tensor, hop: int) -> Tensor:
    """Overlap-add of frames (B, n_fft, N) at ``hop``: (B, (N - 1) * hop + n_fft)."""
    n_fft, n = frames.shape[-2], frames.shape[-1]
    total = (n - 1) * hop + n_fft
    return F.fold(frames, output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop))[:, 0, 0]


def _istft_ola(spec: Tensor, hop: int, norm: Tensor) -> Tensor:
    """Least-squares inverse of :func:`_framed_stft` before its padding is cut (overlap-add of the windowed
    frames divided by ``norm``, the overlap-added squared window clamped away from 0; Griffin & Lim 1984):
    (B, n_fft // 2 + 1, N) -> (B, (N - 1) * hop + n_fft)."""
    n_fft = 2 * (spec.shape[-2] - 1)
    window = _hann(n_fft, spec.device, spec.real.dtype)
    return _overlap_add(torch.fft.irfft(spec, n=n_fft, dim=-2) * window[:, None], hop) / norm


def mel_consistent(wave, logmel, n_iter: int = 32, sr: int = SR, n_fft: int = N_FFT, hop: int = HOP,
                   fmin: float = FMIN, fmax: float = FMAX) -> Tensor:
    """Bring ``wave`` (..., N * hop) towards a wave whose :func:`log_mel` is ``logmel`` (..., n_mels, N):
    ``n_iter`` rounds of alternating projections (Griffin & Lim 1984) between spectra whose mel is the
    target and STFTs that a wave has. Each round takes the wave's STFT (the framing of :func:`log_mel`),
    multiplies every bin by the filterbank-weighted mean of its mel bands' gains ``exp(logmel) / mel(|S|)``
    (bins no band covers keep their value) and returns to the wave by the least-squares inverse STFT.

    Unlike :func:`griffin_lim`, which imposes one magnitude (the mel's least-squares inverse, smooth within
    each band) and keeps only the phase of its start, this keeps the fine structure and phase of ``wave``
    inside each band and corrects only what the mel constrains: its band energies. The result's mel is
    closer to the target after every round on speech (tested); ``n_iter = 0`` returns ``wave``.
    """
    _check_stft(sr, n_fft, hop, 1, fmin, fmax)
    _check_int(n_iter, "n_iter", 0)
    x = as_wave_tensor(wave)
    target = torch.exp(as_wave_tensor(logmel).to(device=x.device, dtype=x.dtype))
    lead, length = x.shape[:-1], x.shape[-1]
    n_mels, frames = target.shape[-2], target.shape[-1]
    if length != frames * hop:
        raise DataError(f"mel_consistent needs a wave of frames * hop = {frames * hop} samples for a mel of "
                        f"{frames} frames, got {length}")
    if n_iter == 0:
        return x
    basis = mel_basis(sr, n_fft, n_mels, fmin, fmax, x.device, x.dtype)  # (n_mels, F)
    cover = basis.sum(dim=0)  # (F,)
    covered = cover > 0
    pad_l, _ = stft_padding(n_fft, hop)
    window = _hann(n_fft, x.device, x.dtype)
    # the overlap-added squared window of the padded wave's frames (the same every round)
    norm = _overlap_add(window.square()[None, :, None].expand(1, n_fft, frames), hop).clamp_min(1e-8)
    y = x.reshape(-1, length)
    target = target.reshape(-1, n_mels, frames)
    for _ in range(n_iter):
        spec = _framed_stft(y, n_fft, hop)
        band_gain = target / torch.matmul(basis, _magnitude(spec)).clamp_min(LOG_FLOOR)  # (B, n_mels, N)
        gain = torch.matmul(basis.T, band_gain) / cover.clamp_min(1e-12)[:, None]
        gain = torch.where(covered[:, None], gain, torch.ones_like(gain))
        y = _istft_ola(spec * gain, hop, norm)[:, pad_l: pad_l + length]
    return y.reshape(*lead, length)
