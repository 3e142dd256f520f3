"""Reverse-time samplers: pure functions of (score_fn, sde, u_T, time grid, noise).

Each sampler integrates from ``ts[0]`` (= T) down to ``ts[-1]`` (= eps), optionally takes a final
denoising step to t = 0, and returns a :class:`SamplerOutput` with the data component ``x``, the full
phase-space state ``u`` and the number of score evaluations ``nfe``. Nothing is stored between calls.

``score_fn(u, t)`` returns grad_{u_n} log p_t(u) (the last component's score); ``t`` is a float64
tensor of shape (batch,). ``callback(i, t, u)`` is called after every step (for trajectories). The final denoising step
returns E[x0 | u_eps] (Tweedie's formula from the last component's score, see :mod:`holdsgm.sde.posterior`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import NumericsError
from ..sde.base import LinearSDE, ScoreFn
from ..sde.kernels import tril_factor
from ..sde.posterior import posterior_mean
from .noise import as_noise

Callback = Callable[[int, float, Tensor], None]


class SamplerOutput(NamedTuple):
    x: Tensor
    """Samples of the data component, shaped like the data."""
    u: Tensor
    """The final phase-space state (x, v, a, ...)."""
    nfe: int
    """Number of score-function evaluations used."""


class _Counted:
    """Wraps a score function, counting evaluations and giving it per-sample float64 times."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn = score_fn
        self.nfe = 0

    def __call__(self, u: Tensor, t: float) -> Tensor:
        self.nfe += 1
        tt = torch.full((u.shape[0],), float(t), dtype=torch.float64, device=u.device)
        return self.score_fn(u, tt)


def _check_grid(sde: LinearSDE, ts: Tensor) -> Tensor:
    ts = sde.check_time(torch.as_tensor(ts, dtype=torch.float64), "time grid")
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError("time grid must be a 1-D sequence of at least two times")
    if not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError("time grid must be strictly decreasing (from T towards 0)")
    return ts


def _steps(ts: Tensor, progress: bool, desc: str):
    pairs = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
    return tqdm(pairs, desc=desc, disable=not progress, leave=False)


def _finish(sde: LinearSDE, score: _Counted, u: Tensor, t_end: float, denoise: bool) -> SamplerOutput:
    """Optional final denoising (1 NFE): x = E[x0 | u_eps] by Tweedie's formula in phase space
    (:func:`holdsgm.sde.posterior.posterior_mean`; for VP the usual (u + sigma^2 s) / alpha), then checks."""
    x = sde.data(u)
    if denoise and t_end > 0:
        x = posterior_mean(sde, u, t_end, score(u, t_end))
    bad = ~(torch.isfinite(u.reshape(u.shape[0], -1)).all(1) & torch.isfinite(x.reshape(x.shape[0], -1)).all(1))
    if bool(bad.any()):
        raise NumericsError(f"sampler produced NaN/inf in {int(bad.sum())} of {u.shape[0]} samples "
                            f"(after {score.nfe} score evaluations); try more steps or another sampler")
    return SamplerOutput(x, u, score.nfe)


