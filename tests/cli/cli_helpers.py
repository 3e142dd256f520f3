import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

TINY = [
    "model.hidden=16",
    "model.depth=2",
    "data.n=400",
    "train.batch_size=32",
    "train.log_every=5",
    "train.ckpt_every=10",
    "train.warmup_steps=3",
    "train.tensorboard=false",
    "sample.n=64",
    "sample.nfe=10",
    "eval.n=64",
    "eval.nll_n=16",
    "eval.rtol=1e-3",
    "eval.atol=1e-3",
]


def sets(overrides):
    return [x for o in overrides for x in ("--set", o)]


def run_main(argv, capsys):
    """Call the CLI entry point in-process; returns (exit code, stdout, stderr)."""
    from holdsgm.cli.main import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse (--help, usage errors)
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def cli(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "holdsgm.cli.main", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
