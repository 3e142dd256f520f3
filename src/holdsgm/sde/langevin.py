"""Phase-space SDEs with constant matrices: the order-n Langevin family (VP-OU, CLD, HOLD) and VE.

    du = beta(t) F u dt + sqrt(beta(t)) G dW,   G G^T = Q = q E_{n,n}

The Langevin family (Shi & Liu 2024, HOLD; Dockhorn et al. 2022, CLD; Sterling et al. 2024/25):

    F = sum_{i<n} gamma_i (E_{i,i+1} - E_{i+1,i}) - xi E_{n,n},     q = 2 xi / L

has stationary law N(0, I / L) (F S + S F^T + Q = 0 with S = I/L) and starts the auxiliaries
u_2..u_n from N(0, alpha / L). Kernels come from Van Loan's matrix exponential, for any n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .base import Kernel, LinearSDE, _as_time
from .kernels import (
    GL_NODES,
    _single_eigenvalue_split,
    cholesky,
    expm_scaled,
    gauss_legendre,
    noise_factor,
    tril_factor,
    van_loan,
)
from .schedules import ConstantSchedule, GeometricVarianceSchedule, LinearSchedule, Schedule, schedule_from_dict


class _KernelConstants(NamedTuple):
    """Per-device constants of :meth:`Langevin._marginal` (float64)."""

    b_origin: float  # integrated beta at t = 0
    b_small: float  # below this b (b ||F|| <= 1) the square-root form is used
    gap: Tensor  # diag(S - S0)
    eye: Tensor  # S = I / L
    s0_sqrt: Tensor  # diag(S0)^(1/2)
    F: Tensor
    g: Tensor  # the noise column sqrt(q) e_n, (n,)
    lam: float | None  # critically damped F = lam I + N: the eigenvalue, else None
    # critically damped only (else None), see _polynomial_constants:
    coef0: Tensor | None  # (1, P): the constant terms of every polynomial below
    coef: Tensor | None  # (2n-2, P): their b^1 .. b^(2n-2) coefficients; P = 2 n^2 + (n + GL_NODES) n
    small_rate: Tensor | None  # (n + GL_NODES,): the exponential rate (times b) of each square-root row


class PhaseSpaceSDE(LinearSDE):
    """du = beta(t) F u dt + sqrt(beta(t) q) e_n dW with constant F (n x n) and q > 0."""

    def __init__(self, F, q: float, schedule: Schedule, T: float, eps: float, aux_var: float = 0.0,
                 name: str = "phase-space"):
        F = torch.as_tensor(F, dtype=torch.float64)
        if F.dim() != 2 or F.shape[0] != F.shape[1]:
            raise ValueError(f"F must be a square matrix, got shape {tuple(F.shape)}")
        if not torch.isfinite(F).all():
            raise ValueError("F must be finite")
        if not (math.isfinite(q) and q > 0):
            raise ValueError(f"the noise rate q must be positive, got {q!r}")
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
        self.F = F
        self.order = F.shape[0]
        self.q = float(q)
        self.schedule = schedule
        self.T = float(T)
        self.eps = float(eps)
        self.aux_var = float(aux_var)
        self.name = name
        self._check_common()

    @property
    def Q(self) -> Tensor:
        Q = torch.zeros(self.order, self.order, dtype=torch.float64)
        Q[-1, -1] = self.q
        return Q

    def transition_factor(self, s, t):
        """Phi = expm(b F); the noise factor in square-root form for b ||F|| <= 1 (where kernels are
        near-singular), else the Cholesky factor of Van Loan's covariance (well-conditioned there)."""
        s, t = _as_time(s), _as_time(t)
        b = self.schedule.integral(t) - self.schedule.integral(s)
        if bool((b < -1e-12).any()):
            raise ValueError("transition needs s <= t")
        return self.factor_over(b.clamp_min(0), self.F)

    def factor_over(self, b, F: Tensor) -> tuple[Tensor, Tensor]:
        """(expm(b F), A) for ``du = F u db + sqrt(q) e_n dW`` over b units of integrated beta."""
        b = torch.as_tensor(b, dtype=torch.float64)
        F = F.to(device=b.device, dtype=torch.float64)
        n = self.order
        shape = b.shape
        flat = b.reshape(-1)
        phi = expm_scaled(F, flat)
        g = self._noise_column(b.device)
        small = flat * self._norm(F) <= 1.0
        width = max(GL_NODES, n)
        a = flat.new_zeros(flat.shape[0], n, width)
        if bool(small.any()):
            a[small, :, :GL_NODES] = noise_factor(F, g, flat[small])
        if bool((~small).any()):
            a[~small, :, :n] = cholesky(self._noise_cov(flat[~small], phi[~small], F, g))
        return phi.reshape(*shape, n, n), a.reshape(*shape, n, width)

    def _noise_column(self, device) -> Tensor:
        """G = sqrt(q) e_n, (n, 1) float64 on ``device`` (G G^T = Q)."""
        def make():
            g = torch.zeros(self.order, 1, dtype=torch.float64)
            g[-1, 0] = self.q**0.5
            return g.to(device)

        return self.cached(("noise-column", str(device)), make)

    def _norm(self, F: Tensor) -> float:
        key = tuple(F.flatten().tolist())
        cache = self.__dict__.setdefault("_norm_cache", {})
        if key not in cache:
            cache[key] = float(torch.linalg.matrix_norm(F.cpu(), ord=2))
        return cache[key]

    def _noise_cov(self, b: Tensor, phi: Tensor, F: Tensor, g: Tensor) -> Tensor:
        """Noise covariance over b >= 1/||F|| (well-conditioned there): Van Loan."""
        return van_loan(F, g @ g.T, b)[1]

    def g2(self, t):
        return self.q * self.schedule.beta(_as_time(t))


