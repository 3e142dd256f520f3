"""FID and KID: the statistics against direct computations, the standard preprocessing, the real Inception
network's behaviour (when installed: the `fid` extra), the cache and the features files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from holdsgm.errors import DataError
from holdsgm.eval import fid
from holdsgm.eval.fd_digits import frechet_distance

needs_inception = pytest.mark.skipif(not fid.inception_available(),
                                     reason="the standard Inception network is not installed (holdsgm[fid])")


def direct_fd(a, b):
    m1, m2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(c1 @ c2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * root))


def test_frechet_distance_matches_numpy_scipy_on_random_gaussians():
    rng = np.random.default_rng(0)
    d = 16
    for _ in range(3):
        la, lb = rng.normal(size=(d, d)), rng.normal(size=(d, d))
        a = rng.normal(size=(400, d)) @ la + rng.normal(size=d)
        b = rng.normal(size=(300, d)) @ lb + rng.normal(size=d)
        assert fid.fid_from_features(a, b) == pytest.approx(direct_fd(a, b), rel=1e-8)
    # closed form for diagonal covariances: |m1 - m2|^2 + sum (s1 - s2)^2 of the standard deviations
    s1, s2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    exact = ((m1 - m2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert frechet_distance(m1, np.diag(s1**2), m2, np.diag(s2**2)) == pytest.approx(exact, rel=1e-10)


def test_kid_is_unbiased_where_fid_is_not():
    """Two independent samples of one distribution: KID averages to 0 (within 3 standard errors) while FID
    stays well above 0 at small N; samples of another distribution get a clearly positive KID."""
    rng = np.random.default_rng(1)
    d, m = 32, 60
    kids, fids = [], []
    for r in range(150):
        a, b = rng.normal(size=(m, d)), rng.normal(size=(m, d))
        kids.append(fid.kid_from_features(a, b, subsets=1, subset_size=m, seed=r)[0])
        fids.append(fid.fid_from_features(a, b))
    kids = np.array(kids)
    assert abs(kids.mean()) < 3 * kids.std() / np.sqrt(len(kids))
    assert np.mean(fids) > 10 * kids.std()
    shifted = fid.kid_from_features(rng.normal(size=(m, d)) + 0.5, rng.normal(size=(m, d)), subsets=20)[0]
    assert shifted > 10 * kids.std() / np.sqrt(len(kids))


def test_kid_of_identical_sets_and_bad_shapes():
    a = np.random.default_rng(2).normal(size=(50, 8))
    assert fid.fid_from_features(a, a) == pytest.approx(0, abs=1e-8)
    with pytest.raises(DataError):
        fid.kid_from_features(a, a[:, :4])
    with pytest.raises(DataError):
        fid.feature_stats(a[:1])


def test_quantisation_and_layouts():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 5)
    assert fid.to_uint8(x).flatten().tolist() == [0, 64, 128, 255, 255]  # round((x + 1) * 127.5), clamped
    u = np.zeros((2, 4, 4, 3), np.uint8)
    assert fid.to_uint8(u).shape == (2, 3, 4, 4)  # NHWC as image files load
    assert fid.to_uint8(np.zeros((2, 4, 4), np.uint8)).shape == (2, 1, 4, 4)
    with pytest.raises(DataError, match="NaN"):
        fid.to_uint8(torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(DataError, match="channels"):
        fid.to_uint8(torch.zeros(1, 2, 4, 4))


def test_resize_is_tensorflow_1s_bilinear():
    """Output pixel j samples the input at j * in / out (corner-aligned at the top left, clamped at the far
    edge), then x / 128 - 1: the original FID code's preprocessing."""
    w = 7
    ramp = torch.arange(w, dtype=torch.uint8).mul(30).reshape(1, 1, 1, w).expand(1, 1, w, w)
    out = fid._prepare(ramp)
    assert out.shape == (1, 3, 299, 299)
    pos = np.arange(299) * w / 299
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, w - 1)
    want = 30 * (lo + (pos - lo) * (hi - lo)) / 128 - 1
    np.testing.assert_allclose(out[0, 0, 0].numpy(), want, atol=1e-4)
    np.testing.assert_allclose(out[0, 1, 100].numpy(), want, atol=1e-4)  # grey -> RGB, same in every row


