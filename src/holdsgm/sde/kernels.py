"""Kernel algebra for linear SDEs whose drift is a scalar schedule times a constant n x n matrix.

For ``du = beta(t) F u dt + sqrt(beta(t)) G dW`` with ``G G^T = Q``, the transition from time s to
time t is Gaussian with

    Phi   = expm(b F),                      b = int_s^t beta(r) dr
    Sigma = int_0^b e^{rF} Q e^{rF^T} dr     (the noise part; add Phi Sigma_0 Phi^T for an initial law)

Both come from one matrix exponential (Van Loan 1978, "Computing integrals involving the matrix
exponential"):

    expm(b [[F, Q], [0, -F^T]]) = [[Phi, X], [0, .]],   Sigma = X Phi^T.

Everything here is n x n (the matrices act per data coordinate, Kronecker with I_d), batched over
the leading dimensions of ``b`` and computed in float64. Callers cast afterwards.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

#: Relative diagonal jitter (``JITTER * max(diag)``) added before a plain Cholesky factorisation of a
#: covariance that is not available in square-root form (user covariances, well-conditioned kernels).
#: Kernels at small times are *not* factored this way: see :func:`noise_factor`.
JITTER = 1e-14

#: Gauss-Legendre nodes for the square-root form of the noise Gramian (exact for polynomials of degree
#: 2 * GL_NODES - 1; error ~ (b ||F||)^(2 m) / (2m)! for b ||F|| <= 1).
GL_NODES = 10


def symmetrize(m: Tensor) -> Tensor:
    """(M + M^T) / 2 over the last two dimensions."""
    return 0.5 * (m + m.transpose(-1, -2))


def van_loan(F: Tensor, Q: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Transition matrix and noise covariance of ``du = F u db + G dW`` over ``b`` units of time.

    Args:
        F: (n, n) drift matrix.
        Q: (n, n) noise covariance rate G G^T.
        b: (...) integrated schedule (float64 recommended), b >= 0.

    Returns:
        ``(Phi, Sigma)``, each (..., n, n) float64: Phi = expm(bF), Sigma = int_0^b e^{rF} Q e^{rF^T} dr.
    """
    F = F.to(torch.float64)
    Q = Q.to(torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64, device=F.device)
    n = F.shape[-1]
    block = F.new_zeros(2 * n, 2 * n)
    block[:n, :n] = F
    block[:n, n:] = Q
    block[n:, n:] = -F.T
    expo = torch.linalg.matrix_exp(b[..., None, None] * block)
    phi = expo[..., :n, :n]
    sigma = symmetrize(expo[..., :n, n:] @ phi.transpose(-1, -2))
    return phi, sigma


def cholesky(cov: Tensor, jitter: float = JITTER) -> Tensor:
    """Lower Cholesky factor of a batch of covariances, in float64, with relative diagonal jitter.

    Raises ValueError (not a bare LinAlgError) if a matrix is not positive-definite even with jitter.
    """
    cov = symmetrize(cov.to(torch.float64))
    n = cov.shape[-1]
    scale = cov.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1e-300)
    eye = torch.eye(n, dtype=cov.dtype, device=cov.device)
    chol, info = torch.linalg.cholesky_ex(cov + (jitter * scale)[..., None, None] * eye)
    if bool((info > 0).any()):
        raise ValueError("covariance is not positive-definite (Cholesky failed even with jitter)")
    return chol


def kron_eye(m: Tensor, d: int) -> Tensor:
    """``m (x) I_d`` for a batch of n x n matrices: (..., n, n) -> (..., n d, n d)."""
    n = m.shape[-1]
    eye = torch.eye(d, dtype=m.dtype, device=m.device)
    out = m[..., :, None, :, None] * eye[:, None, :]
    return out.reshape(*m.shape[:-2], n * d, n * d)


@functools.lru_cache(maxsize=8)
def _leggauss(m: int) -> tuple[Tensor, Tensor]:
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(m)
    return torch.as_tensor(0.5 * (x + 1)), torch.as_tensor(0.5 * w)


