import json
import math

import pytest
import torch

from holdsgm.data import TOY_DATASETS, has_density, load_dataset, toy_mixture
from holdsgm.data.toy import sample_mixture_json
from holdsgm.errors import DataError
from holdsgm.mixture import GaussianMixture


@pytest.mark.parametrize("name", list(TOY_DATASETS))
def test_toy_shape_dtype_seed(name):
    sampler = TOY_DATASETS[name]
    a = sampler(1001, torch.Generator().manual_seed(3))
    b = sampler(1001, torch.Generator().manual_seed(3))
    c = sampler(1001, torch.Generator().manual_seed(4))
    assert a.shape == (1001, 2) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.abs().max() < 6  # scaled to roughly [-4, 4]
    assert a.std(0).min() > 0.5  # not degenerate


@pytest.mark.parametrize("name", list(TOY_DATASETS))
def test_toy_through_load_dataset(name):
    ds = load_dataset(name, n=300, seed=1)
    assert ds.x.shape == (300, 2) and ds.data_shape == (2,) and ds.y is None
    assert ds.n_bins is None and ds.n_classes == 0 and ds.name == name
    assert (ds.mixture is not None) == has_density(name) == (name == "8gaussians")
    assert torch.equal(ds.x, TOY_DATASETS[name](300, torch.Generator().manual_seed(1)))


def test_8gaussians_matches_mixture():
    gm = GaussianMixture.eight_gaussians()
    n = 8000
    x = load_dataset("8gaussians", n=n, seed=7).x
    # exactly the mixture's own sampler
    assert torch.equal(x, gm.sample(n, generator=torch.Generator().manual_seed(7)).float())
    mu, cov = gm.mean_and_cov()
    xd = x.double()
    sd = cov.diagonal().sqrt()
    assert ((xd.mean(0) - mu).abs() < 5 * sd / math.sqrt(n)).all()
    assert torch.allclose(torch.cov(xd.T), cov, atol=0.15)
    mode = torch.cdist(xd, gm.means).argmin(1)
    frac = torch.bincount(mode, minlength=8).double() / n
    assert ((frac - 1 / 8).abs() < 5 * math.sqrt(1 / 8 * 7 / 8 / n)).all()
    # all points within a few std of their mode (radius 2, std 0.1)
    assert (torch.cdist(xd, gm.means).min(1).values < 0.6).all()
    assert toy_mixture("8gaussians").means.shape == (8, 2)


def test_json_mixture(tmp_path):
    gm = GaussianMixture([0.3, 0.7], [[0.0, 0.0, 1.0], [2.0, 2.0, 2.0]], [torch.eye(3).tolist()] * 2)
    p = tmp_path / "mix3.json"
    p.write_text(json.dumps(gm.to_dict()))
    ds = load_dataset(str(p), n=500, seed=2)
    assert ds.x.shape == (500, 3) and ds.x.dtype == torch.float32
    assert ds.mixture is not None and torch.allclose(ds.mixture.means, gm.means)
    assert ds.name == "mix3"
    assert torch.equal(ds.x, sample_mixture_json(p, 500, torch.Generator().manual_seed(2)))
    assert torch.equal(ds.x, load_dataset(p, n=500, seed=2).x)  # PathLike works too


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not valid JSON"),
    ('{"weights": [1.0], "means": [[0, 0]]}', "missing"),
    ('{"weights": [1.0], "means": [[0, 0]], "covs": [[[1, 0], [0, -1]]]}', "positive-definite"),
    ("[1, 2]", "JSON object"),
])
def test_json_mixture_errors(tmp_path, text, needle):
    p = tmp_path / "bad_mixture.json"
    p.write_text(text)
    with pytest.raises(DataError, match=needle) as e:
        load_dataset(str(p))
    assert "bad_mixture.json" in str(e.value) and "\n" not in str(e.value)


def test_missing_json(tmp_path):
    with pytest.raises(DataError, match="nope.json"):
        load_dataset(str(tmp_path / "nope.json"))
