"""Constructor-argument checks for the networks (ConfigError naming the argument)."""

from __future__ import annotations

import math
import numbers

from ..errors import ConfigError


def check_int(v, name: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ConfigError(f"network argument {name} must be an integer, got {type(v).__name__} {v!r:.60}")
    if lo is not None and v < lo:
        raise ConfigError(f"network argument {name} must be >= {lo}, got {v}")
    return int(v)


def check_num(v, name: str, lo: float | None = None, hi: float | None = None,
              positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise ConfigError(f"network argument {name} must be a finite number, got {v!r:.60}")
    v = float(v)
    if (positive and v <= 0) or (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = "> 0" if positive else f"in [{lo}, {hi}]"
        raise ConfigError(f"network argument {name} must be {rng}, got {v}")
    return v


def check_choice(v, name: str, choices) -> str:
    if not isinstance(v, str) or v not in choices:
        raise ConfigError(f"network argument {name} must be one of {', '.join(choices)}, got {v!r:.60}")
    return v


def check_int_seq(v, name: str, lo: int = 1, allow_empty: bool = False) -> list[int]:
    """A list/tuple of ints >= lo, returned as a list (JSON-friendly for ``config``)."""
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
        raise ConfigError(f"network argument {name} must be a list of integers, "
                          f"got {type(v).__name__} {v!r:.60}")
    if not v and not allow_empty:
        raise ConfigError(f"network argument {name} must not be empty")
    return [check_int(x, f"{name}[{i}]", lo) for i, x in enumerate(v)]
