"""Data sets for holdsgm: built-in 2-D toys, scikit-learn digits, Fashion-MNIST (Debian's package) and any
MNIST-format (IDX) files, the user's images/arrays, Gaussian mixtures from JSON; plus a resumable
batch-index iterator. Nothing is ever downloaded, and nothing here knows about SDEs.

Entry point: :func:`load_dataset`.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..errors import DataError, HoldsgmError
from .batching import InfiniteBatchSampler
from .dataset import MAX_POINTS, MAX_SEED, Dataset, check_choice, check_float, check_int, check_options
from .digits import load_digits_dataset
from .images import DEFAULT_KEYS, DEFAULT_LABEL_KEYS, IMAGE_EXTENSIONS, dataset_from_arrays, load_image_folder, load_npz
from .mnist import FASHION_MNIST_PARTS, is_idx_images, load_fashion_mnist, load_idx_dataset, read_idx
from .toy import TOY_DATASETS, has_density, load_mixture, sample_mixture, toy_mixture

log = logging.getLogger("holdsgm.data")

DEFAULT_N = 10_000
MAX_VALUES = 100_000_000  # n * dim cap for sampled data (400 MB of float32)

_COMMON = {"split", "test_fraction", "split_seed"}
_OPTIONS = {
    "toy": {"n", "seed"},
    "mixture": {"n", "seed"},
    "digits": set(),
    "fashion-mnist": {"labels", "pad", "n", "seed"},
    "idx": {"labels", "pad", "n", "seed"},
    "folder": {"recursive", "labels", "channels", "n", "seed"},
    "npz": {"key", "label_key", "labels", "layout", "value_range", "n", "seed"},
    "array": {"y", "layout", "value_range", "name"},
}


def dataset_names() -> list[str]:
    """The built-in names accepted by :func:`load_dataset`."""
    return [*TOY_DATASETS, "digits", *FASHION_MNIST_PARTS]


def _source(name_or_path) -> tuple[str, str]:
    """(kind, normalised name/path) of what ``load_dataset`` was given."""
    if isinstance(name_or_path, (np.ndarray, torch.Tensor)):
        return "array", "array"
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise DataError(f"a data set is a name or a path, got {type(name_or_path).__name__}")
    s = os.fspath(name_or_path)
    if not isinstance(s, str) or not s.strip():
        raise DataError(f"a data set name or path must be a non-empty string, got {s!r:.60}")
    if s.strip().lower() in TOY_DATASETS:
        return "toy", s.strip().lower()
    if s.strip().lower() == "digits":
        return "digits", "digits"
    if s.strip().lower() in FASHION_MNIST_PARTS:
        return "fashion-mnist", s.strip().lower()
    low = s.lower()
    if is_idx_images(low):
        return "idx", s
    if low.endswith((".npz", ".npy")):
        return "npz", s
    if low.endswith(".json"):
        return "mixture", s
    try:
        if os.path.isdir(s):
            return "folder", s
        exists = os.path.exists(s)
    except (OSError, ValueError):
        exists = False
    if exists:
        raise DataError(f"{s} is not a supported data file (expected a folder of images, an .npz/.npy "
                        f"array file or a .json mixture)")
    raise DataError(f"unknown data set {s!r:.80}: not one of {', '.join(dataset_names())} and no such "
                    f"folder or .npz/.npy/.json file")


def load_dataset(name_or_path, **options) -> Dataset:
    """Load a data set by name or path; returns a :class:`Dataset`.

    Sources and their options:

    * toy names ``8gaussians``, ``checkerboard``, ``swissroll``, ``moons``, ``pinwheel``, ``2spirals``:
      ``n`` (points, default 10000), ``seed`` (default 0). ``8gaussians`` carries its true ``mixture``.
    * ``path.json``: a Gaussian mixture (``{"weights", "means", "covs"}``), sampled: ``n``, ``seed``;
      the mixture is returned as ``Dataset.mixture``.
    * ``digits``: scikit-learn's 8x8 digits, (N, 1, 8, 8), 17 levels, 10 classes.
    * ``fashion-mnist`` / ``fashion-mnist-test``: the official 60 000 / 10 000 images of Fashion-MNIST
      (Debian's ``dataset-fashion-mnist``), (N, 1, 28, 28), 256 levels, 10 named classes; and a path to
      any ``*-images-idx3-ubyte[.gz]`` file (MNIST, KMNIST, ...), labelled from the file beside it:
      ``labels``, ``pad`` (background pixels added on each side: 2 gives 32x32).
    * a folder: PNG/JPEG images, see :func:`~holdsgm.data.images.load_image_folder`: ``recursive``,
      ``labels`` (class per subfolder; detected when the folder holds only class sub-folders), ``channels``.
    * ``path.npz`` / ``path.npy``: see :func:`~holdsgm.data.images.load_npz`: ``key``, ``label_key``,
      ``labels``, ``layout``, ``value_range``.
    * folders and files also take ``n`` (use at most n items: a random subset drawn with ``seed`` when
      there are more), so a toy preset's ``n``/``seed`` carry over to a file of the user's points.
    * a numpy array or tensor: see :func:`~holdsgm.data.images.dataset_from_arrays`: ``y``, ``layout``,
      ``value_range``, ``name``.

    Every source also takes ``split`` (``all`` (default), ``train``, ``test``), ``test_fraction``
    (default 0.1) and ``split_seed`` (default 0): a deterministic split by :meth:`Dataset.split`.
    Built-in names win over same-named folders (write ``./moons`` for the folder).
    Any problem raises :class:`~holdsgm.errors.DataError` with a one-line message.
    """
    try:
        kind, name = _source(name_or_path)
        accepted = _OPTIONS[kind] | _COMMON
        check_options(options, accepted, f"data set {name!r:.80}")
        common = {k: options.pop(k) for k in list(options) if k in _COMMON}
        ds = _load(kind, name, name_or_path, options)
        split = check_choice(common.get("split", "all"), "split", ("all", "train", "test"))
        if split != "all" or "test_fraction" in common or "split_seed" in common:
            f = check_float(common.get("test_fraction", 0.1), "test_fraction", 0.0, 1.0, True, True)
            s = check_int(common.get("split_seed", 0), "split_seed", 0, MAX_SEED)
            if split != "all":
                train, test = ds.split(f, s)
                ds = train if split == "train" else test
        return ds
    except HoldsgmError:
        raise
    except (TypeError, ValueError, OSError, RuntimeError, MemoryError, OverflowError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"cannot load data set {str(name_or_path)[:80]!r}: {msg}") from None


def _load(kind: str, name: str, raw, options: dict) -> Dataset:
    if kind in ("toy", "mixture"):
        n = check_int(options.get("n", DEFAULT_N), "n", 1, MAX_POINTS)
        seed = check_int(options.get("seed", 0), "seed", 0, MAX_SEED)
        g = torch.Generator().manual_seed(seed)
        if kind == "toy":
            return Dataset(x=TOY_DATASETS[name](n, g), name=name, mixture=toy_mixture(name))
        gm = load_mixture(name)
        if n * gm.dim > MAX_VALUES:
            raise DataError(f"{name}: n * dim = {n * gm.dim} exceeds the limit {MAX_VALUES}")
        x = sample_mixture(gm, n, g)
        if not torch.isfinite(x).all():
            raise DataError(f"{name}: mixture samples overflow float32")
        return Dataset(x=x, name=os.path.splitext(os.path.basename(name))[0], mixture=gm)
    if kind == "digits":
        return load_digits_dataset()
    if kind in ("fashion-mnist", "idx"):
        opts = dict(options)
        n, seed = opts.pop("n", None), opts.pop("seed", 0)
        ds = load_fashion_mnist(name, **opts) if kind == "fashion-mnist" else load_idx_dataset(name, **opts)
        return _at_most(ds, n, seed)
    if kind in ("folder", "npz"):
        opts = dict(options)
        n, seed = opts.pop("n", None), opts.pop("seed", 0)
        ds = load_image_folder(name, **opts) if kind == "folder" else load_npz(name, **opts)
        return _at_most(ds, n, seed)
    opts = dict(options)
    label = opts.pop("name", "array")
    if not isinstance(label, str):
        raise DataError(f"option name must be a string, got {type(label).__name__}")
    return dataset_from_arrays(raw, y=opts.pop("y", None), name=label, **opts)


def _at_most(ds: Dataset, n, seed) -> Dataset:
    """At most ``n`` items of a data set read from a file: all of them when it holds no more, else a
    deterministic random subset (drawn with ``seed``, original order kept). ``n=None``: all."""
    if n is None:
        return ds
    n = check_int(n, "n", 1, MAX_POINTS)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    if len(ds) <= n:
        if len(ds) < n:
            log.info("data: %s holds %d items (fewer than n=%d): using all of them", ds.name, len(ds), n)
        return ds
    keep = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    log.info("data: using %d of the %d items of %s (n=%d, seed %d)", n, len(ds), ds.name, n, seed)
    return ds.subset(keep)


__all__ = [
    "DEFAULT_KEYS", "DEFAULT_LABEL_KEYS", "Dataset", "IMAGE_EXTENSIONS", "InfiniteBatchSampler",
    "TOY_DATASETS",
    "dataset_from_arrays", "dataset_names", "has_density", "load_dataset", "load_digits_dataset",
    "load_fashion_mnist", "load_idx_dataset", "load_image_folder", "load_mixture", "load_npz", "read_idx",
    "toy_mixture",
]