def gauss_legendre(m: int = GL_NODES, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on [0, 1]."""
    x, w = _leggauss(m)
    return x.to(dtype=dtype, device=device), w.to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=64)
def _taylor_coefficients(f_key: tuple, g_key: tuple, n: int) -> tuple[Tensor, float]:
    F = torch.tensor(f_key, dtype=torch.float64).reshape(n, n)
    coef = [torch.tensor(g_key, dtype=torch.float64)]
    for k in range(1, TAYLOR_TERMS):
        coef.append(F @ coef[-1] / k)
    return torch.stack(coef), float(torch.linalg.matrix_norm(F, ord=2))


def noise_factor(F: Tensor, g: Tensor, b: Tensor, m: int = GL_NODES) -> Tensor:
    """A square root A (..., n, m) of the noise Gramian int_0^b e^{rF} g g^T e^{rF^T} dr = A A^T.

    Why not Van Loan + Cholesky: for HOLD at t = 1e-3 the kernel covariance has condition number
    ~2e13; Van Loan's float64 entries carry ~1e-7 relative error there and the Cholesky factor's
    last diagonal entry (which sets the HSM target's scale ell_t) comes out 1 % wrong without jitter
    and 40 % wrong with a 1e-13 jitter (checked against 50-digit arithmetic). Here each column
    sqrt(w_j b) e^{r_j F} g is computed to full relative accuracy, and the triangular factor of a sum
    of such terms comes from a QR decomposition (a "square-root filter"), which keeps the small
    conditional variances to ~1e-10. Accurate for b ||F|| <= 1 (Gauss-Legendre, ``m`` nodes).
    """
    F = F.to(torch.float64)
    g = g.to(torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64, device=F.device)
    x, w = gauss_legendre(m, device=F.device)
    r = b[..., None] * x  # (..., m)
    cols = expm_vector(F, g[:, 0], r) * torch.sqrt(w * b[..., None])[..., None]  # (..., m, n)
    return cols.transpose(-1, -2)


#: Taylor terms used by :func:`expm_vector` when |r| ||F|| <= 1 (remainder < 1/25! ~ 6e-26).
TAYLOR_TERMS = 25


def expm_vector(F: Tensor, g: Tensor, r: Tensor) -> Tensor:
    """e^{r F} g for many scalars r (shape (...,)) and one vector g (n,): returns (..., n), float64.

    When F = lambda I + N with N nilpotent (critical damping) this is the closed form
    e^{lambda r} sum_{k<n} r^k (N^k g / k!): n terms, each exact, no cancellation between orders of r (exact
    zeros, e.g. the data coordinate's first terms, stay exact zeros). Otherwise, for |r| ||F||_2 <= 1, the
    Taylor polynomial sum_k r^k (F^k g / k!) with precomputed coefficient vectors; beyond that matrix_exp.
    """
    F = F.to(torch.float64)
    g = g.to(torch.float64)
    r = torch.as_tensor(r, dtype=torch.float64, device=F.device)
    n = F.shape[-1]
    f_key = tuple(F.flatten().tolist())
    g_key = tuple(g.flatten().tolist())
    split = _closed_form_vectors(f_key, g_key, n)
    if split is not None:
        lam, vecs = split
        return exp_poly(lam, vecs.to(F.device), r)
    coef, norm = _taylor_coefficients(f_key, g_key, n)
    if r.numel() == 0 or float(r.abs().max()) * norm > 1.0:
        return (expm_scaled(F, r) @ g[:, None])[..., 0]
    return _powers(r, TAYLOR_TERMS) @ coef.to(F.device)


@functools.lru_cache(maxsize=64)
def _closed_form_vectors(f_key: tuple, g_key: tuple, n: int):
    """(lambda, rows N^k g / k!, k < n) when F = lambda I + N with N nilpotent, else None."""
    split = _single_eigenvalue_split(f_key, n)
    if split is None:
        return None
    lam, coef = split
    return lam, coef @ torch.tensor(g_key, dtype=torch.float64)


def exp_poly(lam: float, coef: Tensor, x: Tensor) -> Tensor:
    """e^{lam x} sum_k x^k coef[k] for scalars x (shape (...,)) and coefficient rows coef (K, d): (..., d).

    The critically damped closed forms of :func:`expm_scaled` and :func:`expm_vector`; the polynomial by
    Horner's rule (one fused multiply-add per degree; a zero coefficient adds exactly nothing).
    """
    flat = x.reshape(-1)
    acc = coef[-1].expand(flat.shape[0], -1)
    for k in range(coef.shape[0] - 2, -1, -1):
        acc = torch.addcmul(coef[k], acc, flat[:, None])
    return (acc * torch.exp(lam * flat)[:, None]).reshape(*x.shape, coef.shape[-1])


def _powers(r: Tensor, k: int) -> Tensor:
    """(..., k): r^0 .. r^(k-1) (a running product: one operation, relative error ~k ulp)."""
    ones = torch.ones_like(r)[..., None]
    if k == 1:
        return ones
    return torch.cat([ones, r[..., None].expand(*r.shape, k - 1)], dim=-1).cumprod(-1)


@functools.lru_cache(maxsize=16)
def _single_eigenvalue_split(f_key: tuple, n: int):
    """(lambda, [N^k / k! for k < n]) when F = lambda I + N with N nilpotent (all eigenvalues of F equal:
    the critically damped Langevin drifts, and every 1 x 1 drift), else None."""
    F = torch.tensor(f_key, dtype=torch.float64).reshape(n, n)
    lam = float(torch.trace(F)) / n
    N = F - lam * torch.eye(n, dtype=torch.float64)
    powers = [torch.eye(n, dtype=torch.float64)]
    for _ in range(n):
        powers.append(powers[-1] @ N)
    size = max(1.0, float(torch.linalg.matrix_norm(N))) ** n
    if float(torch.linalg.matrix_norm(powers[n])) > 1e-12 * size:
        return None
    return lam, torch.stack([powers[k] / math.factorial(k) for k in range(n)])


def expm_scaled(F: Tensor, b: Tensor) -> Tensor:
    """expm(b F) for many scalars b (shape (...,)) and one (n, n) F: returns (..., n, n), float64.

    When all eigenvalues of F are equal (F = lambda I + N, N^n = 0: critical damping, docs/maths.md section 3)
    this is the finite sum e^{lambda b} sum_{k<n} b^k N^k / k!, exact up to rounding and ~20x cheaper than a batched
    ``torch.linalg.matrix_exp`` of tiny matrices; otherwise it is ``matrix_exp``.
    """
    F = F.to(torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64, device=F.device)
    n = F.shape[-1]
    split = _single_eigenvalue_split(tuple(F.flatten().tolist()), n)
    if split is None:
        return torch.linalg.matrix_exp(b[..., None, None] * F)
    lam, coef = split
    return exp_poly(lam, coef.reshape(n, n * n).to(b.device), b).reshape(*b.shape, n, n)


def tril_factor(m: Tensor) -> Tensor:
    """Lower-triangular L with L L^T = M M^T, via QR of M^T (M: (..., n, k), k >= n).

    Householder QR is column-wise backward stable, so rows of M on very different scales (the
    graded kernels of high-order SDEs at small t) keep their relative accuracy.
    """
    n = m.shape[-2]
    if m.shape[-1] < n:
        raise ValueError(f"tril_factor needs at least as many columns as rows, got shape {tuple(m.shape)}")
    # LAPACK's geqrf leaves R in the upper triangle (the same R as linalg.qr(mode="r"), in fewer operations)
    r = torch.geqrf(m.transpose(-1, -2).to(torch.float64))[0][..., :n, :].triu()
    sign = torch.copysign(_ONE.to(r.device), r.diagonal(dim1=-2, dim2=-1))  # R with a positive diagonal
    return (r * sign[..., :, None]).transpose(-1, -2)


_ONE = torch.ones((), dtype=torch.float64)
