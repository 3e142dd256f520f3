"""``holdsgm bench oracle``: every SDE x sampler x NFE with the exact score of a Gaussian mixture."""

from __future__ import annotations

import argparse
from pathlib import Path


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _specs(text: str) -> list[str]:
    """Comma-separated sampler specs, where a spec's own options are comma-separated too:
    ``em,sscs,unipc3:ref_var=0.01,grid=quadratic`` -> [em, sscs, unipc3:ref_var=0.01,grid=quadratic]
    (an item ``key=value`` without ``:`` continues the previous spec)."""
    specs: list[str] = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        if "=" in item and ":" not in item and specs:
            specs[-1] += "," + item
        else:
            specs.append(item)
    return specs


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks that need no training", description=__doc__)
    bsub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    o = bsub.add_parser(
        "oracle", help="samplers and likelihoods with the exact mixture score",
        description="Sample every SDE with every sampler at several NFE using the exact (oracle) score of a "
                    "Gaussian mixture, and compute the ODE likelihood's error. Writes oracle.json, oracle.png, "
                    "samples/<sde>-<sampler>-<nfe>.npy and, with --points, nll-<sde>.npy.")
    o.add_argument("--out", required=True, type=Path, help="output folder")
    o.add_argument("--mixture", type=Path, help='mixture JSON {"weights", "means", "covs"} (default: 8 Gaussians)')
    o.add_argument("--points", type=Path, help="a .npy array (P, d) of points at which to report -log p(x)")
    o.add_argument("--quick", action="store_true", help="vp, cld, hold x em, heun, sscs at 3 NFE values, 1000 samples")
    o.add_argument("--sdes", type=_names, help="comma-separated SDE presets (default vp,cld,hold)")
    o.add_argument("--samplers", type=_specs, help="comma-separated sampler specs, e.g. "
                   "'em,heun,unipc3:ref_var=0.01,grid=quadratic,eps=0.1' (a spec's options continue it)")
    o.add_argument("--nfe", type=_ints, dest="nfes", help="comma-separated NFE budgets")
    o.add_argument("--n", type=int, help="samples per run")
    o.add_argument("--seeds", type=int, help="independent runs per setting (mean +- sd)")
    o.add_argument("--quiet", action="store_true", help="no progress lines")
    o.set_defaults(func=_run)


def _run(args) -> int:
    import numpy as np

    from ..errors import DataError
    from ..files import writable_dir
    from ..mixture import GaussianMixture
    from ..runs.oracle_bench import nfe_to_match, run_oracle_bench

    mixture = GaussianMixture.from_json(args.mixture) if args.mixture else None
    points = None
    if args.points:
        try:
            points = np.load(args.points, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read --points {args.points}: {e}") from None
    writable_dir(args.out, "--out")
    doc = run_oracle_bench(args.out, mixture=mixture, points=points, quick=args.quick, progress=not args.quiet,
                           sdes=args.sdes, samplers=args.samplers, nfes=args.nfes, n=args.n, seeds=args.seeds)
    try:
        match = nfe_to_match(doc)
        print(f"NFE needed to reach VP + EM at 1000 steps (per-mode W2 {match['target']:.4f}):")
        for (sde, sampler), nfe in sorted(match["nfe"].items()):
            print(f"  {sde:5s} {sampler:11s} {nfe}")
    except ValueError:
        pass
    print(f"wrote {args.out / 'oracle.json'} and {args.out / 'oracle.png'} ({doc['settings']['seconds']} s)")
    return 0


