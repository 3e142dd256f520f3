"""The Wasserstein bound of score-based models: sqrt(score-matching objective) next to the measured W2.

Kwon, Fan & Lee (2022), "Score-based Generative Modeling Secretly Minimizes the Wasserstein Distance"
(NeurIPS; arXiv 2212.06359) show that, for the probability-flow sampler and a model whose drift is
Lipschitz in the state, the generated law q_0 and the data law p_0 satisfy

    W2(p_0, q_0) <= int_0^T (g(t)^2 / 2) I(t) sqrt(E_{p_t} || s_theta - grad log p_t ||^2) dt + I(0) W2(p_T, q_T)
                 <= C_theta sqrt(J) + I(0) W2(p_T, pi),    C_theta = (int_0^T g^4 I^2 / 4 dt)^{1/2}

(Cauchy-Schwarz), where I(t) = exp(int_0^t L(r) dr) grows with the model's Lipschitz constant L and J is the
likelihood-weighted (g^2) explicit score-matching objective. So W2 is bounded by sqrt(J) up to a
multiplicative constant and a fixed offset (the prior mismatch). This module measures the ingredients; it
does not estimate the Lipschitz constants, so it reports sqrt(J) beside W2 (and their ratio), not C.

What is measured (phase-space form; u_n is the component that receives the noise, s its score):

    J_dsm = int_eps^T g(t)^2 E_{x0, u_t | x0} || s_theta(u_t, t) - grad_{u_n} log p(u_t | x0) ||^2 dt
          = int_eps^T lambda(t) E || eps_theta(u_t, t) - z_n ||^2 dt,          lambda(t) = g(t)^2 ell_t^2,
    J_esm = int_eps^T lambda(t) E || eps_theta(u_t, t) - eps*(u_t, t) ||^2 dt,   eps* = -s*/ell_t (true score),
    J_dsm = J_esm + J_irr,    J_irr = int lambda E || z_n - eps* ||^2 dt    (independent of the model).

J_dsm is the trainer's HSM/DSM loss with ``weighting: likelihood``, except that (i) ||.||^2 is *summed* over
the data's coordinates (the trainer averages) and (ii) it is integrated over t in [eps, T] (the trainer
averages over t ~ U(eps, T): J_dsm = (T - eps) * d * that mean). Held-out data x0 are the run's test split;
the times are importance-sampled from lambda(t) / int lambda (stratified), the noise is fresh, and the
estimate is unbiased with a reported standard error. J_esm (the quantity in the theorem) needs the true
score; it is computed exactly for data with a known Gaussian-mixture density (the toy sets) with
:class:`holdsgm.sde.oracle.MixtureOracle`. For other data only J_dsm is available (an upper bound on J_esm).

Units. g^2 ||s||^2 dt is dimensionless, and J_esm / 2 bounds KL(p_0 || q_0^SDE) + const in nats (Song, Durkan,
Murray & Ermon 2021, Thm 1): J is "2 x nats", sqrt(J) is in sqrt(nats) (x sqrt 2). W2 is in the data's units
(exact empirical W2 between n samples and the held-out split, POT). With auxiliaries (CLD/HOLD) J refers to the
joint law of (x, v, a); its KL bounds the data's KL by data processing.

Offset. W2(p_T, pi) <= sqrt(E || (Phi_T (x) I) [x0; 0] ||^2) (couple the two Gaussians with the same noise);
reported as ``prior_offset`` (data units).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..plotting import pyplot, save_figure

UNITS = ("J: dimensionless (J/2 is a KL bound in nats); sqrt_J: sqrt of that; w2, prior_offset: data units")


def likelihood_weight(sde, t) -> Tensor:
    """lambda(t) = g(t)^2 ell_t^2 (float64): the weight that turns the eps-loss into g^2 || s - s_theta ||^2."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return sde.g2(t) * sde.marginal(t).ell ** 2


