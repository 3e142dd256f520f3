import numpy as np
import pytest
import torch

from holdsgm.data import Dataset, dataset_names, load_dataset
from holdsgm.errors import DataError, HoldsgmError


def test_unknown_name_lists_choices():
    with pytest.raises(DataError) as e:
        load_dataset("cifar10")
    msg = str(e.value)
    assert "cifar10" in msg and all(n in msg for n in dataset_names())


@pytest.mark.parametrize("name, opts, needle", [
    ("moons", {"n": "100"}, "n must be an integer"),
    ("moons", {"n": True}, "n must be an integer"),
    ("moons", {"n": 0}, "n must be in"),
    ("moons", {"seed": -3}, "seed"),
    ("moons", {"seed": 1.5}, "seed"),
    ("moons", {"bogus": 1}, "unknown option 'bogus'.*accepted: n, seed"),
    ("digits", {"n": 10}, "unknown option 'n'"),
    ("digits", {"split": "val"}, "split must be one of"),
    ("digits", {"split": "test", "test_fraction": 1.5}, "test_fraction"),
    ("digits", {"split_seed": None}, "split_seed"),
    (3.14, {}, "name or a path"),
    (None, {}, "name or a path"),
    ("", {}, "non-empty"),
    ("README.txt", {}, "unknown data set"),
])
def test_bad_options_are_data_errors(name, opts, needle):
    with pytest.raises(DataError, match=needle) as e:
        load_dataset(name, **opts)
    assert "\n" not in str(e.value)


def test_unsupported_existing_file(tmp_path):
    p = tmp_path / "data.csv"
    p.write_text("1,2\n")
    with pytest.raises(DataError, match="data.csv.*not a supported"):
        load_dataset(str(p))


def test_dataset_split_and_properties():
    ds = Dataset(x=torch.arange(20.0)[:, None], y=torch.arange(20), name="t", n_classes=20)
    tr, te = ds.split(0.25, seed=3)
    assert len(tr) == 15 and len(te) == 5 and tr.data_shape == (1,)
    assert set(tr.y.tolist()).isdisjoint(te.y.tolist())
    assert torch.equal(te.y, te.y.sort().values)  # original order kept
    with pytest.raises(DataError):
        Dataset(x=torch.zeros(1, 2)).split(0.5)
    with pytest.raises(DataError):
        ds.split(0.0)


def test_toy_split_option():
    full = load_dataset("pinwheel", n=100, seed=2)
    te = load_dataset("pinwheel", n=100, seed=2, split="test", test_fraction=0.3)
    assert len(te) == 30 and all((full.x == row).all(1).any() for row in te.x)


def test_fuzz_options_and_arrays():
    """Random option dicts and random arrays give a Dataset or a HoldsgmError, nothing else."""
    hyp = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                       st.text(max_size=5), st.lists(st.integers(-2, 300), max_size=3))
    keys = st.sampled_from(["n", "seed", "split", "test_fraction", "split_seed", "key", "layout",
                            "value_range", "labels", "y", "name", "recursive", "zzz"])
    names = st.sampled_from(["moons", "8gaussians", "digits", "checkerboard", "nope"])

    @hyp.settings(max_examples=60, deadline=None, derandomize=True)
    @hyp.given(names, st.dictionaries(keys, values, max_size=3))
    def check_names(name, opts):
        if "n" in opts and isinstance(opts["n"], int) and opts["n"] > 5000:
            opts["n"] = 5000
        try:
            ds = load_dataset(name, **opts)
        except HoldsgmError:
            return
        assert isinstance(ds, Dataset) and torch.isfinite(ds.x).all()

    shapes = st.lists(st.integers(0, 5), min_size=0, max_size=5)
    dtypes = st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_, np.complex64])
    fills = st.one_of(st.floats(-1e40, 1e40), st.just(float("nan")))

    @hyp.settings(max_examples=80, deadline=None, derandomize=True)
    @hyp.given(shapes, dtypes, fills, st.dictionaries(keys, values, max_size=2))
    def check_arrays(shape, dtype, fill, opts):
        rng = np.random.default_rng(len(shape))
        a = (rng.random(shape) * fill)
        with np.errstate(all="ignore"):
            a = a.astype(dtype)
        try:
            ds = load_dataset(a, **opts)
        except HoldsgmError:
            return
        assert isinstance(ds, Dataset) and torch.isfinite(ds.x).all() and ds.x.dtype == torch.float32

    check_names()
    check_arrays()
