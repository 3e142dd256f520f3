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
