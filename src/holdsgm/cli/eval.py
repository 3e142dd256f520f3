"""``holdsgm eval RUN``: sample metrics vs held-out data and the ODE likelihood, as JSON."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from .sample import add_sampling_args

    p = subparsers.add_parser(
        "eval", help="evaluate a trained run (W2/MMD/per-mode W2 or FD-digits, ODE likelihood)",
        description="Evaluate a trained run on its held-out split: 2-D data get exact W2 (POT) and MMD, plus "
                    "per-mode W2 / mode TV / cross-entropy excess when the true density is known; digits get "
                    "FD-digits (and class accuracy for class-conditional models) when holdsgm.eval.fd_digits "
                    "is available; all get the probability-flow ODE likelihood (NLL in nats, bits/dim for "
                    "quantised data). Prints JSON; --out also writes it to a file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder (or one checkpoint folder)")
    add_sampling_args(p, n_default_help="config eval.n")
    p.add_argument("--nll-n", type=int, default=None, help="held-out items for the likelihood (0: skip)")
    p.add_argument("--divergence", choices=("exact", "hutchinson"), default=None, help="ODE divergence estimator")
    p.add_argument("--out", metavar="FILE", default=None, help="also write the JSON here")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError
    from ..train.checkpoint import load_run
    from ..train.evaluation import evaluate_run
    from ..train.reporting import dumps, write_json
    from .sample import check_sampling_args

    check_sampling_args(args)
    if args.nll_n is not None and args.nll_n < 0:
        raise ConfigError(f"--nll-n must be >= 0, got {args.nll_n}")
    if args.n is not None and args.n < 2:
        raise ConfigError(f"--n must be at least 2 for sample metrics, got {args.n}")
    if args.out:
        write_json(args.out, {"status": "running"})  # fail now, not after the work, if it cannot be written
    run_ = load_run(args.run, which="ema" if args.ema else "model", device=args.device)
    res = evaluate_run(run_, n=args.n, sampler=args.sampler, nfe=args.nfe, grid=args.grid, seed=args.seed,
                       nll_n=args.nll_n, divergence=args.divergence, batch_size=args.batch_size)
    if args.out:
        write_json(args.out, res)
    print(dumps(res))
    return 0
