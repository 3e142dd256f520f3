"""Crash safety (issue #4): SIGKILL at named points of a checkpoint write and at random moments always
leaves a loadable latest checkpoint, and resuming reproduces an uninterrupted run's losses exactly;
SIGTERM/SIGINT stop cleanly with a checkpoint. Training runs in a subprocess (``holdsgm train``);
resuming runs in-process with the same single thread."""

import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from holdsgm.engine import load_checkpoint
from holdsgm.runs import load_config
from holdsgm.runs import train as train_run
from run_helpers import CONFIGS, TINY, cli, cli_env, losses

pytestmark = pytest.mark.slow

CONFIG = CONFIGS / "toy-hold.yaml"
STEPS, EVERY = 24, 4
BASE = [*TINY, f"train.steps={STEPS}", f"train.ckpt_every={EVERY}"]


def _sets(overrides):
    return [x for o in overrides for x in ("--set", o)]


def _train_argv(run, overrides, *flags):
    """``holdsgm train`` of the test config into ``run`` as a subprocess command line."""
    return [sys.executable, "-m", "holdsgm.cli.main", "train", str(CONFIG), "--out", str(run), *flags,
            *_sets(overrides)]


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses run with OMP_NUM_THREADS=1: same arithmetic
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path_factory.mktemp("reliability") / "reference"
        train_run(load_config(CONFIG, BASE), run, verbose=False)
    finally:
        torch.set_num_threads(n)
    return losses(run)


def _resume_and_compare(run, reference, extra=()):
    res = train_run(load_config(CONFIG, [*BASE, *extra]), run, verbose=False)
    assert res.step == STEPS
    assert losses(run) == reference
    assert not list(run.rglob(".*.tmp-*"))  # no stale temporary files survive


@pytest.mark.parametrize(
    "point, latest",
    [
        ("ckpt:model.safetensors:partial@2", 4),  # half of a weight file written
        ("ckpt:state.pt:written@3", 8),  # all files in place, manifest missing
        ("ckpt:manifest.json:partial@2", 4),  # manifest half-written (to its temporary name)
        ("step@15", 12),  # between checkpoints
    ],
)
def test_sigkill_at_named_points(point, latest, tmp_path, reference, one_thread):
    run = tmp_path / "run"
    p = cli("train", CONFIG, "--out", run, "--quiet", *_sets(BASE), env=cli_env(HOLDSGM_TEST_KILL_AT=point))
    assert p.returncode == -signal.SIGKILL, p.stderr
    ck = load_checkpoint(run)  # newest valid, incomplete ones skipped
    assert ck.step == latest
    _resume_and_compare(run, reference)


@pytest.mark.parametrize("trial", range(3))
def test_sigkill_at_random_moments(trial, tmp_path, reference, one_thread):
    """Slow steps and slow checkpoint writes (a sleep inside every file write) so that a kill at a random
    time after the first checkpoint lands in training or mid-write."""
    rng = random.Random(1234 + trial)
    run = tmp_path / "run"
    env = cli_env(HOLDSGM_TEST_STEP_SLEEP=0.01, HOLDSGM_TEST_CKPT_SLEEP=0.03)
    proc = subprocess.Popen(
        _train_argv(run, BASE, "--quiet"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(run.glob("checkpoints/*/manifest.json")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.kill()
    finally:
        proc.wait(timeout=60)
    ck = load_checkpoint(run)
    assert ck.step % EVERY == 0 or ck.step == STEPS
    logged = max(r[0] for r in losses(run))
    assert logged - ck.step <= EVERY  # at most one checkpoint interval lost
    _resume_and_compare(run, reference)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_with_a_checkpoint(sig, code, tmp_path, reference, one_thread):
    run = tmp_path / "run"
    overrides = [*BASE, "train.ckpt_every=1000"]  # only the stop (and final) checkpoints
    proc = subprocess.Popen(
        _train_argv(run, overrides),
        env=cli_env(HOLDSGM_TEST_STEP_SLEEP=0.05),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None:
            f = run / "stats.jsonl"
            if f.exists() and len(f.read_text().splitlines()) >= 3:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert f"stopped by {sig.name}" in err and "Traceback" not in err
    ck = load_checkpoint(run)
    assert 3 <= ck.step < STEPS
    assert ck.step == max(r[0] for r in losses(run))  # checkpoint of the very step it stopped at
    _resume_and_compare(run, reference, ["train.ckpt_every=1000"])
