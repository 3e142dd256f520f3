"""Log-likelihood through the probability-flow ODE (Song et al. 2021, sec. 4.3; Chen et al. 2018).

For the augmented state, with the PF-ODE drift f~(u, t) = F_t u - (1/2) g^2 e_n s(u, t),

    log p_eps(u_eps) = log p_T(u_T) + int_eps^T div f~(u_t, t) dt.

Only the last component carries the score, so div f~ = beta(t) tr(F) d - (1/2) g(t)^2 div_{u_n} s;
the divergence is taken over the last component only (exactly, with one backward pass per coordinate,
or with Hutchinson's estimator, Rademacher probes on that component: lower variance than probing the
whole state).

For n >= 2 the auxiliaries are drawn at t = 0 from N(0, aux_var I), independent of x, so

    log p(x) >= E_aux [log p(x, aux) - log N(aux; 0, aux_var I)]

(docs/maths.md, section 7). Per draw, the bracket is an estimate whose noise vanishes as the model approaches
the truth: with the exact (oracle) score it equals log p(x) per point, up to the ODE solver, the trace estimator
and the start time eps (the ODE starts from the unperturbed data at t = eps).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import NumericsError
from ..sde.base import LinearSDE, ScoreFn


class LikelihoodOutput(NamedTuple):
    nll: Tensor
    """-log p(x) per sample, in nats (float64): an upper bound for n >= 2 (see :func:`ode_likelihood`)."""
    nfe: int
    """Score evaluations per ODE solve (each with its divergence)."""
    prior_logp: Tensor
    """log p_T(u_T) per sample and auxiliary draw, (aux_draws, batch) (for diagnostics)."""
    draws: Tensor
    """-[log p(x, aux_k) - log N(aux_k)] per auxiliary draw k and sample, (aux_draws, batch): the single-draw
    estimates that ``nll`` combines (their spread shows how much the auxiliaries matter)."""


def _divergence(score_fn: ScoreFn, sde: LinearSDE, u: Tensor, t: Tensor, probe: Tensor | None):
    """(PF-ODE drift, its divergence) at (u, t); exact if ``probe`` is None, else Hutchinson."""
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        s = score_fn(u, t)
        drift = sde.reverse_drift(u, t, s, probability_flow=True)
        b = u.shape[0]
        if probe is None:
            flat = s.reshape(b, -1)
            d = flat.shape[1]
            div_s = torch.zeros(b, dtype=u.dtype, device=u.device)
            for j in range(d):
                (grad,) = torch.autograd.grad(flat[:, j].sum(), u, retain_graph=j < d - 1)
                div_s = div_s + sde.last(grad).reshape(b, -1)[:, j]
        else:
            (grad,) = torch.autograd.grad((s * probe).sum(), u)
            div_s = (sde.last(grad) * probe).reshape(b, -1).sum(1)
    d = sde.last(u).reshape(b, -1).shape[1]
    tt = sde.batch_time(t, u)
    beta = sde.beta(tt).to(u.dtype)
    trace_f = float(torch.trace(sde.F))
    div = beta * trace_f * d - 0.5 * sde.g2(tt).to(u.dtype) * div_s
    return drift.detach(), div.detach()


AUX_ESTIMATORS = ("iw", "mean")


def ode_likelihood(score_fn: ScoreFn, sde: LinearSDE, x: Tensor, *, divergence: str = "exact",
                   method: str = "RK45", rtol: float = 1e-5, atol: float = 1e-5, steps: int = 200,
                   eps: float | None = None, noise=None, terminal_logp=None, aux_draws: int = 1,
                   aux_estimator: str = "iw") -> LikelihoodOutput:
    """-log p(x) for a batch ``x`` via the probability-flow ODE.

    Args:
        divergence: 'exact' (d backward passes; low dimension) or 'hutchinson' (one Rademacher probe per
            solve, fixed over it).
        method: scipy ``solve_ivp`` method ('RK45', 'DOP853', ...) with ``rtol``/``atol``, or 'rk4'
            (fixed, ``steps`` steps uniform in t).
        eps: start time of the ODE; None: ``sde.eps``, the smallest time holdsgm trains a score at. A
            learned score below its training times is an extrapolation: starting the ODE at 1e-5 (Song et
            al.'s value, for models trained down to 1e-5) made one HOLD point's estimate 13 nats where it is
            6 from 1e-3 (benchmarks/README.md, section 2). The exact (oracle) score is right at any time:
            give 1e-5 there.
        noise: seed / Generator / callable for the auxiliaries and the probes.
        terminal_logp: optional ``f(u_T) -> log p_T(u_T)`` replacing the prior (e.g. the oracle's exact
            marginal at T, which separates the solver's error from the prior mismatch ~||Phi_T||).
        aux_draws: K, auxiliary draws per sample (n >= 2; ignored for n = 1), solved together as one batch
            of K x batch ODEs. ``aux_estimator`` combines the K single-draw bounds
            l_k = log p(x, aux_k) - log N(aux_k): 'iw' (default) log((1/K) sum_k exp(l_k)), the
            importance-weighted bound (Burda et al. 2016): tighter than their mean and not moved by one
            draw where the model's joint density is poor (such a draw gets weight ~0); 'mean' their
            average (the plain bound, K times less variance). Both are lower bounds on log p(x), so ``nll``
            is an upper bound; with K = 1 they coincide.
    """
    from ..samplers.noise import as_noise

    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    eps = sde.eps if eps is None else float(eps)
    if not (0 < eps < sde.T):
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps}")
    if isinstance(aux_draws, bool) or not isinstance(aux_draws, int) or aux_draws < 1:
        raise ValueError(f"aux_draws must be a positive integer, got {aux_draws!r}")
    if aux_estimator not in AUX_ESTIMATORS:
        raise ValueError(f"aux_estimator must be one of {AUX_ESTIMATORS}, got {aux_estimator!r}")
    k_draws = aux_draws if sde.order > 1 else 1
    n_items = x.shape[0]
    if k_draws > 1:
        x = x.repeat(k_draws, *([1] * (x.dim() - 1)))  # draw k of item i is row k * n_items + i
    draw = as_noise(noise)
    u0 = sde.augment(x, noise=draw)
    aux_logp = sde.aux_log_prob(u0).to(torch.float64)
    probe = None
    if divergence == "hutchinson":
        z = draw(tuple(x.shape)).to(dtype=x.dtype, device=x.device)
        probe = torch.where(z >= 0, 1.0, -1.0).to(z)
    b = x.shape[0]
    shape, dtype, device = u0.shape, u0.dtype, u0.device
    nfe = 0

    def rhs(t: float, u: Tensor):
        nonlocal nfe
        nfe += 1
        tt = torch.full((b,), t, dtype=torch.float64, device=device)
        return _divergence(score_fn, sde, u, tt, probe)

    if method.lower() == "rk4":
        ts = np.linspace(eps, sde.T, steps + 1)
        u, delta = u0.detach(), torch.zeros(b, dtype=torch.float64, device=device)
        for t0, t1 in zip(ts[:-1], ts[1:]):
            h = t1 - t0
            k1, d1 = rhs(t0, u)
            k2, d2 = rhs(t0 + h / 2, u + h / 2 * k1)
            k3, d3 = rhs(t0 + h / 2, u + h / 2 * k2)
            k4, d4 = rhs(t1, u + h * k3)
            u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            delta = delta + (h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)).to(torch.float64)
        u_T = u
    else:
        from scipy.integrate import solve_ivp

        n_state = u0.numel()

        def fun(t, y):
            u = torch.as_tensor(y[:n_state], dtype=dtype, device=device).reshape(shape)
            du, div = rhs(float(t), u)
            return np.concatenate([du.to(torch.float64).cpu().numpy().reshape(-1),
                                   div.to(torch.float64).cpu().numpy()])

        y0 = np.concatenate([u0.detach().to(torch.float64).cpu().numpy().reshape(-1), np.zeros(b)])
        sol = solve_ivp(fun, (eps, sde.T), y0, method=method, rtol=rtol, atol=atol)
        if not sol.success:
            raise NumericsError(f"likelihood ODE solver failed: {sol.message}")
        y = sol.y[:, -1]
        u_T = torch.as_tensor(y[:n_state], dtype=dtype, device=device).reshape(shape)
        delta = torch.as_tensor(y[n_state:], dtype=torch.float64, device=device)
    prior = (sde.prior_logp(u_T) if terminal_logp is None else terminal_logp(u_T)).to(torch.float64)
    bound = (prior + delta - aux_logp).reshape(k_draws, n_items)  # log p(x, aux_k) - log N(aux_k)
    if not bool(torch.isfinite(bound).all()):
        raise NumericsError("likelihood is not finite for some samples (NaN/inf in the ODE solve)")
    if aux_estimator == "iw":
        logp = torch.logsumexp(bound, 0) - math.log(k_draws)
    else:
        logp = bound.mean(0)
    return LikelihoodOutput(-logp, nfe, prior.reshape(k_draws, n_items), -bound)


def bits_per_dim(nll: Tensor, dim: int, n_bins: int, data_range: float = 2.0) -> Tensor:
    """Bits per dimension of discrete data from the continuous NLL (nats) of dequantised data.

    Data with ``n_bins`` levels k = 0..K-1 are stored as x = lo + k w, w = data_range / (K - 1)
    (so the levels span the range). Dequantising with x + (U - 1/2) w, U ~ U(0, 1)^d, gives
    -log2 P(k) <= E[-log2 p(x_deq)] - d log2 w, hence

        bits/dim = nll / (d ln 2) + log2((K - 1) / data_range).

    For 8-bit images in [-1, 1] the offset is log2(255/2) = 6.994 bits (Song et al.'s (k + U)/256
    convention gives 7); for scikit-learn's 17-level digits it is log2(8) = 3 bits.
    """
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    return nll / (dim * math.log(2)) + math.log2((n_bins - 1) / data_range)


def dequantize(x: Tensor, n_bins: int, data_range: float = 2.0, generator: torch.Generator | None = None) -> Tensor:
    """x + (U - 1/2) w with w = data_range / (n_bins - 1): uniform dequantisation within each level's bin."""
    w = data_range / (n_bins - 1)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x + (u - 0.5) * w
