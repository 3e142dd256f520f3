"""The Gaussian-mixture oracle: exact score, density and samples of every marginal."""

import math

import pytest
import torch

from holdsgm.mixture import GaussianMixture
from holdsgm.sde import MixtureOracle, make_sde
from holdsgm.sde.kernels import kron_eye

F64 = torch.float64
SDES = ["vp", "subvp", "ve", "cld", "cld-sgm", "hold"]


def rotated_mixture(d=2, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = 2 * torch.randn(k, d, generator=g, dtype=F64)
    covs = []
    for _ in range(k):
        a = torch.randn(d, d, generator=g, dtype=F64)
        covs.append(0.05 * a @ a.T + 0.02 * torch.eye(d, dtype=F64))
    w = torch.rand(k, generator=g, dtype=F64) + 0.2
    return GaussianMixture(w, means, torch.stack(covs))


def make(name):
    return make_sde(name, **({"sigma_max": 5.0} if name == "ve" else {}))


@pytest.mark.parametrize("name", SDES)
def test_oracle_score_is_gradient_of_log_density(name):
    sde = make(name)
    mix = rotated_mixture()
    orc = MixtureOracle(sde, mix)
    for t in (sde.eps, 0.1 * sde.T, 0.6 * sde.T):
        u = orc.sample(t, 64, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
        (grad,) = torch.autograd.grad(orc.log_prob(u, t).sum(), u)
        assert torch.allclose(orc.full_score(u.detach(), t), grad, rtol=1e-8, atol=1e-8)
        assert torch.allclose(orc.score(u.detach(), t), grad[:, -2:], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", SDES)
def test_oracle_at_time_zero_is_the_data_law(name):
    """p_0(x, aux) = p(x) N(aux; 0, aux_var I) (for n = 1 simply p(x))."""
    sde = make(name)
    mix = rotated_mixture()
    orc = MixtureOracle(sde, mix)
    x = mix.sample(50, generator=torch.Generator().manual_seed(1))
    u = sde.augment(x, noise=lambda s: torch.randn(s, generator=torch.Generator().manual_seed(2), dtype=F64))
    assert torch.allclose(orc.log_prob(u, 0.0), mix.log_prob(x) + sde.aux_log_prob(u), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_oracle_samples_match_forward_perturbation(name):
    """Oracle draws of u_t and forward-perturbed data draws (sde.perturb) have equal moments."""
    sde = make(name)
    mix = rotated_mixture()
    orc = MixtureOracle(sde, mix)
    n, t = 100_000, 0.05 * sde.T
    g = torch.Generator().manual_seed(4)
    a = orc.sample(t, n, generator=g)
    x0 = mix.sample(n, generator=g)
    b = sde.perturb(x0, torch.full((n,), t, dtype=F64), torch.randn(sde.state_shape(x0.shape), generator=g,
                                                                    dtype=F64))
    sd = a.std(0)
    assert ((a.mean(0) - b.mean(0)).abs() < 5 * sd * math.sqrt(2 / n)).all()
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    assert ((ca - cb).abs() < 6 * torch.outer(sd, sd) * math.sqrt(2 / n) * 1.5).all()


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_prior_matches_the_data_marginal_at_T(name):
    """p_T has mean Phi_T [mean; 0] and covariance Sigma_T + Phi_T (Cov_data + 0) Phi_T^T, so the prior
    N(0, Sigma_T) is off by exactly those terms, bounded by ||Phi_T|| (the prior mismatch)."""
    sde = make(name)
    mix = GaussianMixture.eight_gaussians()
    orc = MixtureOracle(sde, mix)
    means, covs, _ = orc.params(torch.tensor(sde.T, dtype=F64))
    w = mix.weights
    mean = (w[:, None] * means).sum(0)
    cov = (w[:, None, None] * (covs + means[:, :, None] * means[:, None, :])).sum(0) - torch.outer(mean, mean)
    prior = kron_eye(sde.prior_cov(), 2)
    phi = float(torch.linalg.matrix_norm(sde.marginal(torch.tensor(sde.T, dtype=F64)).phi, ord=2))
    m_data, c_data = mix.mean_and_cov()
    assert float(mean.norm()) <= phi * float(m_data.norm()) + 1e-12
    assert float(torch.linalg.matrix_norm(cov - prior, ord=2)) <= phi**2 * float(
        torch.linalg.matrix_norm(c_data, ord=2)) * (1 + 1e-9) + 1e-12


def test_non_positive_definite_mixture_is_refused():
    with pytest.raises(ValueError, match="component 1 is not positive-definite"):
        GaussianMixture([0.5, 0.5], [[0, 0], [1, 1]], [[[1, 0], [0, 1]], [[1, 2], [2, 1]]])
    with pytest.raises(ValueError, match="shape"):
        GaussianMixture([1.0], [[0, 0]], [[[1, 0, 0], [0, 1, 0], [0, 0, 1]]])


def test_mixture_json_round_trip(tmp_path):
    mix = rotated_mixture(d=3)
    p = tmp_path / "m.json"
    import json

    p.write_text(json.dumps(mix.to_dict()))
    again = GaussianMixture.from_json(p)
    x = mix.sample(10)
    assert torch.allclose(again.log_prob(x), mix.log_prob(x))
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        GaussianMixture.from_json(p)
