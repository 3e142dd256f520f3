"""Time grids for reverse-time samplers: decreasing float64 tensors from T to eps (steps + 1 points).

* ``uniform``:   t_i = T - i (T - eps) / N
* ``quadratic``: t_i = (sqrt(eps) + (N - i)/N (sqrt(T) - sqrt(eps)))^2, denser near the data
  (the "quadratic" grid of Song et al. 2021 / DDIM)
* ``rho``:       t_i = (eps^(1/rho) + (N - i)/N (T^(1/rho) - eps^(1/rho)))^rho (rho = 2 is quadratic)
"""

from __future__ import annotations

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


GRIDS = ("uniform", "quadratic", "rho")
