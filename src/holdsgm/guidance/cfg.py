"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper of the model function.

With one network trained with label dropout (so it models both p(x | y) and p(x)),

    eps~(u, t) = eps(u, t | null) + w [eps(u, t | y) - eps(u, t | null)],     s~ = -ell_t eps~

in eps space (equivalently in score space: the map eps -> s = -ell_t eps is linear at fixed t). Our ``w`` is
the weight of the conditional prediction: w = 0 is the unconditional model, w = 1 the conditional one,
w > 1 sharpens towards the class (Ho & Salimans write (1 + w') eps_c - w' eps_u, i.e. w = 1 + w'). The
conditional and unconditional predictions come from one forward pass on a doubled batch.

The wrapper is a plain ``score_fn(u, t)``, so every sampler (em, pc, euler, heun, rk4, ode, sscs,
lie-trotter, the exponential integrators) is guided without knowing it. It holds no state.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..errors import ConfigError
from .conditions import Condition, eps_for_conditions, eps_to_score, null_label_of


class ClassifierFreeGuidance:
    """``score_fn(u, t)`` of classifier-free guidance with weight ``scale`` towards condition ``y``.

    Args:
        model: an :class:`holdsgm.losses.EpsModel` (anything with ``eps(u, t, y, **kw)``, ``score`` and ``sde``).
        y: the condition (an int class, per-sample labels (B,), or None).
        scale: w above. w = 0 and w = 1 cost one network evaluation (the unconditional resp. the
            conditional model, bit-identical to ``model.with_condition(None / y)``); otherwise one
            evaluation on a doubled batch.
        null: the unconditional condition (default None: the network's null label).
        net_kwargs: options passed to every network call (e.g. ``skip_scale`` for Skip-Tuning).
    """

    def __init__(self, model, y: Condition, scale: float, *, null: Condition = None, **net_kwargs):
        scale = float(scale)
        if not math.isfinite(scale):
            raise ConfigError(f"guidance scale must be a finite number, got {scale}")
        self.model = model
        self.y = y
        self.scale = scale
        self.null = null
        self.net_kwargs = net_kwargs
        self.null_label = null_label_of(model)

    def eps(self, u: Tensor, t) -> Tensor:
        """The guided eps prediction eps~(u, t)."""
        if self.scale == 0.0:
            return self.model.eps(u, t, self.null, **self.net_kwargs) if (self.null is not None or self.net_kwargs) \
                else self.model.eps(u, t)
        if self.scale == 1.0:
            return self.model.eps(u, t, self.y, **self.net_kwargs)
        e_u, e_c = eps_for_conditions(self.model, u, t, [self.null, self.y], self.null_label, self.net_kwargs)
        return e_u + self.scale * (e_c - e_u)

    def __call__(self, u: Tensor, t) -> Tensor:
        if self.scale == 0.0:
            return self.model.score(u, t, self.null, **self.net_kwargs)
        if self.scale == 1.0:
            return self.model.score(u, t, self.y, **self.net_kwargs)
        return eps_to_score(self.model, u, t, self.eps(u, t))

    def reset(self) -> None:
        """Nothing to reset (stateless); present so every guidance wrapper has the same interface."""

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidance(scale={self.scale:g}, y={_short(self.y)})"


def classifier_free_guidance(model, y: Condition, scale: float, **net_kwargs) -> ClassifierFreeGuidance:
    """Functional spelling of :class:`ClassifierFreeGuidance`."""
    return ClassifierFreeGuidance(model, y, scale, **net_kwargs)


def _short(c) -> str:
    if isinstance(c, Tensor):
        return f"tensor{tuple(c.shape)}"
    return repr(c)
