"""FD-digits and the project's digit classifiers.

The real classifiers come from the default cache (``$HOLDSGM_CACHE`` or ``~/.cache/holdsgm``), as in
normal use: the first test session trains them (about 10-15 s each on one thread; the heldout one
only for its ``slow`` test) and later sessions load them (an invalid or stale entry is retrained).
The caching mechanics are tested in temporary directories with a one-epoch recipe so that
retraining costs well under a second.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from holdsgm.data import load_dataset
from holdsgm.errors import DataError
from holdsgm.eval import classifier as C
from holdsgm.eval.classifier import DigitClassifier, digit_classifier
from holdsgm.eval.fd_digits import class_accuracy, fd_digits, feature_stats, frechet_distance, reference_floor


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def cache_root() -> Path:
    return C.default_cache_dir()


@pytest.fixture(scope="session")
def clf(cache_root) -> DigitClassifier:
    return digit_classifier(cache_dir=cache_root)


@pytest.fixture(scope="session")
def heldout(cache_root) -> DigitClassifier:
    return digit_classifier(cache_dir=cache_root, variant="heldout")


@pytest.fixture(scope="session")
def test_split():
    return load_dataset("digits", split="test")


@pytest.fixture(scope="session")
def train_split():
    return load_dataset("digits", split="train")


@pytest.fixture
def tiny_recipe(monkeypatch):
    """A one-epoch 'main' recipe: training takes a fraction of a second."""
    tiny = dict(C.VARIANTS["main"], widths=[4, 8, 8], feature_dim=8, epochs=1, batch_size=256)
    monkeypatch.setitem(C.VARIANTS, "main", tiny)
    return tiny


# ---------------------------------------------------------------------- frechet_distance
def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(0)
    d = 7
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert math.isclose(got, expected, rel_tol=1e-9)
    # tensors are accepted; 1-D case: (m1 - m2)^2 + (s1 - s2)^2
    got_t = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-1.0]),
                             torch.tensor([[9.0]]))
    assert math.isclose(got_t, 4.0 + 1.0, rel_tol=1e-9)


def test_frechet_distance_rotated_and_commuting():
    # C2 = Q diag(b) Q^T, C1 = Q diag(a) Q^T commute: the closed form is rotation invariant
    rng = np.random.default_rng(1)
    d = 6
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.2, 2.0, d), rng.uniform(0.2, 2.0, d)
    c1, c2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert math.isclose(frechet_distance(np.zeros(d), c1, np.zeros(d), c2), expected, rel_tol=1e-8)


def test_frechet_distance_general_matches_symmetric_form_and_is_zero_on_equal_inputs():
    rng = np.random.default_rng(2)
    d = 10
    x, y = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    c1, c2 = x @ x.T, y @ y.T
    w, v = np.linalg.eigh(c1)
    s1 = v @ np.diag(np.sqrt(w)) @ v.T
    tr = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(s1 @ c2 @ s1), 0, None)))
    expected = np.trace(c1) + np.trace(c2) - 2 * tr
    assert math.isclose(frechet_distance(np.zeros(d), c1, np.zeros(d), c2), expected, rel_tol=1e-8)
    assert frechet_distance(np.ones(d), c1, np.ones(d), c1) < 1e-8
    # symmetric in its arguments
    assert math.isclose(frechet_distance(np.zeros(d), c1, np.ones(d), c2),
                        frechet_distance(np.ones(d), c2, np.zeros(d), c1), rel_tol=1e-8)


def test_frechet_distance_singular_covariances():
    # rank-deficient covariances (fewer samples than dimensions, dead features) stay finite and exact
    rng = np.random.default_rng(3)
    d, k = 20, 5
    a = rng.normal(size=(d, k))
    c = a @ a.T
    assert 0.0 <= frechet_distance(np.zeros(d), c, np.zeros(d), c) < 1e-6
    zero = np.zeros((d, d))
    assert math.isclose(frechet_distance(np.zeros(d), c, np.zeros(d), zero), np.trace(c), rel_tol=1e-8)
    b = rng.normal(size=(d, k))
    c2 = b @ b.T
    w, v = np.linalg.eigh(c)
    s1 = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    tr = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(s1 @ c2 @ s1), 0, None)))
    got = frechet_distance(np.zeros(d), c, np.zeros(d), c2)
    assert math.isfinite(got) and math.isclose(got, np.trace(c) + np.trace(c2) - 2 * tr, rel_tol=1e-6)


def test_frechet_distance_bad_inputs():
    eye = np.eye(3)
    with pytest.raises(DataError, match="NaN"):
        frechet_distance(np.array([0.0, np.nan, 0.0]), eye, np.zeros(3), eye)
    bad = eye.copy()
    bad[1, 1] = np.inf
    with pytest.raises(DataError, match="NaN"):
        frechet_distance(np.zeros(3), bad, np.zeros(3), eye)
    with pytest.raises(DataError, match="shapes"):
        frechet_distance(np.zeros(3), eye, np.zeros(2), np.eye(2))


# ---------------------------------------------------------------------- classifiers
def test_main_classifier_accuracy_and_record(clf, test_split):
    assert clf.variant == "main" and clf.feature_dim == 64
    assert clf.test_accuracy >= 0.97
    acc = float((clf.predict(test_split.x) == test_split.y).float().mean())
    assert acc >= 0.97 and math.isclose(acc, clf.test_accuracy, abs_tol=1e-6)
    meta = clf.meta
    assert meta["n_test"] == 180 and meta["n_train"] == 1617
    assert len(meta["train_data_sha256"]) == 64 and meta["settings"]["feature_dim"] == 64
    # the parameters are frozen and the network is in eval mode
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())


@pytest.mark.slow
def test_heldout_classifier_is_independent_and_accurate(heldout, clf, test_split):
    assert heldout.variant == "heldout" and heldout.feature_dim != clf.feature_dim
    assert heldout.meta["settings"]["seed"] != clf.meta["settings"]["seed"]
    assert heldout.test_accuracy >= 0.97
    assert class_accuracy(test_split.x, test_split.y, heldout) >= 0.97


def test_classifier_outputs(clf, test_split):
    x = test_split.x[:10]
    assert clf.features(x).shape == (10, 64) and clf.features(x).dtype == torch.float32
    assert clf.logits(x).shape == (10, 10)
    assert clf.predict(x).dtype == torch.int64
    # (N, 8, 8) and (N, 64) are accepted; values are clamped to [-1, 1]
    assert torch.equal(clf.features(x[:, 0]), clf.features(x))
    assert torch.equal(clf.features(x.reshape(10, 64)), clf.features(x))
    assert torch.equal(clf.features(x * 3), clf.features((x * 3).clamp(-1, 1)))
    assert clf.features(x[:0]).shape == (0, 64)
    with pytest.raises(DataError, match="shape"):
        clf.features(torch.zeros(3, 1, 7, 7))
    with pytest.raises(DataError, match="floating-point"):
        clf.features(torch.zeros(3, 1, 8, 8, dtype=torch.uint8))


def test_cache_reload_corruption_and_retrain(tmp_path, tiny_recipe):
    c1 = digit_classifier(cache_dir=tmp_path)
    wpath, jpath = C.cache_paths("main", tmp_path)
    assert not c1.from_cache and wpath.is_file() and jpath.is_file()
    assert wpath.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    assert not list(wpath.parent.glob("*.tmp"))
    meta = json.loads(jpath.read_text())
    assert meta["settings"]["epochs"] == 1 and meta["test_accuracy"] == c1.test_accuracy

    c2 = digit_classifier(cache_dir=tmp_path)  # loaded, not retrained
    assert c2.from_cache and c2.meta["created"] == meta["created"]
    for p, q in zip(c1.parameters(), c2.parameters()):
        assert torch.equal(p, q)

    blob = bytearray(wpath.read_bytes())  # flip bytes inside the weights
    blob[-20:-10] = bytes(10)
    wpath.write_bytes(bytes(blob))
    with pytest.warns(RuntimeWarning, match="SHA-256"):
        c3 = digit_classifier(cache_dir=tmp_path)
    assert not c3.from_cache
    assert digit_classifier(cache_dir=tmp_path).from_cache  # the entry was rewritten

    wpath.write_bytes(wpath.read_bytes()[:100])  # truncated weights
    with pytest.warns(RuntimeWarning, match="retraining"):
        assert not digit_classifier(cache_dir=tmp_path).from_cache

    jpath.write_text("{not json")  # corrupt record
    with pytest.warns(RuntimeWarning, match="cannot read"):
        assert not digit_classifier(cache_dir=tmp_path).from_cache

    assert not digit_classifier(cache_dir=tmp_path, retrain=True).from_cache
    assert digit_classifier(cache_dir=tmp_path).from_cache


def test_cache_recipe_change_retrains(tmp_path, tiny_recipe, monkeypatch):
    digit_classifier(cache_dir=tmp_path)
    monkeypatch.setitem(C.VARIANTS, "main", dict(tiny_recipe, seed=tiny_recipe["seed"] + 1))
    with pytest.warns(RuntimeWarning, match="recipe changed"):
        c = digit_classifier(cache_dir=tmp_path)
    assert not c.from_cache and c.meta["settings"]["seed"] == tiny_recipe["seed"] + 1


def test_cache_env_var_and_unwritable_cache(tmp_path, tiny_recipe, monkeypatch):
    monkeypatch.setenv("HOLDSGM_CACHE", str(tmp_path / "env_cache"))
    assert C.default_cache_dir() == tmp_path / "env_cache"
    digit_classifier()
    assert (tmp_path / "env_cache" / "fd_digits" / "digit_classifier_main.json").is_file()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.warns(RuntimeWarning, match="cannot write"):
        c = digit_classifier(cache_dir=blocker)
    assert not c.from_cache and c.cache_files is None


def test_training_is_deterministic_and_keeps_global_rng(tmp_path, tiny_recipe):
    state = torch.get_rng_state()
    a = digit_classifier(cache_dir=tmp_path / "a")
    assert torch.equal(torch.get_rng_state(), state)
    b = digit_classifier(cache_dir=tmp_path / "b")
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert a.meta["weights_sha256"] == b.meta["weights_sha256"]  # the file bytes too


def test_bad_variant():
    with pytest.raises(DataError, match="variant"):
        digit_classifier(variant="nope")


# ---------------------------------------------------------------------- FD-digits
def test_fd_test_vs_test_is_zero(clf, test_split):
    assert fd_digits(test_split.x, classifier=clf) < 1e-6
    assert fd_digits(test_split.x, test_split, classifier=clf) < 1e-6  # a Dataset as reference


def test_fd_ordering(clf, train_split, test_split):
    tr = train_split.x
    g = torch.Generator().manual_seed(0)
    real = fd_digits(tr[torch.randperm(len(tr), generator=g)[:500]], classifier=clf)
    noise = fd_digits(torch.rand(500, 1, 8, 8, generator=g) * 2 - 1, classifier=clf)
    blurred = fd_digits(F.avg_pool2d(F.pad(tr, (1, 1, 1, 1), mode="replicate"), 3, stride=1), classifier=clf)
    shifted = fd_digits(F.pad(tr, (2, 0, 2, 0), value=-1.0)[:, :, :8, :8], classifier=clf)
    assert 0 < real < 5
    assert real * 4 < min(noise, blurred, shifted), (real, noise, blurred, shifted)
    # more pixel noise, larger FD
    noisy = [fd_digits((tr + s * torch.randn(tr.shape, generator=g)), classifier=clf) for s in (0.2, 0.5)]
    assert real < noisy[0] < noisy[1]


def test_fd_reference_stats_and_default_classifier(clf, cache_root, test_split, train_split, monkeypatch):
    x = train_split.x[:300]
    stats = feature_stats(test_split.x, clf)
    assert stats[0].shape == (64,) and stats[1].shape == (64, 64)
    assert np.allclose(stats[1], stats[1].T)
    direct = fd_digits(x, classifier=clf)
    assert math.isclose(fd_digits(x, reference=stats, classifier=clf), direct, rel_tol=1e-12)
    monkeypatch.setenv("HOLDSGM_CACHE", str(cache_root))
    assert math.isclose(fd_digits(x), direct, rel_tol=1e-9)  # default classifier from the cache


def test_reference_floor(clf):
    small = reference_floor(100, repeats=3, classifier=clf)
    r = reference_floor(1000, repeats=3, classifier=clf)
    assert r["n"] == 1000 and r["n_reference"] == 180 and len(r["values"]) == 3
    assert 0 < r["mean"] < 5 and r["std"] >= 0 and r["min"] <= r["mean"] <= r["max"]
    assert small["mean"] > r["mean"]  # the finite-sample bias shrinks with n
    assert reference_floor(1000, repeats=3, classifier=clf) == r  # seeded
    stats = feature_stats(load_dataset("digits", split="test").x, clf)
    assert reference_floor(1000, repeats=3, reference=stats, classifier=clf)["values"] == r["values"]
    full = reference_floor(1617, repeats=2, classifier=clf)
    assert full["std"] < 1e-9
    with pytest.raises(DataError, match="pool size"):
        reference_floor(2000, classifier=clf)


def test_nan_and_bad_inputs_raise_data_error(clf, test_split):
    x = test_split.x.clone()
    x[3, 0, 2, 2] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        fd_digits(x, classifier=clf)
    with pytest.raises(DataError, match="NaN"):
        feature_stats(x, clf)
    with pytest.raises(DataError, match="NaN"):
        clf.predict(x)
    with pytest.raises(DataError, match="NaN"):
        class_accuracy(x, test_split.y, clf)
    with pytest.raises(DataError, match="NaN"):
        fd_digits(test_split.x, reference=x, classifier=clf)
    inf = test_split.x.clone()
    inf[0, 0, 0, 0] = float("inf")
    with pytest.raises(DataError, match="infinite"):
        fd_digits(inf, classifier=clf)
    with pytest.raises(DataError, match="at least 2"):
        fd_digits(test_split.x[:1], classifier=clf)
    with pytest.raises(DataError, match="shape"):
        fd_digits(torch.zeros(10, 3, 8, 8), classifier=clf)
    with pytest.raises(DataError, match="DigitClassifier"):
        fd_digits(test_split.x, classifier=torch.nn.Linear(64, 10))


def test_class_accuracy(clf, test_split):
    assert class_accuracy(test_split.x, test_split.y, clf) >= 0.97
    assert class_accuracy(test_split.x, (test_split.y + 1) % 10, clf) < 0.1
    exact = class_accuracy(test_split.x, test_split.y, clf)
    assert class_accuracy(test_split.x, test_split.y.numpy(), clf) == exact
    with pytest.raises(DataError, match="0..9"):
        class_accuracy(test_split.x, test_split.y + 10, clf)
    with pytest.raises(DataError, match="shape"):
        class_accuracy(test_split.x, test_split.y[:5], clf)
