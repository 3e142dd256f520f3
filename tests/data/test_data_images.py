import numpy as np
import pytest
import torch
from PIL import Image

from holdsgm.data import dataset_from_arrays, load_dataset
from holdsgm.errors import DataError


def _img(rng, h=6, w=5, mode="L"):
    shape = (h, w) if mode == "L" else (h, w, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _save(path, arr, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt, **({"quality": 100} if fmt == "JPEG" else {}))


def pm1(a):
    """uint8 -> [-1, 1] float32 with the loaders' rounding (computed in float64)."""
    return torch.from_numpy((np.asarray(a) / 255.0 * 2 - 1).astype(np.float32))


def one_line(e):
    assert "\n" not in str(e.value)
    return str(e.value)


def test_png_folder_roundtrip_gray(tmp_path):
    rng = np.random.default_rng(0)
    arrs = [_img(rng) for _ in range(4)]
    for i, a in enumerate(arrs):
        _save(tmp_path / f"im{i}.png", a)
    (tmp_path / "notes.txt").write_text("ignored")
    ds = load_dataset(str(tmp_path))
    assert ds.x.shape == (4, 1, 6, 5) and ds.x.dtype == torch.float32
    assert ds.n_bins == 256 and ds.data_range == (-1.0, 1.0) and ds.y is None and ds.n_classes == 0
    want = pm1(np.stack(arrs)[:, None])
    assert torch.equal(ds.x, want)


def test_rgb_and_gray_mixed_become_rgb(tmp_path):
    rng = np.random.default_rng(1)
    rgb, gray = _img(rng, mode="RGB"), _img(rng)
    _save(tmp_path / "a.png", rgb)
    _save(tmp_path / "b.png", gray)
    ds = load_dataset(str(tmp_path))
    assert ds.x.shape == (2, 3, 6, 5)
    assert torch.equal(ds.x[0], pm1(rgb.transpose(2, 0, 1)))
    assert torch.equal(ds.x[1, 0], ds.x[1, 2])  # gray repeated
    assert load_dataset(str(tmp_path), channels=1).x.shape == (2, 1, 6, 5)


def test_jpeg_folder(tmp_path):
    rng = np.random.default_rng(2)
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    _save(tmp_path / "x.jpg", np.stack([smooth] * 3, -1), "JPEG")
    _save(tmp_path / "y.JPEG", np.stack([smooth.T] * 3, -1), "JPEG")
    ds = load_dataset(str(tmp_path))
    assert ds.x.shape == (2, 3, 16, 16) and ds.x.min() >= -1 and ds.x.max() <= 1
    assert (ds.x[0, 0] - (torch.from_numpy(smooth).float() / 255 * 2 - 1)).abs().max() < 0.1
    del rng


def test_recursive_and_labels_from_subfolders(tmp_path):
    rng = np.random.default_rng(3)
    for cls, k in (("cat", 2), ("dog", 3)):
        for i in range(k):
            _save(tmp_path / cls / f"{i}.png", _img(rng))
    _save(tmp_path / "dog" / "deeper" / "x.png", _img(rng))
    # a folder of class sub-folders is detected as labelled data by itself (it was "no images" before)
    auto = load_dataset(str(tmp_path))
    assert auto.n_classes == 2 and auto.classes == ["cat", "dog"] and auto.y.tolist() == [0, 0, 1, 1, 1, 1]
    with pytest.raises(DataError, match="no images"):
        load_dataset(str(tmp_path), labels=False)  # not recursive, not labelled: nothing at the top
    unlabelled = load_dataset(str(tmp_path), recursive=True)
    assert unlabelled.x.shape[0] == 6 and unlabelled.y is None and unlabelled.n_classes == 0
    ds = load_dataset(str(tmp_path), labels=True)
    assert ds.n_classes == 2 and ds.classes == ["cat", "dog"]
    assert ds.y.tolist() == [0, 0, 1, 1, 1, 1] and torch.equal(ds.x, auto.x)
    _save(tmp_path / "stray.png", _img(rng))
    with pytest.raises(DataError, match="stray.png"):
        load_dataset(str(tmp_path), labels=True)
    assert load_dataset(str(tmp_path)).y is None  # images at the top: an unlabelled folder, as before


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does_not_exist") as e:
        load_dataset(str(tmp_path / "does_not_exist"))
    one_line(e)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(DataError, match="empty_dir.*no images") as e:
        load_dataset(str(empty))
    one_line(e)
    rng = np.random.default_rng(4)
    mixed = tmp_path / "mixed"
    _save(mixed / "a.png", _img(rng, 6, 5))
    _save(mixed / "b.png", _img(rng, 7, 5))
    with pytest.raises(DataError) as e:
        load_dataset(str(mixed))
    msg = one_line(e)
    assert "a.png" in msg and "5x6" in msg and "b.png" in msg and "5x7" in msg
    broken = tmp_path / "broken"
    _save(broken / "good.png", _img(rng))
    (broken / "zz_bad.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match="zz_bad.png") as e:
        load_dataset(str(broken))
    one_line(e)
    trunc = tmp_path / "trunc"
    _save(trunc / "t.png", _img(rng, 32, 32))
    (trunc / "t.png").write_bytes((trunc / "t.png").read_bytes()[:60])
    with pytest.raises(DataError, match="t.png"):
        load_dataset(str(trunc))
    with pytest.raises(DataError, match="channels"):
        load_dataset(str(mixed), channels=2)


def _npz(tmp_path, name="d.npz", **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return str(p)


def test_npz_nhwc_nchw_mnist(tmp_path):
    rng = np.random.default_rng(5)
    nhwc = rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    ds = load_dataset(_npz(tmp_path, x=nhwc))
    assert ds.x.shape == (4, 3, 6, 5) and ds.n_bins == 256 and ds.data_range == (-1.0, 1.0)
    want = pm1(nhwc.transpose(0, 3, 1, 2))
    assert torch.equal(ds.x, want)
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    assert torch.equal(load_dataset(_npz(tmp_path, "c.npz", images=nchw)).x, want)
    assert torch.equal(load_dataset(_npz(tmp_path, "c2.npz", arr_0=nhwc), layout="NHWC").x, want)
    mnist = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4])
    ds = load_dataset(_npz(tmp_path, "m.npz", x=mnist, y=labels))
    assert ds.x.shape == (3, 1, 28, 28) and ds.y.tolist() == [3, 1, 4] and ds.n_classes == 5
    assert ds.y.dtype == torch.int64
    assert load_dataset(_npz(tmp_path, "m2.npz", x=mnist, y=labels), labels=False).y is None
    ds = load_dataset(_npz(tmp_path, "k.npz", pics=mnist, lab=labels), key="pics", label_key="lab")
    assert ds.x.shape == (3, 1, 28, 28) and ds.y.tolist() == [3, 1, 4]
    np.save(tmp_path / "single.npy", mnist)
    assert load_dataset(str(tmp_path / "single.npy")).x.shape == (3, 1, 28, 28)


def test_npz_float_rules(tmp_path):
    rng = np.random.default_rng(6)
    x01 = rng.random((2, 1, 4, 4)).astype(np.float32)
    ds = load_dataset(_npz(tmp_path, "f.npz", x=x01))
    assert torch.allclose(ds.x, torch.from_numpy(x01) * 2 - 1) and ds.n_bins is None
    xpm = x01 * 2 - 1
    assert torch.equal(load_dataset(_npz(tmp_path, "g.npz", x=xpm)).x, torch.from_numpy(xpm))
    x255 = x01 * 255
    with pytest.raises(DataError, match="value_range"):
        load_dataset(_npz(tmp_path, "h.npz", x=x255))
    assert torch.allclose(load_dataset(_npz(tmp_path, "h2.npz", x=x255), value_range=(0, 255)).x,
                          torch.from_numpy(xpm), atol=1e-5)
    vec = rng.normal(size=(10, 3)) * 5
    ds = load_dataset(_npz(tmp_path, "v.npz", x=vec))
    assert ds.x.shape == (10, 3) and ds.data_range is None
    assert torch.allclose(ds.x.double(), torch.from_numpy(vec))


def test_npz_errors(tmp_path):
    rng = np.random.default_rng(7)
    with pytest.raises(DataError, match="missing.npz") as e:
        load_dataset(str(tmp_path / "missing.npz"))
    one_line(e)
    p = _npz(tmp_path, "other.npz", foo=np.zeros((2, 4, 4)), bar=np.zeros(2))
    with pytest.raises(DataError) as e:
        load_dataset(p)
    msg = one_line(e)
    assert "other.npz" in msg and "foo" in msg and "bar" in msg
    with pytest.raises(DataError, match="other.npz.*'nokey'.*foo"):
        load_dataset(p, key="nokey")
    cases = {
        "ndim1.npz": (np.zeros(5, np.uint8), "ndim 1"),
        "ndim5.npz": (np.zeros((1, 1, 2, 2, 2), np.uint8), "ndim 5"),
        "empty.npz": (np.zeros((0, 4, 4), np.uint8), "empty"),
        "nan.npz": (np.full((2, 4, 4), np.nan, np.float32), "NaN"),
        "inf.npz": (np.full((2, 3), np.inf), "infinite"),
        "int.npz": (np.full((2, 4, 4), 300, np.int32), "0..255"),
        "cplx.npz": (np.zeros((2, 4, 4), np.complex64), "dtype"),
    }
    for name, (arr, needle) in cases.items():
        with pytest.raises(DataError, match=needle) as e:
            load_dataset(_npz(tmp_path, name, x=arr))
        assert name in one_line(e)
    x = rng.integers(0, 255, (3, 4, 4), dtype=np.uint8)
    bad_y = _npz(tmp_path, "bady.npz", x=x, y=np.array([0, -1, 2]))
    with pytest.raises(DataError, match="bady.npz.*labels"):
        load_dataset(bad_y)
    short_y = _npz(tmp_path, "shorty.npz", x=np.zeros((3, 4, 4), np.uint8), y=np.array([0, 1]))
    with pytest.raises(DataError, match="length 3"):
        load_dataset(short_y)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="corrupt.npz"):
        load_dataset(str(corrupt))
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([None, 1], dtype=object))
    with pytest.raises(DataError, match="obj.npz"):
        load_dataset(str(obj))


