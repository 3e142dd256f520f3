"""``holdsgm demo``: train HOLD on 8 Gaussians, sample it with the sampler measured best at the demo's budget,
measure it against the known density and draw a figure (:mod:`holdsgm.runs.demo`)."""

from __future__ import annotations

import os

from . import HelpFormatter, add_sampler_argument, add_set_argument

#: ``--quick``: a smoke-test version
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


def run(args) -> int:
    import shlex
    import sys

    from ..errors import ConfigError
    from ..runs.demo import demo_config, run_demo
    from ..runs.reports import make_out_dir, setup_logging

    setup_logging()
    overrides = [f"{k}={v}" for k, v in QUICK.items()] if args.quick else []
    for key, value in (("train.steps", args.steps), ("sample.sampler", args.sampler), ("sample.nfe", args.nfe),
                       ("sample.n", args.n)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.seed is not None:
        if args.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {args.seed}")
        overrides += [f"train.seed={args.seed}", f"sample.seed={args.seed}"]
    config = demo_config(args.config, overrides + list(args.overrides))
    command = "holdsgm " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "holdsgm demo"
    report = run_demo(config, make_out_dir(args.out), restart=args.restart, command=command)
    if report.get("stopped_by"):
        print(f"stopped by {report['stopped_by']} at step {report['step']}; re-run to resume", file=sys.stderr)
        return 130
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
