"""``holdsgm bench oracle`` end to end on a small setting, for the built-in and a custom 3-D mixture."""

import json

import numpy as np
import pytest

from holdsgm.cli.main import main
from holdsgm.mixture import GaussianMixture


def test_bench_oracle_custom_mixture_and_points(tmp_path, capsys):
    mix = GaussianMixture([0.3, 0.7], [[0, 0, 0], [2, 1, -1]], [np.eye(3) * 0.1, np.diag([0.2, 0.05, 0.1])])
    (tmp_path / "mix.json").write_text(json.dumps(mix.to_dict()))
    pts = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, -1.0], [1.0, 0.5, -0.5]])
    np.save(tmp_path / "p.npy", pts)
    out = tmp_path / "bench"
    code = main(["bench", "oracle", "--out", str(out), "--mixture", str(tmp_path / "mix.json"), "--points",
                 str(tmp_path / "p.npy"), "--sdes", "vp,hold", "--samplers", "em,sscs", "--nfe", "6,60",
                 "--n", "400", "--seeds", "2", "--quiet"])
    assert code == 0
    doc = json.loads((out / "oracle.json").read_text())
    rows = doc["rows"]
    assert {(r["sde"], r["sampler"]) for r in rows} == {("vp", "em"), ("vp", "sscs"), ("hold", "em"), ("hold", "sscs")}
    for r in rows:
        assert set(r) >= {"sde", "sampler", "nfe", "w2", "nll_error", "mode_w2", "mode_w2_sd"}
        assert (out / "samples" / f"{r['sde']}-{r['sampler']}-{r['nfe']}.npy").exists()
    for sde in ("vp", "hold"):
        by_nfe = sorted((r["nfe"], r["mode_w2"]) for r in rows if r["sde"] == sde and r["sampler"] == "em")
        assert by_nfe[0][1] > by_nfe[-1][1]  # error falls with NFE
        nll = np.load(out / f"nll-{sde}.npy")
        assert nll.shape == (3,)
        # this mixture's mean is far from 0, so the prior mismatch (||Phi_T|| |mean|) adds up to ~0.05 nats
        assert np.allclose(nll, -mix.log_prob(__import__("torch").tensor(pts)).numpy(), atol=0.1)
    assert (out / "oracle.png").stat().st_size > 10_000
    assert doc["floor"]["mode_w2"]["mean"] > 0


@pytest.mark.parametrize("args,match", [
    (["--points", "missing.npy"], "cannot read --points"),
    (["--sdes", "bogus"], "unknown SDE"),
    (["--nfe", "1"], "NFE"),
])
def test_bench_oracle_bad_input_is_one_clear_line(tmp_path, capsys, args, match):
    code = main(["bench", "oracle", "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and match in err and "Traceback" not in err and err.count("\n") == 1


def test_bench_oracle_refuses_non_positive_definite_mixture(tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"weights": [1], "means": [[0, 0]], "covs": [[[1, 2], [2, 1]]]}))
    code = main(["bench", "oracle", "--out", str(tmp_path / "o"), "--mixture", str(tmp_path / "bad.json")])
    assert code == 2 and "positive-definite" in capsys.readouterr().err


def test_sampler_specs_on_the_command_line():
    from holdsgm.cli.bench import _specs

    assert _specs("em,sscs,unipc3:ref_var=0.01,grid=quadratic,eps=0.1,exp2m:form=eps,heun") == [
        "em", "sscs", "unipc3:ref_var=0.01,grid=quadratic,eps=0.1", "exp2m:form=eps", "heun"]


def test_unknown_sampler_option_is_refused(tmp_path, capsys):
    code = main(["bench", "oracle", "--out", str(tmp_path / "b"), "--quick", "--samplers", "unipc3:ref_vr=0.1"])
    assert code != 0
    assert "ref_vr" in capsys.readouterr().err


def test_one_seed_prints_no_spread(tmp_path, capsys):
    code = main(["bench", "oracle", "--out", str(tmp_path / "o"), "--sdes", "vp", "--samplers", "em", "--nfe", "8",
                 "--n", "200", "--seeds", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "per-mode W2" in out and "+-" not in out
    code = main(["bench", "oracle", "--out", str(tmp_path / "p"), "--sdes", "vp", "--samplers", "em", "--nfe", "8",
                 "--n", "200", "--seeds", "2"])
    assert code == 0 and "+-" in capsys.readouterr().out
