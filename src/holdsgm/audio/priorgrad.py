"""PriorGrad's data-dependent noise scale for the vocoder (Lee et al. 2022, "PriorGrad: Improving
Conditional Denoising Diffusion Models with Data-Dependent Adaptive Prior", ICLR).

From the conditioning log-mel ``m`` (..., n_mels, frames) (:func:`~holdsgm.audio.features.log_mel`):

    energy_t = sqrt( sum_k exp(m_{k,t}) )                      (frame energy of the linear mel)
    sigma_t  = clamp( energy_t / energy_max, min_std, 1 )       (per frame)
    sigma    = sigma_t repeated ``hop`` times                    (per sample, (..., 1, frames * hop))

``energy_max`` is a data-set constant (the largest frame energy of the training set,
:func:`max_frame_energy`), so quiet frames get little noise and loud ones up to 1; ``min_std`` (0.1 in
PriorGrad) keeps silence from collapsing. PriorGrad replaces the prior N(0, I) by N(0, Sigma) with
``Sigma = diag(sigma^2)``.

How it is meant to enter a phase-space SDE (VP n=1, CLD n=2, HOLD n=3), to be wired in the SDE layer:
the SDE's drift and diffusion act on each sample position independently and identically, so scaling
every component of position ``j`` by ``sigma_j`` is exact. Write ``u = sigma * u~`` (all n components:
x, v, a, ... of a position multiplied by the same ``sigma_j``) and run the usual SDE on ``u~``:

* forward/perturbation kernel: mean and covariance of ``u~`` as usual with data ``x0 / sigma``; in the
  original coordinates ``u_t = sigma * (mu_t(x0 / sigma) + C_t z)``, i.e. the noise injected in the last
  component (and the initial auxiliary variables v0, a0 ~ N(0, ...)) is multiplied by ``sigma``;
* prior: ``u_T ~ sigma * N(0, Sigma_T)`` (the stationary covariance scaled per position by sigma^2);
* network target: the whitened noise ``z`` of the last component (PriorGrad's ``eps / sigma``); the
  plain L2 loss on ``z`` equals PriorGrad's Mahalanobis loss ``||eps - eps_theta||^2_{Sigma^-1}`` with
  ``eps_theta = sigma * output``. As in PriorGrad, the network's input is the unwhitened state
  ``u = sigma * u~`` (it sees the noisy wave), with the mel as conditioning;
* sampling: integrate in ``u~`` coordinates (the score of ``u~`` is ``-z_theta / std`` as usual) and
  return ``x = sigma * x~``.

Equivalent formulation for the noise only (PriorGrad's own code): draw ``eps = sigma * z`` wherever the
SDE draws standard normal noise for the last component and for the prior, and weight the loss by
``1 / sigma^2``.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from ..errors import DataError
from .features import HOP, as_wave_tensor

MIN_STD = 0.1


def frame_energy(logmel) -> Tensor:
    """``sqrt(sum_k exp(logmel_k))`` per frame: (..., n_mels, frames) -> (..., frames)."""
    m = as_wave_tensor(logmel)
    if m.dim() < 2:
        raise DataError(f"frame_energy needs a log-mel (..., n_mels, frames), got shape {tuple(m.shape)}")
    return torch.exp(m).sum(dim=-2).sqrt()


def max_frame_energy(logmels) -> float:
    """The largest frame energy over an iterable of log-mels (PriorGrad's data-set ``energy_max``)."""
    best = 0.0
    for m in logmels:
        best = max(best, float(frame_energy(m).max()))
    if best <= 0:
        raise DataError("max_frame_energy needs at least one non-empty log-mel")
    return best


def priorgrad_std(logmel, energy_max: float | None = None, min_std: float = MIN_STD,
                  hop: int = HOP) -> Tensor:
    """Per-sample noise scale ``sigma`` (..., 1, frames * hop) in [min_std, 1] from a log-mel
    (..., n_mels, frames), see the module docstring. ``energy_max=None`` normalises each item by its own
    largest frame energy (for a single utterance without data-set statistics)."""
    if isinstance(min_std, bool) or not isinstance(min_std, numbers.Real) or not 0 < min_std <= 1:
        raise DataError(f"min_std must be in (0, 1], got {min_std!r:.60}")
    if isinstance(hop, bool) or not isinstance(hop, numbers.Integral) or hop < 1:
        raise DataError(f"hop must be a positive integer, got {hop!r:.60}")
    e = frame_energy(logmel)
    if energy_max is None:
        scale = e.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    else:
        if isinstance(energy_max, bool) or not isinstance(energy_max, numbers.Real) or not energy_max > 0:
            raise DataError(f"energy_max must be a positive number, got {energy_max!r:.60}")
        scale = float(energy_max)
    std = torch.clamp(e / scale, min=float(min_std), max=1.0)
    return std.repeat_interleave(hop, dim=-1).unsqueeze(-2)


class PriorGradNet(torch.nn.Module):
    """A network wrapper for PriorGrad's whitened coordinates: ``forward(u~, t, y) = net(sigma * u~, t, y)``
    with ``sigma = priorgrad_std(y, energy_max, min_std, hop)`` from the conditioning log-mel ``y``.

    The wrapped eps-predictor then sees the unwhitened state (the noisy wave, as in PriorGrad) while the
    SDE, its kernels, the loss and the samplers all work on ``u~ = u / sigma``: train on ``x0 / sigma``,
    and multiply a sample of ``x~`` by ``sigma`` (see the module docstring). It holds no parameters of its
    own (checkpoints keep the wrapped network's state dict)."""

    def __init__(self, net, energy_max: float, min_std: float = MIN_STD, hop: int = HOP):
        super().__init__()
        self.net = net
        self.energy_max, self.min_std, self.hop = float(energy_max), float(min_std), int(hop)

    def std(self, y: Tensor) -> Tensor:
        """``sigma`` (B, 1, frames * hop) of a batch of log-mels (B, n_mels, frames)."""
        return priorgrad_std(y, self.energy_max, self.min_std, self.hop)

    def forward(self, u: Tensor, t: Tensor, y: Tensor | None = None, **kwargs) -> Tensor:
        if y is None:
            raise DataError("PriorGrad needs the conditioning log-mel y")
        return self.net(u * self.std(y).to(u.dtype), t, y, **kwargs)
