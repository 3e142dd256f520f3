"""Exact ground truth for Gaussian-mixture data under any linear SDE ("oracle").

If x0 ~ sum_k w_k N(m_k, C_k) in d dimensions and the auxiliaries start from N(0, aux_var I), then
every marginal of the (augmented) state is a Gaussian mixture in n d dimensions:

    p_t(u) = sum_k w_k N(u; (Phi_t (x) I_d) [m_k; 0], (Phi_t (x) I_d) C~_k (Phi_t (x) I_d)^T + Sigma_t^noise (x) I_d)

with C~_k = blockdiag(C_k, aux_var I_d, ..., aux_var I_d). So the exact score, log-density and
samples are available at every t, with no network. The state is flattened to (B, n d) in
component-major order (x block, then v block, ...), which is the library's layout for vector data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..mixture import GaussianMixture
from .base import LinearSDE, _as_time
from .kernels import cholesky, kron_eye


class MixtureOracle:
    """Exact marginals of ``sde`` started from ``mixture`` data (states of shape (B, n d))."""

    def __init__(self, sde: LinearSDE, mixture: GaussianMixture):
        self.sde = sde
        self.mixture = mixture
        n, d = sde.order, mixture.dim
        c0 = torch.zeros(mixture.n_components, n * d, n * d, dtype=torch.float64)
        c0[:, :d, :d] = mixture.covs
        if n > 1:
            idx = torch.arange(d, n * d)
            c0[:, idx, idx] = sde.aux_var
        self._c0 = c0
        self._m0 = torch.cat([mixture.means, mixture.means.new_zeros(mixture.n_components, (n - 1) * d)], 1)
        self._cache: dict = {}

    @property
    def dim(self) -> int:
        return self.sde.order * self.mixture.dim

    # ------------------------------------------------------------------ parameters at time t
    def params(self, t) -> tuple[Tensor, Tensor, Tensor]:
        """Component means (..., K, nd), covariances and their Cholesky factors (..., K, nd, nd)."""
        t = self.sde.check_time(t)
        if t.dim() == 0:
            key = float(t)
            if key not in self._cache:
                if len(self._cache) > 4096:
                    self._cache.clear()
                self._cache[key] = self._params(t)
            return self._cache[key]
        return self._params(t)

    def _params(self, t: Tensor):
        phi, noise = self.sde.transition(torch.zeros_like(t), t)
        d = self.mixture.dim
        big = kron_eye(phi, d)[..., None, :, :]  # (..., 1, nd, nd)
        means = (big @ self._m0[..., None])[..., 0]  # (..., K, nd)
        covs = big @ self._c0 @ big.transpose(-1, -2) + kron_eye(noise, d)[..., None, :, :]
        return means, covs, cholesky(covs)

    def _whitening(self, t):
        """(means, L^{-1}, log det) at time t; L^{-1} is cached per scalar time. cond(L) is only the
        square root of cond(Sigma) (~3e6 for HOLD at t = 1e-3), so the explicit inverse loses < 1e-9."""
        t = self.sde.check_time(t)
        key = ("w", float(t)) if t.dim() == 0 else None
        if key is not None and key in self._cache:
            return self._cache[key]
        means, _, chol = self.params(t)
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype).expand_as(chol)
        inv = torch.linalg.solve_triangular(chol, eye, upper=False)
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        out = (means, inv, logdet)
        if key is not None:
            self._cache[key] = out
        return out

    def _component_terms(self, u: Tensor, t):
        u64 = u.reshape(u.shape[0], -1).to(torch.float64)
        if u64.shape[1] != self.dim:
            raise ValueError(f"oracle state must have {self.dim} = n*d features, got {u64.shape[1]}")
        t = _as_time(t)
        t_batched = t.dim() == 1 and not bool((t == t[0]).all())
        means, inv, logdet = self._whitening(t if t_batched else t.reshape(-1)[0])
        diff = u64[:, None, :] - means  # (B, K, nd)
        if t_batched:
            z = (inv @ diff[..., None])[..., 0]
        else:  # one batched matmul per component: (K, B, nd) @ (K, nd, nd)
            z = torch.bmm(diff.transpose(0, 1), inv.transpose(-1, -2)).transpose(0, 1)
        logc = (torch.log(self.mixture.weights) - 0.5 * (z**2).sum(-1) - 0.5 * logdet
                - 0.5 * self.dim * math.log(2 * math.pi))
        return z, inv, logc

    # ------------------------------------------------------------------ the oracle
    def log_prob(self, u: Tensor, t) -> Tensor:
        """log p_t(u), per sample, float64."""
        _, _, logc = self._component_terms(u, t)
        return torch.logsumexp(logc, dim=1)

    def full_score(self, u: Tensor, t) -> Tensor:
        """grad_u log p_t(u) for the whole state, float64, shape (B, n d)."""
        z, inv, logc = self._component_terms(u, t)
        r = torch.softmax(logc, dim=1)  # responsibilities (B, K)
        rz = r[..., None] * z  # (B, K, nd); Sigma^{-1} diff = L^{-T} z
        if inv.dim() == 3:
            return -torch.bmm(rz.transpose(0, 1), inv).sum(0)
        return -(inv.transpose(-1, -2) @ rz[..., None])[..., 0].sum(1)

    def score(self, u: Tensor, t) -> Tensor:
        """grad_{u_n} log p_t(u): the last component's score, in u's dtype and the data's shape."""
        s = self.full_score(u, t)[:, -self.mixture.dim:]
        return s.to(u.dtype).reshape(self.sde.last(u).shape)

    __call__ = score

    def sample(self, t, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws of u_t (float64, shape (n, n_order * d))."""
        means, covs, chol = self.params(_as_time(t))
        k = torch.multinomial(self.mixture.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return means[k] + (chol[k] @ z[..., None])[..., 0]

    def data_log_prob(self, x: Tensor) -> Tensor:
        """The true log p(x) of the data, float64."""
        return self.mixture.log_prob(x.reshape(x.shape[0], -1))
