"""The CLI: --help everywhere, --dry-run for every preset, one-line errors with exit code 2, and the
train -> sample -> eval -> likelihood path and the demo end to end on tiny runs."""

import json

import numpy as np
import pytest
import yaml

from holdsgm.runs import Config, load_config
from run_helpers import CONFIGS, TINY_QUIET, cli, run_main, sets

COMMANDS = ["train", "sample", "eval", "likelihood", "demo"]
PRESETS = sorted(CONFIGS.glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from holdsgm.runs import train

    run = tmp_path_factory.mktemp("cli") / "run"
    train(load_config(CONFIGS / "toy-hold.yaml", [*TINY_QUIET, "train.steps=20"]), run, verbose=False)
    return run


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd, capsys):
    code, out, _ = run_main([cmd, "--help"], capsys)
    assert code == 0 and f"usage: holdsgm {cmd}" in out


def test_top_level_help_lists_commands(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and all(c in out for c in COMMANDS)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_dry_run_every_preset(path, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["train", path, "--dry-run"], capsys)
    assert code == 0, err
    assert "parameters" in out
    resolved = yaml.safe_load("\n".join(line for line in out.splitlines() if not line.startswith("#")))
    assert Config.from_dict(resolved) == load_config(path)
    assert list(tmp_path.iterdir()) == []  # wrote nothing


def test_dry_run_applies_overrides(capsys):
    code, out, _ = run_main(
        ["train", "toy-hold", "--dry-run", "--set", "model.hidden=8", "--set", "sde.T=3"], capsys
    )
    assert code == 0
    d = yaml.safe_load("\n".join(line for line in out.splitlines() if not line.startswith("#")))
    assert d["model"]["hidden"] == 8 and d["sde"]["T"] == 3


def _one_line_error(code, err, cmd):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"holdsgm {cmd}: error:") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "toy-hold", "--dry-run", "--set", "train.lrr=1"], "train.lrr"),
        (["train", "toy-hold", "--dry-run", "--set", "train.lr=fast"], "train.lr"),
        (["train", "toy-hold", "--dry-run", "--set", "novalue"], "key=value"),
        (["train", "no-such-config", "--dry-run"], "no-such-config"),
        (["sample", "{missing}"], "does not exist"),
        (["eval", "{missing}"], "does not exist"),
        (["likelihood", "{missing}"], "does not exist"),
        (["sample", "{run}", "--nfe", "0"], "nfe"),
        (["sample", "{run}", "--nfe", "1", "--sampler", "heun"], "too small"),
        (["sample", "{run}", "--class", "3"], "not class-conditional"),
        (["sample", "{run}", "--out", "{file}/sub"], "sub"),
        (["eval", "{run}", "--out", "{file}/x.json"], "x.json"),
        (["likelihood", "{run}", "--n", "0"], "--n"),
        (["train", "toy-hold", "--out", "{file}/run", "--set", "train.steps=1"], "run"),
        (["demo", "--out", "{file}/demo"], "demo"),
    ],
)
def test_errors_are_one_line_exit_2(argv, needle, capsys, tmp_path, tiny_run):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = [a.format(missing=tmp_path / "missing", run=tiny_run, file=blocker) for a in argv]
    code, _, err = run_main(argv, capsys)
    line = _one_line_error(code, err, argv[0])
    assert needle in line


