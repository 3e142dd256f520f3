"""EDM-style preconditioning in phase space (``EpsModel(precond=True)``): its Gaussian part is the exact posterior
mean, c_out is the posterior standard deviation, the loss is in the network's units, and a network error moves
the data prediction by at most c_out at high noise."""

import math

import numpy as np
import pytest
import torch

from holdsgm.losses import EpsModel, hsm_loss
from holdsgm.losses.parameterization import precond_coefficients
from holdsgm.mixture import GaussianMixture
from holdsgm.sde import MixtureOracle, make_sde
from holdsgm.sde.posterior import posterior_mean, reference_kernel

F64 = torch.float64
DATA_VAR = 0.7


def zero_net(sde):
    return lambda u, t: torch.zeros_like(sde.last(u))


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_gaussian_part_is_the_exact_score_of_gaussian_data(name):
    """With the network's output 0, the preconditioned model is the score of data ~ N(0, data_var I) (the
    oracle's), as CLD's mixed score with output 0 is."""
    sde = make_sde(name)
    mix = GaussianMixture([1.0], [[0.0, 0.0]], [[[DATA_VAR, 0], [0, DATA_VAR]]])
    orc = MixtureOracle(sde, mix)
    model = EpsModel(zero_net(sde), sde, precond=True, data_var=DATA_VAR)
    mixed = EpsModel(zero_net(sde), sde, mixed=True, data_var=DATA_VAR)
    for t in (0.01 * sde.T, 0.3 * sde.T, sde.T):
        u = orc.sample(t, 64, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(model.score(u, t), orc.score(u, t), rtol=1e-7, atol=1e-8)
        assert torch.allclose(model.eps(u, t), mixed.eps(u, t), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_c_out_is_the_gaussian_posterior_std(name):
    """w_t = -kappa_t c_out(t) with c_out^2 = Var[x0 | u_t] for x0 ~ N(0, data_var): computed here by
    conditioning the joint covariance of (x0, u_t) in NumPy (the kernel's Phi_t and noise covariance)."""
    sde = make_sde(name)
    ts = torch.tensor([0.005, 0.05, 0.3, 0.7, 1.0], dtype=F64) * sde.T
    _, w = precond_coefficients(sde, ts, DATA_VAR)
    _, _, kappa, _ = reference_kernel(sde, ts, 0.0)
    for i, t in enumerate(ts):
        phi, noise = (v.numpy() for v in sde.transition(torch.zeros(()), t))
        s0 = np.diag(sde.initial_cov().numpy().diagonal())  # the auxiliaries' start, x0's entry 0
        m = phi[:, 0]
        cov_u = DATA_VAR * np.outer(m, m) + phi @ s0 @ phi.T + noise
        post = DATA_VAR - DATA_VAR**2 * m @ np.linalg.solve(cov_u, m)
        assert float(-w[i] / kappa[i]) == pytest.approx(math.sqrt(post), rel=1e-6)
    if name == "vp":  # EDM's c_out = sigma sigma_d / sqrt(sigma^2 + alpha^2 sigma_d^2) in VP's units
        phi, noise = sde.transition(torch.zeros(()), ts[2])
        alpha, sigma = float(phi[0, 0]), math.sqrt(float(noise[0, 0]))
        edm = sigma * math.sqrt(DATA_VAR) / math.sqrt(sigma**2 + alpha**2 * DATA_VAR)
        assert float(-w[2] / kappa[2]) == pytest.approx(edm, rel=1e-9)


@pytest.mark.parametrize("name", ["vp", "hold"])
def test_loss_is_taken_in_the_network_units(name):
    """hsm_loss with the model's loss_weight equals the plain MSE between the network's output and the
    output that would make eps_theta = z_n, (z_n - eps_ref) / w_t."""
    sde = make_sde(name)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(256, 2, generator=g, dtype=F64)
    t = torch.rand(256, generator=g, dtype=F64) * (sde.T - sde.eps) + sde.eps
    z = torch.randn(sde.state_shape(x0.shape), generator=g, dtype=F64)
    out = torch.randn(256, 2, generator=g, dtype=F64)
    model = EpsModel(lambda u, tn: out, sde, precond=True, data_var=DATA_VAR)
    loss = hsm_loss(model.eps, sde, x0, t=t, z=z, net_weight=model.loss_weight(t), reduction="mean")
    u = sde.perturb(x0, t, z)
    ref = EpsModel(zero_net(sde), sde, precond=True, data_var=DATA_VAR).eps(u, t)
    _, w = precond_coefficients(sde, t, DATA_VAR)
    target = (sde.last(z) - ref) / w[:, None]
    assert float(loss) == pytest.approx(float((out - target).square().mean()), rel=1e-9)
    # without precond the weight is None and the unit loss is the eps-space MSE
    assert EpsModel(zero_net(sde), sde).loss_weight(t) is None


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_network_errors_stay_bounded_at_high_noise(name):
    """At t = T a unit error of the network moves the data prediction by c_out <= sqrt(data_var) with precond,
    and by 1 / kappa_T (> 10x more) with eps-prediction: what breaks few-step sampling from T."""
    sde = make_sde(name)
    orc = MixtureOracle(sde, GaussianMixture([1.0], [[0.0, 0.0]], [[[DATA_VAR, 0], [0, DATA_VAR]]]))
    u = orc.sample(sde.T, 32, generator=torch.Generator().manual_seed(1))
    shifts = {}
    for precond in (True, False):
        kw = dict(precond=True, data_var=DATA_VAR) if precond else {}
        base = EpsModel(zero_net(sde), sde, **kw)
        off = EpsModel(lambda v, tn: torch.ones_like(sde.last(v)), sde, **kw)
        x_base = posterior_mean(sde, u, sde.T, base.score(u, sde.T))
        x_off = posterior_mean(sde, u, sde.T, off.score(u, sde.T))
        shifts[precond] = float((x_off - x_base).abs().max())
    assert shifts[True] <= math.sqrt(DATA_VAR) * (1 + 1e-9)
    assert shifts[False] > 10 * shifts[True]


def test_mixed_and_precond_exclude_each_other():
    sde = make_sde("hold")
    with pytest.raises(ValueError, match="exclude"):
        EpsModel(zero_net(sde), sde, mixed=True, precond=True)
