"""Time grids for reverse-time samplers: decreasing float64 tensors from T to eps (steps + 1 points).

* ``uniform``:   t_i = T - i (T - eps) / N
* ``quadratic``: t_i = (sqrt(eps) + (N - i)/N (sqrt(T) - sqrt(eps)))^2, denser near the data
  (the "quadratic" grid of Song et al. 2021 / DDIM)
* ``rho``:       t_i = (eps^(1/rho) + (N - i)/N (T^(1/rho) - eps^(1/rho)))^rho (rho = 2 is quadratic)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def time_grid(kind: str, steps: int, T: float, eps: float, rho: float = 2.0) -> Tensor:
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not (0 <= eps < T):
        raise ValueError(f"need 0 <= eps < T, got eps={eps}, T={T}")
    frac = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    if kind == "uniform":
        ts = eps + frac * (T - eps)
    elif kind in ("quadratic", "rho"):
        r = 2.0 if kind == "quadratic" else float(rho)
        if r <= 0:
            raise ValueError(f"rho must be positive, got {rho}")
        lo, hi = eps ** (1 / r), T ** (1 / r)
        ts = (lo + frac * (hi - lo)) ** r
    else:
        raise ValueError(f"unknown time grid {kind!r}; choose uniform, quadratic or rho")
    ts[0], ts[-1] = T, eps
    return ts


GRIDS = ("uniform", "quadratic", "rho", "log", "logell", "logsnr", "edm")


# --------------------------------------------------------------------------- grids adapted to the SDE
#: grids that need the SDE's kernel (see :func:`sde_time_grid`)
KERNEL_GRIDS = ("logsnr", "edm", "logell", "log")


def signal_to_noise(sde, t) -> "torch.Tensor":
    """kappa_t = (C_t^{-1} Phi_t)_{n1}: in the whitened last coordinate w_n = kappa_t x0 + z_n, so
    kappa_t^2 is the signal-to-noise ratio of the data in what the score sees. For VP, kappa = alpha / sigma
    (EDM's sigma = 1 / kappa); for HOLD it spans 2e7 (t = 1e-3) to 0.009 (t = 5)."""
    from ..sde.posterior import reference_kernel

    return reference_kernel(sde, torch.as_tensor(t, dtype=torch.float64))[2]


def noise_level(sde, t) -> Tensor:
    """sigma_t = 1 / |kappa_t|: the noise level of the data in what the score sees (EDM's sigma for VP,
    sigma_t / alpha_t; for VE sigma_t itself). It decreases to 0 as t -> 0 for every SDE here, so a stop
    given as a noise level means the same thing on every SDE and horizon (a stop time does not: t = 0.1
    is sigma 0.0035 for HOLD and 0.57 for CLD-SGM)."""
    return 1.0 / signal_to_noise(sde, t).abs()


#: A stop time found from a noise level is searched for in [SIGMA_SEARCH_FLOOR * T, T].
SIGMA_SEARCH_FLOOR = 1e-7


def time_at_noise_level(sde, sigma: float) -> float:
    """The time t with :func:`noise_level` (sigma_t) = ``sigma`` (memoised on the SDE): how a sampler's
    ``sigma_min`` becomes its stop time. ValueError if sigma is not below the noise level at T."""
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma_min must be a positive number, got {sigma!r}")

    def solve() -> float:
        lo_t = sde.T * SIGMA_SEARCH_FLOOR
        ends = noise_level(sde, torch.tensor([lo_t, sde.T], dtype=torch.float64))
        if not sigma < float(ends[1]):
            raise ValueError(f"sigma_min={sigma:g} is not below the noise level at T of SDE {sde.name!r} "
                             f"({float(ends[1]):.4g})")
        if sigma <= float(ends[0]):
            raise ValueError(f"sigma_min={sigma:g} is below the noise level at t = {lo_t:.3g} of SDE "
                             f"{sde.name!r} ({float(ends[0]):.3g}); use a larger sigma_min")
        fn = lambda t: torch.log(noise_level(sde, t))  # noqa: E731
        return float(_monotone_inverse(sde, fn, torch.tensor([math.log(sigma)], dtype=torch.float64), lo_t)[0])

    return sde.cached(("time_at_noise_level", sigma), solve)


def _monotone_inverse(sde, fn, targets: Tensor, eps: float) -> Tensor:
    """Times t in [eps, T] with fn(t) = targets, for fn monotone on a dense log-spaced table (interpolated
    in log t, then refined by bisection)."""
    grid = torch.logspace(math.log10(eps), math.log10(sde.T), 4001, dtype=torch.float64)
    grid[0], grid[-1] = eps, sde.T
    vals = fn(grid)
    dec = bool(vals[0] > vals[-1])
    if not bool(((vals[1:] < vals[:-1]) if dec else (vals[1:] > vals[:-1])).all()):
        raise ValueError(f"the grid quantity is not monotone in t for SDE {sde.name!r}")
    idx = torch.searchsorted(-vals if dec else vals, -targets if dec else targets).clamp(1, len(grid) - 1)
    a, b = grid[idx - 1].clone(), grid[idx].clone()
    for _ in range(60):  # vectorised bisection in log t
        m = torch.sqrt(a * b)
        above = (fn(m) > targets) == dec
        a, b = torch.where(above, m, a), torch.where(above, b, m)
    return torch.sqrt(a * b)


def sde_time_grid(sde, kind: str, steps: int, eps: float | None = None, rho: float = 7.0) -> Tensor:
    """Decreasing grid from T to eps, for every kind of :func:`time_grid` plus grids in the kernel's scales:

    * ``log``:    uniform in log t;
    * ``logell``: uniform in log ell_t (the score's scale 1 / C_t[n, n]);
    * ``logsnr``: uniform in lambda = log |kappa_t| (DPM-Solver's log-SNR grid, in phase space);
    * ``edm``:    Karras et al.'s rho-grid (rho = 7) in sigma = 1 / |kappa_t| (EDM's sigma for VP).
    """
    eps = sde.eps if eps is None else float(eps)
    if kind not in KERNEL_GRIDS:
        return time_grid(kind, steps, sde.T, eps, rho=rho)
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    frac = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)  # 0 at T, 1 at eps
    if kind == "log":
        ts = torch.exp(math.log(sde.T) + frac * (math.log(eps) - math.log(sde.T)))
    else:
        if kind == "logell":
            fn = lambda t: torch.log(sde.marginal(t).ell)  # noqa: E731
        else:
            fn = lambda t: torch.log(signal_to_noise(sde, t).abs())  # noqa: E731
        ends = fn(torch.tensor([sde.T, eps], dtype=torch.float64))
        if kind == "edm":  # sigma = exp(-lambda), rho-spaced from sigma_max to sigma_min
            smax, smin = float(torch.exp(-ends[0])), float(torch.exp(-ends[1]))
            sig = (smax ** (1 / rho) + frac * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
            targets = -torch.log(sig)
        else:
            targets = ends[0] + frac * (ends[1] - ends[0])
        ts = _monotone_inverse(sde, fn, targets[1:-1], eps)
        ts = torch.cat([torch.tensor([sde.T], dtype=torch.float64), ts, torch.tensor([eps], dtype=torch.float64)])
    ts[0], ts[-1] = sde.T, eps
    if not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError(f"grid {kind!r} with {steps} steps is not strictly decreasing (too many steps?)")
    return ts
