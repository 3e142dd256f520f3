"""Exponential integrators: exact for Gaussian data, convergent at their order, never NaN."""

import math

import pytest
import torch

from holdsgm.mixture import GaussianMixture
from holdsgm.samplers import SAMPLERS, adaptive_ode, sample, time_grid
from holdsgm.samplers.exponential import exponential_integrator
from holdsgm.samplers.grids import sde_time_grid
from holdsgm.sde import MixtureOracle, make_sde, posterior_mean

F64 = torch.float64
C = 0.3  # data variance of the Gaussian test law


def make(name):
    return make_sde(name, **({"sigma_max": 5.0} if name == "ve" else {}))


def gaussian():
    return GaussianMixture([1.0], [[0.7, -1.2]], [[[C, 0], [0, C]]])


@pytest.mark.parametrize("name,order,multistep", [
    ("vp", 1, True), ("subvp", 2, True), ("ve", 2, False), ("cld", 3, True), ("cld", 2, False),
    ("hold", 1, True), ("hold", 2, True), ("hold", 3, True), ("hold", 2, False), ("hold", 3, False)])
def test_exact_for_gaussian_data(name, order, multistep):
    """Data N(m, c I) and the matching reference variance: xhat is constant along the flow, so three
    steps reproduce a tight adaptive solve of the probability-flow ODE to ~1e-10."""
    sde = make(name)
    orc = MixtureOracle(sde, gaussian())
    u = orc.sample(sde.T, 8, generator=torch.Generator().manual_seed(0))
    ts = time_grid("uniform", 3, sde.T, sde.eps)
    out = exponential_integrator(orc.score, sde, u, ts, order=order, multistep=multistep, ref_var=C, denoise=False)
    ref = adaptive_ode(orc.score, sde, u, ts, method="DOP853", rtol=1e-11, atol=1e-11, denoise=False)
    assert float((out.u - ref.u).abs().max()) < 1e-8


@pytest.mark.parametrize("name,eta", [("vp", 1.0), ("hold", 1.0), ("hold", 0.5), ("cld", 0.5)])
def test_stochastic_variant_is_exact_for_gaussian_data(name, eta):
    """With eta > 0 the output law from an exact draw of p_T is exactly p_eps: moments within MC error."""
    sde = make(name)
    orc = MixtureOracle(sde, gaussian())
    n = 20000
    u = orc.sample(sde.T, n, generator=torch.Generator().manual_seed(1))
    ts = time_grid("uniform", 3, sde.T, sde.eps)
    out = exponential_integrator(orc.score, sde, u, ts, order=2, eta=eta, ref_var=C, noise=2, denoise=False)
    means, covs, _ = orc.params(torch.tensor(sde.eps, dtype=F64))
    cov = covs[0]
    sd = cov.diagonal().sqrt()
    assert ((out.u.mean(0) - means[0]).abs() < 5 * sd / math.sqrt(n)).all()
    assert ((torch.cov(out.u.T) - cov).abs() < 6 * torch.outer(sd, sd) * math.sqrt(2 / n)).all()


def test_posterior_mean_is_tweedie():
    """E[x0 | u_t] from the last score equals the exact posterior mean of the Gaussian-mixture oracle."""
    mix = GaussianMixture.eight_gaussians()
    for name in ("vp", "cld", "hold"):
        sde = make(name)
        orc = MixtureOracle(sde, mix)
        for t in (0.01 * sde.T, 0.3 * sde.T):
            u = orc.sample(t, 500, generator=torch.Generator().manual_seed(3))
            xhat = posterior_mean(sde, u, t, orc.score(u, t))
            # exact: E[x0 | u] = sum_k r_k E_k[x0 | u], each component Gaussian (x0, u) jointly
            _, covs, _ = orc.params(torch.tensor(t, dtype=F64))
            k = sde.marginal(torch.tensor(t, dtype=F64))
            from holdsgm.sde import kron_eye
            big = kron_eye(k.phi, 2)[:, :2]  # d u / d x0
            r = torch.softmax(torch.stack([mix.component_log_probs(torch.zeros(1, 2))[0]] * 0 or [
                torch.log(mix.weights)[None] + _component_log(orc, u, t)], 0)[0], dim=1)
            means_u = (big @ mix.means.T).T
            ex = 0
            for j in range(8):
                gain = mix.covs[j] @ big.T @ torch.linalg.inv(covs[j])
                ex = ex + r[:, j:j + 1] * (mix.means[j] + (u - means_u[j]) @ gain.T)
            assert torch.allclose(xhat, ex, atol=1e-6), (name, t)


