"""The sampler API's defaults and checks: the stop as a noise level, each sampler's measured default grid,
the plan a report shows, the default sampler, and the range guard that stops a diverging sampler."""

import pytest
import torch

from holdsgm.errors import NumericsError
from holdsgm.eval.metrics import mixture_metrics
from holdsgm.mixture import GaussianMixture
from holdsgm.samplers import (
    DEFAULT_SIGMA_MIN,
    SAMPLERS,
    check_sampler,
    default_sampler,
    noise_level,
    plan_sampling,
    sample,
    time_at_noise_level,
)
from holdsgm.sde import MixtureOracle, make_sde

F64 = torch.float64
MIX = GaussianMixture.eight_gaussians()


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "cld", "cld-sgm", "hold"])
def test_noise_level_inverts(name):
    sde = make_sde(name)
    for sigma in (0.002, 0.01, 0.1):
        t = time_at_noise_level(sde, sigma)
        assert 0 < t < sde.T and float(noise_level(sde, torch.tensor(t, dtype=F64))) == pytest.approx(sigma, rel=1e-6)
    with pytest.raises(ValueError, match="not below the noise level at T"):
        time_at_noise_level(sde, 1e6)


def test_a_stop_as_noise_level_means_the_same_on_every_sde():
    """eps=0.1 is sigma 0.0035 for HOLD and 0.57 for CLD-SGM; sigma_min is one noise level everywhere."""
    hold, cld_sgm = make_sde("hold"), make_sde("cld-sgm")
    assert float(noise_level(hold, torch.tensor(0.1, dtype=F64))) < 0.01 < 0.5 < float(
        noise_level(cld_sgm, torch.tensor(0.1, dtype=F64)))
    for sde in (hold, cld_sgm, make_sde("vp")):
        plan = plan_sampling(sde, "sscs", nfe=20)
        assert plan.sigma_min == DEFAULT_SIGMA_MIN
        assert float(noise_level(sde, torch.tensor(plan.eps, dtype=F64))) == pytest.approx(DEFAULT_SIGMA_MIN, rel=1e-6)


def test_plan_precedence_and_spec():
    sde = make_sde("hold")
    plan = plan_sampling(sde, "exp1", nfe=10)
    assert plan.grid == SAMPLERS["exp1"].grid and plan.spec == f"exp1:grid={plan.grid},sigma_min=0.01"
    assert plan_sampling(sde, "exp1", nfe=10, grid="edm").grid == "edm"
    spec = plan_sampling(sde, "exp1:grid=logsnr,eps=0.2", nfe=10, grid="edm", sigma_min=0.5)
    assert spec.grid == "logsnr" and spec.eps == 0.2 and spec.sigma_min is None  # the spec wins
    assert plan_sampling(sde, "unipc3:ref_var=0.01", nfe=10).options == {"ref_var": 0.01}
    with pytest.raises(ValueError, match="not both"):
        plan_sampling(sde, "exp1", nfe=10, eps=0.1, sigma_min=0.01)
    with pytest.raises(ValueError, match="not both"):
        check_sampler("exp1:eps=0.1,sigma_min=0.01")
    assert plan_sampling(sde, None, nfe=20).sampler == default_sampler(sde, 20)


def test_every_sampler_has_a_valid_default_grid():
    from holdsgm.samplers.grids import GRIDS

    assert all(spec.grid in GRIDS for spec in SAMPLERS.values())
    assert {name for name, spec in SAMPLERS.items() if spec.grid == "log"} >= {"em", "sscs", "exp2m", "unipc3"}


def test_the_issues_exp2m_case_is_stopped_with_the_step_and_a_suggestion():
    """exp2m on HOLD at 20 NFE with its old defaults (uniform grid, stop t = 1e-3): its last step
    extrapolates the data prediction over a 10x longer log-SNR interval than the one it was fitted on, and
    the state ends far out (a ~ 2e5). The guard stops it, naming the step and a sampler that works."""
    sde = make_sde("hold")
    orc = MixtureOracle(sde, MIX)
    with pytest.raises(NumericsError) as e:
        sample(orc.score, sde, (2000, 2), sampler="exp2m:grid=uniform,eps=0.001", nfe=20, noise=0, dtype=F64)
    msg = str(e.value)
    assert "step 19 of 19" in msg and "left the plausible range" in msg and "--sampler" in msg
    suggested = msg.split("--sampler ")[1].split(",")[0]
    ok = sample(orc.score, sde, (2000, 2), sampler=suggested, nfe=20, noise=0, dtype=F64)
    assert mixture_metrics(ok.x, MIX)["mode_w2"] < 0.15
    # without the guard the same run is finite but garbage, as the issue saw
    bad = sample(orc.score, sde, (2000, 2), sampler="exp2m:grid=uniform,eps=0.001", nfe=20, noise=0, dtype=F64,
                 bound=None)
    assert torch.isfinite(bad.u).all() and float(bad.u.abs().max()) > 1e3


@pytest.mark.parametrize("name", ["cld", "hold", "cld-sgm"])
def test_exp2m_defaults_are_safe(name):
    """With its measured defaults (log grid, stop at sigma 0.01) exp2m is near the floor at 20 NFE."""
    sde = make_sde(name)
    out = sample(MixtureOracle(sde, MIX).score, sde, (2000, 2), sampler="exp2m", nfe=20, noise=0, dtype=F64)
    assert mixture_metrics(out.x, MIX)["mode_w2"] < 0.05


def test_the_default_sampler_is_good_at_every_budget():
    for name in ("vp", "cld", "hold"):
        sde = make_sde(name)
        orc = MixtureOracle(sde, MIX)
        for nfe in (10, 20, 50):
            out = sample(orc.score, sde, (2000, 2), nfe=nfe, noise=0, dtype=F64)  # sampler=None: the default
            assert mixture_metrics(out.x, MIX)["mode_w2"] < (0.15 if nfe == 10 else 0.06), (name, nfe)
