"""``holdsgm eval RUN``: sample metrics vs held-out data and the ODE likelihood, as JSON."""

from __future__ import annotations

from . import HelpFormatter


def register(subparsers) -> None:
    from .sample import add_sampling_args

    p = subparsers.add_parser(
        "eval",
        help="evaluate a trained run (W2/MMD/per-mode W2, FID/KID or FD-digits, ODE likelihood)",
        description="Evaluate a trained run on its held-out split: 2-D data get exact W2 (POT) and MMD, plus "
        "per-mode W2 / mode TV / cross-entropy excess when the true density is known; images get FID and KID "
        "with the standard Inception features (the fid extra; N printed beside them); the 8x8 digits get "
        "FD-digits (and class accuracy for class-conditional models) instead; all get the probability-flow "
        "ODE likelihood (NLL in nats, bits/dim for quantised data). Prints JSON; --out also writes it to a file.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run folder (or one checkpoint folder)")
    add_sampling_args(p, n_default_help="config eval.n")
    p.add_argument("--nll-n", type=int, default=None, help="held-out items for the likelihood (0: skip)")
    p.add_argument(
        "--divergence", choices=("exact", "hutchinson"), default=None, help="ODE divergence estimator"
    )
    b = p.add_argument_group(
        "Wasserstein bound",
        "Kwon et al. (2022): W2(data, model) <= C sqrt(J) + offset, J = int_eps^T g(t)^2 E||s_theta - s||^2 dt "
        "(the likelihood-weighted score-matching objective). eval reports sqrt(J) on held-out data (J_dsm "
        "with the conditional score; J_esm with the true score when the density is known) beside the "
        "measured W2 (vector data); see holdsgm.eval.wasserstein_bound.",
    )
    b.add_argument("--bound-n", type=int, default=1000, help="held-out points for J (0: skip the bound)")
    b.add_argument("--bound-times", type=int, default=8, help="time/noise draws per held-out point for J")
    b.add_argument("--over-training", action="store_true",
                   help="instead of the usual evaluation: sqrt(J) and W2 of every kept checkpoint of RUN, "
                   "as JSON and a plot (keep checkpoints with train.keep_checkpoints)")
    b.add_argument("--plot", metavar="PNG", default=None,
                   help="--over-training figure (default: RUN/eval/w2_over_training.png)")
    p.add_argument("--out", metavar="FILE", default=None, help="also write the JSON here")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError
    from ..runs.evaluation import evaluate_run
    from ..runs.loading import load_run
    from ..runs.reports import check_writable_file, dumps, write_json
    from .sample import check_sampling_args

    check_sampling_args(args)
    if args.nll_n is not None and args.nll_n < 0:
        raise ConfigError(f"--nll-n must be >= 0, got {args.nll_n}")
    if args.n is not None and args.n < 2:
        raise ConfigError(f"--n must be at least 2 for sample metrics, got {args.n}")
    if args.bound_n < 0:
        raise ConfigError(f"--bound-n must be >= 0, got {args.bound_n}")
    if args.bound_times < 1:
        raise ConfigError(f"--bound-times must be a positive integer, got {args.bound_times}")
    if args.out:
        check_writable_file(args.out)  # fail now, not after the work
    if args.over_training:
        return _over_training(args)
    run_ = load_run(args.run, which="ema" if args.ema else "model", device=args.device)
    res = evaluate_run(
        run_,
        n=args.n,
        sampler=args.sampler,
        nfe=args.nfe,
        grid=args.grid,
        seed=args.seed,
        nll_n=args.nll_n,
        divergence=args.divergence,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    if args.bound_n > 0:
        from ..eval.wasserstein_bound import bound_report
        from ..runs.evaluation import heldout

        w2 = res.get("metrics", {}).get("w2")
        res["wasserstein_bound"] = bound_report(
            run_, heldout(run_, "test"), n=args.bound_n, times_per_point=args.bound_times,
            seed=res.get("seed", 0), w2=w2, n_samples=res.get("metrics", {}).get("n_samples"),
        )
    if args.out:
        write_json(args.out, res)
    print(dumps(res))
    return 0


def _over_training(args) -> int:
    from pathlib import Path

    from ..errors import CheckpointError, ConfigError
    from ..eval.wasserstein_bound import over_training_figure
    from ..runs.reports import check_writable_file, dumps, write_json
    from ..runs.wasserstein import evaluate_checkpoints

    if not Path(args.run).is_dir():
        raise CheckpointError(f"run folder {args.run} does not exist")
    if args.bound_n == 0:
        raise ConfigError("--over-training measures J: give --bound-n > 0")
    plot = Path(args.plot) if args.plot else Path(args.run) / "eval" / "w2_over_training.png"
    check_writable_file(plot)
    res = evaluate_checkpoints(
        args.run,
        n=args.n or 2000,
        sampler=args.sampler,
        nfe=args.nfe,
        grid=args.grid,
        seed=args.seed or 0,
        bound_n=args.bound_n,
        times_per_point=args.bound_times,
        which="ema" if args.ema else "model",
        batch_size=args.batch_size,
    )
    res["figure"] = str(over_training_figure(res, plot, title=f"W2 and sqrt(J) over training: {args.run}"))
    if args.out:
        write_json(args.out, res)
    print(dumps(res))
    return 0
