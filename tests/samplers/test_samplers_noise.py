"""Per-sample noise: standard normal, independent across samples and draws, batch-invariant."""

import numpy as np
import torch
from scipy import stats

from holdsgm.samplers import BatchNoise, PerSampleNoise, as_noise


def test_per_sample_noise_is_standard_normal():
    z = PerSampleNoise(range(500))((500, 800)).numpy().astype(np.float64).ravel()
    n = z.size
    assert abs(z.mean()) < 4 / np.sqrt(n) and abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 4 * np.sqrt(6 / n) and abs(stats.kurtosis(z)) < 4 * np.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-4


def test_rows_and_draws_are_uncorrelated():
    src = PerSampleNoise(range(400))
    a, b = src((400, 100)).numpy(), src((400, 100)).numpy()
    bound = 5 / np.sqrt(a.size)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < bound  # successive draws
    assert abs(np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]) < bound  # neighbouring seeds
    assert abs(np.corrcoef(a[:, :50].ravel(), a[:, 50:].ravel())[0, 1]) < bound  # cosine vs sine half


def test_a_sample_depends_only_on_its_seed_and_draw_count():
    together = PerSampleNoise([3, 7, 11])
    alone = PerSampleNoise([7])
    for _ in range(3):
        assert torch.equal(together((3, 2, 5))[1], alone((1, 2, 5))[0])
    sub = PerSampleNoise([3, 7, 11])
    sub((3, 4))
    picked = sub.select([2])
    ref = PerSampleNoise([11])
    ref((1, 4))
    assert torch.equal(picked((1, 4)), ref((1, 4)))
    assert not torch.equal(PerSampleNoise([1])((1, 8)), PerSampleNoise([2])((1, 8)))


def test_as_noise_accepts_every_form():
    assert as_noise(None)((2, 3)).shape == (2, 3)
    assert torch.equal(as_noise(5)((2, 3)), BatchNoise(5)((2, 3)))
    assert isinstance(as_noise([1, 2]), PerSampleNoise)
    g = torch.Generator().manual_seed(0)
    assert as_noise(g)((2,)).shape == (2,)


def _spec(seed: int, draw: int, per_row: int) -> np.ndarray:
    """The generator's definition, one sample at a time and in plain integer arithmetic (the class does the
    same for a whole batch at once): SplitMix64 of (seed) and of (draw << 32 | pair), xor-ed and mixed
    again; the high 32 bits give Box-Muller's radius (float64), bits 8-31 its angle (float32)."""
    mask = (1 << 64) - 1

    def mix(x):
        x = (x + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    key = mix(seed & mask)
    pairs = (per_row + 1) // 2
    bits = [mix(key ^ mix((draw << 32) + j)) for j in range(pairs)]
    radius = np.sqrt(-2.0 * np.log((np.array([b >> 32 for b in bits], dtype=np.float64) + 0.5) * 2.0**-32))
    angle = np.array([(b >> 8) & 0xFFFFFF for b in bits], dtype=np.float32) * np.float32(2 * np.pi * 2.0**-24)
    r = radius.astype(np.float32)
    return np.concatenate([r * np.cos(angle), r * np.sin(angle)])[:per_row]


def test_batched_generator_equals_its_per_sample_definition():
    seeds = [0, 1, 7, 2**64 - 1, -5, 12345678901234]
    src = PerSampleNoise(seeds)
    for draw, shape in enumerate([(6, 5), (6, 2, 3), (6, 1)]):
        z = src(shape).reshape(len(seeds), -1).numpy()
        per_row = z.shape[1]
        for i, s in enumerate(seeds):
            np.testing.assert_array_equal(z[i], _spec(s, draw, per_row))
    # rows with different draw counts (a sub-source after select, then a fresh one) take the general path
    mixed = PerSampleNoise([3, 4])
    mixed((2, 3))
    both = PerSampleNoise.__new__(PerSampleNoise)
    both.seeds, both._keys = [3, 4], mixed._keys.copy()
    both._draws = np.array([1, 0], dtype=np.uint64)
    z = both((2, 7)).numpy()
    np.testing.assert_array_equal(z[0], _spec(3, 1, 7))
    np.testing.assert_array_equal(z[1], _spec(4, 0, 7))


def test_a_row_is_the_same_at_every_batch_size_and_position():
    """The vectorised float32 cosine and sine must not depend on where a row lands in the array (SIMD
    bodies vs tails): one seed at every position of batches of 1 to 37 rows, odd and even row sizes."""
    for per_row in (1, 6, 9, 64):
        ref = PerSampleNoise([42])((1, per_row))[0]
        for b in range(1, 38):
            for pos in {0, b // 2, b - 1}:
                seeds = list(range(1000, 1000 + b))
                seeds[pos] = 42
                assert torch.equal(PerSampleNoise(seeds)((b, per_row))[pos], ref), (per_row, b, pos)
