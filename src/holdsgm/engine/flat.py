"""A network's parameters and gradients as views of two contiguous buffers.

The training step's work besides the network (AdamW, the gradient norm, clipping, the EMA) is elementwise
over every parameter; done per parameter tensor it is one operation per tensor, which for a small model
on a CPU costs more than the arithmetic (~5-15 us per operation). With every parameter a view of one flat
buffer and every gradient a view of another (the layout of apex's and DeepSpeed's flat optimisers, and of
DDP's gradient buckets), each is one operation on one tensor, with the same elementwise results: AdamW,
clipping and the EMA are elementwise, so the flat update equals the per-tensor one bit for bit.

:meth:`FlatParameters.backward` writes a loss's gradients into the buffer (``torch.autograd.grad`` and one
copy). Plain ``loss.backward()`` (which DDP's gradient averaging needs) accumulates into the gradient views
in place (autograd adds into an existing ``.grad``), so :meth:`FlatParameters.zero_grad` zeroes the buffer
instead of dropping the gradients; if something replaced a gradient anyway (``zero_grad(set_to_none=True)``
elsewhere), :meth:`FlatParameters.gather` copies it back into the buffer and re-binds the view.

Checkpoints keep the per-parameter layout: :func:`split_optimizer_state` turns the flat optimiser's state
into the state a per-parameter AdamW would have (and :func:`join_optimizer_state` back), so runs resume
across versions and with or without flattening.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class FlatParameters:
    """``params`` (one dtype and device, dense) re-bound as views of ``self.param`` (their values) and,
    with ``grads``, of ``self.param.grad`` (their gradients)."""

    def __init__(self, params: Sequence[Tensor], grads: bool = True):
        params = list(params)
        if not params:
            raise ValueError("no parameters to flatten")
        first = params[0]
        for p in params:
            if p.dtype != first.dtype or p.device != first.device or p.layout != torch.strided:
                raise ValueError("flat parameters need one dtype and device and dense tensors")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter is listed twice")
        self.params = params
        self.shapes = [tuple(p.shape) for p in params]
        self.sizes = [p.numel() for p in params]
        with torch.no_grad():
            self.param = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]), requires_grad=grads)
        if grads:
            self.param.grad = torch.zeros_like(self.param)
        self._views: list[Tensor] = []  # the gradient views, as bound
        self._bind()

    def _bind(self) -> None:
        values, grads = self.param.detach(), self.param.grad
        offset, views = 0, []
        for p, n in zip(self.params, self.sizes):
            p.data = values[offset:offset + n].view_as(p)
            if grads is not None:
                p.grad = grads[offset:offset + n].view_as(p)
                views.append(p.grad)
            offset += n
        self._views = views

    @property
    def grad(self) -> Tensor:
        """The flat gradient buffer (``param.grad``)."""
        grad = self.param.grad
        if grad is None:
            raise RuntimeError("this FlatParameters was built without gradients (grads=False)")
        return grad

    def zero_grad(self) -> None:
        self.grad.zero_()

    def backward(self, loss: Tensor, accumulate: bool = False) -> Tensor:
        """The gradient of ``loss`` with respect to the parameters, written into the flat buffer (replacing
        what it held, as ``zero_grad`` + ``loss.backward()`` would; with ``accumulate`` added to it, as
        ``loss.backward()`` alone would) and returned.

        ``torch.autograd.grad`` hands the gradients over without accumulating them into ``.grad`` one
        tensor at a time, and one copy writes them all; a parameter the loss does not reach gets zero
        (as after ``zero_grad`` + backward). Not for DistributedDataParallel, which averages gradients
        from hooks on the accumulation ``loss.backward()`` does.
        """
        grads = torch.autograd.grad(loss, self.params, materialize_grads=True)
        flat = self.gather()  # re-bind views something else replaced (they are about to be overwritten)
        if accumulate:
            torch._foreach_add_(self._views, grads)
        else:
            torch._foreach_copy_(self._views, grads)
        return flat

    def gather(self) -> Tensor:
        """The flat gradient, after making sure every parameter's gradient is still its view (a replaced
        or dropped gradient is copied back, zero if dropped)."""
        if any(p.grad is not v for p, v in zip(self.params, self._views)):
            grads, offset = self.grad, 0
            with torch.no_grad():
                for p, n in zip(self.params, self.sizes):
                    view = grads[offset:offset + n]
                    if p.grad is None:
                        view.zero_()
                    elif p.grad.data_ptr() != view.data_ptr():
                        view.copy_(p.grad.reshape(-1))
                    offset += n
            self._bind()
        return self.grad

    def bound(self) -> bool:
        """Whether every parameter still views the flat buffers (nothing re-assigned its ``.data``)."""
        values = self.param.detach()
        offset = 0
        for p, n in zip(self.params, self.sizes):
            if p.data_ptr() != values[offset:offset + n].data_ptr() or p.numel() != n:
                return False
            offset += n
        return True


def _per_element(values, sizes) -> bool:
    """Whether optimiser-state values hold one entry per parameter element (AdamW's moments) rather than
    one per tensor (the step count): tensors of the given sizes, some of which exceed one element."""
    return all(torch.is_tensor(v) and v.numel() == n for v, n in zip(values, sizes)) and any(n > 1 for n in sizes)


def split_optimizer_state(state: dict, flat: FlatParameters) -> dict:
    """A one-tensor optimiser's ``state_dict`` as the per-parameter one (parameter ids 0..k-1 in
    ``flat.params`` order): per-element tensors are cut into the parameters' shapes, the rest (the step
    count) copied to each; no state (before the first step) stays none."""
    (group,) = state["param_groups"]
    flat_state = state["state"].get(group["params"][0], {})
    out: dict = {i: {} for i in range(len(flat.params))} if flat_state else {}
    for key, value in flat_state.items():
        if _per_element([value], [flat.param.numel()]):
            for i, (part, shape) in enumerate(zip(torch.split(value.reshape(-1), flat.sizes), flat.shapes)):
                out[i][key] = part.reshape(shape).clone()
        else:
            for per in out.values():
                per[key] = value.clone() if torch.is_tensor(value) else value
    return {"state": out, "param_groups": [dict(group, params=list(range(len(flat.params))))]}


def join_optimizer_state(state: dict, flat: FlatParameters) -> dict:
    """The inverse of :func:`split_optimizer_state`: a per-parameter AdamW ``state_dict`` (one group over
    ``flat.params``) as the flat optimiser's. ValueError if it does not fit (another network, or per-
    parameter step counts that differ, which one flat state cannot hold)."""
    groups = state["param_groups"]
    if len(groups) != 1 or len(groups[0]["params"]) != len(flat.params):
        raise ValueError(
            f"optimizer state for {sum(len(g['params']) for g in groups)} parameter(s) in {len(groups)} "
            f"group(s), the network has {len(flat.params)} in one"
        )
    ids = groups[0]["params"]
    per = [state["state"].get(i) for i in ids]
    joined: dict = {}
    if any(s is not None for s in per):
        if any(s is None for s in per) or len({tuple(sorted(s)) for s in per}) != 1:
            raise ValueError("optimizer state is missing for some parameters")
        for key in per[0]:
            values = [s[key] for s in per]
            if _per_element(values, flat.sizes):
                joined[key] = torch.cat([v.reshape(-1) for v in values])
            else:
                first = values[0]
                same = all(
                    torch.equal(torch.as_tensor(v), torch.as_tensor(first)) for v in values[1:]
                )
                if not same:
                    raise ValueError(f"optimizer state {key!r} differs between parameters")
                joined[key] = first
    return {"state": {0: joined} if joined else {}, "param_groups": [dict(groups[0], params=[0])]}
