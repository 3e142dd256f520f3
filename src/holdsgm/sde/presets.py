"""Named SDE presets.

| name      | n | parameters                                                                       |
|-----------|---|----------------------------------------------------------------------------------|
| vp        | 1 | beta linear 0.1 -> 20, T = 1 (Song et al. 2021)                                  |
| subvp     | 1 | beta linear 0.1 -> 20, T = 1                                                      |
| ve        | 1 | sigma 0.01 -> 50, T = 1 (use --set sde.sigma_max=... to match the data's scale)   |
| cld       | 2 | critically damped gamma = 1, xi = 2; L^-1 = 0.5, alpha = 0.08, beta = 1, T = 5    |
| cld-sgm   | 2 | Dockhorn et al.'s CIFAR-10 setting M^-1 = 4, Gamma = 1, beta = 4, T = 1, gamma = 0.04 |
| hold      | 3 | critically damped gamma = (1, 2 sqrt 2), xi = 3 sqrt 3; L^-1 = 0.5, alpha = 0.08, beta = 1, T = 5 |
| langevin  | n | critically damped of any order ``order=n`` with the hold constants                 |
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from .base import LinearSDE
from .langevin import VESDE, VPSDE, Langevin
from .subvp import SubVPSDE

HOLD_CONSTANTS = dict(L=2.0, alpha=0.08, schedule=1.0, T=5.0, eps=1e-3)


def _cld(**kw):
    return Langevin.critically_damped(2, **{**HOLD_CONSTANTS, "name": "cld", **kw})


def _hold(**kw):
    return Langevin.critically_damped(3, **{**HOLD_CONSTANTS, "name": "hold", **kw})


def _langevin(order: int = 3, **kw):
    return Langevin.critically_damped(order, **{**HOLD_CONSTANTS, "name": f"langevin{order}", **kw})


PRESETS: dict[str, Callable[..., LinearSDE]] = {
    "vp": VPSDE,
    "subvp": SubVPSDE,
    "ve": VESDE,
    "cld": _cld,
    "cld-sgm": Langevin.from_cld,
    "hold": _hold,
    "langevin": _langevin,
}


def make_sde(name: str, **overrides) -> LinearSDE:
    """Build a named SDE; keyword overrides replace preset parameters (e.g. ``T=3``, ``beta_max=10``)."""
    if isinstance(name, LinearSDE):
        return name
    key = str(name).lower()
    if key not in PRESETS:
        raise ValueError(f"unknown SDE {name!r}; choose one of {sorted(PRESETS)}")
    accepted = preset_parameters(key)
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for SDE {key!r}; accepted: {sorted(accepted)}")
    return PRESETS[key](**overrides)


def preset_parameters(name: str) -> set[str]:
    """The keyword parameters a preset accepts as overrides."""
    key = str(name).lower()
    if key not in PRESETS:
        raise ValueError(f"unknown SDE {name!r}; choose one of {sorted(PRESETS)}")
    factory = PRESETS[key]
    if factory in (_cld, _hold):
        return {"L", "alpha", "schedule", "T", "eps", "name"}
    if factory is _langevin:
        return {"order", "L", "alpha", "schedule", "T", "eps", "name"}
    return set(inspect.signature(factory).parameters)