def test_features_files_round_trip_and_refuse_others(tmp_path):
    f = np.random.default_rng(3).normal(size=(5, fid.FEATURE_DIM))
    fid.save_features(tmp_path / "f.npz", f, "set")
    back = fid.load_features(tmp_path / "f.npz")
    np.testing.assert_allclose(back.feats, f.astype(np.float32))
    assert back.name == "set"
    np.savez(tmp_path / "other.npz", feats=f, inception_sha1=np.array("0" * 40))
    with pytest.raises(DataError, match="another network"):
        fid.load_features(tmp_path / "other.npz")
    np.savez(tmp_path / "images.npz", x=np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(DataError, match="no Inception features"):
        fid.load_features(tmp_path / "images.npz")


def test_a_wrong_network_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "net.pt"
    bad.write_bytes(b"not a network")
    monkeypatch.setenv(fid.INCEPTION_ENV, str(bad))
    with pytest.raises(fid.FIDUnavailable, match="SHA-1"):
        fid.inception()
    monkeypatch.setenv(fid.INCEPTION_ENV, str(tmp_path / "missing.pt"))
    with pytest.raises(fid.FIDUnavailable, match="not a file"):
        fid.inception_path()


@needs_inception
def test_real_inception_fid_is_zero_on_itself_and_grows_with_noise():
    from holdsgm.data import load_dataset

    x = load_dataset("digits").x[:16]
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    feats = {s: fid.inception_features((x + s * noise).clamp(-1, 1), batch_size=16) for s in (0.0, 0.1, 0.3, 0.8)}
    assert feats[0.0].shape == (16, fid.FEATURE_DIM)
    assert fid.fid_from_features(feats[0.0], feats[0.0]) == pytest.approx(0, abs=1e-3)
    fids = [fid.fid_from_features(feats[s], feats[0.0]) for s in (0.1, 0.3, 0.8)]
    assert 1 < fids[0] < fids[1] < fids[2], fids


@needs_inception
def test_builtin_reference_features_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(fid.CACHE_ENV, str(tmp_path))
    first = fid.features_of("digits", n=6)
    assert not first.cached and len(list((tmp_path / "fid").glob("digits-n6-*.npz"))) == 1
    again = fid.features_of("digits", n=6)
    assert again.cached
    np.testing.assert_allclose(again.feats, first.feats, rtol=1e-5, atol=1e-6)  # stored as float32


def test_fid_curve_extrapolates_the_small_sample_bias_away():
    """Gaussian features with a known Fréchet distance: the FID of N samples is biased upward, more at small N;
    the intercept of FID against 1/N (Chong & Forsyth 2020) is much closer to the exact distance."""
    rng = np.random.default_rng(2)
    d, n = 32, 4000
    mu, s = np.full(d, 0.1), 1.3
    exact = float(mu @ mu) + d * (s - 1.0) ** 2
    a = rng.normal(size=(n, d)) * s + mu
    ref = rng.normal(size=(40_000, d))
    curve = fid.fid_curve(a, ref)
    assert curve["sizes"] == [400, 800, 2000, 4000] and curve["subsets"] == [10, 5, 2, 1]
    assert curve["fid_sd"][-1] is None and all(sd > 0 for sd in curve["fid_sd"][:-1])
    assert curve["fid"][-1] == pytest.approx(fid.fid_from_features(a, ref), rel=1e-10)
    assert all(x > y for x, y in zip(curve["fid"], curve["fid"][1:]))  # the bias shrinks with N
    assert curve["fid"][0] - exact > 0.5  # and is large at N = 400 ...
    assert abs(curve["fid_inf"] - exact) < 0.1 * (curve["fid"][0] - exact)  # ... and gone at N = infinity
    assert abs(curve["fid_inf"] - exact) < 0.5 * abs(curve["fid"][-1] - exact)
    assert curve["slope"] > 0
    with pytest.raises(DataError, match="two sizes"):
        fid.fid_curve(a, ref, sizes=[n])
