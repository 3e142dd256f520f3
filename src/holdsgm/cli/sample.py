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

    from ..errors import ConfigError
    from ..runs.loading import load_run
    from ..runs.reports import dumps, make_out_dir
    from ..runs.sampling import SampleRequest, sample_to_folder

    check_sampling_args(args)
    directions, skip, cfg_scale = parse_guidance_args(args)
    label = args.label
    if label is not None and label != "balanced":
        try:
            label = int(label)
        except ValueError:
            raise ConfigError(f"--class must be an integer or 'balanced', got {args.label!r}") from None
    run_ = load_run(args.run, which="ema" if args.ema else "model", device=args.device)
    if args.nfe is None and args.sampler is not None:  # the run's NFE must suit the sampler asked for
        check_sampling_args(argparse.Namespace(n=None, sampler=args.sampler, nfe=run_.config.sample.nfe, seed=None,
                                               batch_size=None))
    req = SampleRequest(n=args.n, sampler=args.sampler, nfe=args.nfe, grid=args.grid, seed=args.seed,
                        batch_size=args.batch_size, label=label, cfg_scale=cfg_scale, directions=directions,
                        skip=skip, trajectory=args.trajectory, save_images=args.save_images,
                        edit_figure=args.edit_figure, edit_k=args.edit_k, progress=not args.quiet)
    out = make_out_dir(args.out or Path(args.run) / "samples")
    print(dumps(sample_to_folder(run_, out, req)))
    return 0
