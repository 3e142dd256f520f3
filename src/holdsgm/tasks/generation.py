"""Generation of vectors and images, unconditional or class-conditional: hybrid score matching on a data
set held in memory (classifier-free guidance training by label dropout; optional left-right flips)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..engine import derive_seed
from ..losses import EpsModel, hsm_loss
from ..sde.base import LinearSDE
from .hsm import STREAM_FLIP, HSMBatch, HSMDraws

if TYPE_CHECKING:
    from ..data import InfiniteBatchSampler


class GenerationTask:
    """HSM/DSM training of ``net`` (predicting z_n) for ``sde`` on the items ``x`` (N, *data_shape).

    Args:
        labels: class labels (N,) for a class-conditional model (``n_classes`` > 0), else None.
        label_dropout: the probability of replacing a label by the null label ``n_classes``.
        random_flip: mirror each image left-right with probability 1/2 (a mask that is a pure function of
            the seed and the step over the global batch).
        mixed, precond, data_var: CLD's mixed score or EDM-style preconditioning (:class:`~holdsgm.losses.EpsModel`).
        weighting, stratified: of :func:`~holdsgm.losses.hsm_loss` and the training times.
    """

    def __init__(self, sde: LinearSDE, net: nn.Module, x: Tensor, *, batch_size: int, seed: int,
                 labels: Tensor | None = None, n_classes: int = 0, label_dropout: float = 0.0,
                 random_flip: bool = False, weighting: str = "unit", stratified: bool = True, mixed: bool = False,
                 data_var: float = 1.0, precond: bool = False):
        self.sde, self.net, self.x, self.labels = sde, net, x, labels if n_classes else None
        self.n_classes, self.random_flip, self.weighting = n_classes, random_flip, weighting
        self.mixed, self.data_var, self.batch_size, self.seed = mixed, data_var, batch_size, seed
        self.precond = precond
        self.draws = HSMDraws(sde, batch_size, seed, stratified, label_dropout)
        self._sampler: InfiniteBatchSampler | None = None  # this rank's, made by bind()
        self._next = 0
        self.state_shape = sde.state_shape((1, *x.shape[1:]))[1:]
        self._eps_model: tuple[nn.Module, EpsModel] | None = None

    def bind(self, device: torch.device, rank: int, world_size: int) -> None:
        from ..data import InfiniteBatchSampler

        local = self.batch_size // world_size
        self.rows = slice(rank * local, (rank + 1) * local)
        self._sampler = InfiniteBatchSampler(len(self.x), local, seed=self.seed, rank=rank, world_size=world_size)
        self.draws.bind(device, self.rows)
        self.x = self.x.to(device)
        self.labels = None if self.labels is None else self.labels.to(device)

    @property
    def sampler(self) -> InfiniteBatchSampler:
        """This rank's batch sampler (made by :meth:`bind`)."""
        if self._sampler is None:
            raise RuntimeError("GenerationTask.bind() must be called before drawing batches")
        return self._sampler

    def batch(self, step: int) -> HSMBatch:
        self._next = step + 1  # recorded in checkpoints as the batch sampler's position
        idx = self.sampler.batch_at(step).to(self.x.device)
        x0 = self.x.index_select(0, idx)
        if self.random_flip:
            g = torch.Generator().manual_seed(derive_seed(self.seed, STREAM_FLIP, step))
            mask = (torch.rand(self.batch_size, generator=g) < 0.5)[self.rows].to(x0.device)
            x0 = torch.where(mask.view(-1, *([1] * (x0.dim() - 1))), x0.flip(-1), x0)
        z, drop = self.draws.noise(self.state_shape)
        t, kernel = self.draws.times(step)
        y = None
        if self.labels is not None:
            y = self.labels.index_select(0, idx)
            if drop is not None:
                y = torch.where(drop, torch.full_like(y, self.n_classes), y)
        return HSMBatch(x0, y, t, z, kernel)

    def split(self, batch: HSMBatch, parts: int) -> list[HSMBatch]:
        return batch.split(parts)

    def eps_model(self, net: nn.Module) -> EpsModel:
        """The eps/score wrapper of ``net`` (made once per network object)."""
        if self._eps_model is None or self._eps_model[0] is not net:
            self._eps_model = (net, EpsModel(net, self.sde, mixed=self.mixed, data_var=self.data_var,
                                             precond=self.precond))
        return self._eps_model[1]

    def loss(self, batch: HSMBatch, net: nn.Module) -> Tensor:
        model = self.eps_model(net)
        return hsm_loss(model.eps, self.sde, batch.x0, t=batch.t, z=batch.z, weighting=self.weighting, y=batch.y,
                        reduction="mean", kernel=batch.kernel, net_weight=model.loss_weight(batch.t))

    def init_weights(self) -> None:
        return None

    def state_dict(self) -> dict:
        return {**self.draws.state_dict(), "sampler": self.sampler.state_dict() | {"step": self._next}}

    def load_state_dict(self, state: dict, step: int) -> None:
        self.draws.load_state_dict(state)
        self.sampler.load_state_dict({"seed": state["sampler"]["seed"], "step": step})
        self._next = step
