"""Built-in 2-D toy data sets (the FFJORD benchmarks of Grathwohl et al. 2019) and JSON mixtures.

Every sampler is ``sample_<name>(n, generator) -> Tensor (n, 2) float32``; all randomness comes from
``generator`` so a seed fixes the points. Sets are scaled to roughly [-4, 4]^2. ``TOY_DATASETS`` maps
names to samplers; :func:`toy_mixture` returns the true density where one is known (``8gaussians``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DataError
from ..mixture import GaussianMixture


def _rand(n: int, g: torch.Generator | None, *shape: int) -> Tensor:
    return torch.rand(n, *shape, generator=g, dtype=torch.float64)


def _randn(n: int, g: torch.Generator | None, *shape: int) -> Tensor:
    return torch.randn(n, *shape, generator=g, dtype=torch.float64)


def sample_8gaussians(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Exact samples of ``GaussianMixture.eight_gaussians()`` (radius 2, std 0.1)."""
    return GaussianMixture.eight_gaussians().sample(n, generator=generator).float()


def sample_checkerboard(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform on the 8 dark squares of a 4x4 checkerboard covering [-4, 4]^2."""
    x1 = _rand(n, generator) * 4 - 2
    row = torch.randint(0, 2, (n,), generator=generator).double()
    x2 = _rand(n, generator) - 2 * row + torch.floor(x1).remainder(2)
    return (torch.stack([x1, x2], 1) * 2).float()


def sample_swissroll(n: int, generator: torch.Generator | None = None) -> Tensor:
    """2-D Swiss roll: angle t ~ U(1.5 pi, 4.5 pi), point t (cos t, sin t) + N(0, 1), divided by 5."""
    t = 1.5 * math.pi * (1 + 2 * _rand(n, generator))
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) + _randn(n, generator, 2)
    return (pts / 5).float()


def sample_moons(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Two interleaved half circles with N(0, 0.1^2) noise, scaled by 2 and shifted by (-1, -0.2)."""
    theta = math.pi * _rand(n, generator)
    lower = torch.randint(0, 2, (n,), generator=generator).bool()
    upper_pts = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    lower_pts = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], 1)
    pts = torch.where(lower[:, None], lower_pts, upper_pts) + 0.1 * _randn(n, generator, 2)
    return (pts * 2 + torch.tensor([-1.0, -0.2], dtype=torch.float64)).float()


def sample_pinwheel(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Five curved arms: radial/tangential noise (0.3, 0.1) around (1, 0), each arm rotated by an
    angle growing with exp(radius) (rate 0.25), then scaled by 2."""
    n_arms, rate = 5, 0.25
    arm = torch.randint(0, n_arms, (n,), generator=generator).double()
    feats = _randn(n, generator, 2) * torch.tensor([0.3, 0.1], dtype=torch.float64)
    feats[:, 0] += 1.0
    ang = arm * (2 * math.pi / n_arms) + rate * torch.exp(feats[:, 0])
    c, s = torch.cos(ang), torch.sin(ang)
    x = c * feats[:, 0] - s * feats[:, 1]
    y = s * feats[:, 0] + c * feats[:, 1]
    return (2 * torch.stack([x, y], 1)).float()


def sample_2spirals(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Two interleaved spirals (1.5 turns each), point-symmetric, /3 with N(0, 0.1^2) noise."""
    r = torch.sqrt(_rand(n, generator)) * (3 * math.pi)  # 540 degrees
    jitter = _rand(n, generator, 2) * 0.5
    pts = torch.stack([-torch.cos(r) * r, torch.sin(r) * r], 1) + jitter
    sign = torch.where(torch.randint(0, 2, (n,), generator=generator).bool(), -1.0, 1.0).double()
    pts = pts * sign[:, None] / 3 + 0.1 * _randn(n, generator, 2)
    return pts.float()


Sampler = Callable[[int, "torch.Generator | None"], Tensor]

TOY_DATASETS: dict[str, Sampler] = {
    "8gaussians": sample_8gaussians,
    "checkerboard": sample_checkerboard,
    "swissroll": sample_swissroll,
    "moons": sample_moons,
    "pinwheel": sample_pinwheel,
    "2spirals": sample_2spirals,
}

_TOY_DENSITIES: dict[str, Callable[[], GaussianMixture]] = {
    "8gaussians": GaussianMixture.eight_gaussians,
}


def toy_mixture(name: str) -> GaussianMixture | None:
    """The true density of toy set ``name`` as a GaussianMixture, or None when not known in closed form."""
    if name not in TOY_DATASETS:
        raise DataError(f"unknown toy data set {name!r}; choices: {', '.join(TOY_DATASETS)}")
    f = _TOY_DENSITIES.get(name)
    return f() if f is not None else None


def has_density(name: str) -> bool:
    """Whether toy set ``name`` has a known density (see :func:`toy_mixture`)."""
    return toy_mixture(name) is not None


def load_mixture(path) -> GaussianMixture:
    """Read a mixture JSON file (``{"weights", "means", "covs"}``), DataError on any problem."""
    try:
        return GaussianMixture.from_json(path)
    except ValueError as e:
        msg = str(e).replace("\n", " ")
        raise DataError(msg if str(path) in msg else f"{path}: {msg}") from None


def sample_mixture(mixture: GaussianMixture, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n exact samples (n, d) float32 of a mixture."""
    return mixture.sample(n, generator=generator).float()


def sample_mixture_json(path: str | Path, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n exact samples (n, d) float32 of the mixture in a JSON file."""
    return sample_mixture(load_mixture(path), n, generator)
