"""The SDE interface shared by every loss, sampler and likelihood in holdsgm.

Every SDE here is linear, on a phase space u = (u_1, ..., u_n) with u_1 = x (data), u_2 = v, u_3 = a:

    du = beta(t) F u dt + g(t) e_n dW          (noise on the last component only)

F is an n x n matrix acting per data coordinate (Kronecker with I_d). n = 1 gives VP/VE/sub-VP,
n = 2 critically-damped Langevin (CLD), n = 3 high-order Langevin (HOLD).

State layout
------------
A state ``u`` has shape ``(batch, n * C, *rest)``: the n components, each of the data's shape
``(batch, C, *rest)``, concatenated along dim 1. So 2-D points (B, 2) become (B, 2n), images
(B, C, H, W) become (B, nC, H, W) and audio (B, 1, L) becomes (B, n, L). Networks therefore
receive n x the data's channels. All formulas reshape to (batch, n, -1), so nothing depends on the
number of trailing dimensions.

Kernels
-------
``marginal(t)`` is the perturbation kernel of x0 -> u_t with the auxiliaries marginalised
(HSM, Dockhorn et al. 2022): u_t ~ N(Phi_t [x0, 0, ..], Sigma_t) with
Sigma_t = Phi_t Sigma_0 Phi_t^T + noise part, Sigma_0 = diag(0, aux_var, ..., aux_var).
All kernel algebra is done in float64 and cast to the state's dtype when applied.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .kernels import kron_eye, symmetrize, tril_factor
from .schedules import Schedule

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score_fn(u, t) -> grad_{u_n} log p_t(u)``: the score of the last component, shaped like the data."""


@dataclass
class Kernel:
    """Gaussian kernel u_t = phi @ u_s + chol @ z (z ~ N(0, I)), per data coordinate (float64, shape (..., n, n)).
    ``chol`` is the Cholesky factor C_t of the covariance (docs/maths.md, section 1)."""

    phi: Tensor
    chol: Tensor

    @functools.cached_property
    def cov(self) -> Tensor:
        """chol chol^T (computed when first asked for: training needs only phi and chol)."""
        return self.chol @ self.chol.transpose(-1, -2)

    @property
    def ell(self) -> Tensor:
        """ell_t = 1 / chol[n, n]: grad_{u_n} log p(u_t | x0) = -ell_t z_n (u_t = mean + chol z)."""
        return 1.0 / self.chol[..., -1, -1]


#: At most this many single-time kernels are memoised per SDE (:meth:`LinearSDE.cached`).
MEMO_SIZE = 4096


def _as_time(t, device=None) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64, device=device)


def _single_time(t) -> float | None:
    """``t`` as a Python float when it is one time (a number or a 0-dim tensor), else None."""
    if isinstance(t, Tensor):
        return float(t) if t.dim() == 0 else None
    return float(t) if isinstance(t, (int, float)) else None


#: :meth:`LinearSDE.apply` multiplies the flattened state by ``m (x) I_k`` when a component has at most
#: this many entries per sample (2-D points: one small matmul, ~2x faster than a batched n x n product).
FLAT_APPLY_MAX = 4


