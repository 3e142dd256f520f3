"""An infinite, seeded, resumable batch-index iterator for in-memory data, with DDP sharding."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .dataset import MAX_SEED, check_int


def _mix(seed: int, stream: int, counter: int) -> int:
    """A 63-bit seed derived from (seed, stream, counter) by numpy's SeedSequence (uncorrelated streams)."""
    a, b = np.random.SeedSequence([seed, stream, counter]).generate_state(2, dtype=np.uint32)
    return ((int(a) << 32) | int(b)) & MAX_SEED


class InfiniteBatchSampler:
    """Yields index tensors (batch_size,) int64 forever, a pure function of (seed, step).

    Each epoch is a fresh random permutation of ``range(n)`` (seeded by (seed, epoch)); a global step
    takes the next ``batch_size * world_size`` indices of it and rank ``r`` gets the r-th slice, so the
    ranks' batches of one step are disjoint and an epoch visits every index at most once (the last
    ``n mod (batch_size * world_size)`` indices of each permutation are dropped). If the global batch is
    larger than ``n``, each step instead concatenates fresh permutations (seeded by (seed, step)) and
    items may repeat across ranks.

    Resuming: ``state_dict()`` returns ``{"seed", "step", "n", "batch_size", "world_size"}`` (plain ints,
    store it in the checkpoint); ``load_state_dict(state)`` restores ``seed`` and ``step`` and checks that
    ``n``, ``batch_size`` and ``world_size`` match, so the following batches are exactly those an
    uninterrupted run would have drawn. ``seed`` may be an int or a ``torch.Generator`` (one 63-bit seed
    is drawn from it at construction).
    """

    def __init__(self, n: int, batch_size: int, seed: int | torch.Generator = 0, rank: int = 0,
                 world_size: int = 1):
        self.n = check_int(n, "n", lo=1)
        self.batch_size = check_int(batch_size, "batch_size", lo=1)
        self.world_size = check_int(world_size, "world_size", lo=1)
        self.rank = check_int(rank, "rank", lo=0, hi=self.world_size - 1)
        if isinstance(seed, torch.Generator):
            seed = int(torch.randint(0, 2**62, (), generator=seed))
        self.seed = check_int(seed, "seed", lo=0, hi=MAX_SEED)
        self.step = 0
        self._perm_epoch: int | None = None
        self._perm: Tensor | None = None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        """Steps per pass over the data (0 when the global batch exceeds n)."""
        return self.n // self.global_batch

    @property
    def epoch(self) -> int:
        spe = self.steps_per_epoch
        return self.step // spe if spe else self.step

    def _permutation(self, counter: int) -> Tensor:
        g = torch.Generator().manual_seed(_mix(self.seed, 0, counter))
        return torch.randperm(self.n, generator=g)

    def batch_at(self, step: int) -> Tensor:
        """This rank's indices at global step ``step`` (does not move the iterator)."""
        step = check_int(step, "step", lo=0)
        lo = self.rank * self.batch_size
        spe = self.steps_per_epoch
        if spe == 0:
            reps = -(-self.global_batch // self.n)
            g = torch.Generator().manual_seed(_mix(self.seed, 1, step))
            stream = torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])
            return stream[lo:lo + self.batch_size].clone()
        epoch, k = divmod(step, spe)
        if self._perm is None or self._perm_epoch != epoch:
            self._perm, self._perm_epoch = self._permutation(epoch), epoch
        start = k * self.global_batch + lo
        return self._perm[start:start + self.batch_size].clone()

    def __iter__(self) -> "InfiniteBatchSampler":
        return self

    def __next__(self) -> Tensor:
        idx = self.batch_at(self.step)
        self.step += 1
        return idx

    def state_dict(self) -> dict:
        return {"seed": self.seed, "step": self.step, "n": self.n, "batch_size": self.batch_size,
                "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise DataError(f"batch sampler state must be a dict, got {type(state).__name__}")
        missing = [k for k in ("seed", "step") if k not in state]
        if missing:
            raise DataError(f"batch sampler state lacks {', '.join(missing)}")
        for k in ("n", "batch_size", "world_size"):
            if k in state and state[k] != getattr(self, k):
                raise DataError(f"cannot resume the batch sampler: the saved state has {k}={state[k]!r} "
                                f"but this run has {k}={getattr(self, k)}")
        self.seed = check_int(state["seed"], "seed", lo=0, hi=MAX_SEED)
        self.step = check_int(state["step"], "step", lo=0)
        self._perm_epoch, self._perm = None, None