class Langevin(PhaseSpaceSDE):
    """Order-n Langevin SDE (n=1: VP's OU, n=2: CLD, n=3: HOLD).

    Args:
        gamma: the n - 1 Hamiltonian couplings gamma_i > 0.
        xi: friction on the last component, xi > 0.
        L: stationary precision (stationary law N(0, I / L)).
        alpha: initial variance of the auxiliaries in units of 1 / L.
        schedule: beta(t); a float means a constant beta.
        T, eps: time horizon and the smallest time used in training and sampling.
    """

    L: float  # always set: this family has a stationary law

    def __init__(self, gamma: Sequence[float] = (), xi: float = 0.5, L: float = 1.0, alpha: float = 0.04,
                 schedule: Schedule | float = 1.0, T: float = 1.0, eps: float = 1e-3, name: str = "langevin"):
        gamma = tuple(float(g) for g in gamma)
        for i, g in enumerate(gamma):
            if not (math.isfinite(g) and g > 0):
                raise ValueError(f"gamma[{i}] must be positive, got {g!r}")
        if not (math.isfinite(xi) and xi > 0):
            raise ValueError(f"xi must be positive, got {xi!r}")
        if not (math.isfinite(L) and L > 0):
            raise ValueError(f"L must be positive, got {L!r}")
        if len(gamma) >= 1 and not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be positive, got {alpha!r}")
        if not isinstance(schedule, Schedule):
            if not (isinstance(schedule, (int, float)) and math.isfinite(schedule) and schedule > 0):
                raise ValueError(f"beta must be a positive number or a Schedule, got {schedule!r}")
            schedule = ConstantSchedule(float(schedule))
        n = len(gamma) + 1
        F = torch.zeros(n, n, dtype=torch.float64)
        for i, g in enumerate(gamma):
            F[i, i + 1] = g
            F[i + 1, i] = -g
        F[-1, -1] = -xi
        self.gamma = gamma
        self.xi = float(xi)
        self.L = float(L)
        self.alpha = float(alpha)
        super().__init__(F, 2 * xi / L, schedule, T, eps, aux_var=(alpha / L if n > 1 else 0.0), name=name)

    @classmethod
    def critically_damped(cls, order: int, **kw) -> "Langevin":
        """The critically-damped member of order n: all eigenvalues of F equal -sqrt(2n - 3) (n >= 2).

        n = 2: gamma = (1,), xi = 2;  n = 3: gamma = (1, 2 sqrt 2), xi = 3 sqrt 3 (docs/maths.md, section 2).
        For n = 1, xi = 1/2 (VP's OU part). Other orders are found numerically.
        """
        if not (isinstance(order, int) and order >= 1):
            raise ValueError(f"order n must be an integer >= 1, got {order!r}")
        table = {1: ((), 0.5), 2: ((1.0,), 2.0), 3: ((1.0, 2 * math.sqrt(2)), 3 * math.sqrt(3))}
        if order in table:
            gamma, xi = table[order]
        else:
            gamma, xi = _critical_parameters(order)
        return cls(gamma=gamma, xi=xi, **kw)

    @classmethod
    def from_cld(cls, M_inv: float = 4.0, Gamma: float = 1.0, beta: float = 4.0, T: float = 1.0,
                 gamma: float = 0.04, eps: float = 1e-3, name: str = "cld-sgm") -> "Langevin":
        """CLD in Dockhorn et al.'s parameters, mapped onto this family with v' = v sqrt(M^{-1}).

        CLD: dx = M^{-1} v beta dt, dv = (-x - Gamma M^{-1} v) beta dt + sqrt(2 Gamma beta) dW,
        v_0 ~ N(0, gamma M). In (x, v') this is gamma_1 = sqrt(M^{-1}), xi = Gamma M^{-1}, L = 1,
        alpha = gamma. Their CIFAR-10 setting (defaults) is critically damped (Gamma^2 = 4M).
        """
        for k, v in {"M_inv": M_inv, "Gamma": Gamma, "beta": beta, "gamma": gamma}.items():
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{k} must be positive, got {v!r}")
        return cls(gamma=(math.sqrt(M_inv),), xi=Gamma * M_inv, L=1.0, alpha=gamma,
                   schedule=ConstantSchedule(beta), T=T, eps=eps, name=name)

    @property
    def has_stationary_law(self) -> bool:
        return True

    @property
    def stationary_var(self) -> float:
        return 1.0 / self.L

    def _noise_cov(self, b: Tensor, phi: Tensor, F: Tensor, g: Tensor) -> Tensor:
        """S - Phi S Phi^T with S = I / L: exact for this family (F S + S F^T + Q = 0, and the same
        for F^T), and free of cancellation where it is used (b ||F|| >= 1, Phi well inside the unit ball)."""
        eye = torch.eye(self.order, dtype=phi.dtype, device=phi.device)
        return (eye - phi @ phi.transpose(-1, -2)) / self.L

    def _marginal(self, t: Tensor) -> Kernel:
        """The HSM kernel in closed form where it is well conditioned.

        Sigma_t = Phi S0 Phi^T + S - Phi S Phi^T = S - Phi (S - S0) Phi^T (S = I / L; the noise part as in
        :meth:`_noise_cov`), factored by Cholesky where b ||F|| > 1. Times below that keep the square-root
        form (Gauss-Legendre noise factor and a QR, as :meth:`LinearSDE._marginal`): the kernel is
        near-singular there. As accurate as the square-root form (checked against 40-digit arithmetic) and a
        few cheap batched operations with constants computed once: the kernel at a training batch's random
        times is a noticeable part of a small model's step. For a critically damped F (every preset) Phi,
        Phi (S - S0) Phi^T and the square-root form's matrix are polynomials in b times exponentials, each
        evaluated as one product of b's powers with precomputed coefficients (:meth:`_polynomial_constants`).
        """
        t = torch.as_tensor(t, dtype=torch.float64)
        c = self._kernel_constants(t.device)
        b = self.schedule.integral(t.reshape(-1))
        if c.b_origin:
            b = (b - c.b_origin).clamp_min(0)
        n = self.order
        poly = None
        if c.lam is None:
            phi = expm_scaled(c.F, b)
            cov = c.eye - (phi * c.gap) @ phi.transpose(-1, -2)  # S - Phi (S - S0) Phi^T
        else:  # b^1 .. b^(2n-2) by a running product, then every polynomial in one product
            assert c.coef0 is not None and c.coef is not None  # set with lam
            poly = torch.addmm(c.coef0, b[:, None].expand(-1, c.coef.shape[0]).cumprod(1), c.coef)
            decay = torch.exp(c.lam * b)[:, None]
            phi = (poly[:, :n * n] * decay).view(-1, n, n)
            cov = torch.addcmul(c.eye.view(-1), poly[:, n * n:2 * n * n], decay * decay, value=-1.0).view(-1, n, n)
        small = torch.nonzero(b <= c.b_small)[:, 0]
        chol, info = torch.linalg.cholesky_ex(cov)
        if small.numel():  # their Cholesky may have failed (near-singular): replaced here
            info = info.index_fill(0, small, 0)
            chol.index_copy_(0, small, self._small_time_chol(phi, b, poly, small, c))
        if bool(info.any()):  # not expected where b ||F|| > 1; the jittered, checked factorisation decides
            bad = torch.nonzero(info)[:, 0]
            chol.index_copy_(0, bad, cholesky(cov.index_select(0, bad)))
        return Kernel(phi.reshape(*t.shape, n, n), chol.reshape(*t.shape, n, n))

    def _kernel_constants(self, device) -> "_KernelConstants":
        """What :meth:`_marginal` needs besides the times, computed once per device."""
        def make():
            n = self.order
            split = _single_eigenvalue_split(tuple(self.F.flatten().tolist()), n)
            g = self._noise_column(device)[:, 0]
            gap = torch.full((n,), 1.0 / self.L, dtype=torch.float64) - self.initial_cov().diagonal()
            s0_sqrt = self.initial_cov().diagonal().sqrt()
            poly = (None,) * 3 if split is None else self._polynomial_constants(split, gap, s0_sqrt, g.cpu())
            return _KernelConstants(
                b_origin=float(self.schedule.integral(0.0)),
                b_small=1.0 / self._norm(self.F),
                gap=gap.to(device),
                eye=(torch.eye(n, dtype=torch.float64) / self.L).to(device),
                s0_sqrt=s0_sqrt.to(device),
                F=self.F.to(device),
                g=g,
                lam=None if split is None else split[0],
                **{k: None if v is None else v.to(device) for k, v in zip(("coef0", "coef", "small_rate"), poly)},
            )

        return self.cached(("kernel-constants", str(device)), make)

    def _polynomial_constants(self, split, gap: Tensor, s0_sqrt: Tensor, g: Tensor) -> tuple[Tensor, ...]:
        """Coefficients of the critically damped kernel as polynomials in b (F = lam I + N, N^n = 0).

        With A_k = N^k / k!, Phi = e^{lam b} sum_{k<n} b^k A_k (docs/maths.md, section 3) and

            Phi (S - S0) Phi^T = e^{2 lam b} sum_{d <= 2n-2} b^d sum_{k+l=d} A_k diag(S - S0) A_l^T;

        the square-root form's matrix M^T = [Phi S0^(1/2), A]^T (see :func:`noise_factor`) has rows
        e^{lam b} s0_i sum_k b^k (A_k)_{:,i} and, for Gauss-Legendre node x_j and weight w_j,
        e^{lam b x_j} sqrt(b) sum_k b^k sqrt(w_j) x_j^k A_k g. Returns (coef0, coef, small_rate), float64 on
        the CPU: the polynomials' coefficients side by side [Phi | Phi (S - S0) Phi^T | M^T] (constant terms
        apart, for one ``addmm``), and the rows' exponential rates (lam, and lam x_j).
        """
        lam, a = split  # a: (n, n, n), a[k] = N^k / k!
        n = self.order
        x, w = gauss_legendre(GL_NODES)
        rows = n + GL_NODES
        phi_part = torch.zeros(2 * n - 1, n, n, dtype=torch.float64)
        phi_part[:n] = a
        cov_part = torch.zeros(2 * n - 1, n, n, dtype=torch.float64)
        root_part = torch.zeros(2 * n - 1, rows, n, dtype=torch.float64)
        for k in range(n):
            for m in range(n):
                cov_part[k + m] += (a[k] * gap) @ a[m].T
            root_part[k, :n] = (a[k] * s0_sqrt).T  # row i: s0_i (A_k)_{:, i}
            root_part[k, n:] = (w.sqrt() * x**k)[:, None] * (a[k] @ g)
        coef = torch.cat([part.reshape(2 * n - 1, -1) for part in (phi_part, cov_part, root_part)], dim=1)
        rate = lam * torch.cat([torch.ones(n, dtype=torch.float64), x])
        return coef[:1], coef[1:], rate

    def _small_time_chol(self, phi: Tensor, b: Tensor, poly: Tensor | None, idx: Tensor,
                         c: "_KernelConstants") -> Tensor:
        """Square-root form below b ||F|| = 1 for the times ``b[idx]``: QR of [Phi S0^(1/2), noise factor]
        (see :func:`noise_factor`); for a critically damped F that matrix's polynomial part is in ``poly``
        (:meth:`_polynomial_constants`)."""
        b = b.index_select(0, idx)
        if poly is None:
            a = noise_factor(c.F, c.g[:, None], b)
            return tril_factor(torch.cat([phi.index_select(0, idx) * c.s0_sqrt, a], dim=-1))
        n = self.order
        assert c.small_rate is not None  # set with poly
        scale = torch.exp(b[:, None] * c.small_rate)
        scale[:, n:] *= b.sqrt()[:, None]  # the noise rows' sqrt(b)
        mt = poly.index_select(0, idx)[:, 2 * n * n:].view(-1, scale.shape[1], n) * scale[..., None]
        return tril_factor(mt.transpose(-1, -2))

    @property
    def F_skew(self) -> Tensor:
        """The Hamiltonian (antisymmetric) part of F; F = F_skew - xi E_nn."""
        return 0.5 * (self.F - self.F.T)

    def to_dict(self) -> dict:
        return {"kind": "langevin", "name": self.name, "gamma": list(self.gamma), "xi": self.xi, "L": self.L,
                "alpha": self.alpha, "schedule": self.schedule.to_dict(), "T": self.T, "eps": self.eps}