def _component_log(orc, u, t):
    means, covs, _ = orc.params(torch.tensor(t, dtype=F64))
    return torch.stack([torch.distributions.MultivariateNormal(means[j], covs[j]).log_prob(u)
                        for j in range(means.shape[0])], 1)


@pytest.mark.parametrize("order,multistep,corrector,expected", [
    (1, True, False, 1), (2, True, False, 2), (3, True, False, 3), (2, False, False, 2),
    (1, True, True, 2), (2, True, True, 3)])
def test_convergence_order_on_the_mixture(order, multistep, corrector, expected):
    """Median end-point error against a tight solve from the same u_T, HOLD on 8 Gaussians, quadratic
    grid: log-log slope ~ the stated order (the free corrector adds one). (The max error is dominated by
    the few trajectories that switch mode near a basin boundary, so the median is the informative statistic.)"""
    sde = make("hold")
    orc = MixtureOracle(sde, GaussianMixture.eight_gaussians())
    u = sde.prior_sample((200, 2), noise=lambda s: torch.randn(s, generator=torch.Generator().manual_seed(0)),
                         dtype=F64)
    ref = adaptive_ode(orc.score, sde, u, time_grid("uniform", 1, sde.T, sde.eps), method="DOP853", rtol=1e-12,
                       atol=1e-12, denoise=False).u
    errs = []
    for steps in (40, 80, 160):
        out = exponential_integrator(orc.score, sde, u, sde_time_grid(sde, "quadratic", steps), order=order,
                                     multistep=multistep, corrector=corrector, denoise=False)
        errs.append(float((sde.data(out.u) - sde.data(ref)).norm(dim=1).median()))
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(s > expected - 0.35 for s in slopes) and slopes[-1] < expected + 1.0, (errs, slopes)


@pytest.mark.parametrize("sampler", ["exp1", "exp2m", "exp3m", "exp2s", "exp3s", "unipc2", "unipc3", "exp-sde",
                                     "exp2m-sde"])
@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_never_nan_at_any_nfe(sampler, name):
    sde = make(name)
    orc = MixtureOracle(sde, GaussianMixture.eight_gaussians())
    need = SAMPLERS[sampler].evals_per_step + 1
    for grid in ("uniform", "logsnr"):
        for nfe in sorted({max(2, need), need + 1, 5}):
            # the arithmetic itself never overflows (bound=None: the range guard, which stops garbage, is off)
            out = sample(orc.score, sde, (200, 2), sampler=sampler, nfe=nfe, grid=grid, noise=0, dtype=F64,
                         bound=None)
            assert torch.isfinite(out.u).all() and torch.isfinite(out.x).all()


def test_eps_form_converges():
    sde = make("vp")
    mix = GaussianMixture.eight_gaussians()
    orc = MixtureOracle(sde, mix)
    from holdsgm.eval.metrics import mixture_metrics

    lo = sample(orc.score, sde, (2000, 2), sampler="exp2m", nfe=3, grid="quadratic", form="eps", noise=0, dtype=F64)
    hi = sample(orc.score, sde, (2000, 2), sampler="exp2m", nfe=100, grid="quadratic", form="eps", noise=0, dtype=F64)
    err_lo, err_hi = mixture_metrics(lo.x, mix)["mode_w2"], mixture_metrics(hi.x, mix)["mode_w2"]
    assert err_hi < 0.03 and err_lo > err_hi + 0.01, (err_lo, err_hi)


def test_bad_options():
    sde = make("hold")
    orc = MixtureOracle(sde, GaussianMixture.eight_gaussians())
    for kw, match in [({"order": 4}, "order"), ({"form": "x"}, "form"), ({"eta": 2.0}, "eta"),
                      ({"ref_var": -1.0}, "ref_var"), ({"eta": 0.5, "order": 2, "multistep": False}, "multistep"),
                      ({"corrector": True, "multistep": False}, "corrector"),
                      ({"corrector": True, "eta": 1.0}, "corrector")]:
        with pytest.raises(ValueError, match=match):
            exponential_integrator(orc.score, sde, torch.zeros(2, 6, dtype=F64), [5.0, 1e-3], **kw)
