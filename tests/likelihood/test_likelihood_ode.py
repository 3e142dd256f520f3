"""ODE likelihood with the oracle score equals the true -log p(x) of the mixture at each point."""

import math

import pytest
import torch

from holdsgm.likelihood import bits_per_dim, dequantize, ode_likelihood
from holdsgm.mixture import GaussianMixture
from holdsgm.sde import MixtureOracle, make_sde

F64 = torch.float64
#: the exact (oracle) score is right at every time, so its ODE can start as close to 0 as Song et al.'s 1e-5
#: (the default start is the SDE's eps, the smallest time a network is trained at)
ORACLE_EPS = 1e-5


def mixture(d, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    covs = []
    for _ in range(k):
        a = torch.randn(d, d, generator=g, dtype=F64)
        covs.append(0.1 * a @ a.T / d + 0.05 * torch.eye(d, dtype=F64))
    return GaussianMixture(torch.rand(k, generator=g, dtype=F64) + 0.3, 1.5 * torch.randn(k, d, generator=g, dtype=F64),
                           torch.stack(covs))


CASES = [("vp", 2), ("cld", 2), ("hold", 2), ("vp", 6), ("cld", 6), ("hold", 6)]


@pytest.mark.parametrize("name,d", CASES)
def test_exact_divergence_likelihood_matches_true_density(name, d):
    """Per point, to the ODE solver's accuracy, once the prior mismatch is taken out (the exact p_T
    replaces the prior). With the usual prior N(0, Sigma_T) the mismatch adds an error of order
    ||Phi_T|| |x|: below 0.1 nats for VP and HOLD (||Phi_T|| <= 0.023); CLD's T = 5 preset
    (||Phi_T|| = 0.068) shows up to 0.19 nats on the 6-D mixture (means up to |m| ~ 4)."""
    sde = make_sde(name)
    mix = GaussianMixture.eight_gaussians() if d == 2 else mixture(d)
    orc = MixtureOracle(sde, mix)
    x = mix.sample(32 if d == 2 else 12, generator=torch.Generator().manual_seed(1))
    true = -mix.log_prob(x)
    exact_T = ode_likelihood(orc.score, sde, x, noise=2, rtol=1e-6, atol=1e-6, eps=ORACLE_EPS,
                             terminal_logp=lambda u: orc.log_prob(u, sde.T))
    assert (exact_T.nll - true).abs().max() < 5e-3, (exact_T.nll - true)
    prior = ode_likelihood(orc.score, sde, x, noise=2, rtol=1e-6, atol=1e-6, eps=ORACLE_EPS)
    assert prior.nfe > 10
    if name != "cld":
        assert (prior.nll - true).abs().max() < 0.1


@pytest.mark.parametrize("name", ["vp", "hold"])
def test_hutchinson_estimate_is_unbiased(name):
    sde = make_sde(name)
    mix = GaussianMixture.eight_gaussians()
    orc = MixtureOracle(sde, mix)
    x = mix.sample(48, generator=torch.Generator().manual_seed(3)).repeat(4, 1)
    true = -mix.log_prob(x)
    out = ode_likelihood(orc.score, sde, x, divergence="hutchinson", noise=4, rtol=1e-5, atol=1e-5,
                         eps=ORACLE_EPS, terminal_logp=lambda u: orc.log_prob(u, sde.T))
    err = out.nll - true
    assert abs(float(err.mean())) < 4 * float(err.std()) / math.sqrt(len(err))
    assert float(err.std()) > 0.05  # it is an estimate: a zero spread would mean the probe is unused


def test_auxiliary_estimator_has_no_noise_with_the_oracle():
    """docs/maths.md, section 7: log p(x, aux) - log N(aux) is exact per point for the true score, whatever aux
    is drawn, while the entropy form log p(x, aux) + H(aux) carries ~sqrt((n-1) d / 2) nats of noise."""
    sde = make_sde("hold")
    mix = GaussianMixture.eight_gaussians()
    orc = MixtureOracle(sde, mix)
    x = mix.sample(8, generator=torch.Generator().manual_seed(5)).repeat(6, 1)
    out = ode_likelihood(orc.score, sde, x, noise=6, eps=ORACLE_EPS, terminal_logp=lambda u: orc.log_prob(u, sde.T))
    per_point = out.nll.reshape(6, 8)
    assert float(per_point.std(0).max()) < 5e-3
    # the entropy form, from the same solves: log p(x, aux) = -nll + log N(aux)
    u0 = sde.augment(x, noise=__import__("holdsgm.samplers", fromlist=["as_noise"]).as_noise(6))
    log_joint = -out.nll + sde.aux_log_prob(u0)
    n, d = sde.order, 2
    entropy = (n - 1) * d / 2 * (1 + math.log(2 * math.pi * sde.aux_var))
    entropy_form = -(log_joint + entropy).reshape(6, 8)
    assert float(entropy_form.std(0).mean()) > 0.5


def test_bits_per_dim_offset_and_dequantisation():
    nll = torch.tensor([64 * math.log(2) * 2.0], dtype=F64)
    assert float(bits_per_dim(nll, 64, n_bins=17)) == pytest.approx(2.0 + 3.0)  # log2(16 / 2) = 3
    assert float(bits_per_dim(nll, 64, n_bins=256)) == pytest.approx(2.0 + math.log2(255 / 2))
    levels = torch.arange(17, dtype=F64) / 16 * 2 - 1
    x = levels.repeat(100)
    deq = dequantize(x, 17, generator=torch.Generator().manual_seed(0))
    w = 2 / 16
    assert ((deq - x).abs() <= w / 2).all() and float((deq - x).std()) == pytest.approx(w / math.sqrt(12), rel=0.1)


def test_uniform_density_gives_known_bits_per_dim():
    """A model density uniform over the dequantisation bins' span has -log2 P(k) = log2(K) per dim."""
    K, d = 17, 3
    span = 2 + 2 / (K - 1)  # the bins of the extreme levels stick out by w/2 on each side
    nll = torch.tensor([d * math.log(span)], dtype=F64)  # -log of the uniform density on the span
    assert float(bits_per_dim(nll, d, n_bins=K)) == pytest.approx(math.log2(K))


def test_default_start_is_the_sdes_training_floor():
    """The ODE starts at sde.eps unless told otherwise (a network is never trained below it)."""
    sde = make_sde("vp")
    mix = GaussianMixture.eight_gaussians()
    orc = MixtureOracle(sde, mix)
    x = mix.sample(8, generator=torch.Generator().manual_seed(0))
    a = ode_likelihood(orc.score, sde, x, noise=0)
    b = ode_likelihood(orc.score, sde, x, noise=0, eps=sde.eps)
    c = ode_likelihood(orc.score, sde, x, noise=0, eps=ORACLE_EPS)
    assert torch.equal(a.nll, b.nll) and not torch.equal(a.nll, c.nll)


def _aux_noise(values):
    """A noise source whose first draw (the auxiliaries) is ``values``; later draws (probes) are N(0, 1)."""
    calls = []

    def draw(shape):
        calls.append(shape)
        if len(calls) == 1:
            assert tuple(shape) == tuple(values.shape)
            return values
        return torch.randn(shape, generator=torch.Generator().manual_seed(len(calls)), dtype=F64)

    return draw


def test_one_bad_auxiliary_draw_cannot_dominate():
    """A model whose joint density is wrong where the auxiliaries are large (a learned score's usual flaw:
    the auxiliaries' tails are rarely trained) gives one draw in the tail a far worse single-draw bound.
    The importance-weighted estimate over K draws stays within log K of the best draw; the plain mean of
    the draws is pulled away by it."""
    sde = make_sde("hold")
    mix = GaussianMixture.eight_gaussians()
    orc = MixtureOracle(sde, mix)

    def flawed(u, t):  # the exact score plus a force on large last components, near t = 0 only
        a = sde.last(u)
        w = torch.exp(-t / 0.05).to(a).reshape(-1, *([1] * (a.dim() - 1)))
        return orc.score(u, t) - 3.0 * w * a * torch.tanh(4 * a**2)

    x = mix.sample(3, generator=torch.Generator().manual_seed(7))
    K, n_items = 6, x.shape[0]
    z = torch.randn(K * n_items, 4, generator=torch.Generator().manual_seed(8), dtype=F64).clamp(-1, 1)
    z[2 * n_items + 1, 2:] = 5.0  # draw 2 of item 1: the acceleration 5 sd out
    kw = dict(noise=_aux_noise(z), aux_draws=K, rtol=1e-6, atol=1e-6)
    iw = ode_likelihood(flawed, sde, x, **kw)
    mean = ode_likelihood(flawed, sde, x, aux_estimator="mean", **{**kw, "noise": _aux_noise(z)})
    draws = iw.draws[:, 1]
    assert iw.draws.shape == (K, n_items) and torch.equal(iw.draws, mean.draws)
    others = torch.cat([draws[:2], draws[3:]])
    assert float(draws[2] - others.max()) > 5.0  # the tail draw's bound is far worse
    assert float(others.min()) <= float(iw.nll[1]) <= float(others.min()) + math.log(K)
    assert float(mean.nll[1]) > float(iw.nll[1]) + 0.5  # the plain mean is pulled by the one draw
    # the estimators are what they say: log-mean-exp and mean of the single-draw bounds
    assert torch.allclose(iw.nll, -(torch.logsumexp(-iw.draws, 0) - math.log(K)))
    assert torch.allclose(mean.nll, iw.draws.mean(0))


def test_several_draws_of_the_oracle_agree():
    """With the exact score every draw's bound is exact (the exact p_T replaces the prior, whose mismatch
    depends on the draw), so K draws give the same estimate as one."""
    sde = make_sde("cld")
    mix = GaussianMixture.eight_gaussians()
    orc = MixtureOracle(sde, mix)
    x = mix.sample(5, generator=torch.Generator().manual_seed(9))
    kw = dict(noise=1, eps=ORACLE_EPS, rtol=1e-7, atol=1e-7, terminal_logp=lambda u: orc.log_prob(u, sde.T))
    one = ode_likelihood(orc.score, sde, x, **kw)
    four = ode_likelihood(orc.score, sde, x, aux_draws=4, **kw)
    assert four.draws.shape == (4, 5) and float(four.draws.std(0).max()) < 5e-3
    assert (four.nll - one.nll).abs().max() < 5e-3
    with pytest.raises(ValueError, match="aux_draws"):
        ode_likelihood(orc.score, sde, x, aux_draws=0)
