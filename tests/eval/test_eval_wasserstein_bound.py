"""The Wasserstein-bound report: the estimator against the exact oracle, and `holdsgm eval` on a tiny run."""

import json
import math

import pytest
import torch

from holdsgm.eval.wasserstein_bound import LikelihoodTimeSampler, likelihood_weight, score_objective
from holdsgm.mixture import GaussianMixture
from holdsgm.sde import MixtureOracle, make_sde
from run_helpers import CONFIGS, TINY_QUIET, run_main

MIX = GaussianMixture.eight_gaussians()


class OracleEps:
    """eps* = -s*/ell_t: the exact minimiser of the HSM objective."""

    def __init__(self, sde, scale=1.0):
        self.sde, self.oracle, self.scale = sde, MixtureOracle(sde, MIX), scale
        self.net = torch.nn.Linear(1, 1)

    def eps(self, u, t, y=None):
        ell = self.sde.marginal(t).ell
        return (-self.scale * self.oracle.score(u.double(), t) / ell[:, None]).to(u.dtype)


@pytest.mark.parametrize("name", ["vp", "cld", "hold"])
def test_importance_sampler_integrates_lambda(name):
    sde = make_sde(name)
    t, w = LikelihoodTimeSampler(sde).sample(20000, torch.Generator().manual_seed(0))
    assert float(t.min()) >= sde.eps and float(t.max()) <= sde.T
    grid = torch.logspace(math.log10(sde.eps), math.log10(sde.T), 50001, dtype=torch.float64)
    ref = float(torch.trapezoid(likelihood_weight(sde, grid), grid))
    assert float(w.mean()) == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("name", ["vp", "hold"])
def test_decomposition_with_the_oracle(name):
    sde = make_sde(name)
    x0 = MIX.sample(300, generator=torch.Generator().manual_seed(1)).float()
    exact = score_objective(OracleEps(sde), sde, x0, oracle=MixtureOracle(sde, MIX), times_per_point=4)
    assert exact["J_esm"] < 1e-8 and exact["J_dsm"] == pytest.approx(exact["J_irr"], rel=1e-6)
    off = score_objective(OracleEps(sde, 0.8), sde, x0, oracle=MixtureOracle(sde, MIX), times_per_point=4)
    assert off["J_esm"] > 0.1
    # J_dsm = J_esm + J_irr up to the (zero-mean) cross term
    assert off["J_dsm"] == pytest.approx(off["J_esm"] + off["J_irr"], abs=4 * off["J_dsm_sem"])
    assert off["J_irr"] == pytest.approx(exact["J_irr"], rel=1e-6)  # same times and noise


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from holdsgm.runs import load_config, train

    run = tmp_path_factory.mktemp("w2") / "run"
    train(load_config(CONFIGS / "toy-hold.yaml", [*TINY_QUIET, "train.steps=30", "train.keep_checkpoints=5"]), run,
          verbose=False)
    return run


@pytest.mark.slow
def test_eval_reports_the_bound_next_to_w2(toy_run, capsys, tmp_path):
    code, stdout, err = run_main(["eval", toy_run, "--n", "40", "--nfe", "6", "--nll-n", "0", "--bound-n", "30"],
                                 capsys)
    assert code == 0, err
    b = json.loads(stdout)["wasserstein_bound"]
    assert b["n_points"] == 30 and b["times_per_point"] == 8
    for k in ("J_dsm", "J_esm", "J_irr", "sqrt_J_dsm", "sqrt_J_esm", "w2", "w2_floor", "prior_offset"):
        assert math.isfinite(b[k]) and b[k] >= 0, k
    assert b["J_esm"] > 0 and b["sqrt_J_esm"] == pytest.approx(math.sqrt(b["J_esm"]))
    assert b["J_dsm"] == pytest.approx(b["J_esm"] + b["J_irr"], abs=5 * b["J_dsm_sem"] + 1e-9)
    assert b["w2"] > b["w2_floor"] * 0.5 and b["w2_over_sqrt_J"] > 0 and "nats" in b["units"]


@pytest.mark.slow
def test_eval_over_training(toy_run, capsys, tmp_path):
    plot = tmp_path / "w2.png"
    code, stdout, err = run_main(["eval", toy_run, "--over-training", "--n", "40", "--nfe", "6", "--bound-n", "20",
                                  "--bound-times", "2", "--plot", plot, "--out", tmp_path / "w2.json"], capsys)
    assert code == 0, err
    res = json.loads(stdout)
    assert [r["step"] for r in res["rows"]] == [10, 20, 30]
    assert all(r["w2"] > 0 and r["sqrt_J_esm"] > 0 for r in res["rows"])
    assert plot.stat().st_size > 0 and res["figure"] == str(plot)
    code, _, err = run_main(["eval", tmp_path / "nope", "--over-training"], capsys)
    assert code == 2 and "does not exist" in err and not (tmp_path / "nope").exists()
