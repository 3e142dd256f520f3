import pytest
import torch

from holdsgm.data import InfiniteBatchSampler
from holdsgm.errors import DataError


def take(s, k):
    return [next(s) for _ in range(k)]


def test_deterministic_and_seed_dependent():
    a = take(InfiniteBatchSampler(100, 16, seed=5), 20)
    b = take(InfiniteBatchSampler(100, 16, seed=5), 20)
    c = take(InfiniteBatchSampler(100, 16, seed=6), 20)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert all(x.dtype == torch.int64 and x.shape == (16,) for x in a)


def test_epoch_is_without_replacement_and_epochs_differ():
    s = InfiniteBatchSampler(100, 16, seed=0)
    assert s.steps_per_epoch == 6
    e0 = torch.cat(take(s, 6))
    e1 = torch.cat(take(s, 6))
    assert e0.unique().numel() == 96 and e1.unique().numel() == 96
    assert not torch.equal(e0, e1)
    assert s.epoch == 2


def test_ranks_disjoint_and_cover():
    n, bs, ws = 103, 8, 4
    samplers = [InfiniteBatchSampler(n, bs, seed=1, rank=r, world_size=ws) for r in range(ws)]
    seen = []
    for _ in range(samplers[0].steps_per_epoch):
        batches = [next(s) for s in samplers]
        step = torch.cat(batches)
        assert step.unique().numel() == bs * ws  # disjoint across ranks
        seen.append(step)
    seen = torch.cat(seen)
    assert seen.unique().numel() == seen.numel() == (n // (bs * ws)) * bs * ws
    assert seen.min() >= 0 and seen.max() < n


def test_resume_from_state():
    s = InfiniteBatchSampler(50, 7, seed=torch.Generator().manual_seed(3))
    take(s, 11)
    state = s.state_dict()
    ref = take(s, 15)
    r = InfiniteBatchSampler(50, 7, seed=0)
    r.load_state_dict(dict(state))
    assert all(torch.equal(x, y) for x, y in zip(ref, take(r, 15)))
    assert r.step == s.step == 26
    assert torch.equal(r.batch_at(3), InfiniteBatchSampler(50, 7, seed=state["seed"]).batch_at(3))
    with pytest.raises(DataError, match="batch_size"):
        InfiniteBatchSampler(50, 8).load_state_dict(state)
    with pytest.raises(DataError, match="step"):
        r.load_state_dict({"seed": 0})


def test_batch_larger_than_data():
    s = InfiniteBatchSampler(5, 4, seed=0, rank=1, world_size=2)
    assert s.steps_per_epoch == 0
    b = take(s, 3)
    assert all(x.shape == (4,) and x.min() >= 0 and x.max() < 5 for x in b)
    assert torch.equal(b[2], InfiniteBatchSampler(5, 4, seed=0, rank=1, world_size=2).batch_at(2))


@pytest.mark.parametrize("kw", [
    dict(n=0, batch_size=1), dict(n=5, batch_size=0), dict(n=5, batch_size=2, rank=2, world_size=2),
    dict(n=5.0, batch_size=2), dict(n=5, batch_size=2, seed=-1),
])
def test_bad_arguments(kw):
    with pytest.raises(DataError):
        InfiniteBatchSampler(**kw)
