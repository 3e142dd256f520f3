"""``holdsgm sample RUN``: draw samples from a trained run; write samples.npz, a PNG and a trajectory figure."""

from __future__ import annotations

import argparse


def add_sampling_args(p, *, n_default_help: str = "config sample.n") -> None:
    from ..samplers import GRIDS, SAMPLERS

    p.add_argument("--n", type=int, default=None, help=f"number of samples (default: {n_default_help})")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default=None,
                   help="sampler (default: the run's config sample.sampler)")
    p.add_argument("--nfe", type=int, default=None, help="score evaluations per sample (default: config)")
    p.add_argument("--grid", choices=GRIDS, default=None, help="time grid (default: config)")
    p.add_argument("--seed", type=int, default=None, help="sample i uses seed SEED + i (default: config)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="use the EMA weights (--no-ema: the raw weights)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per batch (results do not depend on it)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


def check_sampling_args(args) -> None:
    """Fail fast (before loading anything) on values the samplers would refuse."""
    from ..errors import ConfigError
    from ..samplers import SAMPLERS, steps_for_nfe

    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n must be a positive integer, got {args.n}")
    if args.nfe is not None:
        sampler = args.sampler or "em"
        if SAMPLERS[sampler].evals_per_step:
            steps_for_nfe(sampler, args.nfe)
        elif args.nfe < 1:
            raise ConfigError(f"--nfe must be a positive integer, got {args.nfe}")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help="draw samples from a trained run",
        description="Draw samples from a trained run (its newest valid checkpoint). Writes samples.npz "
                    "(x: the data component, u: the full phase-space state, seeds, labels), samples.png "
                    "(scatter or image grid) and trajectory.png (x, v, a along the reverse-time path). Sample "
                    "i uses seed SEED + i, so results do not depend on the batch size.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder (or one checkpoint folder)")
    add_sampling_args(p)
    p.add_argument("--class", dest="label", default=None,
                   help="class label for a class-conditional model (an integer, or 'balanced')")
    p.add_argument("--trajectory", type=int, default=16, help="samples shown in the trajectory figure")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default: RUN/samples)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..errors import ConfigError
    from ..train.checkpoint import load_run
    from ..train.figures import image_grid_figure, scatter_figure, trajectory_figure
    from ..train.inference import class_labels, generate
    from ..train.reporting import dumps, make_out_dir, write_json

    check_sampling_args(args)
    label = args.label
    if label is not None and label != "balanced":
        try:
            label = int(label)
        except ValueError:
            raise ConfigError(f"--class must be an integer or 'balanced', got {args.label!r}") from None
    run_ = load_run(args.run, which="ema" if args.ema else "model", device=args.device)
    sc = run_.config.sample
    n = args.n or sc.n
    sampler = args.sampler or sc.sampler
    if args.nfe is None and args.sampler is not None:
        check_sampling_args(argparse.Namespace(n=None, sampler=sampler, nfe=sc.nfe, seed=None, batch_size=None))
    out = make_out_dir(args.out or Path(args.run) / "samples")
    labels = class_labels(run_, n, label)
    gen = generate(run_, n, sampler=sampler, nfe=args.nfe or sc.nfe, grid=args.grid or sc.grid,
                   seed=sc.seed if args.seed is None else args.seed, labels=labels,
                   batch_size=args.batch_size or sc.batch_size, trajectory=max(args.trajectory, 0))
    arrays = {"x": gen.x.numpy(), "u": gen.u.numpy(), "seeds": np.asarray(gen.seeds, dtype=np.int64)}
    if gen.labels is not None:
        arrays["labels"] = gen.labels.numpy()
    if gen.traj is not None:
        arrays["trajectory"] = gen.traj.numpy()
        arrays["trajectory_times"] = np.asarray(gen.traj_times)
    npz = out / "samples.npz"
    tmp = out / ".samples.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(npz)
    info = run_.dataset_info
    title = f"{run_.sde.name}, {sampler} @ {gen.nfe} NFE, step {run_.step}"
    if info.is_image:
        png = image_grid_figure(gen.x, out / "samples.png", info.data_range, title=title)
    else:
        png = scatter_figure(gen.x, out / "samples.png", title=title)
    traj_png = None
    if gen.traj is not None:
        traj_png = trajectory_figure(gen.traj_times, gen.traj, run_.sde.order, out / "trajectory.png",
                                     info.data_range, title=f"{run_.sde.name}: reverse-time trajectory ({sampler})")
    summary = {"run": str(run_.path), "step": run_.step, "weights": run_.which, "n": n, "sampler": sampler,
               "nfe": gen.nfe, "seconds": gen.seconds, "samples": str(npz), "figure": str(png),
               "trajectory": str(traj_png) if traj_png else None,
               "finite": bool(np.isfinite(arrays["x"]).all())}
    write_json(out / "sample.json", summary)
    print(dumps(summary))
    return 0
