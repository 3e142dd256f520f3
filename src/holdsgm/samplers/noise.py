"""Noise sources for samplers.

A noise source is a callable ``noise(shape) -> Tensor`` (standard normal, float32 on the CPU; the
sampler moves it). Two kinds:

* :class:`PerSampleNoise` (EDM's ``StackedRandomGenerator``): one generator per sample, seeded by
  that sample's seed, so a sample depends only on its seed, not on the batch size, the batch it
  lands in, or the number of devices. Costs one generator call per sample and draw.
* :class:`BatchNoise`: one generator for the whole batch; fast, but results depend on batch size.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

NoiseFn = Callable[[tuple], Tensor]


class PerSampleNoise:
    """Standard normal draws where row i comes from its own generator seeded with ``seeds[i]``."""

    def __init__(self, seeds: Sequence[int]):
        self.seeds = [int(s) for s in seeds]
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]

    def __call__(self, shape) -> Tensor:
        shape = tuple(shape)
        if shape[0] != len(self.generators):
            raise ValueError(f"noise for {shape[0]} samples requested from {len(self.generators)} seeds")
        return torch.stack([torch.randn(shape[1:], generator=g) for g in self.generators])

    def select(self, index) -> "PerSampleNoise":
        """The sub-source for a subset of samples (keeps each generator's state)."""
        out = PerSampleNoise.__new__(PerSampleNoise)
        out.seeds = [self.seeds[i] for i in index]
        out.generators = [self.generators[i] for i in index]
        return out


class BatchNoise:
    """Standard normal draws from a single generator (fast; batch-size dependent)."""

    def __init__(self, seed: int | None = None, generator: torch.Generator | None = None):
        self.generator = generator if generator is not None else torch.Generator().manual_seed(
            0 if seed is None else int(seed))

    def __call__(self, shape) -> Tensor:
        return torch.randn(tuple(shape), generator=self.generator)


def as_noise(noise, n: int | None = None) -> NoiseFn:
    """Normalise the ``noise`` argument of a sampler: None (global RNG), an int seed, a Generator,
    a sequence of per-sample seeds, or a callable noise source."""
    if noise is None:
        return lambda shape: torch.randn(tuple(shape))
    if isinstance(noise, torch.Generator):
        return BatchNoise(generator=noise)
    if isinstance(noise, int):
        return BatchNoise(seed=noise)
    if callable(noise):
        return noise
    return PerSampleNoise(list(noise))
