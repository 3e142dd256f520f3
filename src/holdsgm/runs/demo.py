"""The demo (``holdsgm demo``): train HOLD on 8 Gaussians on the CPU in under a minute, sample it with the
sampler measured best at the demo's budget, measure it against the known density (8 Gaussians has a closed
form, so the ODE NLL of held-out points sits next to their true NLL, and per-mode W2 next to the floor of
exact samples), and draw a figure."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ..eval.metrics import metric_floor
from .config import Config, configs_dir, load_config
from .evaluation import heldout, likelihood, sample_metrics
from .figures import demo_figure
from .inference import generate
from .loading import load_run
from .reports import write_json
from .training import train


def demo_config(path=None, overrides=()):
    """The ``demo`` preset (``configs/demo.yaml``, shipped with the package) or ``path``, with overrides."""
    return load_config(configs_dir() / "demo.yaml" if path is None else path, overrides)


def run_demo(config: Config, out: Path, *, restart: bool = False, command: str = "holdsgm demo") -> dict:
    """Train ``config`` in ``out/run`` (resuming it), sample, measure, draw ``out/demo.png`` and write
    ``out/metrics.json``; returns the report (``{"stopped_by", "step"}`` when a signal stopped training)."""
    run_dir = out / "run"
    wall0 = time.perf_counter()
    print(
        f"holdsgm demo: training {config.sde.name} on {config.data.name} for {config.train.steps} steps "
        f"({config.model.kind} {config.model.kwargs.get('hidden', '')}) -> {run_dir}",
        file=sys.stderr,
    )
    result = train(config, run_dir, restart=restart)
    if result.stopped_by:
        return {"stopped_by": result.stopped_by, "step": result.step}
    run_ = load_run(run_dir)
    sc, ec = run_.config.sample, run_.config.eval
    test = heldout(run_)
    gen = generate(
        run_,
        sc.n,
        sampler=sc.sampler,
        nfe=sc.nfe,
        grid=sc.grid,
        seed=sc.seed,
        batch_size=sc.batch_size,
        trajectory=24,
        progress=True,
    )
    metrics = sample_metrics(gen.x, test.x, run_.dataset_info.mixture)
    nll = None
    if ec.nll_n > 0:
        print(f"holdsgm demo: ODE likelihood of {min(ec.nll_n, len(test))} held-out points", file=sys.stderr)
        nll = likelihood(
            run_,
            test,
            n=min(ec.nll_n, len(test)),
            divergence=ec.divergence,
            method=ec.method,
            rtol=ec.rtol,
            atol=ec.atol,
            seed=ec.seed,
            aux_draws=ec.aux_draws,
            aux_estimator=ec.aux_estimator,
            progress=True,
        )
    floor = None
    mixture = run_.dataset_info.mixture
    if mixture is not None:
        fl = metric_floor(mixture, len(gen.x), repeats=3)
        floor = {"mode_w2": fl["mode_w2"][0], "w2": fl["w2"][0]}
    title = (
        f"{run_.sde.name.upper()} on {run_.dataset_info.name}: {result.step} steps, "
        f"{gen.plan['sampler']} @ {gen.nfe} NFE"
        + (f", per-mode W2 {metrics['mode_w2']:.3f}" if "mode_w2" in metrics else "")
    )
    fig = demo_figure(test.x, gen.x, gen.traj_times, gen.traj, run_.sde.order, out / "demo.png", title=title)
    report = {
        "command": command,
        "sde": run_.sde.name,
        "dataset": run_.dataset_info.name,
        "steps": result.step,
        "seed": config.train.seed,
        "device": str(run_.device),
        "threads": torch.get_num_threads(),
        "train_seconds": result.total_seconds,
        "train_seconds_this_session": result.seconds,
        "sampler": gen.plan["spec"],
        "nfe": gen.nfe,
        "n_samples": len(gen.x),
        "sample_seconds": gen.seconds,
        "w2": metrics["w2"],
        "mmd": metrics["mmd"],
        "mode_w2": metrics.get("mode_w2"),
        "mode_tv": metrics.get("mode_tv"),
        "floor": floor,
        "nll": None if nll is None else nll["nll"],
        "nll_sem": None if nll is None else nll["nll_sem"],
        "true_nll": None if nll is None else nll.get("true_nll"),
        "true_entropy": metrics.get("true_entropy"),
        "nll_n": None if nll is None else nll["n"],
        "nll_nfe": None if nll is None else nll["nfe"],
        "nll_seconds": None if nll is None else nll["seconds"],
        "total_seconds": time.perf_counter() - wall0,
        "figure": str(fig),
        "run": str(run_dir),
        "checkpoint": str(run_.path),
    }
    write_json(out / "metrics.json", report)
    return report


