"""Exponential moving average of network weights (Polyak averaging; used by every strong diffusion
codebase: score_sde, EDM, EDM2)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .flat import FlatParameters


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """Decay used for update ``step`` (0-based): ``min(decay, (1 + step) / (10 + step))`` with warm-up
    (TensorFlow's ``ExponentialMovingAverage(num_updates=...)``, as in score_sde), else ``decay``."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


class EMA:
    """``ema <- d ema + (1 - d) param`` after every optimiser step; buffers are copied."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._src: list[torch.Tensor] = []
        self._dst: list[torch.Tensor] = []
        self._flat: tuple[torch.Tensor, torch.Tensor] | None = None
        self._bind(model)

    def use_flat(self, src: FlatParameters) -> bool:
        """Keep the averaged weights in one flat buffer laid out as ``src`` (the trained parameters' flat
        buffer), so an update is one ``lerp_`` (elementwise: the same values as per tensor). Only when
        ``src`` holds exactly the averaged parameters in the same order; returns whether it does."""
        if len(src.params) != len(self._src) or any(a is not b for a, b in zip(src.params, self._src)):
            return False
        dst = FlatParameters(self._dst, grads=False)
        self._flat = (dst.param.detach(), src.param.detach())
        return True

    def _bind(self, model: nn.Module) -> None:
        src = dict(model.named_parameters())
        self._dst = [p for _, p in self.model.named_parameters()]
        self._src = [src[n] for n, _ in self.model.named_parameters()]
        self._bufs = list(
            zip([b for _, b in self.model.named_buffers()], [b for _, b in model.named_buffers()])
        )

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = ema_decay_at(step, self.decay, self.warmup)
        if self._flat is not None:
            dst, src = self._flat
            if d == 0.0:
                dst.copy_(src)
            else:
                dst.lerp_(src, 1.0 - d)
        elif d == 0.0:
            torch._foreach_copy_(self._dst, self._src)
        else:
            torch._foreach_lerp_(self._dst, self._src, 1.0 - d)  # no_grad: no detached copies needed
        for dst, src in self._bufs:
            dst.copy_(src)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)
