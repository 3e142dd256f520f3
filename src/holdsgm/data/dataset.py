"""The in-memory :class:`Dataset` record every loader returns, and small option checkers.

Loaders raise :class:`~holdsgm.errors.DataError` (one line, naming the file/option and what was
expected) for anything a user can get wrong; nothing here raises a bare TypeError.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .. import checks
from ..errors import DataError
from ..mixture import GaussianMixture

MAX_SEED = 2**63 - 1
MAX_POINTS = 10_000_000


@dataclass
class Dataset:
    """A dataset held in memory.

    Attributes:
        x: data, float32, shape (N, *data_shape): (N, d) vectors or (N, C, H, W) images.
        y: class labels (N,) int64 in [0, n_classes), or None.
        name: a short name (toy name, ``digits``, file or folder name).
        n_classes: number of classes (0 when unlabelled).
        n_bins: number of quantisation levels of the raw data (17 for digits, 256 for 8-bit images)
            used for dequantisation/bits-per-dim; None for continuous data.
        data_range: (lo, hi) range of ``x`` (images: (-1, 1)); None when unbounded.
        mixture: the true density when known (``8gaussians``, JSON mixtures), else None.
        classes: class names (image folders with labels; index = label), else None.
    """

    x: Tensor
    y: Tensor | None = None
    name: str = ""
    n_classes: int = 0
    n_bins: int | None = None
    data_range: tuple[float, float] | None = None
    mixture: GaussianMixture | None = None
    classes: list[str] | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one item, e.g. (2,) or (1, 8, 8)."""
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        """True for (N, C, H, W) data."""
        return self.x.dim() == 4

    def subset(self, index: Tensor) -> "Dataset":
        """The items at ``index`` (a LongTensor), other fields unchanged."""
        return replace(self, x=self.x[index], y=None if self.y is None else self.y[index])

    def split(self, test_fraction: float = 0.1, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """Deterministic random (train, test) split; both parts keep the original item order.

        ``round(N * test_fraction)`` items (at least 1) go to test, at least 1 item stays in train.
        """
        f = check_float(test_fraction, "test_fraction", lo=0.0, hi=1.0, open_lo=True, open_hi=True)
        s = check_int(seed, "seed", lo=0, hi=MAX_SEED)
        n = len(self)
        n_test = max(1, int(round(n * f)))
        if n - n_test < 1:
            raise DataError(f"cannot split {self.name or 'dataset'} of {n} item(s) with test_fraction={f}: "
                            f"both parts need at least one item")
        g = torch.Generator().manual_seed(s)
        perm = torch.randperm(n, generator=g)
        test_idx = perm[:n_test].sort().values
        train_idx = perm[n_test:].sort().values
        return self.subset(train_idx), self.subset(test_idx)


# ---------------------------------------------------------------------- option checkers
# :mod:`holdsgm.checks` with DataError naming the option


def check_int(v, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """``v`` as an int in [lo, hi] or DataError (bools and floats are refused)."""
    return checks.check_int(v, f"option {name}", lo, hi, error=DataError)


def check_float(v, name: str, lo: float | None = None, hi: float | None = None,
                open_lo: bool = False, open_hi: bool = False) -> float:
    """``v`` as a finite float in the interval or DataError."""
    return checks.check_float(v, f"option {name}", lo, hi, open_lo, open_hi, error=DataError)


def check_bool(v, name: str) -> bool:
    return checks.check_bool(v, f"option {name}", error=DataError)


def check_choice(v, name: str, choices) -> str:
    return checks.check_choice(v, f"option {name}", choices, error=DataError)


def check_options(options: dict, accepted, source: str) -> None:
    """DataError naming the first unknown option and listing the accepted ones."""
    for k in options:
        if not isinstance(k, str) or k not in accepted:
            raise DataError(f"unknown option {k!r:.60} for {source}; accepted: "
                            f"{', '.join(sorted(accepted)) or '(none)'}")