class VPSDE(Langevin):
    """Variance-preserving SDE (Song et al. 2021): dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW.

    The n = 1 Langevin SDE with xi = 1/2, L = 1 and a linear schedule.
    """

    schedule: LinearSchedule

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-3,
                 name: str = "vp"):
        super().__init__(gamma=(), xi=0.5, L=1.0, alpha=0.0, schedule=LinearSchedule(beta_min, beta_max, T),
                         T=T, eps=eps, name=name)

    def to_dict(self) -> dict:
        s = self.schedule
        return {"kind": "vp", "name": self.name, "beta_min": s.beta_min, "beta_max": s.beta_max,
                "T": self.T, "eps": self.eps}


class VESDE(PhaseSpaceSDE):
    """Variance-exploding SDE (Song et al. 2021): dx = sqrt(d sigma^2/dt) dW.

    The kernel is exact: x_t = x_0 + N(0, sigma(t)^2 - sigma_min^2) (Song et al. approximate the
    variance by sigma(t)^2). The prior is N(0, sigma_max^2 - sigma_min^2).
    """

    schedule: GeometricVarianceSchedule

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0, eps: float = 1e-5,
                 name: str = "ve"):
        super().__init__(torch.zeros(1, 1), 1.0, GeometricVarianceSchedule(sigma_min, sigma_max, T), T, eps,
                         name=name)

    def to_dict(self) -> dict:
        s = self.schedule
        return {"kind": "ve", "name": self.name, "sigma_min": s.sigma_min, "sigma_max": s.sigma_max,
                "T": self.T, "eps": self.eps}