def test_arrays_directly():
    x = torch.rand(5, 2, 3, 3)
    ds = load_dataset(x, y=torch.arange(5) % 2, name="mine")
    assert ds.name == "mine" and ds.n_classes == 2 and torch.allclose(ds.x, x * 2 - 1)
    with pytest.raises(DataError, match="layout"):
        dataset_from_arrays(x, layout="HWC")
    with pytest.raises(DataError, match="value_range"):
        dataset_from_arrays(x, value_range=(1, 0))


def test_npz_says_which_arrays_it_used(tmp_path, caplog):
    """An archive whose data array is not called x is accepted, and the log names the arrays used."""
    import logging

    imgs = np.zeros((3, 8, 8), dtype=np.uint8)
    path = _npz(tmp_path, "pics.npz", images=imgs, labels=np.array([0, 1, 0]))
    with caplog.at_level(logging.INFO, logger="holdsgm"):
        ds = load_dataset(path)
    assert ds.x.shape == (3, 1, 8, 8) and ds.n_classes == 2
    assert "'images' as the data" in caplog.text and "'labels' as the labels" in caplog.text
    assert "data.key" in caplog.text


def test_error_messages_give_the_config_form(tmp_path):
    """Errors that name a loader argument also say how to set it from a config or the command line."""
    path = _npz(tmp_path, "big.npz", x=np.full((2, 4, 4), 1000, dtype=np.int32))
    with pytest.raises(DataError) as e:
        load_dataset(path)
    assert "--set data.value_range=" in str(e.value) and "\n" not in str(e.value)
    path = _npz(tmp_path, "odd.npz", pics=np.zeros((2, 4, 4)), more=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="--set data.key=pics"):
        load_dataset(path)


def test_files_take_n_and_seed_as_an_upper_bound(tmp_path):
    """A toy preset's n / seed carry over to a file of points: at most n items, a seeded random subset."""
    pts = np.arange(200, dtype=np.float32).reshape(100, 2)
    path = tmp_path / "pts.npy"
    np.save(path, pts)
    assert len(load_dataset(str(path), n=20000, seed=0)) == 100  # fewer than n: all of them
    a, b = load_dataset(str(path), n=10, seed=1), load_dataset(str(path), n=10, seed=1)
    assert len(a) == 10 and torch.equal(a.x, b.x) and not torch.equal(a.x, load_dataset(str(path), n=10, seed=2).x)
    assert bool((a.x[1:, 0] > a.x[:-1, 0]).all())  # the file's order is kept
