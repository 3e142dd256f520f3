"""Constructor-argument checks for the networks: :mod:`holdsgm.checks` with ConfigError naming the argument."""

from __future__ import annotations

from .. import checks
from ..errors import ConfigError


def check_int(v, name: str, lo: int | None = None) -> int:
    return checks.check_int(v, f"network argument {name}", lo, error=ConfigError)


def check_num(v, name: str, lo: float | None = None, hi: float | None = None, positive: bool = False) -> float:
    if positive:
        return checks.check_float(v, f"network argument {name}", 0.0, hi, lo_open=True, error=ConfigError)
    return checks.check_float(v, f"network argument {name}", lo, hi, error=ConfigError)


def check_choice(v, name: str, choices) -> str:
    return checks.check_choice(v, f"network argument {name}", choices, error=ConfigError)


def check_int_seq(v, name: str, lo: int = 1, allow_empty: bool = False) -> list[int]:
    """A list/tuple of ints >= lo, returned as a list (JSON-friendly for ``config``)."""
    return checks.check_int_seq(v, f"network argument {name}", lo, allow_empty, error=ConfigError)
