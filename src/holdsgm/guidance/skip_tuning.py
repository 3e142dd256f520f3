"""Skip-Tuning (Ma, Xue, Hu, Wang, Liu, Li, Ma, Kawaguchi 2024, "The Surprising Effectiveness of Skip-Tuning
in Diffusion Sampling", ICML; arXiv 2402.15170): a training-free rescaling of the U-Net's encoder-to-decoder
skip connections at sampling time. Each skip tensor k is multiplied by rho_k before the decoder
concatenates it; rho = 1 everywhere is the trained network (bit-identical: factors equal to 1 are not
applied). The paper interpolates rho linearly from rho_bottom at the innermost (lowest-resolution) skip
to rho_top at the outermost and finds rho_bottom < 1 helpful at few NFE.

Specs (``--skip-scale``):

* ``0.9``: every skip scaled by 0.9;
* ``1,1,0.9,0.8``: one factor per skip connection, ordered as the U-Net numbers them, from the highest
  resolution (the input convolution's output) to the lowest (``UNet.skip_resolutions`` lists them);
* ``0.8:1.0``: a linear ramp ``rho_bottom:rho_top``, 0.8 at the lowest-resolution skip rising linearly
  (in the skip index) to 1.0 at the highest-resolution one (the paper's parameterisation).

The factors travel as the network keyword ``skip_scale`` through :class:`holdsgm.losses.EpsModel`, so the
Skip-Tuned model is just another model function for every sampler and every guidance wrapper.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class SkipScale:
    """A parsed Skip-Tuning spec: ``kind`` is 'constant' (one value), 'list' (one per skip) or 'ramp'
    (``values = (rho_bottom, rho_top)``)."""

    kind: str
    values: tuple[float, ...]

    def factors(self, num_skips: int) -> float | list[float]:
        """The factor(s) for a network with ``num_skips`` skips, highest resolution first."""
        if self.kind == "constant":
            return self.values[0]
        if self.kind == "list":
            if len(self.values) != num_skips:
                raise ConfigError(f"skip scale has {len(self.values)} factors but the U-Net has {num_skips} skip "
                                  f"connections; give one per skip (highest resolution first), a single number "
                                  f"or a ramp BOTTOM:TOP")
            return list(self.values)
        bottom, top = self.values
        if num_skips == 1:
            return [top]
        return [top + (bottom - top) * k / (num_skips - 1) for k in range(num_skips)]

    @property
    def is_identity(self) -> bool:
        return all(v == 1.0 for v in self.values)

    def describe(self) -> str:
        sep = ":" if self.kind == "ramp" else ","
        return sep.join(f"{v:g}" for v in self.values)


def parse_skip_scale(spec) -> SkipScale | None:
    """Parse a Skip-Tuning spec (a number, a sequence of numbers, or a string ``0.9`` / ``1,0.9,0.8`` /
    ``0.8:1.0``); None stays None. ConfigError (one line) on anything else."""
    if spec is None:
        return None
    if isinstance(spec, SkipScale):
        return spec
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return SkipScale("constant", (_factor(spec, spec),))
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError("skip scale: an empty list of factors")
        return SkipScale("list", tuple(_factor(v, spec) for v in spec))
    if not isinstance(spec, str):
        raise ConfigError(f"skip scale must be a number or a string, got {type(spec).__name__}")
    s = spec.strip()
    if not s:
        raise ConfigError("skip scale: empty spec; give e.g. 0.9, 1,1,0.9,0.8 or 0.8:1.0")
    if ":" in s:
        parts = s.split(":")
        if len(parts) != 2:
            raise ConfigError(f"skip scale {spec!r}: a ramp is BOTTOM:TOP with exactly one ':', e.g. 0.8:1.0")
        return SkipScale("ramp", tuple(_factor(p, spec) for p in parts))
    if "," in s:
        return SkipScale("list", tuple(_factor(p, spec) for p in s.split(",")))
    return SkipScale("constant", (_factor(s, spec),))


def _factor(v, spec) -> float:
    try:
        f = float(v.strip()) if isinstance(v, str) else float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"skip scale {spec!r}: {str(v).strip()!r} is not a number") from None
    if isinstance(v, bool) or not math.isfinite(f) or f < 0:
        raise ConfigError(f"skip scale {spec!r}: factors must be finite and >= 0, got {v!r}")
    return f


def num_skips_of(net) -> int | None:
    """The number of skip connections of a network (``UNet.num_skips``; 0 or None: it has none)."""
    for obj in (net, getattr(net, "net", None), getattr(net, "module", None)):
        k = getattr(obj, "num_skips", None)
        if isinstance(k, int):
            return k
    return None


def skip_scale_kwargs(spec, net) -> dict:
    """Network keywords realising ``spec`` on ``net``: ``{}`` for None or the identity, else
    ``{'skip_scale': factors}``. ConfigError when the network has no skip connections."""
    sk = parse_skip_scale(spec)
    if sk is None:
        return {}
    k = num_skips_of(net)
    if not k:
        if sk.is_identity:
            return {}
        kind = getattr(net, "kind", type(net).__name__)
        raise ConfigError(f"skip scale needs a U-Net; this run's network ({kind}) has no skip connections")
    factors = sk.factors(k)  # checks a list's length against the network
    return {} if sk.is_identity else {"skip_scale": factors}


def skip_scaled(model, spec) -> "SkipTuned":
    """The model function of ``model`` (an EpsModel) with Skip-Tuning ``spec`` applied to every call."""
    return SkipTuned(model, spec)


class SkipTuned:
    """An EpsModel-like view of ``model`` whose every network call carries Skip-Tuning factors.

    ``eps``/``score``/``with_condition`` behave as :class:`holdsgm.losses.EpsModel`'s; with an identity spec
    (None or all factors 1) they are exactly the wrapped model's.
    """

    def __init__(self, model, spec):
        self.model = model
        self.sde = model.sde
        self.net = model.net
        self.spec = parse_skip_scale(spec)
        self.net_kwargs = skip_scale_kwargs(self.spec, model.net)

    def eps(self, u, t, y=None, **net_kwargs):
        return self.model.eps(u, t, y, **{**self.net_kwargs, **net_kwargs})

    def score(self, u, t, y=None, **net_kwargs):
        return self.model.score(u, t, y, **{**self.net_kwargs, **net_kwargs})

    __call__ = score

    def with_condition(self, y=None, **net_kwargs):
        return lambda u, t: self.score(u, t, y, **net_kwargs)


def ramp(bottom: float, top: float) -> SkipScale:
    """The linear ramp ``bottom:top`` (see the module)."""
    return SkipScale("ramp", (_factor(bottom, (bottom, top)), _factor(top, (bottom, top))))


__all__: Sequence[str] = ["SkipScale", "SkipTuned", "num_skips_of", "parse_skip_scale", "ramp", "skip_scale_kwargs",
                          "skip_scaled"]
