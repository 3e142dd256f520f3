"""``holdsgm sample RUN``: draw samples from a trained run; write samples.npz, a PNG and a trajectory PNG."""

from __future__ import annotations

import argparse

from . import HelpFormatter, add_sampler_argument


def add_sampling_args(p, *, n_default_help: str = "config sample.n") -> None:
    from ..samplers import GRIDS

    p.add_argument("--n", type=int, default=None, help=f"number of samples (default: {n_default_help})")
    add_sampler_argument(p)
    p.add_argument("--nfe", type=int, default=None, help="score evaluations per sample (default: config)")
    p.add_argument("--grid", choices=GRIDS, default=None, help="time grid (default: config)")
    p.add_argument("--seed", type=int, default=None, help="sample i uses seed SEED + i (default: config)")
    p.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use the EMA weights (--no-ema: the raw weights)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="samples per batch (results do not depend on it)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


def check_sampling_args(args) -> None:
    """Fail fast (before loading anything) on values the samplers would refuse."""
    from ..errors import ConfigError
    from ..samplers import SAMPLERS, check_sampler

    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n must be a positive integer, got {args.n}")
    if args.sampler is not None:
        try:
            check_sampler(args.sampler)
        except ValueError as e:
            raise ConfigError(f"--sampler: {e}") from None
    if args.nfe is not None:
        if args.nfe < 1:
            raise ConfigError(f"--nfe must be a positive integer, got {args.nfe}")
        name = check_sampler(args.sampler)[0] if args.sampler else None
        if name in SAMPLERS and SAMPLERS[name].evals_per_step:  # 'auto' / the config's: checked when planned
            try:
                check_sampler(args.sampler, args.nfe)
            except ValueError as e:
                raise ConfigError(f"--nfe: {e}") from None
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")


def add_guidance_args(p) -> None:
    """Classifier-free guidance, semantic guidance (SEGA) and Skip-Tuning options (see holdsgm.guidance)."""
    import re

    g = p.add_argument_group(
        "guidance",
        "Guidance acts on the model function, so it works with every sampler and SDE. Classifier-free: "
        "eps = eps_null + W (eps_class - eps_null) (W=0 unconditional, 1 conditional). Semantic (SEGA): "
        "each --guide adds (+) or removes (-) a class with its own scale, element-wise threshold (per-sample "
        "quantile of |direction| kept above), warm-up (fraction of the reverse-time interval before it "
        "applies) and momentum (scale; beta = its decay). Write --guide=-8:... or --guide \"-8:...\".",
    )
    g.add_argument("--cfg-scale", type=float, default=None, metavar="W",
                   help="classifier-free guidance weight towards --class (default 1: plain conditional)")
    g.add_argument("--guide", action="append", default=None, metavar="SPEC",
                   help="semantic direction [+|-]CLASS[:scale=S,threshold=Q,warmup=F,momentum=M,beta=B], "
                   "e.g. +3:scale=5 or -8:scale=3,threshold=0.9,warmup=0.2,momentum=0.5; repeatable")
    g.add_argument("--skip-scale", default=None, metavar="SPEC",
                   help="Skip-Tuning of the U-Net's skip connections: a factor (0.9), one factor per skip from "
                   "the highest resolution to the lowest (1,1,0.9,0.8), or a ramp BOTTOM:TOP (0.8:1.0)")
    g.add_argument("--edit-figure", action=argparse.BooleanOptionalAction, default=True,
                   help="with --guide on images: also write edits.png (the same seeds without edits, with each "
                   "direction alone and with all)")
    g.add_argument("--edit-k", type=int, default=8, help="seeds (rows) in edits.png")
    # let "-8:scale=3" be a value, not an option: this parser has no options that look like numbers
    p._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+:")


def parse_guidance_args(args):
    """(directions, skip spec, cfg scale) from the parsed arguments; ConfigError on malformed values."""
    from ..errors import ConfigError
    from ..guidance import parse_guides, parse_skip_scale

    directions = parse_guides(getattr(args, "guide", None))
    skip = parse_skip_scale(getattr(args, "skip_scale", None))
    cfg = getattr(args, "cfg_scale", None)
    if cfg is not None:
        import math

        if not math.isfinite(cfg):
            raise ConfigError(f"--cfg-scale must be a finite number, got {cfg}")
        if getattr(args, "label", None) is None:
            raise ConfigError("--cfg-scale needs --class (the class to guide towards)")
    if getattr(args, "edit_k", 1) < 1:
        raise ConfigError(f"--edit-k must be a positive integer, got {args.edit_k}")
    return directions, skip, 1.0 if cfg is None else float(cfg)