class LikelihoodTimeSampler:
    """Importance sampling of t in [eps, T] with density q ~ lambda(t) (piecewise linear on a fine grid).

    ``sample(n, g)`` returns (t, w) with w = lambda(t) / q(t), so that E[w f(t)] = int_eps^T lambda f dt exactly
    (the weights use the sampling density actually realised, not an approximation of it).
    """

    def __init__(self, sde, n_grid: int = 2048):
        lo, hi = float(sde.eps), float(sde.T)
        grid = np.unique(np.concatenate([np.geomspace(lo, hi, n_grid), np.linspace(lo, hi, n_grid)]))
        self.sde = sde
        self.grid = torch.as_tensor(grid, dtype=torch.float64)
        lam = likelihood_weight(sde, self.grid)
        seg = 0.5 * (lam[1:] + lam[:-1]) * (self.grid[1:] - self.grid[:-1])
        self.total = float(seg.sum())  # int of the piecewise-linear lambda (~ int lambda dt)
        self.cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(seg, 0)]) / seg.sum()
        self.lam = lam

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        u0 = torch.rand((), dtype=torch.float64, generator=generator)
        v = (u0 + torch.arange(n, dtype=torch.float64) / n) % 1.0  # stratified
        v = v[torch.randperm(n, generator=generator)]
        i = torch.searchsorted(self.cdf, v, right=True).clamp(1, len(self.grid) - 1) - 1
        # within segment i the CDF is the integral of the linear interpolant of lambda: invert it exactly,
        # l0 s + (l1 - l0) s^2 / (2 h) = z, in the cancellation-free form s = 2 z / (l0 + sqrt(l0^2 + 4 a z))
        t0, t1 = self.grid[i], self.grid[i + 1]
        l0, l1 = self.lam[i], self.lam[i + 1]
        h = t1 - t0
        z = (v - self.cdf[i]) * self.total
        a = 0.5 * (l1 - l0) / h
        s = (2 * z / (l0 + (l0**2 + 4 * a * z).clamp_min(0).sqrt())).clamp(torch.zeros_like(h), h)
        t = t0 + s
        q = (l0 + (l1 - l0) * s / h) / self.total  # the realised sampling density at t
        w = likelihood_weight(self.sde, t) / q
        return t, w


