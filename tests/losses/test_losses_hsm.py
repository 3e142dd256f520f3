"""DSM/HSM: at the oracle score the loss equals its analytic minimum; the parameterisations are exact."""

import math

import pytest
import torch

from holdsgm.losses import EpsModel, hsm_loss
from holdsgm.mixture import GaussianMixture
from holdsgm.sde import MixtureOracle, make_sde

F64 = torch.float64


def oracle_eps(sde, orc):
    """The optimal eps_n-predictor E[eps_n | u_t] = -L_t[n,n] s*(u_t)."""
    def eps_fn(u, t):
        lnn = sde.marginal(t).chol[:, -1, -1]
        return -lnn[:, None] * orc.score(u, t)
    return eps_fn


def gaussian(d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    return GaussianMixture([1.0], torch.randn(1, d, generator=g, dtype=F64), (0.3 * a @ a.T + 0.1 * torch.eye(d))[None])


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "cld", "hold"])
@pytest.mark.parametrize("weighting", ["unit", "likelihood"])
def test_hsm_loss_at_oracle_equals_analytic_minimum(name, weighting):
    """For Gaussian data N(m, C): E[eps_n | u_t] is linear and the minimum of the per-element loss is
    1 - L_nn^2 tr([Sigma_tot^{-1}]_{nn}) / d (times lambda(t) for the likelihood weighting)."""
    sde = make_sde(name, **({"sigma_max": 5.0} if name == "ve" else {}))
    mix = gaussian()
    orc = MixtureOracle(sde, mix)
    d, n = mix.dim, 200_000
    g = torch.Generator().manual_seed(1)
    for t in (0.02 * sde.T, 0.3 * sde.T):
        tt = torch.full((n,), t, dtype=F64)
        x0 = mix.sample(n, generator=g)
        eps = torch.randn(sde.state_shape(x0.shape), generator=g, dtype=F64)
        loss = hsm_loss(oracle_eps(sde, orc), sde, x0, t=tt, z=eps, weighting=weighting)
        _, covs, _ = orc.params(torch.tensor(t, dtype=F64))
        prec = torch.linalg.inv(covs[0])
        k = sde.marginal(torch.tensor(t, dtype=F64))
        lnn = float(k.chol[-1, -1])
        analytic = 1 - lnn**2 * float(prec[-d:, -d:].trace()) / d
        if weighting == "likelihood":
            analytic *= float(sde.g2(t) * k.ell**2)
        se = float(loss.std()) / math.sqrt(n)
        assert float(loss.mean()) == pytest.approx(analytic, abs=4.5 * se), (float(loss.mean()), analytic, se)
        # the minimum is strict: a perturbed predictor does worse by its mean-square error
        worse = hsm_loss(lambda u, t_: oracle_eps(sde, orc)(u, t_) + 0.1, sde, x0, t=tt, z=eps,
                         weighting=weighting)
        assert float(worse.mean()) > float(loss.mean())


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_hsm_minimum_for_a_mixture(name):
    """Orthogonality of the optimal predictor: min loss = 1 - L_nn^2 E||s*(u_t)||^2 / d, with the
    expectation over exact oracle draws of u_t (independent of the loss's own draws)."""
    sde = make_sde(name)
    mix = GaussianMixture.eight_gaussians()
    orc = MixtureOracle(sde, mix)
    n, t = 200_000, 0.01 * sde.T
    g = torch.Generator().manual_seed(5)
    x0 = mix.sample(n, generator=g)
    loss = hsm_loss(oracle_eps(sde, orc), sde, x0, t=torch.full((n,), t, dtype=F64), generator=g)
    u = orc.sample(t, n, generator=g)
    lnn = float(sde.marginal(torch.tensor(t, dtype=F64)).chol[-1, -1])
    sq = lnn**2 * (orc.score(u, t) ** 2).sum(1) / 2
    target = 1 - float(sq.mean())
    se = math.sqrt(float(loss.var()) / n + float(sq.var()) / n)
    assert float(loss.mean()) == pytest.approx(target, abs=4.5 * se)


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_mixed_score_is_exact_for_standard_gaussian_data(name):
    """With data ~ N(0, data_var I), CLD's mixed score alone (network output 0) is the true score."""
    sde = make_sde(name)
    data_var = 0.7
    mix = GaussianMixture([1.0], [[0.0, 0.0]], [[[data_var, 0], [0, data_var]]])
    orc = MixtureOracle(sde, mix)
    model = EpsModel(lambda u, t: torch.zeros_like(sde.last(u)), sde, mixed=True, data_var=data_var)
    for t in (0.01 * sde.T, 0.5 * sde.T):
        u = orc.sample(t, 100, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(model.score(u, t), orc.score(u, t), rtol=1e-8, atol=1e-8)


def test_eps_model_passes_normalised_time_and_converts_to_score():
    sde = make_sde("hold")
    seen = {}

    def net(u, t):
        seen["t"] = t
        return torch.ones_like(sde.last(u))

    model = EpsModel(net, sde)
    u = torch.zeros(4, 6, dtype=F64)
    t = torch.full((4,), 2.5, dtype=F64)
    s = model.score(u, t)
    assert torch.allclose(seen["t"], torch.full((4,), 0.5, dtype=F64))
    assert torch.allclose(s, -sde.marginal(t).ell[:, None] * torch.ones(4, 2, dtype=F64))
    # one time for the batch (the samplers' case, a memoised scalar) and distinct times agree
    mixed = torch.tensor([0.5, 2.5, 4.0, 2.5], dtype=F64)
    s_mixed = model.score(u, mixed)
    assert torch.allclose(s_mixed, -sde.marginal(mixed).ell[:, None] * torch.ones(4, 2, dtype=F64))
    assert torch.equal(s_mixed[1], s[1]) and torch.equal(s_mixed[3], s[3])


def test_loss_shape_mismatch_is_a_clear_error():
    sde = make_sde("hold")
    with pytest.raises(ValueError, match="expected"):
        hsm_loss(lambda u, t: torch.zeros(u.shape[0], 3), sde, torch.zeros(8, 2))
    with pytest.raises(ValueError, match="weighting"):
        hsm_loss(lambda u, t: torch.zeros(u.shape[0], 2), sde, torch.zeros(8, 2), weighting="bogus")


def test_sample_times_rows_and_a_given_kernel():
    """``rows`` draws several steps' stratified times at once; hsm_loss with the kernel of its times given
    equals hsm_loss computing it."""
    from holdsgm.losses import sample_times

    sde = make_sde("hold")
    t = sample_times(16, sde, generator=torch.Generator().manual_seed(0), rows=5)
    assert t.shape == (5, 16) and t.dtype == F64
    for row in t:
        assert torch.equal(((row - sde.eps) / (sde.T - sde.eps) * 16).floor().long().sort().values, torch.arange(16))
    flat = sample_times(16, sde, stratified=False, generator=torch.Generator().manual_seed(0), rows=5)
    assert flat.shape == (5, 16) and bool(((flat >= sde.eps) & (flat <= sde.T)).all())
    x0 = torch.randn(16, 2, dtype=F64)
    eps = torch.randn(16, 6, dtype=F64)
    fn = lambda u, tt: u[:, :2] * tt[:, None]  # noqa: E731
    plain = hsm_loss(fn, sde, x0, t=t[2], z=eps)
    given = hsm_loss(fn, sde, x0, t=t[2], z=eps, kernel=sde.marginal(t[2]))
    assert torch.equal(plain, given)


def test_float64_data_trains_a_float32_network():
    """GaussianMixture.sample gives float64 (the oracle's precision); the network runs in its own float32 and
    the loss and score come back in the data's dtype, with gradients (the README snippet used to fail)."""
    from holdsgm.losses import EpsModel, hsm_loss
    from holdsgm.mixture import GaussianMixture
    from holdsgm.nets import build_network
    from holdsgm.sde import make_sde

    sde = make_sde("hold")
    net = build_network("mlp", in_features=6, out_features=2, hidden=16, depth=2)
    model = EpsModel(net, sde)
    x = GaussianMixture.eight_gaussians().sample(32, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64
    loss = hsm_loss(model.eps, sde, x).mean()
    loss.backward()
    assert loss.dtype == torch.float64 and all(p.grad is not None for p in net.parameters())
    s = model.score(torch.randn(4, 6, dtype=torch.float64), torch.full((4,), 0.5, dtype=torch.float64))
    assert s.dtype == torch.float64 and s.shape == (4, 2)
