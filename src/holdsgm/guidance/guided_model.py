"""A model with guidance: :class:`GuidedModel` looks like an :class:`holdsgm.losses.EpsModel` to samplers and
to :func:`holdsgm.runs.inference.generate`; its ``with_condition(y)`` returns a *fresh* guided ``score_fn`` for
each batch (so stateful semantic guidance starts every batch from a clean state). Sampling a run with it:
:mod:`holdsgm.runs.guided`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from .cfg import ClassifierFreeGuidance
from .semantic import GuidanceDirection, SemanticGuidance
from .skip_tuning import SkipTuned, parse_skip_scale


class GuidedModel:
    """An EpsModel-like model function with guidance (see the module).

    Args:
        eps_model: the run's :class:`~holdsgm.losses.EpsModel`.
        cfg_scale: classifier-free weight of the sample's own label (1: plain conditional sampling;
            0: unconditional; > 1: guided). Ignored for unlabelled batches (y=None).
        directions: semantic directions (:class:`GuidanceDirection`), applied on top.
        skip_scale: a Skip-Tuning spec (:func:`holdsgm.guidance.parse_skip_scale`), or None.
    """

    def __init__(self, eps_model, *, cfg_scale: float = 1.0, directions: Sequence[GuidanceDirection] = (),
                 skip_scale=None):
        self.base_model = eps_model
        self.skip = parse_skip_scale(skip_scale)
        self.model = SkipTuned(eps_model, self.skip) if self.skip is not None else eps_model
        self.sde = eps_model.sde
        self.net = eps_model.net
        self.cfg_scale = float(cfg_scale)
        self.directions = list(directions)
        self.last: object | None = None  # the most recent score_fn handed out (for diagnostics)

    def eps(self, u, t, y=None, **kw):
        return self.model.eps(u, t, y, **kw)

    def score(self, u, t, y=None, **kw):
        return self.model.score(u, t, y, **kw)

    def with_condition(self, y: Tensor | None = None):
        """A fresh guided ``score_fn(u, t)`` for a batch with labels ``y`` (or None)."""
        fn: Callable[[Tensor, Tensor], Tensor]
        if self.directions:
            fn = SemanticGuidance(self.model, self.directions, base=y, base_scale=self.cfg_scale)
        elif y is not None and self.cfg_scale != 1.0:
            fn = ClassifierFreeGuidance(self.model, y, self.cfg_scale)
        else:
            fn = self.model.with_condition(y)
        self.last = fn
        return fn

    def describe(self) -> dict:
        return {"cfg_scale": self.cfg_scale, "directions": [d.describe() for d in self.directions],
                "skip_scale": None if self.skip is None else self.skip.describe()}
