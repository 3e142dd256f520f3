"""Evaluating one eps-model under several conditions in a single forward pass.

A *condition* is what the network receives as ``y``: ``None`` (the null/unconditional label), an integer
class label (the same for every sample) or a tensor whose first dimension is the batch (per-sample labels;
in general any conditioning tensor the network accepts). The guidance wrappers stack the state once per
distinct condition, concatenate the conditions along the batch dimension and call the network once
(as Ho & Salimans 2022 and SEGA's reference code do), then split the output.

Everything here works in eps space: the network's raw output, the predicted noise of the last phase-space
component z_n (see :mod:`holdsgm.losses.parameterization`). The score follows as
``s = -ell_t eps`` (:func:`eps_to_score`); linear combinations commute with that map, so guidance in eps
space and in score space are the same thing at a fixed t.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError

Condition = Any  # None | int | Tensor (batch first)


def batch_times(t, u: Tensor) -> Tensor:
    """``t`` (a number, a 0-d tensor or (B,)) as a float64 tensor of shape (B,) on ``u``'s device."""
    t = torch.as_tensor(t, dtype=torch.float64, device=u.device)
    return t.expand(u.shape[0]) if t.dim() == 0 else t.reshape(u.shape[0])


def per_sample(v: Tensor, like: Tensor) -> Tensor:
    """A (B,) tensor reshaped to broadcast against ``like`` (B, ...), in ``like``'s dtype."""
    return v.to(dtype=like.dtype, device=like.device).reshape(-1, *([1] * (like.dim() - 1)))


def eps_to_score(model, u: Tensor, t, eps: Tensor) -> Tensor:
    """s(u, t) = -ell_t eps: the last component's score from a (possibly guided) eps prediction
    (the same operations as :meth:`holdsgm.losses.EpsModel.score`)."""
    tt = batch_times(t, u)
    ell = model.sde.marginal(tt).ell
    return -per_sample(ell, u) * eps


def null_label_of(model) -> int | None:
    """The network's null label (its ``n_classes``) when it is class-conditional, else None."""
    k = getattr(getattr(model, "net", None), "n_classes", None)
    if k is None:  # e.g. a wrapped network (DDP, autocast): look one level down
        net = getattr(model, "net", None)
        inner = getattr(net, "net", None) or getattr(net, "module", None)
        k = getattr(inner, "n_classes", None)
    return int(k) if isinstance(k, numbers.Integral) and not isinstance(k, bool) and int(k) > 0 else None


def condition_key(c: Condition):
    """A hashable key that identifies equal conditions (so each is evaluated once)."""
    if c is None:
        return ("null",)
    if isinstance(c, Tensor):
        return ("tensor", id(c))
    if isinstance(c, bool) or not isinstance(c, numbers.Integral):
        raise ConfigError(f"a condition must be None, an integer class label or a tensor, got {c!r:.60}")
    return ("label", int(c))


def condition_tensor(c: Condition, batch: int, device, null_label: int | None) -> Tensor | None:
    """The condition as a (batch, ...) tensor; None when it is the null condition and no null label is known."""
    if c is None:
        if null_label is None:
            return None
        return torch.full((batch,), null_label, dtype=torch.long, device=device)
    if isinstance(c, Tensor):
        c = c.to(device)
        if c.dim() == 0:
            return c.expand(batch)
        if c.shape[0] != batch:
            raise ConfigError(f"a per-sample condition has {c.shape[0]} rows but the batch has {batch} samples")
        return c
    return torch.full((batch,), int(c), dtype=torch.long, device=device)


def eps_for_conditions(model, u: Tensor, t, conditions: Sequence[Condition], null_label: int | None,
                       net_kwargs: dict | None = None) -> list[Tensor]:
    """eps_theta(u, t | c) for every condition ``c``, with one network call when they can be stacked.

    The state is repeated once per condition (rows ``k*B .. (k+1)*B`` belong to condition k). When a
    null condition cannot be expressed as a label (no ``null_label``), each condition is evaluated by
    its own call instead. Returns a list of (B, ...) tensors in the order of ``conditions``.
    """
    net_kwargs = net_kwargs or {}
    tt = batch_times(t, u)
    b = u.shape[0]
    if len(conditions) == 1:
        return [model.eps(u, tt, _single(conditions[0], b, u.device), **net_kwargs)]
    ys = [y for c in conditions if (y := condition_tensor(c, b, u.device, null_label)) is not None]
    if len(ys) < len(conditions) or len({(y.dtype, tuple(y.shape[1:])) for y in ys}) > 1:
        return [model.eps(u, tt, _single(c, b, u.device), **net_kwargs) for c in conditions]
    k = len(conditions)
    out = model.eps(torch.cat([u] * k), tt.repeat(k), torch.cat(ys), **net_kwargs)
    return list(out.chunk(k))


def _single(c: Condition, batch: int, device) -> Tensor | None:
    """A condition for a single call: None stays None (the network's own null label)."""
    return None if c is None else condition_tensor(c, batch, device, None)
