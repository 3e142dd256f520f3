"""Gaussian mixtures: the data law with a known density, used as ground truth everywhere.

A mixture sum_k w_k N(m_k, C_k) in d dimensions, with full covariances. JSON form:
``{"weights": [...], "means": [[...]], "covs": [[[...]]]}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


class GaussianMixture:
    def __init__(self, weights, means, covs):
        try:
            w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
            m = torch.as_tensor(np.asarray(means, dtype=np.float64))
            c = torch.as_tensor(np.asarray(covs, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise ValueError(f"mixture weights/means/covs must be numeric arrays: {e}") from None
        if m.dim() != 2:
            raise ValueError(f"mixture means must have shape (K, d), got {tuple(m.shape)}")
        k, d = m.shape
        if k < 1 or d < 1:
            raise ValueError("mixture needs at least one component and one dimension")
        if w.shape != (k,):
            raise ValueError(f"mixture weights must have shape ({k},), got {tuple(w.shape)}")
        if c.shape != (k, d, d):
            raise ValueError(f"mixture covs must have shape ({k}, {d}, {d}), got {tuple(c.shape)}")
        for name, a in (("weights", w), ("means", m), ("covs", c)):
            if not torch.isfinite(a).all():
                raise ValueError(f"mixture {name} must be finite")
        if (w < 0).any() or float(w.sum()) <= 0:
            raise ValueError("mixture weights must be non-negative with a positive sum")
        if not torch.allclose(c, c.transpose(-1, -2), atol=1e-10, rtol=1e-8):
            raise ValueError("mixture covariance is not symmetric")
        evals = torch.linalg.eigvalsh(c)
        bad = (evals.min(-1).values <= 0).nonzero().flatten().tolist()
        if bad:
            raise ValueError(f"mixture covariance of component {bad[0]} is not positive-definite "
                             f"(smallest eigenvalue {float(evals[bad[0]].min()):.3g})")
        self.weights = w / w.sum()
        self.means = m
        self.covs = c
        self.chol = torch.linalg.cholesky(c)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    # ------------------------------------------------------------------ density
    def component_log_probs(self, x: Tensor) -> Tensor:
        """log w_k + log N(x; m_k, C_k), shape (B, K), float64."""
        x = torch.as_tensor(x).to(torch.float64)
        diff = x[:, None, :] - self.means[None]
        z = torch.linalg.solve_triangular(self.chol[None], diff[..., None], upper=False)[..., 0]
        logdet = 2 * torch.log(torch.diagonal(self.chol, dim1=-2, dim2=-1)).sum(-1)
        return (torch.log(self.weights) - 0.5 * (z**2).sum(-1) - 0.5 * logdet
                - 0.5 * self.dim * math.log(2 * math.pi))

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self.component_log_probs(x), dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact samples (float64)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return self.means[k] + (self.chol[k] @ z[..., None])[..., 0]

    def entropy(self, n: int = 200_000, seed: int = 0) -> float:
        """Monte-Carlo differential entropy -E log p(x) in nats (standard error ~ sd / sqrt(n)); cached."""
        cache = self.__dict__.setdefault("_entropy_cache", {})
        if (n, seed) not in cache:
            g = torch.Generator().manual_seed(seed)
            cache[(n, seed)] = float(-self.log_prob(self.sample(n, generator=g)).mean())
        return cache[(n, seed)]

    def mean_and_cov(self) -> tuple[Tensor, Tensor]:
        mu = (self.weights[:, None] * self.means).sum(0)
        diff = self.means - mu
        cov = (self.weights[:, None, None] * (self.covs + diff[:, :, None] * diff[:, None, :])).sum(0)
        return mu, cov

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict:
        return {"weights": self.weights.tolist(), "means": self.means.tolist(), "covs": self.covs.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "GaussianMixture":
        if not isinstance(d, dict):
            raise ValueError(f"mixture must be a JSON object, got {type(d).__name__}")
        missing = [k for k in ("weights", "means", "covs") if k not in d]
        if missing:
            raise ValueError(f"mixture is missing key(s) {missing}; expected weights, means, covs")
        extra = sorted(set(d) - {"weights", "means", "covs"})
        if extra:
            raise ValueError(f"mixture has unknown key(s) {extra}; expected weights, means, covs")
        return cls(d["weights"], d["means"], d["covs"])

    @classmethod
    def from_json(cls, path) -> "GaussianMixture":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ValueError(f"cannot read mixture file {path}: {e.strerror or e}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"mixture file {path} is not valid JSON: {e}") from None
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    # ------------------------------------------------------------------ built-ins
    @classmethod
    def eight_gaussians(cls, radius: float = 2.0, std: float = 0.1) -> "GaussianMixture":
        """Eight isotropic Gaussians on a circle (the 2-D benchmark of the issues)."""
        ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
        covs = (std**2) * torch.eye(2, dtype=torch.float64).expand(8, 2, 2)
        return cls(torch.full((8,), 1 / 8), means, covs)
