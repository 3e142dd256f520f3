"""``holdsgm train CONFIG [--out RUN] [--set key=value ...] [--dry-run]``: train (or resume) a run.

Launch with ``torchrun --nproc_per_node N -m holdsgm.cli.main train CONFIG`` for DDP.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from . import HelpFormatter, add_set_argument


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a YAML config (resumes an existing run folder)",
        description="Train a score model from a YAML config (a path or a preset name of configs/, e.g. "
        "toy-hold). An existing run folder is resumed from its newest valid checkpoint. "
        "SIGTERM/SIGINT stop cleanly after writing a checkpoint. For several processes, launch "
        "with: torchrun --nproc_per_node N -m holdsgm.cli.main train CONFIG.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "config",
        metavar="CONFIG",
        help="YAML config file, preset name (see configs/) or a run folder (resumes it with its config)",
    )
    p.add_argument("--out", metavar="RUN", default=None, help="run folder (default: runs/<config name>)")
    add_set_argument(p, "override a config value, e.g. --set train.lr=1e-3 --set sde.T=3 (repeatable)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config and the parameter count; write nothing",
    )
    p.add_argument("--restart", action="store_true",
                   help="start over from step 0; the run folder's checkpoints and logs are first moved to "
                   "RUN/old-<time>/ (nothing is deleted)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..runs.config import load_config, resolve_config_path
    from ..runs.reports import setup_logging

    setup_logging(args.quiet)
    config = load_config(args.config, args.overrides)
    if args.dry_run:
        return _dry_run(config)
    from ..engine import Faults
    from ..engine.distributed import DistInfo
    from ..runs.training import train

    if args.out:
        out = Path(args.out)
    elif Path(args.config).is_dir():  # `holdsgm train RUN`: resume a run with its own config
        out = Path(args.config)
    else:
        out = Path("runs") / resolve_config_path(args.config).stem
    result = train(config, out, verbose=not args.quiet, restart=args.restart, faults=Faults.from_env())
    code = _exit_code(result.stopped_by)
    if not DistInfo.from_env().is_main:
        return code
    rate = ""
    done = result.step - (result.resumed_from or 0)
    if done and result.seconds > 0:
        rate = f" ({done / result.seconds:.1f} it/s)"
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from is not None else ""
    loss = f"; last loss {result.last_loss:.4f}" if result.last_loss is not None else ""
    if result.stopped_by:
        print(
            f"stopped by {result.stopped_by} at step {result.step}/{result.steps}; checkpoint "
            f"{result.checkpoint}; run the same command to resume",
            file=sys.stderr,
        )
        return code
    if done == 0:
        print(f"{out}: already trained to step {result.step}/{result.steps}; checkpoint {result.checkpoint}")
        return 0
    print(
        f"trained {config.sde.name} on {config.data.name}: step {result.step}/{result.steps} in "
        f"{result.seconds:.1f} s{rate}{resumed}{loss}; checkpoint {result.checkpoint}"
    )
    return 0


def _exit_code(stopped_by: str | None) -> int:
    """0 when training finished; 128 + signal number after a clean stop by a signal (130 for SIGINT)."""
    if not stopped_by:
        return 0
    try:
        return 128 + signal.Signals[stopped_by].value
    except KeyError:
        return 1


def _dry_run(config) -> int:
    from ..nets import count_parameters
    from ..runs.build import build_components

    comp = build_components(config, read_speech=False)
    print(config.to_yaml(), end="")
    print(f"# network: {config.model.kind}, {count_parameters(comp.net):,} parameters")
    print(f"# sde: {comp.sde.name} (order {comp.sde.order}), T = {comp.sde.T}")
    if comp.train is None:  # speech: the corpus is read when training starts
        print(f"# data: speech from {config.data.options['path']} (not read by --dry-run), training "
              f"segments of shape {comp.info.data_shape}")
        return 0
    print(
        f"# data: {comp.info.name}, {comp.info.n_train} training items of shape {comp.info.data_shape}"
        f"{', ' + str(comp.info.n_classes) + ' classes' if comp.info.n_classes else ''}"
    )
    return 0
