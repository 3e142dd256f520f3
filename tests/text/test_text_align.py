"""Monotonic alignment search equals brute force over every monotonic alignment on small cases."""

import itertools

import numpy as np
import pytest
import torch

from holdsgm.errors import HoldsgmError
from holdsgm.text.align import durations_to_path, gaussian_log_likelihood, maximum_path


def brute_force(lp: np.ndarray) -> tuple[float, np.ndarray]:
    """Best total over all compositions of Ty frames into Tx positive durations."""
    tx, ty = lp.shape
    best, best_path = -np.inf, None
    for cuts in itertools.combinations(range(1, ty), tx - 1):
        bounds = (0, *cuts, ty)
        path = np.zeros_like(lp)
        for i in range(tx):
            path[i, bounds[i]:bounds[i + 1]] = 1
        score = float((lp * path).sum())
        if score > best:
            best, best_path = score, path
    return best, best_path


@pytest.mark.parametrize("seed", range(20))
def test_mas_equals_brute_force_batched_with_padding(seed):
    rng = np.random.default_rng(seed)
    b, tx_max, ty_max = 3, 4, 8
    x_len = rng.integers(1, tx_max + 1, b)
    y_len = np.array([rng.integers(x, ty_max + 1) for x in x_len])
    lp = rng.normal(size=(b, tx_max, ty_max))
    path = maximum_path(lp, x_len, y_len)
    for k in range(b):
        tx, ty = x_len[k], y_len[k]
        best, best_path = brute_force(lp[k, :tx, :ty])
        got = path[k, :tx, :ty]
        assert float((lp[k, :tx, :ty] * got).sum()) == pytest.approx(best, abs=1e-9)
        np.testing.assert_array_equal(got, best_path)  # continuous scores: the optimum is unique
        assert path[k].sum() == ty and path[k, tx:].sum() == 0 and path[k, :, ty:].sum() == 0


def test_mas_accepts_tensors_and_finds_a_planted_alignment():
    mu = torch.randn(1, 8, 5) * 3
    durations = torch.tensor([[2, 1, 3, 1, 2]])
    true = durations_to_path(durations)
    y = torch.einsum("bci,bij->bcj", mu, true) + 0.1 * torch.randn(1, 8, 9)
    path = maximum_path(gaussian_log_likelihood(mu, y), torch.tensor([5]), torch.tensor([9]))
    np.testing.assert_array_equal(path, true.numpy())


def test_log_likelihood_matches_a_direct_computation():
    mu, y = torch.randn(2, 6, 4), torch.randn(2, 6, 7)
    direct = -0.5 * ((y[:, :, None, :] - mu[:, :, :, None]) ** 2).sum(1)
    torch.testing.assert_close(gaussian_log_likelihood(mu, y), direct, rtol=1e-5, atol=1e-5)


def test_durations_to_path():
    p = durations_to_path(torch.tensor([[1, 2, 0], [2, 1, 1]]))
    assert p.shape == (2, 3, 4)
    assert p[0].sum(0).tolist() == [1, 1, 1, 0] and p[0, 1].tolist() == [0, 1, 1, 0]
    assert p[1].sum(0).tolist() == [1, 1, 1, 1]


def test_more_tokens_than_frames_is_one_clear_error():
    with pytest.raises(HoldsgmError, match="at least one frame"):
        maximum_path(np.zeros((1, 5, 3)), [5], [3])
