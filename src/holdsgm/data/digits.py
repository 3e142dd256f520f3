"""scikit-learn's 8x8 handwritten digits (1797 images bundled with scikit-learn, nothing is downloaded)."""

from __future__ import annotations

from functools import lru_cache

import torch

from ..errors import DataError
from .dataset import Dataset

DIGITS_LEVELS = 17  # pixel values are the integers 0..16


@lru_cache(maxsize=1)
def _digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
        raise DataError(f"the digits data set needs scikit-learn ({e})") from None
    bunch = load_digits()
    k = torch.as_tensor(bunch.images, dtype=torch.float64).round()
    if k.min() < 0 or k.max() > DIGITS_LEVELS - 1:  # pragma: no cover - guards a changed upstream file
        raise DataError("scikit-learn digits have pixel levels outside 0..16")
    x = (k / (DIGITS_LEVELS - 1) * 2 - 1).float()[:, None]
    return x, torch.as_tensor(bunch.target, dtype=torch.int64)


def load_digits_dataset() -> Dataset:
    """All 1797 digits: x (N, 1, 8, 8) float32 with x = k/16*2 - 1 for the integer level k in 0..16
    (so exactly 17 values in [-1, 1]), y (N,) int64 in 0..9, ``n_bins=17``, ``data_range=(-1, 1)``.

    Use ``Dataset.split`` (or ``load_dataset('digits', split='train')``) for a train/test split.
    """
    x, y = _digits_tensors()  # cached; callers get their own copies
    return Dataset(x=x.clone(), y=y.clone(), name="digits", n_classes=10, n_bins=DIGITS_LEVELS,
                   data_range=(-1.0, 1.0))