@torch.no_grad()
def score_objective(eps_model, sde, x0: Tensor, y: Tensor | None = None, *, times_per_point: int = 8,
                    oracle=None, seed: int = 0, chunk: int = 4096) -> dict:
    """Monte Carlo estimate of J_dsm (and J_esm, J_irr with an ``oracle``) on the data ``x0`` (see the module).

    Args:
        eps_model: an :class:`holdsgm.losses.EpsModel` (``eps(u, t, y)``).
        x0: held-out data (N, *data_shape); ``y`` their labels for a class-conditional model.
        times_per_point: time/noise draws per data point.
        oracle: a :class:`holdsgm.sde.oracle.MixtureOracle` of the true data law, for J_esm.
    """
    if not (isinstance(times_per_point, int) and times_per_point >= 1):
        raise ConfigError(f"times_per_point must be a positive integer, got {times_per_point!r}")
    if len(x0) == 0:
        raise ConfigError("score_objective needs at least one data point")
    g = torch.Generator().manual_seed(int(seed))
    ts = LikelihoodTimeSampler(sde)
    try:
        device = next(eps_model.net.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        device = torch.device("cpu")
    k = times_per_point
    x_rep = x0.repeat_interleave(k, 0)
    y_rep = None if y is None else y.repeat_interleave(k, 0)
    t_all, w_all = ts.sample(len(x_rep), g)
    dsm, esm, irr = [], [], []
    for i0 in range(0, len(x_rep), chunk):
        xb = x_rep[i0:i0 + chunk].to(device)
        tb = t_all[i0:i0 + chunk].to(device)
        wb = w_all[i0:i0 + chunk]
        yb = None if y_rep is None else y_rep[i0:i0 + chunk].to(device)
        noise = torch.randn(sde.state_shape(tuple(xb.shape)), generator=g, dtype=xb.dtype).to(device)
        kern = sde.marginal(tb)
        u = sde.perturb(xb, tb, noise, kernel=kern)
        pred = eps_model.eps(u, tb, yb) if yb is not None else eps_model.eps(u, tb)
        target = sde.last(noise)
        dsm.append(((pred - target) ** 2).flatten(1).sum(1).double().cpu() * wb)
        if oracle is not None:
            ell = kern.ell.to(device)
            s_true = oracle.score(u.double(), tb)
            e_true = -s_true / ell.reshape(-1, *([1] * (s_true.dim() - 1)))
            esm.append(((pred.double() - e_true) ** 2).flatten(1).sum(1).cpu() * wb)
            irr.append(((target.double() - e_true) ** 2).flatten(1).sum(1).cpu() * wb)
    out = {"n_points": len(x0), "times_per_point": k, "t_range": [float(sde.eps), float(sde.T)],
           "int_lambda": ts.total}
    for name, vals in (("dsm", dsm), ("esm", esm), ("irr", irr)):
        if not vals:
            continue
        v = torch.cat(vals)
        mean, sem = float(v.mean()), float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0
        out[f"J_{name}"] = mean
        out[f"J_{name}_sem"] = sem
        if name != "irr":
            out[f"sqrt_J_{name}"] = math.sqrt(max(mean, 0.0))
    return out


def prior_offset(sde, x0: Tensor) -> float:
    """sqrt(E || (Phi_T (x) I) [x0; 0] ||^2): an upper bound on W2(p_T, prior) in data units (see the module)."""
    phi = sde.marginal(torch.tensor(float(sde.T), dtype=torch.float64)).phi
    x = x0.reshape(len(x0), -1).double()
    mean_sq = (x**2).sum(1).mean()
    return float(torch.sqrt(mean_sq * (phi[:, 0] ** 2).sum()))


def bound_report(run, test, *, n: int | None = 1000, times_per_point: int = 8, seed: int = 0,
                 w2: float | None = None, n_samples: int | None = None) -> dict:
    """The ``wasserstein_bound`` section of ``holdsgm eval``: J_dsm (J_esm, J_irr for known densities) on up to
    ``n`` held-out points, sqrt(J), the prior offset, and -- for vector data -- the measured ``w2`` with its
    finite-sample floor and the ratio w2 / sqrt(J)."""
    from ..sde.oracle import MixtureOracle

    info = run.dataset_info
    m = len(test) if n is None else min(int(n), len(test))
    x0 = test.x[:m]
    y = test.y[:m] if (info.n_classes and test.y is not None) else None
    oracle = MixtureOracle(run.sde, info.mixture) if info.mixture is not None else None
    out: dict[str, Any] = {
        "quantity": "J = int_eps^T g^2 E||s_theta - s||^2 dt on held-out data (see holdsgm.eval.wasserstein_bound)",
        "units": UNITS}
    out.update(score_objective(run.eps_model, run.sde, x0, y, times_per_point=times_per_point, oracle=oracle,
                               seed=seed))
    out["prior_offset"] = prior_offset(run.sde, x0)
    if w2 is not None:
        out["w2"] = w2
        key = "sqrt_J_esm" if "sqrt_J_esm" in out else "sqrt_J_dsm"
        out["w2_over_sqrt_J"] = w2 / out[key] if out[key] > 0 else float("inf")
        out["ratio_uses"] = key
        if info.mixture is not None and n_samples:
            out["w2_floor"] = w2_floor(info.mixture, test.x, n_samples, seed)
    return out


def w2_floor(mixture, reference: Tensor, n: int, seed: int = 0) -> float:
    """W2 of ``n`` exact draws from the true mixture against ``reference``: what a perfect model scores."""
    from .metrics import wasserstein2

    g = torch.Generator().manual_seed(int(seed) + 12345)
    return wasserstein2(mixture.sample(n, generator=g), reference)


# --------------------------------------------------------------------------------------------- over training
def over_training_figure(results, path, title: str = "") -> Path:
    """Plot W2 and sqrt(J) against the training step (top) and W2 against sqrt(J) (bottom), one column per
    run. ``results`` is one :func:`evaluate_checkpoints` result or a list of them."""
    plt = pyplot()
    if isinstance(results, dict):
        results = [results]
    cols = len(results)
    fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols, 6.4), squeeze=False)
    for j, res in enumerate(results):
        rows = res["rows"]
        steps = [r["step"] for r in rows]
        ax = axes[0, j]
        ax2 = ax.twinx()
        lines = []
        if all("w2" in r for r in rows):
            lines += ax.plot(steps, [r["w2"] for r in rows], "o-", color="C0", label="W2 (samples vs held-out)")
            if res.get("w2_floor") is not None:
                lines.append(ax.axhline(res["w2_floor"], color="C0", ls=":", lw=1, label="W2 floor (exact draws)"))
        for key, color, lab in (("sqrt_J_esm", "C3", "sqrt(J_esm)"), ("sqrt_J_dsm", "C1", "sqrt(J_dsm)")):
            if all(key in r for r in rows):
                lines += ax2.plot(steps, [r[key] for r in rows], "s--", color=color, label=lab)
        ax.set_xlabel("training step")
        ax.set_ylabel("W2 (data units)", color="C0")
        ax2.set_ylabel("sqrt(J)  (sqrt nats x sqrt 2)")
        ax.set_title(f"{res.get('sde', '')} on {res.get('dataset', '')}", fontsize=10)
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
        ax = axes[1, j]
        key = "sqrt_J_esm" if all("sqrt_J_esm" in r for r in rows) else "sqrt_J_dsm"
        if all("w2" in r for r in rows):
            sc = ax.scatter([r[key] for r in rows], [r["w2"] for r in rows], c=steps, cmap="viridis")
            fig.colorbar(sc, ax=ax, label="step")
            ratio = max(r["w2"] / r[key] for r in rows if r[key] > 0)
            xs = np.linspace(0, max(r[key] for r in rows) * 1.05, 10)
            ax.plot(xs, ratio * xs, "k:", lw=1, label=f"W2 = {ratio:.3g} sqrt(J) (max ratio)")
            ax.legend(fontsize=7)
        ax.set_xlabel(key.replace("sqrt_J", "sqrt(J") + ")")
        ax.set_ylabel("W2")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, tight=False)
