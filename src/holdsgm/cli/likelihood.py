"""``holdsgm likelihood RUN``: negative log-likelihood via the probability-flow ODE, as JSON."""

from __future__ import annotations

import argparse

from . import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "likelihood",
        help="ODE negative log-likelihood (nats; bits/dim for images) of held-out data",
        description="Negative log-likelihood of data under a trained run through the probability-flow ODE "
        "(Song et al. 2021), with the auxiliary-variable bound for CLD/HOLD. Continuous 2-D data: "
        "nats (and the true NLL of the same points when the density is known). Quantised data "
        "(digits, images): uniform dequantisation and bits/dim. Prints JSON with NFE and seconds.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run folder (or one checkpoint folder)")
    p.add_argument("--n", type=int, default=None, help="items to evaluate (default: config eval.nll_n)")
    p.add_argument(
        "--divergence",
        choices=("exact", "hutchinson"),
        default=None,
        help="exact trace (low dimension) or Hutchinson's estimator (default: config; hutchinson "
        "above 16 dimensions)",
    )
    p.add_argument("--split", choices=("test", "train", "all"), default="test", help="which data")
    p.add_argument(
        "--method",
        choices=("RK45", "RK23", "DOP853", "rk4"),
        default=None,
        help="ODE solver (default: config eval.method)",
    )
    p.add_argument("--rtol", type=float, default=None, help="solver relative tolerance (default: config)")
    p.add_argument("--atol", type=float, default=None, help="solver absolute tolerance (default: config)")
    p.add_argument("--seed", type=int, default=0, help="seed of the auxiliaries, probes and dequantisation")
    p.add_argument("--aux-draws", type=int, default=None,
                   help="auxiliary draws per point for CLD/HOLD, combined by importance weighting (default: "
                   "config eval.aux_draws)")
    p.add_argument("--batch-size", type=int, default=500, help="items per ODE solve")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True, help="use the EMA weights")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--out", metavar="FILE", default=None, help="also write the JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..errors import ConfigError
    from ..runs.evaluation import heldout, likelihood
    from ..runs.loading import load_run
    from ..runs.reports import check_writable_file, dumps, write_json

    for name in ("n", "batch_size", "aux_draws"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    for name in ("rtol", "atol"):
        v = getattr(args, name)
        if v is not None and not (0 < v < 1):
            raise ConfigError(f"--{name} must be in (0, 1), got {v}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if args.out:
        check_writable_file(args.out)  # fail now, not after the work
    run_ = load_run(args.run, which="ema" if args.ema else "model", device=args.device)
    ec = run_.config.eval
    data = heldout(run_, args.split)
    n = min(args.n or ec.nll_n or len(data), len(data))
    divergence = args.divergence or ec.divergence
    if divergence == "exact" and int(np.prod(run_.dataset_info.data_shape)) > 16:
        divergence = "hutchinson"
    res = likelihood(
        run_,
        data,
        n=n,
        divergence=divergence,
        method=args.method or ec.method,
        rtol=args.rtol or ec.rtol,
        atol=args.atol or ec.atol,
        seed=args.seed,
        batch_size=args.batch_size,
        aux_draws=args.aux_draws or ec.aux_draws,
        aux_estimator=ec.aux_estimator,
        progress=not args.quiet,
    )
    res = {
        "run": str(run_.path),
        "step": run_.step,
        "weights": run_.which,
        "dataset": run_.dataset_info.name,
        "sde": run_.sde.name,
        "split": args.split,
        **res,
    }
    if args.out:
        write_json(args.out, res)
    print(dumps(res))
    return 0
