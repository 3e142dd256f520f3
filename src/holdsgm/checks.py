"""The one set of value checks: config keys, loader options and network arguments are checked by these,
each raising the caller's error class (ConfigError, DataError, ...) with one line that names the value
(``what``: "config key train.lr", "option n", "network argument depth") and what was expected."""

from __future__ import annotations

import math
import numbers


def _name(v) -> str:
    return "null" if v is None else type(v).__name__


def check_int(v, what: str, lo: int | None = None, hi: int | None = None, *, error: type[Exception] = ValueError,
              integral_floats: bool = False) -> int:
    """``v`` as an int in [lo, hi]; bools are refused, and floats too unless ``integral_floats`` (YAML reads
    1e4 as a float) and the float is a whole number."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        if integral_floats and isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
            v = int(v)
        else:
            raise error(f"{what} must be an integer, got {_name(v)} {v!r:.80}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in [{lo}, {hi}]"
        raise error(f"{what} must be {rng}, got {v}")
    return v


def check_float(v, what: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                hi_open: bool = False, *, error: type[Exception] = ValueError) -> float:
    """``v`` as a finite float in the interval (bounds open or closed)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise error(f"{what} must be a number, got {_name(v)} {v!r:.80}")
    v = float(v)
    bad = not math.isfinite(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise error(f"{what} must be a finite number in {lb}{lo_s}, {hi_s}{rb}, got {v!r}")
    return v


def check_bool(v, what: str, *, error: type[Exception] = ValueError) -> bool:
    if not isinstance(v, bool):
        raise error(f"{what} must be true or false, got {_name(v)} {v!r:.80}")
    return v


def check_choice(v, what: str, choices, *, error: type[Exception] = ValueError) -> str:
    if not isinstance(v, str) or v not in choices:
        raise error(f"{what} must be one of {', '.join(map(str, choices))}; got {v!r:.80}")
    return v


def check_str(v, what: str, *, error: type[Exception] = ValueError) -> str:
    if not isinstance(v, str):
        raise error(f"{what} must be a string, got {_name(v)} {v!r:.80}")
    return v


def check_int_seq(v, what: str, lo: int = 1, allow_empty: bool = False, *,
                  error: type[Exception] = ValueError) -> list[int]:
    """A list/tuple of ints >= lo, returned as a list (JSON-friendly)."""
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
        raise error(f"{what} must be a list of integers, got {_name(v)} {v!r:.80}")
    if not v and not allow_empty:
        raise error(f"{what} must not be empty")
    return [check_int(x, f"{what}[{i}]", lo, error=error) for i, x in enumerate(v)]
