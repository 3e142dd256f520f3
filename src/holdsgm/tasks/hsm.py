"""What every score-matching task shares: hybrid score matching's training times, their kernels and the
state noise of a step, each a pure function of (seed, step) over the global batch, of which a rank takes
its consecutive rows (so resumes and any number of DDP ranks agree)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..engine import derive_seed
from ..losses import sample_times
from ..sde.base import Kernel, LinearSDE

#: Training times (and their kernels) are drawn for about this many at once: a block of
#: TIME_BLOCK // batch_size steps (at least one); see :meth:`HSMDraws.times`.
TIME_BLOCK = 8192

# the purposes of the derived random streams (derive_seed(seed, purpose, ...)), one list for every task
STREAM_NOISE, STREAM_SPEECH, STREAM_TIMES, STREAM_FLIP = 1, 5, 6, 7


@dataclass
class HSMBatch:
    """A (micro-)batch of HSM training: clean data, condition, times, state noise and the times' kernels."""

    x0: Tensor
    y: Tensor | None
    t: Tensor
    z: Tensor
    """The state noise (the kernel's standard normal draw)."""
    kernel: Kernel

    def rows(self, rows: slice) -> HSMBatch:
        return replace(self, x0=self.x0[rows], y=None if self.y is None else self.y[rows], t=self.t[rows],
                       z=self.z[rows], kernel=Kernel(self.kernel.phi[rows], self.kernel.chol[rows]))

    def split(self, parts: int) -> list[HSMBatch]:
        if parts == 1:
            return [self]
        size = self.x0.shape[0] // parts
        return [self.rows(slice(i, i + size)) for i in range(0, self.x0.shape[0], size)]


class HSMDraws:
    """The random part of an HSM step: state noise (and a label-dropout mask) from one sequential generator
    (checkpointed), and training times drawn a block of steps at a time from a generator seeded by (seed,
    block), so a step's times are a pure function of (seed, step).

    A block's kernels are computed in one call: a kernel's cost is mostly per operation, not per time (toy
    MLP at batch 512: one step's 512 kernels 0.84 ms, ~4 % of its step; a block of 16 steps' 8192 kernels
    ~3.7 ms, 0.23 ms per step)."""

    def __init__(self, sde: LinearSDE, batch_size: int, seed: int, stratified: bool = True,
                 label_dropout: float = 0.0):
        self.sde, self.batch_size, self.seed = sde, batch_size, seed
        self.stratified, self.label_dropout = stratified, label_dropout
        self.generator = torch.Generator().manual_seed(derive_seed(seed, STREAM_NOISE))
        self.rows = slice(0, batch_size)
        self.device = torch.device("cpu")
        self._block: tuple[int, Tensor, Tensor, Tensor] | None = None

    def bind(self, device: torch.device, rows: slice) -> None:
        self.device, self.rows, self._block = device, rows, None

    def noise(self, state_shape: tuple[int, ...]) -> tuple[Tensor, Tensor | None]:
        """This rank's state noise and label-dropout mask (None without dropout) of the next step."""
        n, g = self.batch_size, self.generator
        z = torch.randn((n, *state_shape), generator=g)
        drop = torch.rand(n, generator=g) < self.label_dropout if self.label_dropout > 0 else None
        rows = self.rows
        return z[rows].to(self.device, non_blocking=True), None if drop is None else drop[rows].to(self.device)

    def times(self, step: int) -> tuple[Tensor, Kernel]:
        """This rank's training times at ``step`` and their HSM kernels (each step stratified on its own)."""
        per_block = max(1, TIME_BLOCK // self.batch_size)
        block, i = divmod(step, per_block)
        if self._block is None or self._block[0] != block:
            g = torch.Generator().manual_seed(derive_seed(self.seed, STREAM_TIMES, block))
            t = sample_times(self.batch_size, self.sde, stratified=self.stratified, generator=g, rows=per_block)
            t = t[:, self.rows].to(self.device)
            k = self.sde.marginal(t.reshape(-1))
            shape = (*t.shape, *k.phi.shape[-2:])
            self._block = (block, t, k.phi.reshape(shape), k.chol.reshape(shape))
        _, t, phi, chol = self._block
        return t[i], Kernel(phi[i], chol[i])

    def state_dict(self) -> dict:
        return {"rng": {"generator": self.generator.get_state()}}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["rng"]["generator"])
