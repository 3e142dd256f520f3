"""Kernels of every SDE against independent ground truth: Van Loan, the stationary identity,
50-digit arithmetic, closed forms and long Euler-Maruyama simulation of the forward SDE."""

import math

import mpmath as mp
import pytest
import torch

from holdsgm.sde import Langevin, make_sde, van_loan
from holdsgm.sde.kernels import kron_eye

F64 = torch.float64
ALL = ["vp", "subvp", "ve", "cld", "cld-sgm", "hold"]


def t64(*v):
    return torch.tensor(v, dtype=F64)


def vanloan_marginal(sde, t):
    """Independent reference: Van Loan covariance + Phi Sigma_0 Phi^T, no square roots."""
    b = sde.schedule.integral(t)
    phi, noise = van_loan(sde.F, sde.Q, b)
    return phi, phi @ sde.initial_cov() @ phi.transpose(-1, -2) + noise


@pytest.mark.parametrize("name", ["vp", "ve", "cld", "cld-sgm", "hold"])
def test_kernel_equals_van_loan(name):
    sde = make_sde(name)
    t = t64(0.05, 0.3, 0.7, 1.0) * sde.T
    k = sde.marginal(t)
    phi, cov = vanloan_marginal(sde, t)
    assert torch.allclose(k.phi, phi, rtol=1e-12, atol=1e-14)
    # Van Loan itself loses ~1e-11 absolute at large B (its e^{-B F^T} block grows like e^{sqrt(3) B})
    assert torch.allclose(k.cov, cov, rtol=1e-9, atol=1e-10 * float(cov.abs().max()))
    assert torch.allclose(k.chol @ k.chol.transpose(-1, -2), k.cov, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_stationary_identity(name):
    """F S + S F^T + Q = 0 with S = I/L, and Sigma_t = S + Phi (Sigma_0 - S) Phi^T."""
    sde = make_sde(name)
    S = torch.eye(sde.order, dtype=F64) / sde.L
    assert torch.allclose(sde.F @ S + S @ sde.F.T + sde.Q, torch.zeros_like(S), atol=1e-12)
    t = t64(0.2, 0.5, 1.0) * sde.T
    k = sde.marginal(t)
    stat = S + k.phi @ (sde.initial_cov() - S) @ k.phi.transpose(-1, -2)
    assert torch.allclose(k.cov, stat, rtol=1e-8, atol=1e-12)


def _mp_cholesky(sde, t):
    """Cholesky factor of the kernel covariance in 40-digit arithmetic (Van Loan's block exponential;
    at 40 digits its cancellations are harmless)."""
    mp.mp.dps = 40
    n = sde.order
    b = float(sde.schedule.integral(torch.tensor(t, dtype=F64)))
    block = mp.zeros(2 * n, 2 * n)
    for i in range(n):
        for j in range(n):
            block[i, j] = float(sde.F[i, j])
            block[i + n, j + n] = -float(sde.F[j, i])
    block[n - 1, 2 * n - 1] = sde.q
    E = mp.expm(block * b)
    phi, X = E[0:n, 0:n], E[0:n, n:2 * n]
    cov = phi * mp.diag([0] + [sde.aux_var] * (n - 1)) * phi.T + X * phi.T
    L = mp.cholesky((cov + cov.T) / 2)
    return torch.tensor([[float(L[i, j]) for j in range(n)] for i in range(n)], dtype=F64)


@pytest.mark.parametrize("name,t", [("hold", 1e-4), ("hold", 1e-3), ("hold", 0.05), ("hold", 0.4),
                                    ("cld", 1e-3), ("cld", 0.3), ("vp", 1e-3)])
def test_cholesky_factor_against_50_digit_arithmetic(name, t):
    """Near t = 0 the HOLD kernel has condition number ~1e13; the square-root factorisation keeps the
    Cholesky factor (hence ell_t, the HSM target's scale) to ~1e-10 relative. (Van Loan + Cholesky
    with a 1e-13 jitter gets ell_t 40 % wrong at t = 1e-3.)"""
    sde = make_sde(name)
    ref = _mp_cholesky(sde, t)
    got = sde.marginal(torch.tensor(t, dtype=F64)).chol
    mask = ref.abs() > 1e-300
    rel = ((got - ref).abs()[mask] / ref.abs()[mask]).max()
    assert rel < 1e-9, float(rel)


def test_cld_sgm_matches_original_parameterisation():
    """Dockhorn et al.'s CLD in (x, v): dx = M^-1 v beta, dv = (-x - Gamma M^-1 v) beta + sqrt(2 Gamma beta) dW,
    v0 ~ N(0, gamma M). Our cld-sgm works in v' = v sqrt(M^-1); the kernels must agree."""
    M_inv, Gamma, beta, gamma = 4.0, 1.0, 4.0, 0.04
    M = 1 / M_inv
    F = torch.tensor([[0.0, M_inv], [-1.0, -Gamma * M_inv]], dtype=F64)
    Q = torch.tensor([[0.0, 0.0], [0.0, 2 * Gamma]], dtype=F64)
    S0 = torch.diag(torch.tensor([0.0, gamma * M], dtype=F64))
    D = torch.diag(torch.tensor([1.0, math.sqrt(M_inv)], dtype=F64))
    sde = make_sde("cld-sgm")
    for t in (0.01, 0.2, 1.0):
        phi, noise = van_loan(F, Q, torch.tensor(beta * t, dtype=F64))
        cov = D @ (phi @ S0 @ phi.T + noise) @ D
        k = sde.marginal(torch.tensor(t, dtype=F64))
        assert torch.allclose(k.cov, cov, rtol=1e-10, atol=1e-13)
        assert torch.allclose(k.phi, D @ phi @ torch.linalg.inv(D), rtol=1e-12, atol=1e-14)
    # critically damped: Gamma^2 = 4 M -> a double eigenvalue
    ev = torch.linalg.eigvals(sde.F)
    assert torch.allclose(ev.real, torch.full((2,), -2.0, dtype=F64), atol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_critical_damping_any_order(n):
    """All eigenvalues of F equal -sqrt(2n - 3): the characteristic polynomial is (lambda + r)^n."""
    sde = Langevin.critically_damped(n)
    r = math.sqrt(2 * n - 3)
    import numpy as np

    coeffs = np.poly(sde.F.numpy())
    target = np.poly(np.full(n, -r))
    assert np.allclose(coeffs, target, rtol=1e-9, atol=1e-9)


def test_hold_and_cld_presets_and_prior_mismatch():
    """Constants of docs/maths.md (section 2) and its prior-mismatch numbers ||expm(B(T) F)||_2."""
    hold, cld = make_sde("hold"), make_sde("cld")
    assert hold.gamma == pytest.approx((1.0, 2 * math.sqrt(2))) and hold.xi == pytest.approx(3 * math.sqrt(3))
    assert 1 / hold.L == 0.5 and hold.alpha == 0.08 and hold.T == 5.0
    assert cld.gamma == (1.0,) and cld.xi == 2.0
    for sde, expected in ((hold, 0.023), (cld, 0.068)):
        phi = sde.marginal(torch.tensor(sde.T, dtype=F64)).phi
        assert float(torch.linalg.matrix_norm(phi, ord=2)) == pytest.approx(expected, abs=6e-4)


def test_subvp_closed_form_against_quadrature():
    from scipy.integrate import quad

    sde = make_sde("subvp")
    B = lambda t: float(sde.schedule.integral(t))  # noqa: E731
    for s, t in ((0.0, 0.3), (0.2, 0.5), (0.6, 1.0), (0.0, 1e-6), (0.0, 1e-3), (0.5, 0.5 + 1e-7)):
        phi, sigma = sde.transition(torch.tensor(s, dtype=F64), torch.tensor(t, dtype=F64))
        ref = quad(lambda r, t=t: math.exp(-(B(t) - B(r))) * float(sde.g2(r)), s, t, epsabs=0,
                   epsrel=1e-12)[0]  # small times too: the closed form keeps its relative accuracy there
        assert float(sigma) == pytest.approx(ref, rel=1e-9, abs=0)
        assert float(phi) == pytest.approx(math.exp(-0.5 * (B(t) - B(s))), rel=1e-12)


def test_ve_variance_is_sigma_squared_minus_sigma_min_squared():
    sde = make_sde("ve", sigma_min=0.01, sigma_max=10.0)
    t = t64(1e-3, 0.3, 1.0)
    sig = 0.01 * (10.0 / 0.01) ** t
    assert torch.allclose(sde.marginal(t).cov[:, 0, 0], sig**2 - 0.01**2, rtol=1e-10)


@pytest.mark.parametrize("name", ALL + ["langevin4"])
def test_kernel_matches_forward_sde_simulation(name):
    """Mean and covariance of u_t | x0 from a fine simulation of the forward SDE (stochastic Heun,
    auxiliaries started from N(0, aux_var)) agree with the kernel within Monte-Carlo error.

    The d data coordinates are i.i.d. given x0, so the n x n covariance is pooled over them
    (200k draws: a 2 % error in any entry is caught)."""
    sde = make_sde("langevin", order=4) if name == "langevin4" else make_sde(
        name, **({"sigma_max": 3.0} if name == "ve" else {}))
    g = torch.Generator().manual_seed(0)
    n_paths, steps, d = 50000, 200, 4
    x0 = torch.tensor([1.0, -0.5, 0.25, 2.0], dtype=F64)
    t_end = 0.4 * sde.T
    u = sde.augment(x0.expand(n_paths, d).clone(), noise=lambda s: torch.randn(s, generator=g, dtype=F64))
    h = t_end / steps
    for i in range(steps):
        # stochastic Heun (weak order 2 for additive noise), noise scale at the step's midpoint
        t0, t1 = torch.tensor(i * h, dtype=F64), torch.tensor((i + 1) * h, dtype=F64)
        dw = sde.embed_last(math.sqrt(h * float(sde.g2((i + 0.5) * h))) * torch.randn(n_paths, d, generator=g,
                                                                                          dtype=F64))
        f0 = sde.drift(u, t0)
        pred = u + h * f0 + dw
        u = u + 0.5 * h * (f0 + sde.drift(pred, t1)) + dw
    k = sde.marginal(torch.tensor(t_end, dtype=F64))
    n = sde.order
    comps = u.reshape(n_paths, n, d)  # (paths, component, coordinate)
    mean = k.phi[:, 0:1] * x0  # (n, d): E[u_i] = Phi[i, 0] x0
    se_mean = (k.cov.diagonal()[:, None] / n_paths).sqrt()
    assert ((comps.mean(0) - mean).abs() <= 4.5 * se_mean).all(), (comps.mean(0), mean)
    centred = (comps - mean).permute(0, 2, 1).reshape(-1, n)  # pooled over coordinates
    emp = centred.T @ centred / centred.shape[0]
    cov = k.cov
    se_cov = torch.sqrt((cov**2 + torch.outer(cov.diagonal(), cov.diagonal())) / centred.shape[0])
    assert ((emp - cov).abs() <= 4.5 * se_cov).all(), (emp, cov, se_cov)


@pytest.mark.parametrize("name", ALL)
def test_prior_is_the_kernel_at_T(name):
    """prior_sample draws N(0, Sigma_T (x) I) and prior_logp is its density."""
    sde = make_sde(name)
    g = torch.Generator().manual_seed(1)
    u = sde.prior_sample((40000, 2), noise=lambda s: torch.randn(s, generator=g), dtype=F64)
    cov = sde.marginal(torch.tensor(sde.T, dtype=F64)).cov
    emp = torch.cov(u.reshape(40000, sde.order, 2).permute(0, 2, 1).reshape(-1, sde.order).T)
    assert torch.allclose(emp, cov, rtol=0.03, atol=0.03 * float(cov.diagonal().max()))
    # prior_logp agrees with a dense multivariate normal
    dense = torch.distributions.MultivariateNormal(torch.zeros(2 * sde.order, dtype=F64), kron_eye(cov, 2))
    assert torch.allclose(sde.prior_logp(u[:100]), dense.log_prob(u[:100]), rtol=1e-9)


def test_state_layout_is_shape_agnostic():
    sde = make_sde("hold")
    for shape in [(5, 2), (5, 3, 8, 8), (5, 1, 64)]:
        x = torch.randn(shape)
        t = torch.full((5,), 0.5, dtype=F64)
        u = sde.perturb(x, t, torch.randn(sde.state_shape(shape)))
        assert u.shape == sde.state_shape(shape)
        assert sde.data(u).shape == x.shape and len(sde.components(u)) == 3
        assert sde.drift(u, t).shape == u.shape


@pytest.mark.parametrize("bad,match", [
    (lambda: make_sde("vp", beta_min=-1.0), "beta_min"),
    (lambda: Langevin(gamma=(1.0,), xi=-2.0), "xi"),
    (lambda: Langevin(gamma=(-1.0,), xi=2.0), r"gamma\[0\]"),
    (lambda: Langevin(gamma=(1.0,), xi=2.0, schedule=-1.0), "beta"),
    (lambda: Langevin(gamma=(1.0,), xi=2.0, L=0.0), "L"),
    (lambda: Langevin.critically_damped(0), "order"),
    (lambda: make_sde("hold", T=-1.0), "T"),
    (lambda: make_sde("hold").marginal(torch.tensor(6.0)), "t must lie"),
    (lambda: make_sde("vp").marginal(torch.tensor(-0.1)), "t must lie"),
    (lambda: make_sde("nope"), "unknown SDE"),
    (lambda: make_sde("hold", bogus=1), "bogus"),
])
def test_bad_parameters_raise_clear_value_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_sde_round_trips_through_dict():
    from holdsgm.sde import sde_from_dict

    for name in ALL:
        sde = make_sde(name)
        again = sde_from_dict(sde.to_dict())
        t = torch.tensor([0.1, 0.5], dtype=F64) * sde.T
        assert torch.allclose(again.marginal(t).cov, sde.marginal(t).cov)


@pytest.mark.parametrize("name", ["vp", "cld", "hold", "ve"])
def test_single_time_kernels_are_memoised_exactly_and_safely(name):
    """A sampler's step time is computed once per SDE; the memo returns the same numbers as a fresh
    computation, and a caller that writes into what it got does not change what the next caller gets."""
    from holdsgm.sde.posterior import reference_kernel

    sde = make_sde(name)
    t = torch.tensor(0.37, dtype=torch.float64)
    fresh = sde._marginal(t)
    first, second = sde.marginal(t), sde.marginal(t)
    for a, b, c in zip((fresh.phi, fresh.cov, fresh.chol), (first.phi, first.cov, first.chol),
                       (second.phi, second.cov, second.chol)):
        assert torch.equal(a, b) and torch.equal(a, c)
    first.chol.fill_(7.0)
    assert torch.equal(sde.marginal(t).chol, fresh.chol)
    assert ("marginal", 0.37, "cpu") in sde._memo
    # a batch of equal times equals the single time, and a batch of different times each of its own
    ref = [v.clone() for v in reference_kernel(sde, t, 0.2)]
    batch = reference_kernel(sde, t.expand(5), 0.2)
    for r, b in zip(ref, batch):
        assert b.shape[0] == 5 and torch.equal(b[2], r)
    ts = torch.tensor([0.1, 0.37, 0.9], dtype=torch.float64)
    mixed = reference_kernel(sde, ts, 0.2)
    for r, m in zip(ref, mixed):
        torch.testing.assert_close(m[1], r, rtol=1e-12, atol=0)
    got = reference_kernel(sde, t, 0.2)
    got[0].fill_(0.0)
    assert torch.equal(reference_kernel(sde, t, 0.2)[0], ref[0])


def test_memo_is_bounded(monkeypatch):
    import holdsgm.sde.base as base

    monkeypatch.setattr(base, "MEMO_SIZE", 3)
    sde = make_sde("cld")
    for k in range(10):
        sde.marginal(torch.tensor(0.1 + 0.05 * k, dtype=torch.float64))
        assert len(sde._memo) <= 3


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_closed_form_expm_against_50_digit_arithmetic(name):
    """expm(bF) for critically damped F (one eigenvalue): e^{lambda b} sum_{k<n} b^k N^k / k!, checked
    against mpmath's 50-digit matrix exponential from b = 1e-6 to 20, and never less accurate than
    torch.linalg.matrix_exp beyond two units of rounding."""
    from holdsgm.sde.kernels import _single_eigenvalue_split, expm_scaled

    F = make_sde(name).F
    assert _single_eigenvalue_split(tuple(F.flatten().tolist()), F.shape[0]) is not None
    bs = [1e-6, 1e-3, 0.05, 0.7, 2.0, 6.0, 20.0]
    got = expm_scaled(F, torch.tensor(bs, dtype=torch.float64))
    with mp.workdps(50):
        Fm = mp.matrix(F.tolist())
        for b, g in zip(bs, got):
            ex = mp.expm(Fm * b)
            n = F.shape[0]
            scale = max(abs(ex[i, j]) for i in range(n) for j in range(n))
            err = max(abs(float(g[i, j]) - ex[i, j]) for i in range(n) for j in range(n)) / scale
            m = torch.linalg.matrix_exp(b * F)
            err_torch = max(abs(float(m[i, j]) - ex[i, j]) for i in range(n) for j in range(n)) / scale
            # the float F is critical only up to rounding of 2 sqrt 2, 3 sqrt 3 (N^n ~ 1e-15, not 0): the
            # dropped tail grows like b^n; at b = 20 it is ~1e-13, still below matrix_exp's own error
            assert err < 2e-13 and err <= err_torch + 2 * 2.2e-16, (b, float(err), float(err_torch))


def test_expm_scaled_falls_back_to_matrix_exp_for_distinct_eigenvalues():
    from holdsgm.sde.kernels import _single_eigenvalue_split, expm_scaled

    F = torch.tensor([[0.0, 1.0], [-1.0, -3.0]], dtype=torch.float64)  # over-damped: eigenvalues differ
    assert _single_eigenvalue_split(tuple(F.flatten().tolist()), 2) is None
    b = torch.tensor([0.0, 0.3, 4.0], dtype=torch.float64)
    torch.testing.assert_close(expm_scaled(F, b), torch.linalg.matrix_exp(b[:, None, None] * F), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["vp", "cld", "cld-sgm", "hold"])
def test_batched_hsm_kernel_matches_square_root_form_and_50_digits(name):
    """The Langevin HSM kernel at a batch of times on both sides of b ||F|| = 1 (closed form
    S - Phi (S - S0) Phi^T + Cholesky above, square-root form below, in one call) equals the generic
    square-root path time by time, and the 40-digit Cholesky factor, to ~1e-12 relative."""
    from holdsgm.sde.base import LinearSDE

    sde = make_sde(name)
    t = torch.cat([torch.logspace(math.log10(sde.eps), 0, 8, dtype=F64) * sde.T, t64(0.5 * sde.T)])
    t = t[torch.randperm(t.numel(), generator=torch.Generator().manual_seed(0))]
    b = sde.schedule.integral(t) * sde._norm(sde.F)
    assert bool((b <= 1).any()) and bool((b > 1).any())  # both regimes in one batch
    k = sde.marginal(t)
    for i, ti in enumerate(t.tolist()):
        ref = _mp_cholesky(sde, ti)
        generic = LinearSDE._marginal(sde, torch.tensor([ti], dtype=F64)).chol[0]
        mask = ref.abs() > 1e-300
        rel = ((k.chol[i] - ref).abs()[mask] / ref.abs()[mask]).max()
        assert rel < 1e-11, (ti, float(rel))
        torch.testing.assert_close(k.chol[i], generic, rtol=1e-10, atol=0)
        torch.testing.assert_close(k.phi[i], sde.marginal(torch.tensor(ti, dtype=F64)).phi, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", ["cld", "hold"])
def test_closed_form_expm_vector_against_50_digit_arithmetic(name):
    """e^{rF} g by the n-term closed form (critical damping) keeps every component to full relative
    accuracy, including the data coordinate's tiny values at small r (no cancellation between orders)."""
    from holdsgm.sde.kernels import expm_vector

    sde = make_sde(name)
    n = sde.order
    g = torch.zeros(n, dtype=F64)
    g[-1] = sde.q**0.5
    rs = [1e-7, 1e-4, 1e-2, 0.3, 2.0, 10.0]
    got = expm_vector(sde.F, g, torch.tensor(rs, dtype=F64))
    with mp.workdps(50):
        Fm = mp.matrix(sde.F.tolist())
        gm = mp.matrix([float(v) for v in g])
        for r, row in zip(rs, got):
            ex = mp.expm(Fm * r) * gm
            for i in range(n):
                assert abs(float(row[i]) - ex[i]) <= 1e-13 * abs(ex[i]) + 1e-300, (r, i, float(row[i]), ex[i])


def test_tril_factor_is_a_positive_lower_factor_and_checks_its_shape():
    from holdsgm.sde.kernels import tril_factor

    m = torch.randn(6, 3, 13, generator=torch.Generator().manual_seed(3), dtype=F64)
    low = tril_factor(m)
    assert low.shape == (6, 3, 3) and torch.equal(low, low.tril())
    assert (low.diagonal(dim1=-2, dim2=-1) > 0).all()
    assert torch.allclose(low @ low.transpose(-1, -2), m @ m.transpose(-1, -2), rtol=1e-13, atol=1e-13)
    # the factor of M M^T is unique with a positive diagonal: Cholesky's
    assert torch.allclose(low, torch.linalg.cholesky(m @ m.transpose(-1, -2)), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="at least as many columns"):
        tril_factor(torch.randn(3, 2, dtype=F64))
