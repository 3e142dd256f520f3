"""Denoising / hybrid score matching (DSM for n = 1, HSM for n >= 2; Dockhorn et al. 2022, eq. 10).

    loss = E_t E_{x0, z} [ lambda(t) || z_n - eps_theta(u_t, t) ||^2 ],   u_t = Phi_t [x0, 0..] + C_t z

with z ~ N(0, I) of the state's shape, t ~ U(eps, T) (eps: the smallest time) and the auxiliaries' initial
randomness marginalised into C_t (docs/maths.md, section 4). Weightings:

* ``unit`` (CLD's "reweighted" objective, DDPM's simple loss): lambda = 1;
* ``likelihood`` (Song et al. 2021b; makes the loss a bound on the negative log-likelihood up to
  constants): lambda = g(t)^2 ell_t^2, i.e. g^2 || s - s_theta ||^2 in score units.

The per-sample loss is averaged over the data's elements (so values are comparable across shapes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as nnf
from torch import Tensor

from ..sde.base import Kernel, LinearSDE

WEIGHTINGS = ("unit", "likelihood")


def sample_times(n: int, sde: LinearSDE, *, stratified: bool = True, generator: torch.Generator | None = None,
                 device=None, rows: int | None = None) -> Tensor:
    """n training times in [eps, T] (float64). ``stratified``: one uniform draw per 1/n-stratum with a
    shared random offset (low-discrepancy sampling as in Kingma et al. 2021), lower variance. With ``rows``:
    a (rows, n) tensor, each row n such times with its own offset (the batches of ``rows`` steps at once)."""
    lead = () if rows is None else (rows,)
    if stratified:
        u0 = torch.rand((*lead, 1) if lead else (), dtype=torch.float64, generator=generator)
        u = (u0 + _strata(n)) % 1.0
    else:
        u = torch.rand((*lead, n), dtype=torch.float64, generator=generator)
    return (sde.eps + (sde.T - sde.eps) * u).to(device)


@functools.lru_cache(maxsize=8)
def _strata(n: int) -> Tensor:
    """The strata's left ends i / n, i < n (float64; read-only use)."""
    return torch.arange(n, dtype=torch.float64) / n


def hsm_loss(eps_fn: Callable[..., Tensor], sde: LinearSDE, x0: Tensor, *, t: Tensor | None = None,
             z: Tensor | None = None, weighting: str = "unit", y: Tensor | None = None,
             stratified: bool = True, generator: torch.Generator | None = None,
             reduction: str = "none", kernel: Kernel | None = None, net_weight: Tensor | None = None) -> Tensor:
    """HSM/DSM loss per sample, shape (batch,), or with ``reduction="mean"`` its batch mean (a scalar:
    the training objective, in fewer operations).

    Args:
        eps_fn: ``eps_fn(u_t, t, y)`` predicting z_n (e.g. :meth:`EpsModel.eps`); ``t`` is physical time.
        x0: clean data (batch, C, ...).
        t, z: optional fixed times (batch,) and state noise (the state's shape), for reproducibility.
        kernel: ``sde.marginal(t)`` if the caller has it already (the trainer computes a block of steps'
            kernels at once); not checked against ``t``.
        net_weight: with the ``unit`` weighting, a per-sample factor (batch,) that puts the loss in the
            network's units (:meth:`EpsModel.loss_weight` of a preconditioned model); None: 1.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if reduction not in ("none", "mean"):
        raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")
    b = x0.shape[0]
    if t is None:
        t = sample_times(b, sde, stratified=stratified, generator=generator, device=x0.device)
    t = torch.as_tensor(t, dtype=torch.float64, device=x0.device)  # checked by sde.marginal
    if z is None:
        shape = sde.state_shape(x0.shape)
        z = torch.randn(shape, generator=generator, dtype=x0.dtype).to(x0.device) if generator is not None \
            else torch.randn(shape, dtype=x0.dtype, device=x0.device)
    if kernel is None:
        kernel = sde.marginal(t)
    u_t = sde.perturb(x0, t, z, kernel=kernel)
    pred = eps_fn(u_t, t, y) if y is not None else eps_fn(u_t, t)
    target = sde.last(z)
    if pred.shape != target.shape:
        raise ValueError(f"model output has shape {tuple(pred.shape)}, expected {tuple(target.shape)} "
                         f"(the data's shape)")
    if reduction == "mean" and weighting == "unit" and net_weight is None:  # as many elements each: the mean
        return nnf.mse_loss(pred, target)
    per_sample = nnf.mse_loss(pred, target, reduction="none").flatten(1).mean(1)
    if weighting == "unit" and net_weight is not None:
        per_sample = per_sample * net_weight.to(per_sample)
    elif weighting == "likelihood":
        lam = sde.g2(t) * kernel.ell**2
        per_sample = per_sample * lam.to(per_sample)
    return per_sample.mean() if reduction == "mean" else per_sample
