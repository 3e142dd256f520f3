"""The command-line spelling of semantic guidance directions.

    [+|-]CLASS[:key=value[,key=value ...]]

``+`` adds the concept, ``-`` removes it; CLASS is an integer class label; keys (all optional):

    scale      guidance scale of the direction (default 5)
    threshold  per-sample quantile of |direction| below which entries are dropped, in [0, 1) (default 0)
    warmup     fraction of the reverse-time interval before the direction is applied, in [0, 1] (default 0)
    momentum   SEGA momentum scale, >= 0 (default 0: off)
    beta       SEGA momentum decay, in [0, 1) (default 0.5)

Examples: ``+3:scale=5``, ``-8:scale=3,threshold=0.9,warmup=0.2,momentum=0.5``. Every malformed string
raises :class:`~holdsgm.errors.ConfigError` with a one-line message that quotes it.
"""

from __future__ import annotations

import math
import re

from ..errors import ConfigError
from .semantic import GuidanceDirection

KEYS = ("scale", "threshold", "warmup", "momentum", "beta")
_SPEC = re.compile(r"^\s*([+-])?\s*([^:]*?)\s*(?::(.*))?$", re.S)


def parse_guide(spec: str, what: str = "--guide") -> GuidanceDirection:
    """Parse one direction string (see the module) into a :class:`GuidanceDirection`."""
    if not isinstance(spec, str):
        raise ConfigError(f"{what}: expected a string like '+3:scale=5', got {type(spec).__name__}")
    head = f"{what} {spec!r}"
    if not spec.strip():
        raise ConfigError(f"{head}: empty; expected [+|-]CLASS[:key=value,...], e.g. '+3:scale=5'")
    m = _SPEC.match(spec)
    assert m is not None  # every string matches _SPEC
    sign, concept, opts = m.group(1), m.group(2), m.group(3)
    if sign is None:
        raise ConfigError(f"{head}: must start with '+' (add the concept) or '-' (remove it), e.g. '+3:scale=5'")
    if not re.fullmatch(r"\d+", concept or ""):
        got = f"{concept!r}" if concept else "nothing"
        raise ConfigError(f"{head}: the concept must be a class label (a non-negative integer), got {got}")
    kwargs: dict[str, float] = {}
    if opts is not None:
        if not opts.strip():
            raise ConfigError(f"{head}: nothing after ':'; give key=value pairs ({', '.join(KEYS)}) or drop the ':'")
        for item in opts.split(","):
            if "=" not in item:
                raise ConfigError(f"{head}: {item.strip()!r} is not key=value (keys: {', '.join(KEYS)})")
            key, _, value = (s.strip() for s in item.partition("="))
            if key not in KEYS:
                raise ConfigError(f"{head}: unknown key {key!r}; accepted: {', '.join(KEYS)}")
            if key in kwargs:
                raise ConfigError(f"{head}: key {key!r} given twice")
            try:
                v = float(value)
            except ValueError:
                raise ConfigError(f"{head}: {key} must be a number, got {value!r}") from None
            if not math.isfinite(v):
                raise ConfigError(f"{head}: {key} must be finite, got {value!r}")
            kwargs[key] = v
    try:
        return GuidanceDirection(int(concept), sign=1 if sign == "+" else -1, **kwargs)
    except ConfigError as e:
        raise ConfigError(f"{head}: {e}") from None


def parse_guides(specs, what: str = "--guide") -> list[GuidanceDirection]:
    """Parse several direction strings (None or empty: no directions)."""
    return [parse_guide(s, what) for s in (specs or [])]


def check_concepts(directions, n_classes: int, what: str = "--guide") -> None:
    """ConfigError unless every integer concept is a class of a model with ``n_classes`` classes."""
    for d in directions:
        c = d.concept
        if isinstance(c, int):
            if not n_classes:
                raise ConfigError(f"{what} {d.describe()!r}: the model is not class-conditional")
            if not 0 <= c < n_classes:
                raise ConfigError(f"{what} {d.describe()!r}: class {c} is out of range [0, {n_classes - 1}]")