def _noise_last(sde: LinearSDE, u: Tensor, noise) -> Tensor:
    shape = (u.shape[0], u.shape[1] // sde.order, *u.shape[2:])
    return noise(shape).to(dtype=u.dtype, device=u.device)


# ---------------------------------------------------------------------- stochastic samplers
def euler_maruyama(score_fn: ScoreFn, sde: LinearSDE, u: Tensor, ts, *, noise=None, denoise: bool = True,
                   progress: bool = False, callback: Callback | None = None) -> SamplerOutput:
    """Euler-Maruyama on the reverse SDE (Song et al. 2021):

        u <- u - h (f(u, t) - g(t)^2 e_n s(u, t)) + g(t) sqrt(h) e_n z,   h = t - t_next.
    """
    ts = _check_grid(sde, ts)
    noise = as_noise(noise)
    score = _Counted(score_fn)
    for i, (t, t_next) in enumerate(_steps(ts, progress, "euler-maruyama")):
        u = _em_step(sde, score, u, t, t_next, noise)
        if callback is not None:
            callback(i, t_next, u)
    return _finish(sde, score, u, float(ts[-1]), denoise)


def _em_step(sde: LinearSDE, score, u: Tensor, t: float, t_next: float, noise) -> Tensor:
    """One Euler-Maruyama step of the reverse SDE from ``t`` down to ``t_next`` (one score evaluation)."""
    h = t - t_next
    drift = sde.reverse_drift(u, t, score(u, t))
    out = torch.add(u, drift, alpha=-h)
    sde.last_view(out).add_(_noise_last(sde, u, noise), alpha=(sde.rates(t)[1] * h) ** 0.5)
    return out


def predictor_corrector(score_fn: ScoreFn, sde: LinearSDE, u: Tensor, ts, *, noise=None, snr: float = 0.1,
                        corrector_steps: int = 1, denoise: bool = True, progress: bool = False,
                        callback: Callback | None = None) -> SamplerOutput:
    """Predictor-corrector sampling (Song et al. 2021, Alg. 1-2): at each time, ``corrector_steps``
    Langevin MCMC steps on the last component, then an Euler-Maruyama predictor step.

    The score is that of p_t(u_n | u_<n), so the corrector is a valid MCMC move for n >= 2 too. Its
    step is eps_t = 2 (snr / ell_t)^2, where 1/ell_t^2 is the kernel's conditional variance of u_n:
    the value of Song et al.'s rule 2 (snr ||z|| / ||s||)^2 for a Gaussian of that variance, but
    independent of the batch (their batch-averaged norms make a sample depend on its batch-mates,
    and per-sample norms blow up where ||s|| ~ 0 between modes).
    """
    if not snr > 0:
        raise ValueError(f"snr must be positive, got {snr}")
    if not (isinstance(corrector_steps, int) and corrector_steps >= 1):
        raise ValueError(f"corrector_steps must be an integer >= 1, got {corrector_steps!r}")
    ts = _check_grid(sde, ts)
    noise = as_noise(noise)
    score = _Counted(score_fn)
    for i, (t, t_next) in enumerate(_steps(ts, progress, "predictor-corrector")):
        step = 2 * (snr / sde.ell_at(t)) ** 2
        for _ in range(corrector_steps):
            s = score(u, t)
            z = _noise_last(sde, u, noise)
            u = u.clone()
            sde.last_view(u).add_(s, alpha=step).add_(z, alpha=(2 * step) ** 0.5)
        u = _em_step(sde, score, u, t, t_next, noise)
        if callback is not None:
            callback(i, t_next, u)
    return _finish(sde, score, u, float(ts[-1]), denoise)


# ---------------------------------------------------------------------- probability-flow ODE
def probability_flow(score_fn: ScoreFn, sde: LinearSDE, u: Tensor, ts, *, method: str = "heun",
                     denoise: bool = True, progress: bool = False, callback: Callback | None = None,
                     noise=None) -> SamplerOutput:
    """Fixed-step integration of the probability-flow ODE du/dt = f(u, t) - g^2/2 e_n s(u, t)
    (Song et al. 2021, eq. 13) with ``method`` = 'euler', 'heun' (2nd order, 2 NFE/step; Karras et al.
    2022) or 'rk4' (4 NFE/step). Deterministic: ``noise`` is accepted and ignored."""
    ts = _check_grid(sde, ts)
    score = _Counted(score_fn)

    def f(v, t):
        return sde.reverse_drift(v, t, score(v, t), probability_flow=True)

    if method not in ("euler", "heun", "rk4"):
        raise ValueError(f"unknown ODE method {method!r}; choose euler, heun or rk4")
    for i, (t, t_next) in enumerate(_steps(ts, progress, f"pf-ode {method}")):
        h = t_next - t  # negative
        k1 = f(u, t)
        if method == "euler":
            u = u + h * k1
        elif method == "heun":
            k2 = f(u + h * k1, t_next)
            u = u + 0.5 * h * (k1 + k2)
        else:
            k2 = f(u + 0.5 * h * k1, t + 0.5 * h)
            k3 = f(u + 0.5 * h * k2, t + 0.5 * h)
            k4 = f(u + h * k3, t_next)
            u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if callback is not None:
            callback(i, t_next, u)
    return _finish(sde, score, u, float(ts[-1]), denoise)


def adaptive_ode(score_fn: ScoreFn, sde: LinearSDE, u: Tensor, ts, *, rtol: float = 1e-5, atol: float = 1e-5,
                 method: str = "RK45", denoise: bool = True, progress: bool = False,
                 callback: Callback | None = None, noise=None) -> SamplerOutput:
    """Adaptive probability-flow ODE solve from ts[0] to ts[-1] with scipy's ``solve_ivp``
    (Dormand-Prince RK45 by default; Song et al. 2021 use the same solver and tolerances).
    Only the grid's end points are used; the solver picks its own steps."""
    from scipy.integrate import solve_ivp

    ts = _check_grid(sde, ts)
    score = _Counted(score_fn)
    shape, dtype, device = u.shape, u.dtype, u.device

    def fun(t, y):
        v = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
        dv = sde.reverse_drift(v, t, score(v, t), probability_flow=True)
        return dv.detach().to(torch.float64).cpu().numpy().reshape(-1)

    sol = solve_ivp(fun, (float(ts[0]), float(ts[-1])), u.detach().to(torch.float64).cpu().numpy().reshape(-1),
                    method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise NumericsError(f"adaptive ODE solver failed: {sol.message}")
    u = torch.as_tensor(sol.y[:, -1], dtype=dtype, device=device).reshape(shape)
    if callback is not None:
        callback(0, float(ts[-1]), u)
    return _finish(sde, score, u, float(ts[-1]), denoise)


# ---------------------------------------------------------------------- splitting (SSCS)
def _require_stationary(sde: LinearSDE, name: str):
    if not sde.has_stationary_law:
        raise ValueError(f"sampler {name!r} needs an SDE with a stationary law (Langevin family: vp, cld, "
                         f"hold); {sde.name!r} has none")


def _ou_factors(sde, b: float) -> tuple[Tensor, Tensor]:
    phi, a = sde.factor_over(torch.tensor(b, dtype=torch.float64), sde.F.T)
    return phi, tril_factor(a)


def _ou_step(sde, b: float, u: Tensor, noise) -> Tensor:
    """Exact step of the linear part A: du = F^T u db + sqrt(q) e_n dW over b (reverse time)."""
    b = float(b)
    phi, chol = sde.cached(("ou_step", b), lambda: _ou_factors(sde, b))
    z = noise(tuple(u.shape)).to(dtype=u.dtype, device=u.device)
    return sde.apply(phi, u, key=("ou_step", b, "phi")) + sde.apply(chol, z, key=("ou_step", b, "chol"))


def _score_step(sde, u: Tensor, s: Tensor, c: float) -> None:
    """The S step in place: u_n <- u_n + c (s + L u_n) = (1 + c L) u_n + c s."""
    last = sde.last_view(u)
    last.mul_(1.0 + c * sde.L).add_(s, alpha=c)


def splitting(score_fn: ScoreFn, sde: LinearSDE, u: Tensor, ts, *, scheme: str = "strang",
              score_time: str = "mid", noise=None, denoise: bool = True, progress: bool = False,
              callback: Callback | None = None) -> SamplerOutput:
    """Splitting sampler for the Langevin family, generalising CLD's SSCS (Dockhorn et al. 2022) to
    order n. The reverse SDE's drift -F u + q e_n s splits into

        A (exact, Gaussian):  du   = F^T u db + sqrt(q) e_n dW         (an OU process, same stationary law)
        S (Euler):            du_n = q (s(u, t) + L u_n) db            (the score minus its stationary part)

    in integrated-beta time b. ``scheme='strang'`` is A(h/2) S(h) A(h/2) (SSCS), ``'lie'`` is S(h) A(h)
    (Lie-Trotter). ``score_time`` chooses where the Strang S step evaluates the score: at the step's
    mid-time ('mid', where the state is after the first half step) or its start ('start', as CLD-SGM).
    The A steps use the exact beta integrals, so the scheme is exact for any schedule.

    Strang's consecutive half steps, A(h/2) ending one step and A(h'/2) starting the next, are taken as the
    one exact step A(h/2 + h'/2) they compose to (A is a time-homogeneous OU flow in b: the same law, one
    noise draw instead of two, as leapfrog merges its half kicks). The state at an inner grid time is
    therefore never formed: ``callback(i, t, u)`` gets step i's state after the OU part that follows it,
    at the next step's score time t (the grid's last time after the last step).
    """
    _require_stationary(sde, "sscs")
    if scheme not in ("strang", "lie"):
        raise ValueError(f"scheme must be 'strang' or 'lie', got {scheme!r}")
    if score_time not in ("mid", "start"):
        raise ValueError(f"score_time must be 'mid' or 'start', got {score_time!r}")
    ts = _check_grid(sde, ts)
    noise = as_noise(noise)
    score = _Counted(score_fn)
    q = sde.q

    def B(t: float) -> float:  # integrated beta, memoised per time (asked for at every step)
        return sde.cached(("integral", t), lambda: float(sde.schedule.integral(t)))

    last = ts.numel() - 2
    pending = 0.0  # strang: the last step's second OU half step, still to take
    for i, (t, t_next) in enumerate(_steps(ts, progress, f"splitting {scheme}")):
        b_total = B(t) - B(t_next)
        if scheme == "strang":
            t_mid = 0.5 * (t + t_next)
            u = _ou_step(sde, pending + (B(t) - B(t_mid)), u, noise)
            if callback is not None and i > 0:
                callback(i - 1, t_mid, u.clone())  # the score step below updates u in place
            s = score(u, t_mid if score_time == "mid" else t)
            _score_step(sde, u, s, b_total * q)  # u is the fresh output of the OU step: updated in place
            pending = B(t_mid) - B(t_next)
            if i < last:
                continue
            u = _ou_step(sde, pending, u, noise)
        else:
            s = score(u, t)
            u = u.clone()
            _score_step(sde, u, s, b_total * q)
            u = _ou_step(sde, b_total, u, noise)
        if callback is not None:
            callback(i, t_next, u)
    return _finish(sde, score, u, float(ts[-1]), denoise)
