"""``holdsgm sample`` with --cfg-scale / --guide / --skip-scale on a tiny class-conditional digits run."""

import json
from pathlib import Path

import numpy as np
import pytest

from run_helpers import CONFIGS, TINY_QUIET, cli, run_main

TINY_DIGITS = ["model.channels=8", "train.steps=3", "train.batch_size=16", "train.ckpt_every=3",
               "train.warmup_steps=1", "train.tensorboard=false", "train.log_every=1", "sample.n=6",
               "sample.nfe=4", "sample.sampler=exp1"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from holdsgm.runs import load_config, train

    run = tmp_path_factory.mktemp("guid") / "run"
    train(load_config(CONFIGS / "digits-cond-vp.yaml", TINY_DIGITS), run, verbose=False)
    return run


@pytest.mark.slow
def test_sample_with_guidance_edits_and_skip_tuning(digits_run, tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["sample", digits_run, "--n", "5", "--nfe", "4", "--sampler", "exp1", "--class", "3", "--cfg-scale",
            "2", "--guide", "-8:scale=3,threshold=0.9,warmup=0.2,momentum=0.5", "--guide", "+1:scale=2",
            "--skip-scale", "0.8:1.0", "--edit-k", "2", "--trajectory", "2", "--out", out]
    code, stdout, err = run_main(argv, capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["guidance"] == {"cfg_scale": 2.0, "skip_scale": "0.8:1",
                                   "directions": ["-8:scale=3,threshold=0.9,warmup=0.2,momentum=0.5,beta=0.5",
                                                  "+1:scale=2"]}
    assert Path(summary["edits"]).stat().st_size > 0 and summary["finite"]
    data = np.load(out / "samples.npz")
    assert data["x"].shape == (5, 1, 8, 8) and (data["labels"] == 3).all()


@pytest.mark.slow
def test_cfg_scale_one_and_skip_scale_one_change_nothing(digits_run, tmp_path, capsys):
    base = ["sample", digits_run, "--n", "4", "--nfe", "4", "--sampler", "exp1", "--class", "2", "--trajectory", "0"]
    code, _, err = run_main([*base, "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    code, _, err = run_main([*base, "--cfg-scale", "1", "--skip-scale", "1", "--out", tmp_path / "b"], capsys)
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "a" / "samples.npz")["x"], np.load(tmp_path / "b" / "samples.npz")["x"])


@pytest.mark.parametrize("extra, needle", [
    (["--guide", "8:scale=3"], "must start with '+'"),
    (["--guide", "-8:scale=abc"], "scale must be a number"),
    (["--guide", "+3:foo=1"], "unknown key"),
    (["--guide", "+12"], "out of range"),
    (["--cfg-scale", "3"], "needs --class"),
    (["--skip-scale", "1,1"], "skip connections"),
    (["--skip-scale", "x"], "not a number"),
])
def test_malformed_guidance_options_are_one_line_errors(digits_run, extra, needle, capsys):
    code, _, err = run_main(["sample", digits_run, "--n", "2", "--nfe", "3", *extra], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("holdsgm sample: error:") and needle in lines[0]


def test_guidance_on_an_unconditional_model_is_refused(tmp_path, capsys):
    from holdsgm.runs import load_config, train

    run = tmp_path / "toy"
    train(load_config(CONFIGS / "toy-vp.yaml", [*TINY_QUIET, "train.steps=2"]), run, verbose=False)
    code, _, err = run_main(["sample", run, "--guide", "+1", "--n", "2", "--nfe", "3"], capsys)
    assert code == 2 and "class-conditional" in err
    code, _, err = run_main(["sample", run, "--skip-scale", "0.9", "--n", "2", "--nfe", "3"], capsys)
    assert code == 2 and "no skip connections" in err


def test_negative_guide_as_a_separate_argument_in_a_real_process(digits_run):
    p = cli("sample", digits_run, "--n", "2", "--nfe", "3", "--guide", "-8:scale=abc")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "scale must be a number" in p.stderr and "expected one argument" not in p.stderr
