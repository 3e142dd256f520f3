"""``holdsgm demo``: train HOLD on 8 Gaussians on the CPU in a minute or two, sample it with the sampler
measured best for HOLD at the demo's budget, measure it against the known density, and draw a figure.

8 Gaussians has a closed-form density, so the demo can report the NLL of held-out points through the
probability-flow ODE next to their true NLL and the data's entropy, and per-mode W2 next to the
finite-sample floor of exact samples.
"""

from __future__ import annotations

import os

from . import HelpFormatter, add_sampler_argument, add_set_argument

QUICK = {"train.steps": 300, "sample.n": 500, "eval.nll_n": 50}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train HOLD on 8 Gaussians, sample, measure and plot (CPU, ~1-2 minutes)",
        description="Train HOLD (third-order Langevin) on the 8-Gaussians toy set, sample it with the "
        "sampler measured best for HOLD at its NFE budget (sample.sampler: auto), and write a figure (data vs "
        "samples, x/v/a trajectories), "
        "metrics.json (W2, MMD, per-mode W2, ODE NLL vs the true entropy, timings) and the run "
        "folder. Re-running resumes/reuses the run.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", default="holdsgm-demo", help="output folder")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the demo config's)")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke-test version: {QUICK['train.steps']} steps, fewer samples",
    )
    add_sampler_argument(p, "the demo config's")
    p.add_argument("--nfe", type=int, default=None, help="score evaluations per sample (default: 50)")
    p.add_argument("--n", type=int, default=None, help="samples (default: 2000)")
    p.add_argument("--seed", type=int, default=None, help="training and sampling seed (default: 0)")
    p.add_argument("--config", default=None, help="another config instead of configs/demo.yaml")
    p.add_argument("--restart", action="store_true",
                   help="train again from step 0; the old run's checkpoints are moved to OUT/run/old-<time>/")
    add_set_argument(p)
    p.set_defaults(func=run)


def demo_config(path=None, overrides=()):
    """The ``demo`` preset (``configs/demo.yaml``, shipped with the package) or ``path``, with overrides."""
    from ..train.config import configs_dir, load_config

    return load_config(configs_dir() / "demo.yaml" if path is None else path, overrides)


def run(args) -> int:
    import shlex
    import sys
    import time

    import torch

    from ..errors import ConfigError
    from ..eval.metrics import metric_floor
    from ..train.checkpoint import load_run
    from ..train.evaluation import heldout, likelihood, sample_metrics
    from ..train.figures import demo_figure
    from ..train.inference import generate
    from ..train.reporting import make_out_dir, setup_logging, write_json
    from ..train.trainer import train

    setup_logging()
    overrides = []
    if args.quick:
        overrides += [f"{k}={v}" for k, v in QUICK.items()]
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.sampler is not None:
        overrides.append(f"sample.sampler={args.sampler}")
    if args.nfe is not None:
        overrides.append(f"sample.nfe={args.nfe}")
    if args.n is not None:
        overrides.append(f"sample.n={args.n}")
    if args.seed is not None:
        if args.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {args.seed}")
        overrides += [f"train.seed={args.seed}", f"sample.seed={args.seed}"]
    config = demo_config(args.config, overrides + list(args.overrides))

    out = make_out_dir(args.out)
    run_dir = out / "run"
    wall0 = time.perf_counter()
    print(
        f"holdsgm demo: training {config.sde.name} on {config.data.name} for {config.train.steps} steps "
        f"({config.model.kind} {config.model.kwargs.get('hidden', '')}) -> {run_dir}",
        file=sys.stderr,
    )
    result = train(config, run_dir, restart=args.restart)
    if result.stopped_by:
        print(f"stopped by {result.stopped_by} at step {result.step}; re-run to resume", file=sys.stderr)
        return 130
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
        "command": ("holdsgm " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        if sys.argv[1:]
        else "holdsgm demo",
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
    _print_summary(report)
    return 0


def _print_summary(r: dict) -> None:
    def f(v, fmt=".3f"):
        return "n/a" if v is None else format(v, fmt)

    lines = [
        (
            f"HOLD demo ({r['sde']} on {r['dataset']}, {r['steps']} steps, seed {r['seed']}, {r['device']}, "
            f"{r['threads']} threads)"
        ),
        (
            f"  trained in {f(r['train_seconds'], '.1f')} s; sampled {r['n_samples']} with {r['sampler']} "
            f"@ {r['nfe']} "
            f"NFE in {f(r['sample_seconds'], '.1f')} s"
        ),
        f"  W2 {f(r['w2'])}   MMD {f(r['mmd'], '.2e')}   per-mode W2 {f(r['mode_w2'])}"
        + (f" (floor of exact samples {f(r['floor']['mode_w2'])})" if r.get("floor") else ""),
    ]
    if r["nll"] is not None:
        lines.append(
            f"  NLL (ODE, {r['nll_n']} held-out points) {f(r['nll'])} +- {f(r['nll_sem'])} nats; "
            f"true NLL of those points {f(r['true_nll'])}; data entropy {f(r['true_entropy'])}"
        )
    lines.append(
        f"  figure {r['figure']}  metrics {os.path.join(os.path.dirname(r['figure']), 'metrics.json')}  "
        f"(total {f(r['total_seconds'], '.0f')} s)"
    )
    print("\n".join(lines))
