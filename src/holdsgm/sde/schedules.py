"""Noise schedules beta(t) and their integrals B(t) = int_0^t beta(r) dr.

Every schedule is evaluated in float64. ``beta`` and ``integral`` accept a Python float or a tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _f64(t) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


class Schedule:
    """A positive schedule beta(t) on [0, T] with integral B(t)."""

    def beta(self, t) -> Tensor:
        raise NotImplementedError

    def integral(self, t) -> Tensor:
        raise NotImplementedError

    def inverse_integral(self, b) -> Tensor:
        """t such that B(t) = b (used by grids uniform in B)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class ConstantSchedule(Schedule):
    """beta(t) = value."""

    value: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"beta must be a positive finite number, got {self.value!r}")

    def beta(self, t) -> Tensor:
        return torch.full_like(_f64(t), self.value)

    def integral(self, t) -> Tensor:
        return self.value * _f64(t)

    def inverse_integral(self, b) -> Tensor:
        return _f64(b) / self.value

    def to_dict(self) -> dict:
        return {"kind": "constant", "value": self.value}


@dataclass(frozen=True)
class LinearSchedule(Schedule):
    """beta(t) = beta_min + (beta_max - beta_min) t / T (Song et al. 2021's VP schedule with T = 1)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0

    def __post_init__(self):
        for name in ("beta_min", "beta_max", "T"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")

    def beta(self, t) -> Tensor:
        t = _f64(t)
        return self.beta_min + (self.beta_max - self.beta_min) * t / self.T

    def integral(self, t) -> Tensor:
        t = _f64(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2 / self.T

    def inverse_integral(self, b) -> Tensor:
        b = _f64(b)
        a = 0.5 * (self.beta_max - self.beta_min) / self.T
        if a == 0:
            return b / self.beta_min
        return (-self.beta_min + torch.sqrt(self.beta_min**2 + 4 * a * b)) / (2 * a)

    def to_dict(self) -> dict:
        return {"kind": "linear", "beta_min": self.beta_min, "beta_max": self.beta_max, "T": self.T}


@dataclass(frozen=True)
class GeometricVarianceSchedule(Schedule):
    """VE: sigma(t) = sigma_min (sigma_max / sigma_min)^(t/T), beta(t) = d sigma^2 / dt.

    Then B(t) = sigma(t)^2 - sigma_min^2 exactly (the perturbation variance added since t = 0).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    T: float = 1.0

    def __post_init__(self):
        for name in ("sigma_min", "sigma_max", "T"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max ({self.sigma_max}) must exceed sigma_min ({self.sigma_min})")

    def sigma(self, t) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** (_f64(t) / self.T)

    def beta(self, t) -> Tensor:
        return self.sigma(t) ** 2 * 2 * math.log(self.sigma_max / self.sigma_min) / self.T

    def integral(self, t) -> Tensor:
        return self.sigma(t) ** 2 - self.sigma_min**2

    def inverse_integral(self, b) -> Tensor:
        s2 = _f64(b) + self.sigma_min**2
        return self.T * torch.log(s2 / self.sigma_min**2) / (2 * math.log(self.sigma_max / self.sigma_min))

    def to_dict(self) -> dict:
        return {"kind": "geometric", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "T": self.T}


def schedule_from_dict(d: dict) -> Schedule:
    kinds = {"constant": ConstantSchedule, "linear": LinearSchedule, "geometric": GeometricVarianceSchedule}
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in kinds:
        raise ValueError(f"schedule kind must be one of {sorted(kinds)}, got {kind!r}")
    return kinds[kind](**d)
