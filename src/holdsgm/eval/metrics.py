"""Sample-quality metrics for low-dimensional data.

* :func:`wasserstein2`: exact empirical W2 between two point clouds (POT's network-simplex EMD).
* :func:`mmd`: unbiased squared MMD with a Gaussian kernel (bandwidth: median heuristic or given).
* For data with a known Gaussian-mixture density, metrics that can rank samplers near the floor
  (plain W2 on a few thousand points cannot: its floor is set by random mode counts):
  :func:`mixture_metrics` gives the per-mode Bures-Wasserstein distance (assign each point to its
  most likely component, fit each mode's mean and covariance, compare with the true component),
  the total variation between the mode weights, and the cross-entropy of the samples under the
  true density minus the true entropy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import linalg

from ..mixture import GaussianMixture


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to(torch.float64).cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)


def wasserstein2(a, b) -> float:
    """Exact W2 between the empirical measures of ``a`` (N, d) and ``b`` (M, d), uniform weights."""
    import ot

    a, b = _np(a), _np(b)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    cost = ot.dist(a, b)  # squared Euclidean
    w2sq = ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=10_000_000)
    return float(math.sqrt(max(w2sq, 0.0)))


def mmd(a, b, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD with kernel exp(-||x - y||^2 / (2 h^2)); h = median pairwise distance."""
    a = torch.as_tensor(_np(a))
    b = torch.as_tensor(_np(b))
    if bandwidth is None:
        z = torch.cat([a, b])[:2000]
        d = torch.cdist(z, z)
        bandwidth = float(d[d > 0].median())
    k = lambda x, y: torch.exp(-torch.cdist(x, y) ** 2 / (2 * bandwidth**2))  # noqa: E731
    n, m = len(a), len(b)
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return float((kaa.sum() - kaa.trace()) / (n * (n - 1)) + (kbb.sum() - kbb.trace()) / (m * (m - 1))
                 - 2 * kab.mean())


def bures_wasserstein2(m1, c1, m2, c2) -> float:
    """Squared W2 between N(m1, c1) and N(m2, c2): |m1 - m2|^2 + tr(c1 + c2 - 2 (c1^1/2 c2 c1^1/2)^1/2)."""
    r1 = linalg.sqrtm(c1)
    cross = linalg.sqrtm(r1 @ c2 @ r1)
    val = float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * np.real(cross)))
    return max(val, 0.0)


def mixture_metrics(x, mixture: GaussianMixture) -> dict:
    """Per-mode Gaussian W2, mode-weight TV and cross-entropy excess of samples ``x`` under ``mixture``.

    Returns ``{"mode_w2": sqrt(sum_k w_k BW^2(mode k)), "mode_tv": 1/2 sum_k |n_k/N - w_k|,
    "cross_entropy": -mean log p(x), "ce_excess": cross_entropy - H(p)}``. A mode that receives fewer
    than d + 1 points counts with its covariance replaced by zero (a large, honest penalty).
    """
    xs = _np(x)
    if not np.isfinite(xs).all():
        return {"mode_w2": float("inf"), "mode_tv": 1.0, "cross_entropy": float("inf"), "ce_excess": float("inf")}
    xt = torch.as_tensor(xs)
    logc = mixture.component_log_probs(xt)
    assign = logc.argmax(1).numpy()
    w = mixture.weights.numpy()
    d = mixture.dim
    total = 0.0
    counts = np.bincount(assign, minlength=mixture.n_components)
    for k in range(mixture.n_components):
        pts = xs[assign == k]
        mk, ck = mixture.means[k].numpy(), mixture.covs[k].numpy()
        if len(pts) > d:
            mu, cov = pts.mean(0), np.cov(pts, rowvar=False).reshape(d, d)
        elif len(pts):
            mu, cov = pts.mean(0), np.zeros((d, d))
        else:
            mu, cov = np.full(d, np.inf), np.zeros((d, d))
        total += w[k] * (bures_wasserstein2(mk, ck, mu, cov) if np.isfinite(mu).all() else 1e6)
    ce = float(-mixture.log_prob(xt).mean())
    return {"mode_w2": math.sqrt(total), "mode_tv": float(0.5 * np.abs(counts / len(xs) - w).sum()),
            "cross_entropy": ce, "ce_excess": ce - mixture.entropy()}


def metric_floor(mixture: GaussianMixture, n: int, repeats: int = 8, seed: int = 0) -> dict:
    """Mean and sd of :func:`mixture_metrics` and of W2 (against an independent exact draw) for ``n``
    exact samples: the finite-sample floor a perfect sampler reaches."""
    rows = []
    for r in range(repeats):
        g = torch.Generator().manual_seed(seed + 1000 * r)
        xs = mixture.sample(n, generator=g)
        ref = mixture.sample(n, generator=g)
        m = mixture_metrics(xs, mixture)
        m["w2"] = wasserstein2(xs, ref)
        rows.append(m)
    out = {}
    for key in rows[0]:
        vals = np.array([r[key] for r in rows])
        out[key] = (float(vals.mean()), float(vals.std(ddof=1)))
    return out