def _reference(run):
    """The run's held-out data for the scatter figure, or None (with a note) when it cannot be read now."""
    import sys

    from ..errors import HoldsgmError
    from ..train.evaluation import heldout

    try:
        return heldout(run).x
    except (HoldsgmError, OSError) as e:
        print(f"holdsgm sample: note: the figure shows no reference data ({' '.join(str(e).split())[:120]})",
              file=sys.stderr)
        return None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Draw samples from a trained run (its newest valid checkpoint). Writes samples.npz "
        "(x: the data component, u: the full phase-space state, seeds, labels), samples.png "
        "(scatter or image grid) and trajectory.png (x, v, a along the reverse-time path). Sample "
        "i uses seed SEED + i, so results do not depend on the batch size.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run folder (or one checkpoint folder)")
    add_sampling_args(p)
    p.add_argument(
        "--class",
        dest="label",
        default=None,
        help="class label for a class-conditional model (an integer, or 'balanced')",
    )
    add_guidance_args(p)
    p.add_argument("--trajectory", type=int, default=16, help="samples shown in the trajectory figure")
    p.add_argument("--save-images", action="store_true",
                   help="images: also write one PNG per sample to OUT/images/ (what FID tools read, e.g. "
                   "python -m pytorch_fid OUT/images REAL_IMAGES)")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default: RUN/samples)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..errors import ConfigError
    from ..train.checkpoint import load_run
    from ..train.figures import image_grid_figure, scatter_figure, trajectory_figure
    from ..train.inference import class_labels, generate
    from ..train.reporting import dumps, make_out_dir, save_image_files, write_json

    check_sampling_args(args)
    directions, skip, cfg_scale = parse_guidance_args(args)
    guided = bool(directions) or skip is not None or cfg_scale != 1.0
    label = args.label
    if label is not None and label != "balanced":
        try:
            label = int(label)
        except ValueError:
            raise ConfigError(f"--class must be an integer or 'balanced', got {args.label!r}") from None
    run_ = load_run(args.run, which="ema" if args.ema else "model", device=args.device)
    if args.save_images and not run_.dataset_info.is_image:
        raise ConfigError(f"--save-images writes image files; {args.run} models items of shape "
                          f"{run_.dataset_info.data_shape} (samples.npz holds them)")
    sc = run_.config.sample
    n = args.n or sc.n
    sampler = args.sampler or sc.sampler
    if args.nfe is None and args.sampler is not None:
        check_sampling_args(
            argparse.Namespace(n=None, sampler=sampler, nfe=sc.nfe, seed=None, batch_size=None)
        )
    if guided:
        from ..guidance import check_concepts, skip_scale_kwargs

        if (directions or cfg_scale != 1.0) and not run_.dataset_info.n_classes:
            raise ConfigError(f"guidance (--guide/--cfg-scale) needs a class-conditional model; {run_.path} is not "
                              f"(train with data.conditional=true and train.label_dropout > 0)")
        check_concepts(directions, run_.dataset_info.n_classes)
        if (directions or cfg_scale != 1.0) and not run_.config.train.label_dropout:
            import sys

            print(f"holdsgm sample: warning: {run_.path} was trained without label dropout "
                  f"(train.label_dropout = 0): its unconditional (null-label) prediction is untrained, so "
                  f"guidance will not work well", file=sys.stderr)
        skip_scale_kwargs(skip, run_.net)  # fails now if the spec does not fit the network
    out = make_out_dir(args.out or Path(args.run) / "samples")
    labels = class_labels(run_, n, label)
    common = dict(
        sampler=sampler,
        nfe=args.nfe or sc.nfe,
        grid=args.grid or sc.grid,
        seed=sc.seed if args.seed is None else args.seed,
        batch_size=args.batch_size or sc.batch_size,
    )
    if guided:
        from ..guidance import GuidedModel, guided_generate

        gen = guided_generate(run_, n, labels=labels, cfg_scale=cfg_scale, directions=directions,
                              skip_scale=skip, trajectory=max(args.trajectory, 0), progress=not args.quiet,
                              **common)
    else:
        gen = generate(run_, n, labels=labels, trajectory=max(args.trajectory, 0), progress=not args.quiet,
                       **common)
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
    title = f"{run_.sde.name}, {gen.plan['spec']} @ {gen.nfe} NFE, step {run_.step}"
    if info.is_image:
        png = image_grid_figure(gen.x, out / "samples.png", info.data_range, title=title)
    else:
        png = scatter_figure(gen.x, out / "samples.png", reference=_reference(run_), title=title)
    images = save_image_files(gen.x, out / "images", info.data_range) if args.save_images else None
    traj_png = None
    if gen.traj is not None:
        traj_png = trajectory_figure(
            gen.traj_times,
            gen.traj,
            run_.sde.order,
            out / "trajectory.png",
            info.data_range,
            title=f"{run_.sde.name}: reverse-time trajectory ({sampler})",
        )
    edits_png = None
    if directions and args.edit_figure and info.is_image:
        from ..guidance import edit_figure, edit_grid

        grid_x, titles = edit_grid(run_, directions, k=min(args.edit_k, n), labels=labels, cfg_scale=cfg_scale,
                                   skip_scale=skip, **common)
        base = "unconditional" if labels is None else f"class {args.label}, cfg {cfg_scale:g}"
        edits_png = edit_figure(grid_x, titles, out / "edits.png", info.data_range or (-1.0, 1.0),
                                title=f"{run_.sde.name}, {sampler} @ {gen.nfe} NFE: same seeds ({base}) edited",
                                row_labels=[f"seed {s}" for s in gen.seeds[: grid_x.shape[0]]])
    summary = {
        "run": str(run_.path),
        "step": run_.step,
        "weights": run_.which,
        "n": n,
        "sampler": gen.plan["spec"],
        "nfe": gen.nfe,
        "grid": gen.plan["grid"],
        "stop_time": gen.plan["stop_time"],
        "seconds": gen.seconds,
        "samples": str(npz),
        "figure": str(png),
        "trajectory": str(traj_png) if traj_png else None,
        "images": str(images) if images else None,
        "finite": bool(np.isfinite(arrays["u"]).all()),
        "max_abs": float(np.abs(arrays["u"]).max()),  # within the sampler's range guard, or it would have stopped
    }
    if guided:
        summary["guidance"] = GuidedModel(run_.eps_model, cfg_scale=cfg_scale, directions=directions,
                                          skip_scale=skip).describe()
        summary["edits"] = str(edits_png) if edits_png else None
    write_json(out / "sample.json", summary)
    print(dumps(summary))
    return 0
