"""Noise sources for samplers.

A noise source is a callable ``noise(shape) -> Tensor`` (standard normal, float32 on the CPU; the
sampler moves it). Two kinds:

* :class:`PerSampleNoise` (the role of EDM's ``StackedRandomGenerator``): a sample's noise depends only
  on its seed, not on the batch size, the batch it lands in, or the number of devices; generated for
  the whole batch at once by a counter-based hash generator.
* :class:`BatchNoise`: one generator for the whole batch; fast, but results depend on batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

NoiseFn = Callable[[tuple], Tensor]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014), elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
        return x ^ (x >> np.uint64(31))


class PerSampleNoise:
    """Standard normal draws where row i depends only on ``seeds[i]`` and the draw count.

    A counter-based generator: every pair of numbers comes from a SplitMix64 hash of (seed, draw index,
    pair index), split into a 32-bit uniform for Box-Muller's radius (float64; tails resolved to ~6.6 sd)
    and a 24-bit one for its angle (cosine and sine in float32, the output's precision), so a whole batch
    is generated at once (vectorised) while each sample's noise stays independent of the batch size, the
    batch it lands in, the device and the number of processes (EDM's per-sample seeding, without a
    generator per sample). Bit for bit on one machine; NumPy's float32 trigonometry may differ in the
    last bit between CPU families (its SIMD kernels are chosen at run time).
    """

    def __init__(self, seeds: Sequence[int]):
        self.seeds = [int(s) for s in seeds]
        try:  # seeds modulo 2^64 (int64 -> uint64 wraps as two's complement, as s & (2^64 - 1) does)
            raw = np.asarray(self.seeds, dtype=np.int64).astype(np.uint64)
        except OverflowError:  # a seed outside int64
            raw = np.asarray([s & 0xFFFFFFFFFFFFFFFF for s in self.seeds], dtype=np.uint64)
        self._keys = _splitmix64(raw)
        self._draws = np.zeros(len(self.seeds), dtype=np.uint64)

    def __call__(self, shape) -> Tensor:
        shape = tuple(shape)
        if shape[0] != len(self.seeds):
            raise ValueError(f"noise for {shape[0]} samples requested from {len(self.seeds)} seeds")
        per_row = int(np.prod(shape[1:], dtype=np.int64))
        pairs = (per_row + 1) // 2
        idx = np.arange(pairs, dtype=np.uint64)
        draws = self._draws
        with np.errstate(over="ignore"):
            if draws.size and (draws == draws[0]).all():
                # the usual case (every sample has drawn as often): the (draw, pair) hash is one row
                stream = _splitmix64((draws[0] << np.uint64(32)) + idx)[None, :]
            else:
                stream = _splitmix64((draws[:, None] << np.uint64(32)) + idx[None, :])
            bits = _splitmix64(self._keys[:, None] ^ stream)
        self._draws += np.uint64(1)
        # one 64-bit hash -> two uniforms -> two normals by Box-Muller: the radius from the high 32 bits
        # in float64, the angle from the next 24 bits on a float32 lattice, its cosine and sine in
        # float32 (NumPy's vectorised kernels: ~9x faster than float64 libm calls, and the same value
        # whatever the element's position in the array, so rows stay batch-independent)
        radius = (bits >> np.uint64(32)).astype(np.float64)
        radius += 0.5
        radius *= 2.0**-32  # u1 in (0, 1): never 0
        np.log(radius, out=radius)
        radius *= -2.0
        np.sqrt(radius, out=radius)
        r32 = radius.astype(np.float32)
        angle = ((bits >> np.uint64(8)) & np.uint64(0xFFFFFF)).astype(np.float32)
        angle *= np.float32(2.0 * np.pi * 2.0**-24)
        z = np.empty((len(self.seeds), 2 * pairs), dtype=np.float32)
        np.multiply(r32, np.cos(angle), out=z[:, :pairs])
        np.multiply(r32, np.sin(angle, out=angle), out=z[:, pairs:])
        return torch.from_numpy(z[:, :per_row]).reshape(shape)

    def select(self, index) -> "PerSampleNoise":
        """The sub-source for a subset of samples (keeps each sample's draw count)."""
        out = PerSampleNoise.__new__(PerSampleNoise)
        index = list(index)
        out.seeds = [self.seeds[i] for i in index]
        out._keys = self._keys[index]
        out._draws = self._draws[index].copy()
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
