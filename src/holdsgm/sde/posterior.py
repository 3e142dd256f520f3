"""Posterior mean E[x0 | u_t] from the last component's score: Tweedie's formula in phase space.

With the HSM kernel u_t = Phi_t [x0; 0] + C_t z (auxiliaries marginalised, z ~ N(0, I) independent
of x0), the last noise component is exactly

    z_n = a_t^T u_t - kappa_t x0,    a_t = row n of C_t^{-1},  kappa_t = (C_t^{-1} Phi_t)_{n1}.

Taking E[. | u_t] and s = grad_{u_n} log p_t = -ell_t E[z_n | u_t] (ell_t = 1 / C_t[n, n]; docs/maths.md, section 5):

    E[x0 | u_t] = (a_t^T u_t + s(u_t, t) / ell_t) / kappa_t.

For n = 1 this is the usual (u + sigma_t^2 s) / alpha_t. No other component of the score is needed.
``reference_kernel`` also gives these quantities for a reference data variance c > 0 (the kernel of
x0 ~ N(m, c)), used by the exponential integrators.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LinearSDE
from .kernels import tril_factor


def reference_kernel(sde: LinearSDE, t, ref_var: float = 0.0):
    """(ell^c, a_c, kappa_c, L^c) at times t (float64) for the kernel covariance with x0 ~ N(., ref_var)
    (``ref_var = 0``: the usual HSM kernel). A batch of equal times (a sampler's step) is computed once,
    and a single time's values are memoised on the SDE (:meth:`~holdsgm.sde.base.LinearSDE.cached`)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() == 1 and t.numel() > 1 and bool((t == t[0]).all()):
        ell, a, kappa, chol = reference_kernel(sde, t[0], ref_var)
        b = t.numel()
        return ell.expand(b), a.expand(b, -1), kappa.expand(b), chol.expand(b, *chol.shape)
    if t.dim() == 0:
        key = ("reference_kernel", float(t), float(ref_var), str(t.device))
        return tuple(v.clone() for v in sde.cached(key, lambda: _reference_kernel(sde, t, ref_var)))
    return _reference_kernel(sde, t, ref_var)


def _reference_kernel(sde: LinearSDE, t: Tensor, ref_var: float):
    phi, a_noise = sde.transition_factor(torch.zeros_like(t), t)
    s0 = sde.initial_cov(device=phi.device)
    s0[0, 0] = ref_var
    chol = tril_factor(torch.cat([phi @ s0.sqrt(), a_noise], dim=-1))
    eye = torch.eye(sde.order, dtype=torch.float64, device=chol.device).expand_as(chol)
    inv = torch.linalg.solve_triangular(chol, eye, upper=False)
    a = inv[..., -1, :]
    kappa = (inv @ phi)[..., -1, 0]
    return 1.0 / chol[..., -1, -1], a, kappa, chol


def _tweedie_terms(sde: LinearSDE, u: Tensor, t, like: Tensor, ref_var: float = 0.0):
    """(a_t^T u, ell_t, kappa_t), the last two broadcastable against ``like`` (a data-shaped tensor)."""
    t = sde.batch_time(t, u)
    ell, a, kappa, _ = reference_kernel(sde, t, ref_var)
    comps = torch.stack(sde.components(u), dim=1)  # (B, n, C, ...)
    shape = (u.shape[0], sde.order, *([1] * (comps.dim() - 2)))
    au = (a.to(u.dtype).reshape(shape) * comps).sum(1)
    return au, sde.per_sample(ell, like), sde.per_sample(kappa, like)


def posterior_mean(sde: LinearSDE, u: Tensor, t, score: Tensor, ref_var: float = 0.0) -> Tensor:
    """E[x0 | u_t] from the last component's score (with ``ref_var`` > 0: the mean of the N(m, ref_var)
    data law that would explain this score)."""
    au, ell, kappa = _tweedie_terms(sde, u, t, score, ref_var)
    return (au + score / ell) / kappa


def projected_score(score_fn, sde: LinearSDE, project):
    """``score_fn`` with its data prediction ``xhat = E[x0 | u_t]`` (:func:`posterior_mean`) replaced by
    ``project(xhat, t)``: the score ``s = -ell_t (a_t^T u - kappa_t project(xhat))`` that would have made the
    sampler see the projected prediction (GLA-Grad's consistency step, Liu et al. 2024, for a vocoder;
    :func:`clipped_score` for DDPM's ``clip_denoised``). ``project`` returns a tensor shaped like ``xhat``."""

    def score(u: Tensor, t: Tensor) -> Tensor:
        s = score_fn(u, t)
        au, ell, kappa = _tweedie_terms(sde, u, t, s)
        xhat = (au + s / ell) / kappa
        return -ell * (au - kappa * project(xhat, t))

    return score


def clipped_score(score_fn, sde: LinearSDE, bound):
    """``score_fn`` with its data prediction clipped to ``[-bound, bound]`` (DDPM's ``clip_denoised``; Ho
    et al. 2020): the score ``s = -ell_t (a_t^T u - kappa_t xhat)`` is returned with ``xhat`` =
    :func:`posterior_mean` replaced by ``clamp(xhat, -bound, bound)``. Unchanged where the prediction lies
    inside (E[x0 | u_t] lies in the data's convex hull); at high noise (``kappa_T ~ 0.01``) it stops a small
    error of the network from becoming a 100x larger error of the data prediction. ``bound`` broadcasts
    against the data component (a number, or per sample / per position)."""
    return projected_score(score_fn, sde, lambda xhat, t: torch.clamp(xhat, -bound, bound))
