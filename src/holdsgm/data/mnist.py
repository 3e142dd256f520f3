"""MNIST-format (IDX) data: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, and any
MNIST-format files a user has (MNIST, KMNIST, EMNIST), gzipped or not. Nothing is downloaded.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero
bytes, a type code (0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and the
number of dimensions, then one uint32 per dimension, then the values in C order.

Names: ``fashion-mnist`` is the official 60 000-image training part, ``fashion-mnist-test`` the 10 000-image
test part, read from :data:`FASHION_MNIST_DIR` (or the folder in the environment variable
``HOLDSGM_FASHION_MNIST``). A path to an ``*-images-idx3-ubyte[.gz]`` file reads those images and, when
the matching ``*-labels-idx1-ubyte[.gz]`` file lies beside it, their labels.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "HOLDSGM_FASHION_MNIST"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
#: the built-in names and the file stem of each part
FASHION_MNIST_PARTS = {"fashion-mnist": "train", "fashion-mnist-test": "t10k"}
MAX_PAD = 64

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MAX_DIMS = 8


def _open(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """One IDX file (gzipped or not, told apart by its first bytes) as a NumPy array in native byte order.
    Raises :class:`~holdsgm.errors.DataError` with one line for a missing, truncated or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"IDX file {p} does not exist" if not p.exists() else f"{p} is not a file")
    try:
        with _open(p) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _TYPES or not 1 <= head[3] <= _MAX_DIMS:
                raise DataError(f"{p} is not an IDX file (bad magic number {head.hex() or 'empty'}; expected "
                                f"00 00, a type code and a dimension count)")
            dtype, ndim = np.dtype(_TYPES[head[2]]), head[3]
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{p}: truncated IDX header")
            shape = tuple(int(d) for d in np.frombuffer(dims_raw, ">u4"))
            count = int(np.prod(shape, dtype=np.int64))
            body = f.read(count * dtype.itemsize + 1)
    except DataError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read IDX file {p}: {' '.join(str(e).split()) or type(e).__name__}") from None
    need = count * dtype.itemsize
    if len(body) != need:
        found = f"{len(body)}" if len(body) < need else f"more than {need}"
        what = "truncated" if len(body) < need else "longer than its header says"
        raise DataError(f"{p}: IDX file {what} (shape {shape} needs {need} bytes of data, found {found})")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def is_idx_images(path) -> bool:
    """Whether ``path`` is named like an IDX image file (``...-images-idx3-ubyte`` or ``...images.idx3-ubyte``,
    optionally ``.gz``)."""
    name = os.path.basename(os.fspath(path)).lower()
    return name.removesuffix(".gz").endswith("idx3-ubyte")


def labels_beside(images: Path) -> Path | None:
    """The label file that goes with an IDX image file (``images-idx3`` -> ``labels-idx1``, same folder,
    gzipped or not), or None."""
    stem = images.name.removesuffix(".gz")
    if "images" not in stem:
        return None
    base = stem.replace("images", "labels").replace("idx3", "idx1")
    for cand in (images.with_name(base), images.with_name(base + ".gz")):
        if cand.is_file():
            return cand
    return None


def fashion_mnist_dir() -> Path:
    """Where Fashion-MNIST is read from: ``$HOLDSGM_FASHION_MNIST`` or Debian's folder."""
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)


def fashion_mnist_files(part: str) -> Path:
    """The image file of a Fashion-MNIST part (``train`` or ``t10k``); a DataError naming the Debian
    package when it is not installed."""
    root = fashion_mnist_dir()
    for name in (f"{part}-images-idx3-ubyte.gz", f"{part}-images-idx3-ubyte"):
        if (root / name).is_file():
            return root / name
    raise DataError(f"Fashion-MNIST is not installed: no {part}-images-idx3-ubyte[.gz] in {root} (install "
                    f"Debian's package: sudo apt-get install dataset-fashion-mnist, or point "
                    f"{FASHION_MNIST_ENV} at a folder holding the four MNIST-format files)")


def load_idx_dataset(path, labels: bool | None = None, pad: int = 0, name: str | None = None) -> Dataset:
    """An IDX image file as a :class:`Dataset`: (N, 1, H, W) float32 ``k / 255 * 2 - 1`` in [-1, 1]
    (``n_bins=256``), with the labels of the matching label file when present (``labels=True`` requires
    them, ``False`` ignores them). ``pad`` adds that many background pixels (-1) on every side, e.g. 2 for
    28 -> 32."""
    p = Path(path)
    if labels is not None and not isinstance(labels, bool):
        raise DataError(f"option labels must be true, false or null, got {labels!r:.60}")
    if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad <= MAX_PAD:
        raise DataError(f"option pad must be an integer in 0..{MAX_PAD} (pixels added on every side), "
                        f"got {pad!r:.60}")
    x = read_idx(p)
    if x.ndim != 3 or x.dtype != np.uint8 or 0 in x.shape:
        raise DataError(f"{p}: expected unsigned-byte images (N, H, W), got {x.dtype} of shape {x.shape}")
    y = None
    if labels is not False:
        lp = labels_beside(p)
        if lp is None and labels:
            raise DataError(f"{p}: no label file beside it (expected {p.name.replace('images', 'labels')})")
        if lp is not None:
            y = read_idx(lp)
            if y.ndim != 1 or y.shape[0] != x.shape[0] or y.dtype.kind not in "iu":
                raise DataError(f"{lp}: expected {x.shape[0]} integer labels, got {y.dtype} of shape {y.shape}")
    xt = torch.from_numpy(x).float().div_(255.0).mul_(2).sub_(1)[:, None]  # same values as dataset_from_arrays
    if pad:
        xt = torch.nn.functional.pad(xt, (pad,) * 4, value=-1.0)
    yt = None if y is None else torch.from_numpy(y.astype(np.int64))
    n_classes = 0 if yt is None else int(yt.max()) + 1
    stem = p.name.removesuffix(".gz")
    return Dataset(x=xt, y=yt, name=name or stem, n_classes=n_classes, n_bins=256, data_range=(-1.0, 1.0))


def load_fashion_mnist(name: str = "fashion-mnist", labels: bool | None = None, pad: int = 0) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): ``fashion-mnist`` (60 000 training images) or
    ``fashion-mnist-test`` (10 000), 28x28 grey (32x32 with ``pad=2``), 10 classes with their names."""
    if name not in FASHION_MNIST_PARTS:
        raise DataError(f"unknown Fashion-MNIST part {name!r}: one of {', '.join(FASHION_MNIST_PARTS)}")
    ds = load_idx_dataset(fashion_mnist_files(FASHION_MNIST_PARTS[name]), labels=labels, pad=pad, name=name)
    if ds.y is not None:
        ds.classes = list(FASHION_MNIST_CLASSES)
        ds.n_classes = len(FASHION_MNIST_CLASSES)
    return ds
