"""DDP under torchrun (gloo, 2 CPU processes): the same global batch gives the same updates as one process,
and the run exits cleanly (the gloo teardown fix)."""

import socket
import subprocess
import sys

import pytest
import torch

from holdsgm.engine import load_checkpoint
from holdsgm.runs import load_config
from holdsgm.runs import train as train_run
from run_helpers import CONFIGS, TINY, cli_env, losses

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_gloo_matches_single_process(tmp_path):
    overrides = [
        *TINY,
        "train.steps=3",
        "train.ckpt_every=1",
        "train.keep_checkpoints=5",
        "train.batch_size=32",
        "model.mixed_score=true",
    ]
    config = load_config(CONFIGS / "toy-hold.yaml", overrides)
    cfg_file = tmp_path / "ddp.yaml"
    cfg_file.write_text(config.to_yaml())

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_run(config, tmp_path / "single", verbose=False)
    finally:
        torch.set_num_threads(n)

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "holdsgm.cli.main",
        "train",
        str(cfg_file),
        "--out",
        str(tmp_path / "ddp"),
        "--quiet",
    ]
    p = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "terminate called" not in p.stderr

    for step in (1, 3):
        a = load_checkpoint(tmp_path / "single" / "checkpoints" / f"ckpt-{step:08d}")
        b = load_checkpoint(tmp_path / "ddp" / "checkpoints" / f"ckpt-{step:08d}")
        for k in a.model:
            torch.testing.assert_close(b.model[k], a.model[k], rtol=1e-5, atol=1e-6)
        assert b.state["world_size"] == 2 and len(b.state["rng"]["torch_cpu"]) == 2
    single, ddp = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert [r[0] for r in ddp] == [1, 2, 3]
    for (_s1, l1, g1, lr1), (_s2, l2, g2, lr2) in zip(single, ddp):
        assert l2 == pytest.approx(l1, rel=1e-5) and g2 == pytest.approx(g1, rel=1e-4) and lr1 == lr2
