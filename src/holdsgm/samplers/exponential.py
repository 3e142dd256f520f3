"""Exponential integrators for the order-n phase-space ODE and SDE (DEIS / DPM-Solver++ / gDDIM, any n).

Data prediction in phase space
------------------------------
With the HSM kernel u_t = Phi_t [x0; 0] + C_t z (auxiliaries marginalised, z independent of x0),
the last noise component is z_n = a_t^T u_t - kappa_t x0 with a_t = row n of C_t^{-1} and
kappa_t = (C_t^{-1} Phi_t)_{n1}. Taking E[. | u_t] and s = -ell_t E[z_n | u_t] (docs/maths.md, section 5):

    E[x0 | u_t] = (a_t^T u_t + s(u_t, t) / ell_t) / kappa_t        (Tweedie from the last score only)

More generally, for a reference data variance c >= 0 (kernel covariance Sigma^c_t with x0 ~ N(m, c)),
write the score as s = -ell^c (a_c^T u - kappa_c xhat); for Gaussian data N(m, c I), xhat == m for
all t. With c = 0, xhat is the posterior mean above (DPM-Solver++'s data prediction).

The sampler family
------------------
For eta in [0, 1] the reverse processes du = [beta F u - (1 + eta^2)/2 g^2 e_n s] dt + eta g e_n dW
(eta = 0: the probability-flow ODE; eta = 1: the reverse SDE) become

    du = [A(t) u + b(t) xhat(u, t)] dt + eta g e_n dW,
    A = beta F + (1 + eta^2)/2 g^2 ell^c e_n a_c^T,      b = -(1 + eta^2)/2 g^2 ell^c kappa_c e_n.

``form='data'``: A is solved exactly (its transition Psi and, for eta > 0, the exact Gaussian noise),
and only xhat is approximated by a polynomial in rho = log t through the last k values (multistep,
order k, like DPM-Solver++(kM)) or through intermediate stages (single step, orders 1-3). With
xhat constant (Gaussian data N(m, c I) and the matching c) the integrator is exact at any NFE.

``form='eps'``: A = beta F (the rotation and damping) and the network's noise prediction eps-hat = -s / ell
is the polynomial (DEIS / gDDIM with the Cholesky factor).

The per-step matrices (Psi, the polynomial weights and the noise factor) depend only on the SDE and
the grid: they are computed once per grid in float64 by an accurate ODE solve in log-time (where the
linear part is not stiff: the eigenvalues of t A(t) stay O(1), though A itself is highly non-normal)
and cached. For CLD kappa_t < 0 throughout (the sign of a correlation); lambda = log|kappa|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..sde.base import LinearSDE, ScoreFn
from ..sde.kernels import tril_factor
from ..sde.posterior import posterior_mean, reference_kernel
from .core import Callback, SamplerOutput, _check_grid, _Counted, _finish, _steps
from .noise import as_noise


# ---------------------------------------------------------------------------------------- coefficients
@dataclass
class _Step:
    psi: Tensor  # (n, n): u' = psi u + sum_j weights[j] (x) value_j (+ noise @ z)
    weights: Tensor  # (k, n), one row per value (in the order of the nodes)
    noise: Tensor | None  # (n, n) lower factor of the step's noise covariance, or None


class _Coefficients:
    """Per-step transition, polynomial weights and noise factor for one SDE / form / eta / ref_var.

    Every step is a linear ODE in rho = log tau with its own end points and interpolation nodes; all the
    steps of a grid are integrated together as one batched system in a normalised time s in [0, 1]
    (DOP853, rtol 1e-10), with the kernel evaluated for all their times in one vectorised call."""

    def __init__(self, sde: LinearSDE, form: str, eta: float, ref_var: float):
        self.sde, self.form, self.eta, self.ref_var = sde, form, float(eta), float(ref_var)
        self.n = sde.order
        self.F = sde.F.numpy()
        self.scale = 0.5 * (1.0 + self.eta**2)

    def quantities(self, tau: np.ndarray):
        """Vectorised over times: beta, g^2, A (m, n, n), b (m, n) and lambda = log|kappa| (m,)."""
        sde = self.sde
        t = torch.as_tensor(tau, dtype=torch.float64)
        beta = sde.beta(t).numpy()
        g2 = sde.g2(t).numpy()
        ell0, a0, kappa0, _ = reference_kernel(sde, t, 0.0)
        kappa0 = kappa0.numpy()
        if np.any(kappa0 == 0) or np.any(np.sign(kappa0) != np.sign(kappa0[0])):
            raise ValueError(f"kappa_t changes sign for SDE {sde.name!r}: the data-prediction form is singular "
                             f"there; use form='eps'")
        lam = np.log(np.abs(kappa0))
        m, n = len(tau), self.n
        A = beta[:, None, None] * self.F[None]
        b = np.zeros((m, n))
        if self.form == "eps":
            b[:, -1] = self.scale * g2 * ell0.numpy()
        else:
            ell, a, kappa = (ell0, a0, torch.as_tensor(kappa0)) if self.ref_var == 0 else \
                reference_kernel(sde, t, self.ref_var)[:3]
            ell, a, kappa = ell.numpy(), a.numpy(), kappa.numpy()
            A[:, -1, :] += (self.scale * g2 * ell)[:, None] * a
            b[:, -1] = -self.scale * g2 * ell * kappa
        return beta, g2, A, b, lam

    def lam(self, tau) -> np.ndarray:
        """The polynomial variable lambda = log|kappa_tau| (log-SNR of the data in the whitened last
        coordinate of the HSM kernel; DPM-Solver's lambda for VP)."""
        kappa = reference_kernel(self.sde, torch.as_tensor(np.atleast_1d(tau), dtype=torch.float64), 0.0)[2]
        return np.log(np.abs(kappa.numpy()))

    def solve(self, problems: list[tuple[float, float, list[float]]]) -> list[_Step]:
        """Coefficients of steps (t, t_next, nodes), t_next < t; the interpolation polynomial through the
        values at ``nodes`` is in lambda. Problems with the same number of nodes are batched."""
        out: list[_Step | None] = [None] * len(problems)
        by_k: dict[int, list[int]] = {}
        for i, (_, _, nodes) in enumerate(problems):
            by_k.setdefault(len(nodes), []).append(i)
        for k, idx in by_k.items():
            steps = self._solve_batch([problems[i] for i in idx], k)
            for i, st in zip(idx, steps):
                out[i] = st
        return out  # type: ignore[return-value]

    def _pieces(self, t: float, t_next: float) -> np.ndarray:
        """Split [t_next, t] into pieces short in log-time and in rotation (integrated beta x ||F||), so that
        each piece is a short, smooth ODE and all of them can be integrated together cheaply."""
        b = self.sde.schedule.integral(torch.tensor([t, t_next], dtype=torch.float64))
        norm = float(np.linalg.norm(self.F, 2))
        count = int(np.ceil(max(abs(math.log(t / t_next)) / 0.25, float(b[0] - b[1]) * norm / 0.5, 1.0)))
        return np.exp(np.linspace(math.log(t), math.log(t_next), count + 1))

    def _solve_batch(self, problems, k: int) -> list[_Step]:
        from scipy.integrate import solve_ivp

        n = self.n
        pieces, owners = [], []
        for i, (t, t_next, _) in enumerate(problems):
            cuts = self._pieces(t, t_next)
            pieces += list(zip(cuts[:-1], cuts[1:]))
            owners += [i] * (len(cuts) - 1)
        owner = np.asarray(owners)
        m = len(pieces)
        rho0 = np.log([p[0] for p in pieces])
        drho = np.log([p[1] for p in pieces]) - rho0
        # Lagrange basis in lambda through each problem's nodes
        lam_nodes = np.stack([self.lam(np.asarray(p[2], dtype=np.float64)) for p in problems])[owner]  # (m, k)

        def basis(lam):  # (m,) -> (m, k)
            vals = np.ones((m, k))
            for j in range(k):
                for i in range(k):
                    if i != j:
                        vals[:, j] *= (lam - lam_nodes[:, i]) / (lam_nodes[:, j] - lam_nodes[:, i])
            return vals

        sz_y, sz_z = n * n, k * n
        with_p = self.eta > 0

        def rhs(s, y):
            y = y.reshape(m, -1)
            tau = np.exp(rho0 + s * drho)
            _, g2, A, b, lam = self.quantities(tau)
            scale = (tau * drho)[:, None, None]
            Y = y[:, :sz_y].reshape(m, n, n)
            Z = y[:, sz_y:sz_y + sz_z].reshape(m, k, n)
            dY = scale * (A @ Y)
            dZ = scale * (Z @ A.transpose(0, 2, 1) + basis(lam)[:, :, None] * b[:, None, :])
            parts = [dY.reshape(m, -1), dZ.reshape(m, -1)]
            if with_p:
                P = y[:, sz_y + sz_z:].reshape(m, n, n)
                dP = A @ P + P @ A.transpose(0, 2, 1)
                dP[:, -1, -1] -= self.eta**2 * g2
                parts.append((scale * dP).reshape(m, -1))
            return np.concatenate(parts, axis=1).ravel()

        y0 = [np.broadcast_to(np.eye(n).ravel(), (m, sz_y)), np.zeros((m, sz_z))]
        if with_p:
            y0.append(np.zeros((m, sz_y)))
        sol = solve_ivp(rhs, (0.0, 1.0), np.concatenate(y0, axis=1).ravel(), method="DOP853", rtol=1e-10,
                        atol=1e-12)
        if not sol.success:
            raise RuntimeError(f"exponential-integrator coefficients: ODE solve failed: {sol.message}")
        y = sol.y[:, -1].reshape(m, -1)
        Ys = y[:, :sz_y].reshape(m, n, n)
        Zs = y[:, sz_y:sz_y + sz_z].reshape(m, k, n)
        Ps = y[:, sz_y + sz_z:].reshape(m, n, n) if with_p else None
        steps = []
        for i in range(len(problems)):  # compose the pieces of each step, in order
            psi, z, P = np.eye(n), np.zeros((k, n)), np.zeros((n, n))
            for j in np.nonzero(owner == i)[0]:
                psi = Ys[j] @ psi
                z = z @ Ys[j].T + Zs[j]
                if Ps is not None:
                    P = Ys[j] @ P @ Ys[j].T + Ps[j]
            noise = _psd_factor(0.5 * (P + P.T)) if with_p else None
            steps.append(_Step(torch.as_tensor(psi), torch.as_tensor(z), noise))
        return steps

    def lambda_fraction(self, t: np.ndarray, t_next: np.ndarray, r: float) -> np.ndarray:
        """Times whose lambda lies the fraction r of the way from lambda(t) to lambda(t_next) (vectorised
        bisection in log time; lambda decreases with t)."""
        target = self.lam(t) + r * (self.lam(t_next) - self.lam(t))
        lo, hi = np.log(t_next), np.log(t)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self.lam(np.exp(mid)) > target
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return np.exp(0.5 * (lo + hi))


def _psd_factor(P: np.ndarray) -> Tensor:
    """Lower factor of a PSD matrix that may be singular (eigen-decomposition, then QR)."""
    vals, vecs = np.linalg.eigh(P)
    root = vecs * np.sqrt(np.clip(vals, 0, None))
    return tril_factor(torch.as_tensor(root))


def _plan(sde: LinearSDE, ts: tuple, form: str, eta: float, ref_var: float, order: int, multistep: bool,
          corrector: bool = False):
    """All per-step coefficients for a grid (memoised on the SDE by the caller: they depend only on the SDE
    and the grid)."""
    coef = _Coefficients(sde, form, eta, ref_var)
    steps = len(ts) - 1
    if multistep:
        problems, kinds = [], []
        for i in range(steps):
            k = min(order, i + 1)
            nodes = [ts[i - j] for j in range(k)]  # most recent first
            problems.append((ts[i], ts[i + 1], nodes))
            kinds.append((i, "main"))
            if corrector and i < steps - 1:  # the new point's value, then the known ones: order k + 1
                problems.append((ts[i], ts[i + 1], [ts[i + 1]] + nodes))
                kinds.append((i, "corrector"))
        multistep_plan: list[dict] = [{"nodes": None} for _ in range(steps)]
        for (i, kind), st, p in zip(kinds, coef.solve(problems), problems):
            multistep_plan[i][kind] = st
            if kind == "main":
                multistep_plan[i]["nodes"] = p[2]
        return multistep_plan
    t0, t1 = np.asarray(ts[:-1]), np.asarray(ts[1:])
    plan: list[dict] = [{"stages": {}} for _ in range(steps)]
    problems, where = [], []
    if order == 1:
        for i in range(steps):
            problems.append((ts[i], ts[i + 1], [ts[i]]))
            where.append((i, "main"))
    else:
        r1 = 0.5 if order == 2 else 1.0 / 3.0
        mid1 = coef.lambda_fraction(t0, t1, r1)
        mid2 = coef.lambda_fraction(t0, t1, 2.0 / 3.0) if order == 3 else mid1  # mid2 used for order 3 only
        for i in range(steps):
            problems.append((ts[i], float(mid1[i]), [ts[i]]))
            where.append((i, "s1"))
            if order == 3:
                problems.append((ts[i], float(mid2[i]), [ts[i], float(mid1[i])]))
                where.append((i, "s2"))
                problems.append((ts[i], ts[i + 1], [ts[i], float(mid2[i])]))
            else:
                problems.append((ts[i], ts[i + 1], [ts[i], float(mid1[i])]))
            where.append((i, "main"))
    for (i, name), st, p in zip(where, coef.solve(problems), problems):
        if name == "main":
            plan[i]["main"] = st
        else:
            plan[i]["stages"][name] = (p[1], st)
    return plan


def _apply(sde: LinearSDE, step: _Step, u: Tensor, values: list[Tensor], noise=None) -> Tensor:
    out = sde.apply(step.psi, u)
    for w, v in zip(step.weights, values):
        out = out + sde.join(*[float(w[i]) * v for i in range(sde.order)])
    if step.noise is not None and noise is not None:
        z = noise(tuple(u.shape)).to(dtype=u.dtype, device=u.device)
        out = out + sde.apply(step.noise, z)
    return out


# ---------------------------------------------------------------------------------------- the sampler
def exponential_integrator(score_fn: ScoreFn, sde: LinearSDE, u: Tensor, ts, *, order: int = 2,
                           multistep: bool = True, form: str = "data", eta: float = 0.0, ref_var: float = 0.0,
                           corrector: bool = False, noise=None, denoise: bool = True, progress: bool = False,
                           callback: Callback | None = None) -> SamplerOutput:
    """Exponential integrator for the phase-space PF-ODE (eta = 0) or the SDE family (0 < eta <= 1).

    Args:
        order: 1, 2 or 3 (polynomial degree + 1 of the approximated term).
        multistep: reuse past evaluations (1 NFE per step, DPM-Solver++(kM)-like); otherwise single-step
            stages (``order`` NFE per step, DPM-Solver-k-like).
        form: 'data' (xhat, exact linear part including the Gaussian score) or 'eps' (eps-hat = -s / ell,
            linear part beta F only).
        eta: 0 = ODE; 1 = reverse SDE; in between, the interpolating family (noise solved exactly).
        ref_var: c, the data variance of the Gaussian reference (0: Dirac data, DPM-Solver++). For multimodal
            data a within-mode variance works best at few steps (xhat is then constant within a mode).
        corrector: after each multistep step, re-do the step with the new point's value added as an
            interpolation node (order k + 1); that value is needed for the next step anyway, so the
            corrector costs no NFE (UniPC, Zhao et al. 2023). Not on the last step.
        denoise: return E[x0 | u_eps] (Tweedie, 1 extra NFE) as the samples.
    The multistep variant's first steps use lower orders (warm-up).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    if form not in ("data", "eps"):
        raise ValueError(f"form must be 'data' or 'eps', got {form!r}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if ref_var < 0:
        raise ValueError(f"ref_var must be >= 0, got {ref_var}")
    if eta > 0 and order > 1 and not multistep:
        raise ValueError("the stochastic variant (eta > 0) is multistep (or order 1); use multistep=True")
    if corrector and (not multistep or eta > 0):
        raise ValueError("the corrector is for the multistep ODE integrator (multistep=True, eta=0)")
    ts = _check_grid(sde, ts)
    noise = as_noise(noise)
    score = _Counted(score_fn)
    args = (tuple(ts.tolist()), form, float(eta), float(ref_var), order, bool(multistep), bool(corrector))
    plan = sde.cached(("exponential-plan", *args), lambda: _plan(sde, *args))

    if form == "data":
        def value(v: Tensor, t: float) -> Tensor:
            return posterior_mean(sde, v, t, score(v, t), ref_var)
    else:
        def value(v: Tensor, t: float) -> Tensor:  # eps-hat = -s / ell, the network's own output
            return -score(v, t) / float(sde.marginal(torch.tensor(t, dtype=torch.float64)).ell)

    history: list[Tensor] = []
    pending: Tensor | None = None  # the value at (u, t) when the corrector already computed it
    for i, (t, t_next) in enumerate(_steps(ts, progress, f"exp-{form}-{order}{'M' if multistep else 'S'}")):
        entry = plan[i]
        if multistep:
            history.insert(0, value(u, t) if pending is None else pending)
            history = history[: len(entry["nodes"])]
            u_new = _apply(sde, entry["main"], u, history, noise)
            pending = None
            if "corrector" in entry:
                pending = value(u_new, t_next)
                u_new = _apply(sde, entry["corrector"], u, [pending] + history)
            u = u_new
        else:
            x0 = value(u, t)
            stages = entry["stages"]
            if "s1" not in stages:
                u = _apply(sde, entry["main"], u, [x0], noise)
            else:
                t1, c1 = stages["s1"]
                x1 = value(_apply(sde, c1, u, [x0]), t1)
                if "s2" in stages:
                    t2, c2 = stages["s2"]
                    x2 = value(_apply(sde, c2, u, [x0, x1]), t2)
                    u = _apply(sde, entry["main"], u, [x0, x2], noise)
                else:
                    u = _apply(sde, entry["main"], u, [x0, x1], noise)
        if callback is not None:
            callback(i, t_next, u)
    return _finish(sde, score, u, float(ts[-1]), denoise)
