"""The MNIST-format (IDX) reader and Fashion-MNIST: files the test writes, and the real package when installed."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from holdsgm.data import load_dataset, read_idx
from holdsgm.data.mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_ENV, fashion_mnist_dir
from holdsgm.errors import DataError


def write_idx(path, a: np.ndarray, code: int = 0x08, gz: bool = False) -> None:
    head = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    body = a.astype({0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]).tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(head + body)


@pytest.fixture
def idx_pair(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    y = rng.integers(0, 3, 7, dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x[:3])  # not gzipped, no labels beside it
    return tmp_path, x, y


@pytest.mark.parametrize("code, dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
                                         (0x0D, np.float32), (0x0E, np.float64)])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_every_type_big_endian(tmp_path, code, dtype, gz):
    a = (np.arange(24).reshape(2, 3, 4) - (5 if code != 0x08 else 0)).astype(dtype)
    write_idx(tmp_path / "a.idx", a, code, gz)
    b = read_idx(tmp_path / "a.idx")
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(b, a)


def test_images_and_labels_of_an_idx_file(idx_pair):
    root, x, y = idx_pair
    ds = load_dataset(root / "train-images-idx3-ubyte.gz")
    assert ds.x.shape == (7, 1, 5, 4) and ds.x.dtype == torch.float32
    np.testing.assert_allclose(ds.x[:, 0].numpy(), x / 255.0 * 2 - 1, atol=1e-6)
    assert ds.n_bins == 256 and ds.data_range == (-1.0, 1.0)
    assert torch.equal(ds.y, torch.as_tensor(y, dtype=torch.int64)) and ds.n_classes == int(y.max()) + 1
    plain = load_dataset(root / "t10k-images-idx3-ubyte")
    assert plain.y is None and len(plain) == 3 and torch.equal(plain.x, ds.x[:3])
    assert load_dataset(root / "train-images-idx3-ubyte.gz", labels=False).y is None
    with pytest.raises(DataError, match="no label file"):
        load_dataset(root / "t10k-images-idx3-ubyte", labels=True)


def test_padding_adds_background(idx_pair):
    root, x, _ = idx_pair
    ds = load_dataset(root / "train-images-idx3-ubyte.gz", pad=2)
    assert ds.x.shape == (7, 1, 9, 8)
    assert (ds.x[:, :, :2] == -1).all() and (ds.x[:, :, :, -2:] == -1).all()
    np.testing.assert_allclose(ds.x[:, 0, 2:-2, 2:-2].numpy(), x / 255.0 * 2 - 1, atol=1e-6)
    with pytest.raises(DataError, match="pad"):
        load_dataset(root / "train-images-idx3-ubyte.gz", pad=-1)


def test_subset_and_split_options(idx_pair):
    root, _, _ = idx_pair
    assert len(load_dataset(root / "train-images-idx3-ubyte.gz", n=4, seed=1)) == 4
    assert len(load_dataset(root / "train-images-idx3-ubyte.gz", split="test", test_fraction=0.3)) == 2


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[:-3], "truncated"),
    (lambda b: b + b"\0", "longer"),
    (lambda b: b"\1\2" + b[2:], "not an IDX file"),
    (lambda b: b[:6], "truncated IDX header"),
    (lambda b: b"", "not an IDX file"),
])
def test_damaged_files_get_one_line(tmp_path, damage, match):
    write_idx(tmp_path / "ok", np.zeros((2, 3, 3), np.uint8))
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(damage((tmp_path / "ok").read_bytes()))
    with pytest.raises(DataError, match=match) as e:
        load_dataset(bad)
    assert "\n" not in str(e.value)


def test_corrupt_gzip_and_wrong_kind(tmp_path):
    (tmp_path / "x-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"junk" * 10)
    with pytest.raises(DataError, match="cannot read IDX"):
        load_dataset(tmp_path / "x-images-idx3-ubyte.gz")
    write_idx(tmp_path / "f-images-idx3-ubyte", np.zeros((2, 3, 3), np.float32), 0x0D)
    with pytest.raises(DataError, match="unsigned-byte images"):
        load_dataset(tmp_path / "f-images-idx3-ubyte")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "missing-images-idx3-ubyte.gz")


def test_missing_package_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_environment_variable_points_at_any_mnist_folder(idx_pair, monkeypatch):
    root, x, _ = idx_pair
    monkeypatch.setenv(FASHION_MNIST_ENV, str(root))
    ds = load_dataset("fashion-mnist")
    assert len(ds) == len(x) and ds.classes == list(FASHION_MNIST_CLASSES) and ds.name == "fashion-mnist"


@pytest.mark.skipif(not (fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    test = load_dataset("fashion-mnist-test")
    assert test.x.shape == (10_000, 1, 28, 28) and test.n_classes == 10
    assert torch.equal(torch.bincount(test.y), torch.full((10,), 1000))  # balanced classes
    assert test.x.min() == -1 and test.x.max() == 1
    train = load_dataset("fashion-mnist", n=500)
    assert train.x.shape == (500, 1, 28, 28) and train.y.max() <= 9