def _critical_parameters(n: int) -> tuple[tuple[float, ...], float]:
    """Couplings and friction with F's characteristic polynomial (lambda + r)^n, r = sqrt(2n - 3).

    Solved numerically (Newton on the polynomial coefficients); used only for n > 3.
    """
    import numpy as np
    from scipy.optimize import least_squares

    r = math.sqrt(2 * n - 3)
    target = np.poly(np.full(n, -r))[1:]

    def resid(p):
        g, xi = np.exp(p[:-1]), np.exp(p[-1])
        F = np.zeros((n, n))
        for i, gi in enumerate(g):
            F[i, i + 1], F[i + 1, i] = gi, -gi
        F[-1, -1] = -xi
        return np.poly(F)[1:] - target

    sol = least_squares(resid, np.zeros(n), xtol=1e-15, ftol=1e-15, gtol=1e-15)
    if np.max(np.abs(resid(sol.x))) > 1e-8:
        raise ValueError(f"no critically-damped Langevin parameters found for order n={n}")
    p = np.exp(sol.x)
    return tuple(float(v) for v in p[:-1]), float(p[-1])


def sde_from_dict(d: dict):
    from .subvp import SubVPSDE

    d = dict(d)
    kind = d.pop("kind", None)
    if kind == "langevin":
        d["schedule"] = schedule_from_dict(d["schedule"])
        return Langevin(**d)
    if kind == "vp":
        return VPSDE(**d)
    if kind == "ve":
        return VESDE(**d)
    if kind == "subvp":
        return SubVPSDE(**d)
    raise ValueError(f"unknown SDE kind {kind!r}")


def sde_dicts_equal(a: dict, b: dict, rel: float = 1e-12) -> bool:
    """Equality of two SDE dicts, numbers compared to a relative tolerance."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(sde_dicts_equal(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(sde_dicts_equal(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)
    return a == b
