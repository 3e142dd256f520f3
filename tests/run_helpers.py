"""Helpers shared by the tests that train tiny runs or call the CLI (tests/ is on pytest's pythonpath)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

#: a tiny, fast toy run: 8 Gaussians, a 2-layer MLP of width 16, a log line every step, a checkpoint every 5
TINY = [
    "model.hidden=16",
    "model.depth=2",
    "data.n=400",
    "train.batch_size=32",
    "train.log_every=1",
    "train.ckpt_every=5",
    "train.warmup_steps=3",
    "train.tensorboard=false",
    "sample.n=64",
    "sample.nfe=10",
    "eval.n=64",
    "eval.nll_n=16",
    "eval.rtol=1e-3",
    "eval.atol=1e-3",
]

#: the same run with sparser logs and checkpoints (later overrides win), for tests that only need a trained run
TINY_QUIET = [*TINY, "train.log_every=5", "train.ckpt_every=10"]


def sets(overrides):
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    return [x for o in overrides for x in ("--set", o)]


def tiny_config(*extra, steps=10):
    from holdsgm.runs import load_config

    return load_config(CONFIGS / "toy-hold.yaml", [*TINY, f"train.steps={steps}", *extra])


def read_stats(run_dir):
    return [json.loads(line) for line in Path(run_dir, "stats.jsonl").read_text().splitlines()]


def losses(run_dir):
    return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in read_stats(run_dir)]


def run_main(argv, capsys):
    """Call the CLI entry point in-process; returns (exit code, stdout, stderr)."""
    from holdsgm.cli.main import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse (--help, usage errors)
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def cli_env(**extra):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def cli(*args, env=None, timeout=300, **popen):
    """Run ``python -m holdsgm.cli.main ARGS`` to completion in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "holdsgm.cli.main", *map(str, args)],
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )
