"""Offline speech-quality metrics for vocoders, and the differentiable training losses.

Per utterance (:func:`utterance_metrics`, a dict; :func:`aggregate_metrics` over a list of them):

* ``pesq``: PESQ wide-band, ITU-T P.862.2 (``pesq`` package), MOS-LQO in [1.04, 4.64]; higher is better.
  Needs 16 kHz (other rates are resampled with soxr); NaN when PESQ finds no utterance (e.g. silence).
* ``estoi``: extended STOI (Jensen & Taal 2016; ``pystoi``, ``extended=True``), about [0, 1]; higher is
  better.
* ``mrstft``: multi-resolution STFT distance (ParallelWaveGAN, Yamamoto et al. 2020), see
  :func:`mrstft_loss`; 0 for identical signals, lower is better.
* ``mcd``: mel-cepstral distortion in dB, see :func:`mel_cepstral_distortion`; lower is better.
* ``f0_rmse``, ``vuv``: F0 RMSE in cents over the frames voiced in both signals, and the voicing
  decision error (fraction of frames voiced in one signal but not the other), from librosa's pYIN
  (Mauch & Dixon 2014; 10 ms frames, 60-500 Hz); lower is better; see :func:`f0_metrics`.
* ``dnsmos_*`` (only with ``dnsmos=True`` and the optional ``speechmos`` + ``onnxruntime`` installed):
  DNSMOS P.835 (Reddy et al. 2022) ``ovrl``, ``sig``, ``bak`` and P.808 ``p808``, non-intrusive.

References and degraded signals are 1-D (tensors or arrays, any float dtype); both are cut to the shorter
length first (a vocoder's output may be a few samples longer than the reference). Nothing is
downloaded.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError, HoldsgmError
from ._deps import require
from .features import SR, as_wave_tensor, log_mel

#: (n_fft, hop, win) of ParallelWaveGAN's MR-STFT loss at 24 kHz: (1024, 120, 600), (2048, 240, 1200),
#: (512, 50, 240). At 16 kHz we keep the FFT sizes and scale hop and window by 16/24, i.e. keep their
#: durations: windows of 25, 50 and 10 ms, hops of 5, 10 and ~2 ms.
MRSTFT_RESOLUTIONS_16K: tuple[tuple[int, int, int], ...] = ((1024, 80, 400), (2048, 160, 800), (512, 33, 160))

#: MCD's constant 10 * sqrt(2) / ln 10 = 6.14185...: 10 / ln 10 turns natural-log amplitude into dB-like
#: units (the classic MCD convention, Kubichek 1993), sqrt(2) counts the two-sided cepstrum.
MCD_CONSTANT = 10.0 * math.sqrt(2.0) / math.log(10.0)

DNSMOS_SAMPLES = 144_160  # DNSMOS scores 9.01 s windows; shorter clips are tiled to this length first


# ---------------------------------------------------------------------- differentiable losses
def _stft_mag(x: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    window = torch.hann_window(win, periodic=True, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=win, window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    return torch.sqrt(torch.clamp(spec.real.square() + spec.imag.square(), min=1e-7))


def mrstft_loss(pred, target, resolutions=MRSTFT_RESOLUTIONS_16K, reduction: str = "mean") -> Tensor:
    """Multi-resolution STFT loss (Yamamoto et al. 2020, ParallelWaveGAN), differentiable and batched:

        L = (1/R) sum_r [ ||  |S_r y| - |S_r x| ||_F / || |S_r y| ||_F  +  mean | log|S_r y| - log|S_r x| | ]

    (spectral convergence + log-magnitude L1) with ``x = pred``, ``y = target``, ``|S_r .|`` the STFT
    magnitude at resolution ``r = (n_fft, hop, win)`` (Hann window, centred frames, magnitudes floored
    at ``sqrt(1e-7)``). Both terms are computed per item. ``pred`` and ``target``: same shape (..., L)
    with ``L > max n_fft / 2`` (1024 at the default resolutions), e.g. (B, 1, L) or (B, L).
    ``reduction``: ``mean`` (a scalar over the batch) or ``none`` (one value per item, shape (...)).
    """
    x, y = as_wave_tensor(pred), as_wave_tensor(target)
    if x.shape != y.shape or x.dim() == 0:
        raise DataError(f"mrstft_loss needs pred and target of the same shape (..., L), got "
                        f"{tuple(x.shape)} and {tuple(y.shape)}")
    if reduction not in ("mean", "none"):
        raise DataError(f"reduction must be 'mean' or 'none', got {reduction!r:.60}")
    lead, length = x.shape[:-1], x.shape[-1]
    need = max(r[0] for r in resolutions) // 2 + 1
    if length < need:
        raise DataError(f"mrstft_loss needs at least {need} samples, got {length}")
    x, y = x.reshape(-1, length), y.reshape(-1, length).to(x.dtype)
    total = x.new_zeros(x.shape[0])
    for n_fft, hop, win in resolutions:
        mx, my = _stft_mag(x, n_fft, hop, win), _stft_mag(y, n_fft, hop, win)
        sc = torch.linalg.vector_norm(my - mx, dim=(-2, -1)) / torch.linalg.vector_norm(my, dim=(-2, -1))
        mag = (torch.log(my) - torch.log(mx)).abs().mean(dim=(-2, -1))
        total = total + sc + mag
    total = (total / len(resolutions)).reshape(lead)
    return total.mean() if reduction == "mean" else total


def l2_loss(pred, target, reduction: str = "mean") -> Tensor:
    """Mean squared error over the samples of each item, ``mean (x - y)^2``: (...) or its batch mean."""
    x, y = as_wave_tensor(pred), as_wave_tensor(target)
    if x.shape != y.shape or x.dim() == 0:
        raise DataError(f"l2_loss needs pred and target of the same shape, got {tuple(x.shape)} and "
                        f"{tuple(y.shape)}")
    per = (x - y.to(x.dtype)).square().mean(dim=-1)
    if reduction == "none":
        return per
    if reduction != "mean":
        raise DataError(f"reduction must be 'mean' or 'none', got {reduction!r:.60}")
    return per.mean()


# ---------------------------------------------------------------------- per-utterance metrics
def _np1d(x, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(x, dtype=np.float64).squeeze()
    if a.ndim != 1 or a.size == 0:
        raise DataError(f"{name} must be a 1-D signal, got shape {np.shape(x)}")
    if not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or inf")
    return a


def _pair(ref, deg) -> tuple[np.ndarray, np.ndarray]:
    r, d = _np1d(ref, "reference"), _np1d(deg, "degraded signal")
    n = min(len(r), len(d))
    return r[:n], d[:n]


def _check_sr(sr) -> int:
    if isinstance(sr, bool) or not isinstance(sr, numbers.Integral) or sr <= 0:
        raise DataError(f"sr must be a positive integer, got {sr!r:.60}")
    return int(sr)


def pesq_wb(ref, deg, sr: int = SR) -> float:
    """PESQ wide-band (P.862.2) MOS-LQO; signals at another rate are resampled to 16 kHz (soxr, HQ).
    NaN when PESQ cannot score the pair (all-zero signal, no utterance found, buffer too short)."""
    pesq = require("pesq")
    r, d = _pair(ref, deg)
    sr = _check_sr(sr)
    if sr != 16000:
        soxr = require("soxr")
        r, d = soxr.resample(r, sr, 16000, "HQ"), soxr.resample(d, sr, 16000, "HQ")
    if not (np.abs(r).max() > 0 and np.abs(d).max() > 0):
        return float("nan")  # all-zero signal: PESQ would divide by its peak
    try:
        return float(pesq.pesq(16000, r, d, "wb"))
    except pesq.PesqError:
        return float("nan")


def estoi(ref, deg, sr: int = SR) -> float:
    """Extended short-time objective intelligibility (pystoi, ``extended=True``; resampled to 10 kHz
    inside pystoi). Clips with fewer than 30 non-silent 384-sample frames (~1.2 s) are out of its
    validity range (pystoi warns and returns a tiny value)."""
    pystoi = require("pystoi")
    r, d = _pair(ref, deg)
    return float(pystoi.stoi(r, d, _check_sr(sr), extended=True))


def mel_cepstrum(logmel, n_cep: int = 24) -> Tensor:
    """Mel-cepstrum ``c_k = (1/N) sum_j L_j cos(pi k (j + 1/2) / N)``, k = 0..n_cep, of a natural-log
    mel spectrum ``L`` (..., N, frames) -> (..., frames, n_cep + 1). This DCT-II scaling makes ``c_k`` the
    coefficients of ``L_j ~ c_0 + 2 sum_k c_k cos(pi k (j + 1/2) / N)`` (a cepstrum of the log amplitude
    on the mel-warped axis, as SPTK's mel-cepstra are), so that MCD's usual constant applies."""
    m = as_wave_tensor(logmel)
    n = m.shape[-2]
    if not 0 <= n_cep < n:
        raise DataError(f"n_cep must be in [0, {n - 1}] for {n} mel bands, got {n_cep}")
    k = torch.arange(n_cep + 1, dtype=m.dtype, device=m.device)[:, None]
    j = torch.arange(n, dtype=m.dtype, device=m.device)[None, :]
    dct = torch.cos(math.pi * k * (j + 0.5) / n) / n  # (n_cep + 1, N)
    return torch.matmul(dct, m).transpose(-1, -2)


def _dtw_path_mean(cost: np.ndarray) -> float:
    """Mean cost along the minimum-total-cost monotone path (steps (1,0), (0,1), (1,1))."""
    t1, t2 = cost.shape
    acc = np.full((t1 + 1, t2 + 1), np.inf)
    acc[0, 0] = 0.0
    steps = np.zeros((t1 + 1, t2 + 1), dtype=np.int64)  # path length to each cell
    for i in range(1, t1 + 1):
        for j in range(1, t2 + 1):
            prev = ((acc[i - 1, j - 1], steps[i - 1, j - 1]), (acc[i - 1, j], steps[i - 1, j]),
                    (acc[i, j - 1], steps[i, j - 1]))
            best, n = min(prev)
            acc[i, j] = best + cost[i - 1, j - 1]
            steps[i, j] = n + 1
    return float(acc[t1, t2] / steps[t1, t2])


def mel_cepstral_distortion(ref, deg, sr: int = SR, n_cep: int = 24, align: bool = False,
                            **mel_kwargs) -> float:
    """Mel-cepstral distortion in dB:

        MCD = (10 sqrt(2) / ln 10) * mean_t sqrt( sum_{k=1..n_cep} (c_k(t) - c'_k(t))^2 )

    with ``c`` the :func:`mel_cepstrum` of :func:`log_mel` of each signal (c_0, the level, excluded; all
    frames used, silent ones included). ``align=False`` (default, for vocoders whose output is sample-
    aligned with the reference): frame t against frame t, over the shorter length. ``align=True``: frames
    paired by dynamic time warping (Euclidean cepstral distance) and the distance averaged along the path.
    Not numerically comparable with SPTK-``mcep``-based MCDs of other papers (different spectral
    envelope), only within this project.
    """
    mel = dict(sr=_check_sr(sr), **mel_kwargs)
    r, d = _np1d(ref, "reference"), _np1d(deg, "degraded signal")
    if not align:
        n = min(len(r), len(d))
        r, d = r[:n], d[:n]
    cr = mel_cepstrum(log_mel(torch.from_numpy(r), **mel), n_cep)[:, 1:]
    cd = mel_cepstrum(log_mel(torch.from_numpy(d), **mel), n_cep)[:, 1:]
    if not align:
        dist = torch.linalg.vector_norm(cr - cd, dim=-1).mean().item()
    else:
        dist = _dtw_path_mean(torch.cdist(cr, cd).numpy())
    return MCD_CONSTANT * float(dist)


def mrstft_distance(ref, deg) -> float:
    """:func:`mrstft_loss` of one (degraded, reference) pair, as a float."""
    r, d = _pair(ref, deg)
    return float(mrstft_loss(torch.from_numpy(d), torch.from_numpy(r)))


def dnsmos_available() -> bool:
    """Whether the optional ``speechmos`` package (with onnxruntime) can be imported."""
    try:
        from speechmos import dnsmos  # noqa: F401
    except (ImportError, OSError):  # not installed, or onnxruntime cannot load
        return False
    return True


def dnsmos(wave, sr: int = SR) -> dict | None:
    """DNSMOS scores ``{dnsmos_ovrl, dnsmos_sig, dnsmos_bak, dnsmos_p808}`` through the optional
    ``speechmos`` package (its ONNX models ship in the wheel; nothing is downloaded), or None when it is
    not installed. Needs 16 kHz; clips shorter than 9.01 s are tiled to 9.01 s first (what DNSMOS does
    anyway, faster), and the wave is clipped to [-1, 1]."""
    if not dnsmos_available():
        return None
    from speechmos import dnsmos as _dnsmos

    if _check_sr(sr) != 16000:
        raise DataError(f"DNSMOS needs 16 kHz audio, got sr={sr}")
    x = np.clip(_np1d(wave, "wave"), -1.0, 1.0)
    if len(x) < DNSMOS_SAMPLES:
        x = np.tile(x, -(-DNSMOS_SAMPLES // len(x)))[:DNSMOS_SAMPLES]
    out = _dnsmos.run(x, 16000)
    return {f"dnsmos_{k[:-4]}": float(out[k]) for k in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")}


def f0_track(wave, sr: int = SR) -> np.ndarray:
    """F0 in Hz per 10 ms frame (0 where unvoiced) from librosa's pYIN (60-500 Hz, 64 ms frames)."""
    librosa = require("librosa")
    sr = _check_sr(sr)
    f0, voiced, _ = librosa.pyin(_np1d(wave, "wave").astype(np.float32), fmin=60.0, fmax=500.0, sr=sr,
                                 frame_length=1024 * sr // 16000, hop_length=sr // 100)
    return np.where(voiced, np.nan_to_num(f0), 0.0)


def f0_metrics(ref, deg, sr: int = SR, ref_track: np.ndarray | None = None) -> dict:
    """``{f0_rmse, vuv}``: the RMSE of ``1200 log2(F0_deg / F0_ref)`` (cents) over frames voiced in both
    (NaN when there are none) and the fraction of frames whose voicing decisions differ. ``ref_track``:
    :func:`f0_track` of ``ref`` cut to the shorter length, when already known (it is the slow part)."""
    r, d = _pair(ref, deg)
    fr = f0_track(r, sr) if ref_track is None else ref_track
    fd = f0_track(d, sr)
    n = min(len(fr), len(fd))
    fr, fd = fr[:n], fd[:n]
    vr, vd = fr > 0, fd > 0
    both = vr & vd
    cents = 1200.0 * np.log2(fd[both] / fr[both]) if both.any() else np.array([])
    return {"f0_rmse": float(np.sqrt(np.mean(cents ** 2))) if cents.size else math.nan,
            "vuv": float(np.mean(vr != vd)) if n else math.nan}


def dtw_pairs(ref, deg, sr: int = SR, n_cep: int = 24) -> np.ndarray:
    """Frame pairs (i_ref, i_deg) (hop-256 mel frames, in time order) of the DTW alignment (librosa's) of the
    two signals' mel cepstra (c_1..c_n_cep): how a synthesised utterance's frames map to a recording's."""
    librosa = require("librosa")
    r, d = _np1d(ref, "reference"), _np1d(deg, "degraded signal")
    cr = mel_cepstrum(log_mel(torch.from_numpy(r), sr=_check_sr(sr)), n_cep)[:, 1:].numpy()
    cd = mel_cepstrum(log_mel(torch.from_numpy(d), sr=sr), n_cep)[:, 1:].numpy()
    _, wp = librosa.sequence.dtw(X=cr.T, Y=cd.T, metric="euclidean")
    return wp[::-1].copy()


def aligned_f0_metrics(ref, deg, sr: int = SR, ref_track: np.ndarray | None = None, hop: int = 256) -> dict:
    """``{f0_rmse, vuv}`` of two utterances of different timing (text to speech against the recording): the
    pYIN tracks (:func:`f0_track`, 10 ms) are paired along the DTW path of the mel cepstra
    (:func:`dtw_pairs`); RMSE of ``1200 log2(F0_deg / F0_ref)`` in cents over pairs voiced in both and the
    fraction of pairs whose voicing differs."""
    r, d = _np1d(ref, "reference"), _np1d(deg, "degraded signal")
    fr = f0_track(r, sr) if ref_track is None else ref_track
    fd = f0_track(d, sr)
    pairs = dtw_pairs(r, d, sr)
    to10 = lambda i, n: np.minimum((i * hop + hop // 2) * 100 // sr, n - 1)  # mel frame centre -> 10 ms frame
    a, b = fr[to10(pairs[:, 0], len(fr))], fd[to10(pairs[:, 1], len(fd))]
    va, vb = a > 0, b > 0
    both = va & vb
    cents = 1200.0 * np.log2(b[both] / a[both]) if both.any() else np.array([])
    return {"f0_rmse": float(np.sqrt(np.mean(cents ** 2))) if cents.size else math.nan,
            "vuv": float(np.mean(va != vb)) if len(pairs) else math.nan}


def rtf(seconds_compute: float, n_samples: int, sr: int = SR) -> float:
    """Real-time factor: compute time / duration of the audio produced (< 1 is faster than real time)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples <= 0:
        raise DataError(f"n_samples must be a positive integer, got {n_samples!r:.60}")
    return float(seconds_compute) * _check_sr(sr) / int(n_samples)


def utterance_metrics(ref, deg, sr: int = SR, *, with_dnsmos: bool = False, mcd_align: bool = False,
                      with_f0: bool = False) -> dict:
    """``{seconds, pesq, estoi, mrstft, mcd}`` (+ ``f0_rmse`` and ``vuv`` when ``with_f0``, + ``dnsmos_*``
    of ``deg`` when ``with_dnsmos`` and available) for one reference / degraded pair, both cut to the
    shorter length."""
    r, d = _pair(ref, deg)
    out = {"seconds": len(r) / _check_sr(sr), "pesq": pesq_wb(r, d, sr), "estoi": estoi(r, d, sr),
           "mrstft": mrstft_distance(r, d),
           "mcd": mel_cepstral_distortion(r, d, sr, align=mcd_align)}
    if with_f0:
        out.update(f0_metrics(r, d, sr))
    if with_dnsmos:
        scores = dnsmos(d, sr)
        if scores is None:
            raise HoldsgmError("DNSMOS was asked for but the optional package speechmos is not installed "
                               "(pip install speechmos onnxruntime)")
        out.update(scores)
    return out


def aggregate_metrics(rows: list[dict]) -> dict:
    """Per metric over utterances: ``{key: {mean, std, min, max, n, n_nan}}``; NaNs (e.g. PESQ without
    an utterance) are left out of the statistics and counted in ``n_nan``."""
    if not rows:
        raise DataError("aggregate_metrics needs at least one utterance")
    out = {}
    for key in rows[0]:
        v = np.array([float(r[key]) for r in rows], dtype=np.float64)
        ok = v[np.isfinite(v)]
        if ok.size:
            stats = {"mean": ok.mean(), "std": ok.std(), "min": ok.min(), "max": ok.max()}
        else:
            stats = dict.fromkeys(("mean", "std", "min", "max"), math.nan)
        out[key] = {**{k: float(s) for k, s in stats.items()}, "n": int(ok.size),
                    "n_nan": int(v.size - ok.size)}
    return out


__all__ = [
    "MCD_CONSTANT", "MRSTFT_RESOLUTIONS_16K", "aggregate_metrics", "dnsmos", "dnsmos_available", "estoi",
    "f0_metrics", "f0_track",
    "l2_loss", "mel_cepstral_distortion", "mel_cepstrum", "mrstft_distance", "mrstft_loss", "pesq_wb", "rtf",
    "utterance_metrics",
]
