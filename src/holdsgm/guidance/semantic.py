"""Semantic guidance in the manner of SEGA / Stable Artist (Brack et al. 2023, "SEGA: Instructing
Text-to-Image Models using Semantic Guidance", NeurIPS; arXiv 2301.12247), for any condition the network
accepts (here: class labels of a classifier-free-trained model), on any SDE and any sampler.

In eps space (the network output; s = -ell_t eps), with eps_u the unconditional prediction:

    eps~ = eps_u + w_base (eps_base - eps_u) + sum_i a_i(t) g'_i
    g_i  = sign_i * scale_i * (eps(. | c_i) - eps_u),  then element-wise thresholding:
           g_i <- g_i * 1{|g_i| >= q_i},  q_i = the ``threshold_i``-quantile of |g_i| over the sample's elements
    g'_i = g_i + momentum_i * m_i,        m_i <- beta_i m_i + (1 - beta_i) g'_i      (SEGA's momentum)
    a_i(t) = 1 once the direction is warmed up (t <= T - warmup_i (T - eps)), else 0

``sign`` +1 adds the concept, -1 removes it. ``threshold`` = 0.9 keeps the 10 % largest entries of
|g_i| per sample (SEGA's percentile threshold; threshold 0 keeps all, and then one direction with no
momentum *is* classifier-free guidance with weight ``scale``). The momentum buffer is built up during the
warm-up too (the direction is evaluated but not applied), as in SEGA.

Differences from SEGA's reference pipeline, by design: (i) warm-up is defined in *time*, as the fraction
``warmup`` of the reverse-time interval [eps, T] (not in sampler steps), so it means the same for every
sampler, grid and NFE; (ii) each direction is applied as soon as its own warm-up is over, with its own
momentum scale/beta (SEGA waits for all concepts and shares one momentum); (iii) the threshold's quantile is
taken over all elements of a sample (SEGA: per latent channel; identical for one-channel images).

State and multi-evaluation samplers
-----------------------------------
Momentum makes the wrapper stateful. SEGA updates it once per diffusion step; our samplers call the score
once (em, euler, sscs, exp1, exp2m, exp3m), twice (heun, pc, exp2s), three or four times (exp3s, rk4) per
step, some at the same time twice (heun's corrector and the next predictor both at t_{i+1}). To make the
momentum independent of that, it advances on *time levels*: a call at a time lower than every time seen
so far opens a new level (the buffer of the previous level is frozen as ``m``); every further call at the
same or a higher time (a Heun corrector, an RK stage, a re-evaluation) uses the same frozen buffer and
overwrites the level's update, so the last evaluation at a level (on fixed-step samplers: the one on the
accepted trajectory) is the one carried on. For fixed-step samplers with one call per step this is exactly
SEGA's per-step rule; for heun it is one update per grid time; for exp2s/exp3s/rk4 one per distinct stage
time. For the adaptive 'ode' sampler it is one per new minimum time (rejected steps are not rolled back).

``reset()`` clears the state. It also happens automatically when the batch shape changes, or when a call
comes at or above the first time seen after time has already decreased (a new sampler run: fixed-step
and adaptive samplers never return to T within a run), so one wrapper can serve consecutive runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..errors import ConfigError
from .conditions import Condition, batch_times, condition_key, eps_for_conditions, eps_to_score, null_label_of


@dataclass(frozen=True)
class GuidanceDirection:
    """One semantic direction: add (+1) or remove (-1) ``concept`` with weight ``scale``.

    Attributes:
        concept: the condition (an int class label, or a per-sample tensor).
        sign: +1 (add the concept) or -1 (remove it).
        scale: the direction's guidance scale (>= 0).
        threshold: quantile in [0, 1) of |direction| below which entries are zeroed, per sample
            (0: keep everything; SEGA uses 0.9-0.99 in Stable Diffusion's latent space).
        warmup: fraction in [0, 1] of the reverse-time interval during which the direction is not applied
            (0: from the start; 0.2: from t = T - 0.2 (T - eps) on).
        momentum: SEGA's momentum scale s_m (>= 0; 0 disables momentum).
        beta: SEGA's momentum decay beta_m in [0, 1).
    """

    concept: Condition
    sign: int = 1
    scale: float = 5.0
    threshold: float = 0.0
    warmup: float = 0.0
    momentum: float = 0.0
    beta: float = 0.5

    def __post_init__(self):
        if self.sign not in (1, -1):
            raise ConfigError(f"direction sign must be +1 or -1, got {self.sign!r}")
        checks = (("scale", 0.0, math.inf, False), ("threshold", 0.0, 1.0, True), ("warmup", 0.0, 1.0, False),
                  ("momentum", 0.0, math.inf, False), ("beta", 0.0, 1.0, True))
        for name, lo, hi, hi_open in checks:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise ConfigError(f"direction {name} must be a finite number, got {v!r:.40}")
            if v < lo or (v >= hi if hi_open else v > hi):
                rng = f"[{lo:g}, {hi:g}{')' if hi_open else ']'}" if math.isfinite(hi) else f">= {lo:g}"
                raise ConfigError(f"direction {name} must be in {rng}, got {v:g}")
            object.__setattr__(self, name, float(v))
        condition_key(self.concept)  # validates the concept's type

    def describe(self) -> str:
        """The CLI spelling, e.g. ``-8:scale=3,threshold=0.9,warmup=0.2,momentum=0.5,beta=0.5``."""
        c = self.concept if not isinstance(self.concept, Tensor) else "tensor"
        s = f"{'+' if self.sign > 0 else '-'}{c}:scale={self.scale:g}"
        for name, default in (("threshold", 0.0), ("warmup", 0.0), ("momentum", 0.0)):
            if getattr(self, name) != default:
                s += f",{name}={getattr(self, name):g}"
        if self.momentum > 0:
            s += f",beta={self.beta:g}"
        return s

    def with_(self, **changes) -> "GuidanceDirection":
        return replace(self, **changes)


class SemanticGuidance:
    """Stateful ``score_fn(u, t)`` applying several :class:`GuidanceDirection` s at once (see the module).

    Args:
        model: an :class:`holdsgm.losses.EpsModel` (``eps(u, t, y, **kw)``, ``sde``, ``net``).
        directions: the semantic directions.
        base: the sample's own condition (e.g. ``--class``; None: unconditional).
        base_scale: classifier-free weight of ``base`` (1: plain conditional; ignored when base is None).
        null: the unconditional condition (default: the network's null label).
        net_kwargs: passed to every network call (e.g. ``skip_scale``).

    All needed predictions (unconditional, base, each concept) come from one network call on a stacked
    batch. A concept is not evaluated while its direction is warming up unless it has momentum to build.
    """

    def __init__(self, model, directions: Sequence[GuidanceDirection], *, base: Condition = None,
                 base_scale: float = 1.0, null: Condition = None, **net_kwargs):
        directions = list(directions)
        for d in directions:
            if not isinstance(d, GuidanceDirection):
                raise ConfigError(f"directions must be GuidanceDirection objects, got {type(d).__name__}")
        base_scale = float(base_scale)
        if not math.isfinite(base_scale):
            raise ConfigError(f"base guidance scale must be finite, got {base_scale}")
        self.model = model
        self.directions = directions
        self.base = base
        self.base_scale = base_scale
        self.null = null
        self.net_kwargs = net_kwargs
        self.null_label = null_label_of(model)
        sde = model.sde
        self._t_on = [sde.T - d.warmup * (sde.T - sde.eps) for d in directions]
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the momentum buffers and counters (call between sampler runs; also automatic, see module)."""
        self._m: list[Tensor | None] = [None] * len(self.directions)  # update of the current level
        self._m_frozen: list[Tensor | None] = [None] * len(self.directions)  # buffer entering the level
        self._level: float | None = None
        self._start: float | None = None
        self._shape: tuple | None = None
        self.calls = 0
        self.levels = 0

    def _advance(self, u: Tensor, level: float) -> None:
        if self._shape is not None and (self._shape != tuple(u.shape)
                                         or (self._start is not None and self.levels > 1 and level >= self._start)):
            self.reset()
        self._shape = tuple(u.shape)
        if self._level is None or level < self._level:
            self._m_frozen = list(self._m)
            self._level = level
            self.levels += 1
            if self._start is None:
                self._start = level
        self.calls += 1

    def active(self, t: float) -> list[bool]:
        """Which directions are applied at time ``t`` (warm-up over)."""
        return [t <= t_on * (1 + 1e-12) for t_on in self._t_on]

    # ------------------------------------------------------------------ the guided prediction
    def eps(self, u: Tensor, t) -> Tensor:
        tt = batch_times(t, u)
        level = float(tt.max())
        self._advance(u, level)
        active = self.active(level)
        use = [a or d.momentum > 0 for a, d in zip(active, self.directions, strict=True)]
        base_w = self.base_scale if self.base is not None else 0.0
        need_null = any(use) or base_w != 1.0
        conds: list[Condition] = []
        slot: dict = {}

        def want(c):
            k = condition_key(c)
            if k not in slot:
                slot[k] = len(conds)
                conds.append(c)
            return slot[k]

        i_null = want(self.null) if need_null else None
        i_base = want(self.base) if base_w != 0.0 else None
        i_dir = [want(d.concept) if used else None for d, used in zip(self.directions, use, strict=True)]
        if not conds:  # no base, no active direction: the unconditional model
            conds = [self.null]
            i_null = 0
        outs = eps_for_conditions(self.model, u, tt, conds, self.null_label, self.net_kwargs)
        e_u = outs[i_null] if i_null is not None else None
        if i_base is not None and base_w == 1.0:
            out = outs[i_base]
        else:
            assert e_u is not None  # need_null holds whenever base_w != 1
            out = e_u if i_base is None else e_u + base_w * (outs[i_base] - e_u)
        for k, d in enumerate(self.directions):
            i = i_dir[k]
            if i is None:
                continue
            assert e_u is not None  # a used direction asks for the null prediction
            g = (d.sign * d.scale) * (outs[i] - e_u)
            if d.threshold > 0:
                g = threshold_direction(g, d.threshold)
            if d.momentum > 0:
                m = self._m_frozen[k]
                if m is not None:
                    g = g + d.momentum * m
                self._m[k] = (1 - d.beta) * g if m is None else d.beta * m + (1 - d.beta) * g
            if active[k]:
                out = out + g
        return out

    def __call__(self, u: Tensor, t) -> Tensor:
        return eps_to_score(self.model, u, t, self.eps(u, t))

    def __repr__(self) -> str:
        dirs = ", ".join(d.describe() for d in self.directions)
        return f"SemanticGuidance(base={self.base!r}, base_scale={self.base_scale:g}, directions=[{dirs}])"


def threshold_direction(g: Tensor, threshold: float) -> Tensor:
    """Zero the entries of ``g`` whose magnitude is below the per-sample ``threshold``-quantile of |g|
    (SEGA's element-wise threshold; 0.9 keeps the top 10 % of entries of each sample)."""
    a = g.abs().flatten(1)
    q = torch.quantile(a.float(), float(threshold), dim=1, keepdim=True).to(a.dtype)
    return torch.where((a >= q).reshape(g.shape), g, torch.zeros_like(g))