def test_bad_config_file_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [1,\n")
    code, _, err = run_main(["train", bad, "--dry-run"], capsys)
    assert "bad.yaml" in _one_line_error(code, err, "train")


def test_errors_in_a_real_process():
    p = cli("train", "toy-hold", "--dry-run", "--set", "train.lrr=1")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "train.lrr" in p.stderr


@pytest.mark.slow
def test_sample_eval_likelihood_end_to_end(tiny_run, tmp_path, capsys):
    out = tmp_path / "samples"
    code, stdout, err = run_main(
        ["sample", tiny_run, "--n", "40", "--sampler", "sscs", "--nfe", "8", "--seed", "3", "--out", out],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["n"] == 40 and summary["nfe"] == 8 and summary["finite"]
    for f in ("samples.npz", "samples.png", "trajectory.png", "sample.json"):
        assert (out / f).stat().st_size > 0
    data = np.load(out / "samples.npz")
    assert data["x"].shape == (40, 2) and data["u"].shape == (40, 6)
    assert np.array_equal(data["seeds"], np.arange(3, 43))
    assert data["trajectory"].shape[1:] == (16, 6) and data["trajectory_times"][0] == 5.0

    # per-sample seeds: the batch size does not change the samples
    out2 = tmp_path / "samples2"
    code, _, err = run_main(
        [
            "sample",
            tiny_run,
            "--n",
            "40",
            "--sampler",
            "sscs",
            "--nfe",
            "8",
            "--seed",
            "3",
            "--batch-size",
            "7",
            "--out",
            out2,
            "--no-ema",
        ],
        capsys,
    )
    code3, _, _ = run_main(
        [
            "sample",
            tiny_run,
            "--n",
            "40",
            "--sampler",
            "sscs",
            "--nfe",
            "8",
            "--seed",
            "3",
            "--batch-size",
            "40",
            "--out",
            tmp_path / "s3",
            "--no-ema",
        ],
        capsys,
    )
    assert code == code3 == 0, err
    np.testing.assert_allclose(
        np.load(out2 / "samples.npz")["x"],
        np.load(tmp_path / "s3" / "samples.npz")["x"],
        rtol=1e-5,
        atol=1e-6,
    )
    assert not np.allclose(np.load(out2 / "samples.npz")["x"], data["x"])  # --no-ema differs from EMA

    res_file = tmp_path / "eval.json"
    code, stdout, err = run_main(
        ["eval", tiny_run, "--n", "60", "--nfe", "10", "--nll-n", "8", "--out", res_file], capsys
    )
    assert code == 0, err
    res = json.loads(res_file.read_text())
    assert res == json.loads(stdout)
    m = res["metrics"]
    assert m["n_samples"] == 60 and m["w2"] > 0 and m["mmd"] == m["mmd"] and m["mode_w2"] > 0
    assert res["likelihood"]["n"] == 8 and np.isfinite(res["likelihood"]["nll"])
    assert res["likelihood"]["true_nll"] < res["likelihood"]["nll"] + 50

    code, stdout, err = run_main(
        [
            "likelihood",
            tiny_run,
            "--n",
            "8",
            "--divergence",
            "hutchinson",
            "--method",
            "rk4",
            "--out",
            tmp_path / "nll.json",
        ],
        capsys,
    )
    assert code == 0, err
    lik = json.loads(stdout)
    assert lik["divergence"] == "hutchinson" and lik["n"] == 8 and lik["nfe"] > 0 and np.isfinite(lik["nll"])
    assert "true_entropy" in lik and lik["seconds"] > 0


@pytest.mark.slow
def test_train_cli_resumes_and_reports(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", CONFIGS / "toy-cld.yaml", "--out", run, "--quiet", *sets([*TINY_QUIET, "train.steps=6"])]
    code, out, err = run_main(argv, capsys)
    assert code == 0, err
    assert "step 6/6" in out
    assert (run / "config.yaml").exists() and load_config(run / "config.yaml").sde.name == "cld"
    code, out, _ = run_main(argv, capsys)
    assert code == 0 and "already trained" in out
    argv[-1] = "train.steps=9"
    code, out, _ = run_main(argv, capsys)
    assert code == 0 and "resumed from step 6" in out and "step 9/9" in out
    # a run folder as CONFIG: resume it with its own (resolved) config
    code, out, _ = run_main(["train", run, "--quiet", "--set", "train.steps=11"], capsys)
    assert code == 0 and "resumed from step 9" in out and "step 11/11" in out


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, err = run_main(
        [
            "demo",
            "--quick",
            "--out",
            out,
            "--set",
            "model.hidden=32",
            "--set",
            "eval.nll_n=10",
        ],
        capsys,
    )
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "w2",
        "mmd",
        "mode_w2",
        "nll",
        "true_entropy",
        "true_nll",
        "nfe",
        "train_seconds",
        "sample_seconds",
        "device",
        "seed",
        "command",
    ):
        assert key in m and m[key] is not None, key
    # the quick demo's 300 steps; its sampler the measured default for HOLD at 50 NFE, reported as run
    assert m["steps"] == 300 and m["sde"] == "hold" and m["sampler"] == "exp2m-sde:grid=log,sigma_min=0.01"
    assert (out / "demo.png").stat().st_size > 0 and (out / "run" / "checkpoints").is_dir()
    assert any((out / "run" / "tb").iterdir())  # TensorBoard scalars
    assert "per-mode W2" in stdout and "NLL" in stdout


def test_presets_ship_with_the_package_and_configs_links_to_them():
    from importlib.resources import files

    from holdsgm.runs.config import configs_dir
    from holdsgm.runs.demo import demo_config

    assert (files("holdsgm") / "configs" / "demo.yaml").is_file()
    assert configs_dir().resolve() == CONFIGS.resolve()
    assert demo_config() == load_config(CONFIGS / "demo.yaml")
    assert demo_config(overrides=["train.steps=7"]).train.steps == 7


def test_debug_works_in_any_position(capsys):
    for argv in (["--debug", "sample", "/nonexistent-run"], ["sample", "/nonexistent-run", "--debug"]):
        with pytest.raises(Exception, match="does not exist"):  # --debug: the traceback, not one line
            run_main(argv, capsys)
    code, _, err = run_main(["sample", "/nonexistent-run"], capsys)
    assert code == 2 and "Traceback" not in err


def test_set_without_equals_says_key_value(capsys):
    code, _, err = run_main(["train", "toy-hold", "--dry-run", "--set", "train.steps", "100"], capsys)
    line = _one_line_error(code, err, "train")
    assert "key=value" in line and "train.steps" in line and "unrecognized" not in line


@pytest.mark.parametrize("cmd", ["train", "sample", "eval", "likelihood", "demo", "vocode", "config"])
def test_help_shows_each_default_once(cmd, capsys):
    code, out, _ = run_main([cmd, "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0 and "(default: None)" not in text and "(default: False)" not in text
    for chunk in text.split("--")[1:]:  # each option's help
        assert chunk.lower().count("default") <= 1, chunk


def test_config_lists_every_key(capsys):
    code, out, _ = run_main(["config", "--list", "train"], capsys)
    assert code == 0 and "train.lr_schedule" in out and "train.grad_accum" in out and "sde." not in out
    code, out, _ = run_main(["config", "data"], capsys)
    assert code == 0 and "data.value_range" in out and "data.random_flip" in out
    code, _, err = run_main(["config", "nope"], capsys)
    assert "unknown config section" in _one_line_error(code, err, "config")


@pytest.mark.parametrize("argv, needle", [
    (["sample", "RUN", "--sampler", "unipc3:ref_var"], "key=value"),
    (["sample", "RUN", "--sampler", "bogus"], "unknown sampler"),
    (["vocode", "RUN", "--wav", "x.wav", "--out", "o.wav", "--sampler", "exp2m:nonsense=1"], "no option"),
])
def test_sampler_specs_are_checked_the_same_everywhere(argv, needle, capsys, tiny_run):
    argv = [str(tiny_run) if a == "RUN" else a for a in argv]
    code, _, err = run_main(argv, capsys)
    assert code == 2 and needle in err and "Traceback" not in err


def test_results_on_stdout_progress_on_stderr(tiny_run, tmp_path):
    """A long command shows progress on stderr (plain lines when it is not a terminal); stdout holds only
    the JSON result, which reports the sampler spec that was run, grid and stop included."""
    from run_helpers import cli_env

    p = cli("sample", tiny_run, "--n", "30", "--sampler", "sscs:grid=quadratic,sigma_min=0.02", "--nfe", "12",
            "--out", tmp_path / "s", env=cli_env(HOLDSGM_PROGRESS_INTERVAL=0))
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["sampler"] == "sscs:grid=quadratic,sigma_min=0.02" and summary["grid"] == "quadratic"
    assert "sampling 30 (sscs" in p.stderr and "NFE" in p.stderr
    p = cli("eval", tiny_run, "--n", "30", "--nfe", "6", "--nll-n", "4", "--bound-n", "0", "--sampler",
            "exp1:grid=logsnr", env=cli_env(HOLDSGM_PROGRESS_INTERVAL=0))
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["grid"] == "logsnr" and res["sampler"].startswith("exp1:grid=logsnr")  # what was run
    assert "likelihood of 4 items" in p.stderr


def test_sample_writes_one_png_per_image_and_a_reference_scatter(tmp_path, capsys, tiny_run):
    from PIL import Image

    from holdsgm.runs import load_config, train

    run = tmp_path / "img"
    cfg = load_config("digits-hold", ["model.channels=8", "model.channel_mult=[1]", "model.attn_resolutions=[]",
                                      "model.mid_attention=false", "train.batch_size=8", "train.steps=2",
                                      "train.tensorboard=false", "train.warmup_steps=1"])
    train(cfg, run, verbose=False)
    code, out, err = run_main(["sample", run, "--n", "5", "--nfe", "4", "--sampler", "sscs", "--save-images",
                               "--out", tmp_path / "s", "--quiet"], capsys)
    assert code == 0, err
    files = sorted((tmp_path / "s" / "images").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(files[0]).size == (8, 8) and json.loads(out)["images"].endswith("images")
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".")]
    code, _, err = run_main(["sample", tiny_run, "--n", "5", "--save-images", "--out", tmp_path / "v"], capsys)
    assert "--save-images" in _one_line_error(code, err, "sample")


def test_vocoder_projection_defaults_in_help_are_the_librarys(capsys):
    """The help of vocode and tts spells the projection's default rounds (the CLI does not import torch to
    parse); they must be the numbers the library uses."""
    import re

    from holdsgm.runs.inference import DEFAULT_PROJECT, DEFAULT_REFINE

    for cmd, pattern in (("vocode", rf"--refine N\s.*?default\s+{DEFAULT_REFINE};.*--project N\s.*?default\s+"
                                    rf"{DEFAULT_PROJECT};"),
                         ("tts", rf"--vocoder-refine N\s.*?default\s+{DEFAULT_REFINE},\s+plus\s+{DEFAULT_PROJECT}\s")):
        code, out, _ = run_main([cmd, "--help"], capsys)
        assert code == 0 and re.search(pattern, out, re.S), f"holdsgm {cmd} --help does not say the defaults"