class LinearSDE:
    """Abstract linear SDE with noise on the last of n components: the contract every loss, sampler and
    likelihood relies on, and nothing else.

    A subclass sets the attributes below and implements :meth:`transition_factor` (the Gaussian kernel
    between two times, in square-root form) and :meth:`g2` (the diffusion variance rate of the last
    component); everything else follows. An SDE with a stationary law (the Langevin family: VP, CLD, HOLD)
    also sets :attr:`L`, :attr:`q`, overrides :attr:`has_stationary_law` and implements :meth:`factor_over`,
    which the splitting samplers need. Quantities of single times that samplers ask for at every step are
    memoised on the SDE object itself (:meth:`cached`), never in module-level caches.
    """

    name: str = "linear"
    """The name in reports and checkpoints (a preset's name: vp, cld, hold, ...)."""
    order: int
    """n, the number of components (x, v, a, ...)."""
    T: float
    """The time horizon."""
    eps: float
    """The smallest training time (times are drawn in [eps, T]) and the likelihood ODE's start."""
    schedule: Schedule
    """beta(t) and its integral B(t)."""
    F: Tensor
    """The drift matrix (n, n), float64: du = beta(t) F u dt + ..."""
    aux_var: float
    """The auxiliaries' initial variance (0 for n = 1)."""
    q: float
    """The noise rate of the last component per unit of integrated beta: g(t)^2 = beta(t) q (Langevin family)."""
    L: float | None = None
    """The stationary precision: the stationary law is N(0, I / L); None when there is none (VE, sub-VP).
    (The Cholesky factor of a kernel's covariance is another thing: ``Kernel.chol``, C_t in docs/maths.md.)"""

    # ------------------------------------------------------------------ validation
    def _check_common(self) -> None:
        if not (isinstance(self.order, int) and self.order >= 1):
            raise ValueError(f"order n must be an integer >= 1, got {self.order!r}")
        if not (math.isfinite(self.T) and self.T > 0):
            raise ValueError(f"T must be a positive finite number, got {self.T!r}")
        if not (0 < self.eps < self.T):
            raise ValueError(f"eps must lie in (0, T={self.T}), got {self.eps!r}")
        if self.order > 1 and not (math.isfinite(self.aux_var) and self.aux_var > 0):
            raise ValueError(f"the auxiliaries' initial variance must be positive, got {self.aux_var!r}")

    def check_time(self, t, name: str = "t") -> Tensor:
        """Return t as float64; raise ValueError naming ``name`` if any value lies outside [0, T]."""
        t = _as_time(t)
        self._time_range(t, name)
        return t

    def _time_range(self, t: Tensor, name: str = "t") -> tuple[float, float]:
        """(min, max) of a non-empty float64 time tensor, checked to lie in [0, T]."""
        if not t.numel():
            return 0.0, 0.0
        lo, hi = (float(v) for v in torch.aminmax(t))  # NaN propagates and fails both comparisons
        if not (lo >= -1e-12 and hi <= self.T * (1 + 1e-9)):
            raise ValueError(f"{name} must lie in [0, T={self.T}], got values in [{lo:.6g}, {hi:.6g}]")
        return lo, hi

    # ------------------------------------------------------------------ subclass maths
    def factor_over(self, b, F: Tensor) -> tuple[Tensor, Tensor]:
        """(expm(b F), A) for ``du = F u db + sqrt(q) e_n dW`` over ``b`` units of integrated beta, A A^T the
        noise covariance in square-root form: the exact OU step of the splitting samplers (SDEs with a
        stationary law only)."""
        raise NotImplementedError(f"SDE {self.name!r} has no exact OU step (no stationary law)")

    def transition_factor(self, s, t) -> tuple[Tensor, Tensor]:
        """(Phi, A) of u_t | u_s for s <= t: u_t = Phi u_s + A w, w ~ N(0, I_m), float64.

        Phi is (..., n, n); A is (..., n, m) with A A^T the noise covariance, computed in square-root
        form so that near-singular kernels (HOLD at small t) keep their relative accuracy.
        """
        raise NotImplementedError

    def transition(self, s, t) -> tuple[Tensor, Tensor]:
        """(Phi, Sigma) of u_t | u_s for s <= t, each (..., n, n) float64 (Sigma: noise part only)."""
        phi, a = self.transition_factor(s, t)
        return phi, symmetrize(a @ a.transpose(-1, -2))

    def g2(self, t) -> Tensor:
        """Diffusion variance rate g(t)^2 of the last component (float64)."""
        raise NotImplementedError

    def beta(self, t) -> Tensor:
        return self.schedule.beta(_as_time(t))

    # ------------------------------------------------------------------ derived maths
    @property
    def n(self) -> int:
        return self.order

    def initial_cov(self, device=None) -> Tensor:
        """Sigma_0 = diag(0, aux_var, ..., aux_var): x0 is given, the auxiliaries start Gaussian."""
        diag = torch.full((self.order,), float(self.aux_var), dtype=torch.float64, device=device)
        diag[0] = 0.0
        return torch.diag(diag)

    def marginal(self, t) -> Kernel:
        """Perturbation kernel x0 -> u_t with the auxiliaries marginalised (HSM)."""
        t = _as_time(t)
        lo, hi = self._time_range(t)
        if t.dim() == 0 or (t.dim() == 1 and t.numel() > 1 and lo == hi):
            # one time (a sampler's step, or a batch at one time): computed once per time and SDE, then reused
            k = self.cached(("marginal", lo, str(t.device)), lambda: self._marginal(t.reshape(-1)[0]))
            if t.dim() == 0:
                return Kernel(k.phi.clone(), k.chol.clone())
            shape = (t.numel(), self.order, self.order)
            return Kernel(k.phi.expand(shape), k.chol.expand(shape))
        return self._marginal(t)

    def common_time(self, t: Tensor) -> float | None:
        """The time shared by all entries of ``t`` (checked to lie in [0, T]), or None if they differ."""
        lo, hi = self._time_range(_as_time(t))
        return lo if lo == hi and t.numel() else None

    def ell_at(self, t: float) -> float:
        """ell_t = 1 / C_t[n, n] at one time, as a Python float (memoised)."""
        t = float(t)
        return self.cached(("ell", t), lambda: float(self.marginal(t).ell))

    def rates(self, t: float) -> tuple[float, float]:
        """(beta(t), g(t)^2) at one time, as Python floats (memoised: samplers ask at every step)."""
        t = float(t)
        return self.cached(("rates", t), lambda: (float(self.beta(t)), float(self.g2(t))))

    def cached(self, key, make):
        """``make()``, memoised on this SDE under ``key`` (a hashable of plain values).

        For the kernel quantities of a single time, which samplers ask for at every step, every batch and
        every call with the same grid: computing them costs several small float64 matrix exponentials and
        QR factorisations (~1 ms), more than the network forward of a small model. SDEs are not changed
        after construction, so a time's kernel never goes stale; the memo is bounded (cleared when full).
        """
        memo = self.__dict__.setdefault("_memo", {})
        value = memo.get(key)
        if value is None:
            value = make()  # may itself memoise (constants of the kernel): the bound is checked after
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[key] = value
        return value

    def _marginal(self, t: Tensor) -> Kernel:
        phi, a = self.transition_factor(torch.zeros_like(t), t)
        s0_sqrt = self.initial_cov(device=phi.device).sqrt()
        chol = tril_factor(torch.cat([phi @ s0_sqrt, a], dim=-1))
        return Kernel(phi, chol)

    def prior_cov(self) -> Tensor:
        """Covariance (n, n) of the prior N(0, Sigma_T): the kernel at T of x0 = 0.

        It equals the stationary law N(0, I/L) up to O(||Phi_T||^2) where one exists
        (VP: 1 - e^{-B(T)}); for VE it is sigma(T)^2 - sigma_min^2.
        """
        return self.marginal(self.T).cov

    # ------------------------------------------------------------------ state helpers
    def components(self, u: Tensor) -> tuple[Tensor, ...]:
        """Split a state into its n components (each of the data's shape)."""
        if u.shape[1] % self.order:
            raise ValueError(f"state has {u.shape[1]} channels, not a multiple of the order n={self.order}")
        return tuple(u.chunk(self.order, dim=1))

    def last(self, u: Tensor) -> Tensor:
        return self.components(u)[-1]

    def data(self, u: Tensor) -> Tensor:
        return self.components(u)[0]

    @staticmethod
    def join(*components: Tensor) -> Tensor:
        return torch.cat(components, dim=1)

    def embed_last(self, y: Tensor) -> Tensor:
        """A state that is zero except for ``y`` in the last component."""
        zeros = torch.zeros_like(y)
        return self.join(*([zeros] * (self.order - 1) + [y]))

    def last_view(self, u: Tensor) -> Tensor:
        """The last component of ``u`` as a view (for in-place updates; unlike :meth:`last`, ``narrow``
        returns a single view, which autograd lets one modify in place)."""
        c = u.shape[1] // self.order
        return u.narrow(1, u.shape[1] - c, c)

    def apply(self, m: Tensor, u: Tensor, key=None) -> Tensor:
        """Per-coordinate n x n matrix times state. ``m`` is (n, n) or (B, n, n); float64 is cast.

        ``key`` (for a constant m, e.g. F or a memoised step matrix) memoises the prepared operator:
        m cast to the state's dtype and device, as ``m (x) I_k`` when a component holds at most
        FLAT_APPLY_MAX entries per sample (the flattened state is then multiplied by one small matrix).
        """
        b = u.shape[0]
        if m.dim() == 3:
            uu = u.reshape(b, self.order, -1)
            return torch.matmul(m.to(dtype=u.dtype, device=u.device), uu).reshape(u.shape)
        k = u[0].numel() // self.order
        if key is None:
            op = self._operator(m, k, u.dtype, u.device)
        else:
            op = self.cached(("operator", key, k, u.dtype, str(u.device)),
                             lambda: self._operator(m, k, u.dtype, u.device))
        if k <= FLAT_APPLY_MAX:
            return (u.reshape(b, -1) @ op).reshape(u.shape)
        return torch.matmul(op, u.reshape(b, self.order, k)).reshape(u.shape)

    @staticmethod
    def _operator(m: Tensor, k: int, dtype, device) -> Tensor:
        m = m.to(dtype=dtype, device=device)
        return kron_eye(m, k).transpose(0, 1) if k <= FLAT_APPLY_MAX else m

    def state_shape(self, data_shape) -> tuple[int, ...]:
        data_shape = tuple(data_shape)
        return (data_shape[0], self.order * data_shape[1], *data_shape[2:])

    def batch_time(self, t, u: Tensor) -> Tensor:
        """``t`` (a number, a 0-dim or a (B,) tensor) as a float64 (B,) tensor of per-sample times for ``u``."""
        t = _as_time(t, device=u.device)
        return t.expand(u.shape[0]) if t.dim() == 0 else t

    @staticmethod
    def per_sample(v: Tensor, u: Tensor) -> Tensor:
        """Broadcast a per-sample (B,) or scalar value against a tensor of any rank."""
        v = v.to(dtype=u.dtype, device=u.device)
        return v.reshape(-1, *([1] * (u.dim() - 1))) if v.dim() else v

    # ------------------------------------------------------------------ forward process
    def drift(self, u: Tensor, t) -> Tensor:
        """Forward drift beta(t) F u."""
        single = _single_time(t)
        if single is not None:
            return self.apply(self.F, u, key="F") * self.rates(single)[0]
        t = self.batch_time(t, u)
        return self.per_sample(self.beta(t), u) * self.apply(self.F, u, key="F")

    def diffusion(self, t) -> Tensor:
        """g(t): the noise scale on the last component (the other components get none)."""
        return self.g2(t).sqrt()

    def augment(self, x: Tensor, noise: Callable[[tuple], Tensor] | None = None) -> Tensor:
        """u_0 = (x, aux): the auxiliaries drawn from N(0, aux_var I)."""
        if self.order == 1:
            return x
        shape = (x.shape[0], (self.order - 1) * x.shape[1], *x.shape[2:])
        z = noise(shape) if noise is not None else torch.randn(shape, dtype=x.dtype, device=x.device)
        return torch.cat([x, math.sqrt(self.aux_var) * z.to(x)], dim=1)

    def aux_log_prob(self, u: Tensor) -> Tensor:
        """log N(aux; 0, aux_var I) of the auxiliaries of a state, per sample (0 for n = 1)."""
        if self.order == 1:
            return torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
        aux = torch.cat(self.components(u)[1:], dim=1).flatten(1)
        k = aux.shape[1]
        return -0.5 * (aux**2).sum(1) / self.aux_var - 0.5 * k * math.log(2 * math.pi * self.aux_var)

    def mean(self, x0: Tensor, t) -> Tensor:
        """E[u_t | x0] = Phi_t [x0, 0, ...]."""
        t = self.batch_time(t, x0)
        phi = self.marginal(t).phi
        return self.apply(phi, self.join(*([x0] + [torch.zeros_like(x0)] * (self.order - 1))))

    def perturb(self, x0: Tensor, t, z: Tensor, kernel: Kernel | None = None) -> Tensor:
        """u_t = Phi_t [x0, 0..] + C_t z, with z ~ N(0, I) of the state's shape."""
        t = self.batch_time(t, x0)
        k = kernel if kernel is not None else self.marginal(t)
        b = x0.shape[0]
        mean = k.phi[..., :, :1].to(dtype=x0.dtype, device=x0.device) * x0.reshape(b, 1, -1)  # Phi [x0, 0..]
        if k.chol.dim() == 3:  # a kernel per sample (training): mean + C z in one batched product
            chol = k.chol.to(dtype=z.dtype, device=z.device)
            return torch.baddbmm(mean, chol, z.reshape(b, self.order, -1)).reshape(z.shape)
        return mean.reshape(z.shape) + self.apply(k.chol, z)

    # ------------------------------------------------------------------ prior
    def prior_sample(self, data_shape, noise: Callable[[tuple], Tensor] | None = None,
                     dtype=torch.float32, device=None) -> Tensor:
        """u_T ~ N(0, Sigma_T (x) I) for data of shape ``data_shape`` (batch first)."""
        shape = self.state_shape(data_shape)
        z = noise(shape) if noise is not None else torch.randn(shape)
        z = z.to(dtype=dtype, device=device)
        return self.apply(self.marginal(self.T).chol, z)

    def prior_logp(self, u: Tensor) -> Tensor:
        """log N(u; 0, Sigma_T (x) I) per sample, computed in float64 and returned in u's dtype."""
        chol = self.marginal(self.T).chol.to(u.device)
        b = u.shape[0]
        uu = u.reshape(b, self.order, -1).to(torch.float64)
        z = torch.linalg.solve_triangular(chol, uu, upper=False)
        d = uu.shape[-1]
        logdet = 2 * torch.log(torch.diagonal(chol)).sum()
        out = -0.5 * (z**2).sum((1, 2)) - 0.5 * d * (logdet + self.order * math.log(2 * math.pi))
        return out.to(u.dtype)

    # ------------------------------------------------------------------ reverse time
    def reverse_drift(self, u: Tensor, t, score: Tensor, probability_flow: bool = False) -> Tensor:
        """Drift of the reverse-time process in forward-time convention.

        Reverse SDE:  f(u, t) - g^2 e_n s           (Anderson 1982; Song et al. 2021, eq. 6)
        PF-ODE:       f(u, t) - (1/2) g^2 e_n s     (Song et al. 2021, eq. 13)
        A sampler moving from t to t - h uses u - h * reverse_drift (+ g sqrt(h) e_n z for the SDE).
        """
        single = _single_time(t)
        if single is not None:  # one time for the batch (samplers): scalar coefficients, one in-place update
            beta, g2 = self.rates(single)
            out = self.apply(self.F, u, key="F") * beta
            self.last_view(out).sub_(score.to(out.dtype), alpha=(0.5 if probability_flow else 1.0) * g2)
            return out
        t = self.batch_time(t, u)
        coef = (0.5 if probability_flow else 1.0) * self.per_sample(self.g2(t), score)
        return self.drift(u, t) - self.embed_last(coef * score)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseProcess":
        return ReverseProcess(self, score_fn, probability_flow)

    # ------------------------------------------------------------------ misc
    @property
    def has_stationary_law(self) -> bool:
        """Whether the forward SDE has a stationary law N(0, I / L) (then :attr:`L`, :attr:`q` and
        :meth:`factor_over` are defined, and the splitting samplers apply)."""
        return False

    def to_dict(self) -> dict:
        """A plain dict from which :func:`holdsgm.sde.sde_from_dict` rebuilds this SDE (checkpoints)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"


@dataclass
class ReverseProcess:
    """The reverse-time SDE (or probability-flow ODE) of ``sde`` driven by ``score_fn``."""

    sde: LinearSDE
    score_fn: ScoreFn
    probability_flow: bool = False

    def drift(self, u: Tensor, t) -> Tensor:
        t = self.sde.batch_time(t, u)
        return self.sde.reverse_drift(u, t, self.score_fn(u, t), self.probability_flow)

    def diffusion(self, t) -> Tensor:
        if self.probability_flow:
            return torch.zeros_like(_as_time(t))
        return self.sde.diffusion(t)
