"""sub-VP SDE (Song et al. 2021, eq. 29):

    dx = -beta(t) x / 2 dt + sqrt(beta(t) (1 - e^{-2 B(t)})) dW

Its noise rate varies with time, so it is not of the constant-Q phase-space form; its kernel is in
closed form. From s to t, with b_s = B(s), b_t = B(t):

    Phi   = exp(-(b_t - b_s) / 2)
    Sigma = 1 - e^{-(b_t - b_s)} - e^{-(b_t + b_s)} + e^{-2 b_t}      ((1 - e^{-b_t})^2 when s = 0)
"""

from __future__ import annotations

import torch

from .base import LinearSDE, _as_time
from .schedules import LinearSchedule


class SubVPSDE(LinearSDE):
    schedule: LinearSchedule

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-3,
                 name: str = "subvp"):
        self.schedule = LinearSchedule(beta_min, beta_max, T)
        self.order = 1
        self.F = torch.full((1, 1), -0.5, dtype=torch.float64)
        self.T = float(T)
        self.eps = float(eps)
        self.aux_var = 0.0
        self.name = name
        self._check_common()

    def transition_factor(self, s, t):
        s, t = _as_time(s), _as_time(t)
        bs, bt = self.schedule.integral(s), self.schedule.integral(t)
        if bool((bt - bs < -1e-12).any()):
            raise ValueError("transition needs s <= t")
        phi = torch.exp(-0.5 * (bt - bs))
        # (1 - e^{-(bt-bs)}) - e^{-bt} (e^{-bs} - e^{-bt}) factorises into (1 - e^{-(bt-bs)}) (1 - e^{-(bt+bs)}):
        # as a product of two expm1 it keeps full relative accuracy at small times (the sum cancelled to 0)
        sigma = torch.expm1(-(bt - bs)) * torch.expm1(-(bt + bs))
        return phi[..., None, None], sigma.sqrt()[..., None, None]

    def g2(self, t):
        t = _as_time(t)
        return self.schedule.beta(t) * (-torch.expm1(-2 * self.schedule.integral(t)))

    def to_dict(self) -> dict:
        s = self.schedule
        return {"kind": "subvp", "name": self.name, "beta_min": s.beta_min, "beta_max": s.beta_max,
                "T": self.T, "eps": self.eps}
