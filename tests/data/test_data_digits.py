import torch

from holdsgm.data import load_dataset


def test_digits_shape_range_levels_labels():
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == torch.float32
    assert ds.data_shape == (1, 8, 8) and ds.is_image
    assert ds.y.shape == (1797,) and ds.y.dtype == torch.int64
    assert ds.n_classes == 10 and set(ds.y.tolist()) == set(range(10))
    assert ds.n_bins == 17 and ds.data_range == (-1.0, 1.0)
    levels = torch.unique(ds.x)
    assert levels.numel() == 17
    assert torch.equal(levels, torch.arange(17, dtype=torch.float32) / 16 * 2 - 1)
    assert float(ds.x.min()) == -1.0 and float(ds.x.max()) == 1.0


def test_digits_split_deterministic_disjoint():
    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    assert len(train) + len(test) == 1797 and len(test) == 180
    again = load_dataset("digits", split="test")
    assert torch.equal(test.x, again.x) and torch.equal(test.y, again.y)
    other = load_dataset("digits", split="test", split_seed=1)
    assert not torch.equal(test.x, other.x)
    # disjoint as index sets: Dataset.split on an index-tagged copy
    full = load_dataset("digits")
    full.y = torch.arange(len(full))
    tr, te = full.split(0.1, 0)
    assert set(tr.y.tolist()).isdisjoint(te.y.tolist())
    assert len(set(tr.y.tolist()) | set(te.y.tolist())) == 1797
    assert torch.equal(te.x, test.x)
    assert load_dataset("digits", split="test", test_fraction=0.2).x.shape[0] == 359
