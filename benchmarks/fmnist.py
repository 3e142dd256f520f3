"""VP vs CLD vs HOLD on Fashion-MNIST at equal budget (issue 19): the presets fmnist-{vp,cld,hold} (same U-Net,
data, steps, batch and seed; only the SDE differs), scored with the standard FID and KID.

For each SDE: train (or resume; a finished run is only loaded) ``RUNS/fmnist-SDE``, then

* FID and KID (Inception features, :mod:`holdsgm.eval.fid`) of N samples (seeds 0..N-1) at NFE 10, 20, 50
  and 100 with each SDE's measured best sampler (``auto``: :data:`holdsgm.samplers.DEFAULTS`; ``--samplers``
  adds others), against the 10 000 test images (features cached); the same N for every row;
* the floor: N training images scored the same way (what a perfect model would get at this N);
* bits/dim of the first ``--bpd-n`` test images (probability-flow ODE, Hutchinson trace, uniform
  dequantisation; for CLD/HOLD the auxiliary-variable bound with the run's eval.aux_draws draws);
* training time, sampling time per image, a grid of the first 100 samples at NFE 50.

    holdsgm train fmnist-hold --out runs/fmnist-hold      # ~45 min each on 2 cores (or let this script train)
    OMP_NUM_THREADS=2 python benchmarks/fmnist.py --runs runs [--n 1000]

``--cond``: the class-conditional presets fmnist-cond-SDE (runs ``RUNS/fmnist-cond-SDE``), sample i of class
i mod 10, with each classifier-free guidance weight of ``--cfg`` (w = 0: the unconditional model, 1: the
conditional one, > 1: guided; Ho & Salimans 2022), plus the accuracy of a classifier trained on the real
training images (:func:`holdsgm.eval.classifier.image_classifier`) on the samples.

Results: ``--out``/fmnist.{json,md,png} and fmnist-samples-SDE.png. ``--quick``: 30 training steps, 40
samples, NFE 10, 100 reference images (a smoke test of the script; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import REPO, budget, commit, machine  # noqa: E402

from holdsgm.errors import NumericsError  # noqa: E402
from holdsgm.eval import fid  # noqa: E402
from holdsgm.eval.classifier import image_classifier  # noqa: E402
from holdsgm.plotting import pyplot, save_figure  # noqa: E402
from holdsgm.runs import generate, load_config, load_run  # noqa: E402
from holdsgm.runs import train as train_run  # noqa: E402
from holdsgm.runs.evaluation import heldout, likelihood  # noqa: E402
from holdsgm.runs.figures import image_grid_figure  # noqa: E402
from holdsgm.runs.guided import guided_generate  # noqa: E402
from holdsgm.samplers.api import default_sampler  # noqa: E402

SDES = ("vp", "cld", "hold")
REF = "fashion-mnist-test"
GRID_NFE = 50


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=str(REPO / "runs"), help="folder of the runs fmnist-SDE")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--tag", default=None, help="result file names (default fmnist, fmnist-quick)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sdes", default=",".join(SDES))
    p.add_argument("--n", type=int, default=None, help="samples per row (default 1000; 40 with --quick)")
    p.add_argument("--ref-n", type=int, default=None, help="reference test images (default all 10 000)")
    p.add_argument("--nfes", default=None, help="comma-separated NFE (default 10,20,50,100)")
    p.add_argument("--samplers", default="auto", help="comma-separated sampler specs; auto = the SDE's measured "
                   "best at each NFE")
    p.add_argument("--cond", action="store_true", help="the class-conditional presets fmnist-cond-SDE")
    p.add_argument("--cfg", default="1", help="with --cond: comma-separated classifier-free guidance weights")
    p.add_argument("--bpd-n", type=int, default=None, help="test images for bits/dim (default 100; 0 skips)")
    p.add_argument("--batch-size", type=int, default=500, help="samples per sampler batch")
    p.add_argument("--fid-curve", action="store_true",
                   help="also FID at N/10, N/5, N/2 (means over disjoint subsets) and its extrapolation to "
                        "N = infinity (holdsgm.eval.fid.fid_curve), for every cell and the floor")
    p.add_argument("--resume", action="store_true",
                   help="keep the SDE rows of an earlier --out/TAG.json measured with the same N, NFE and samplers "
                        "(an interrupted benchmark goes on with the next SDE)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every SDE's run (e.g. train.steps=800); the same for all, so the "
                   "budget stays equal")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or ("fmnist-quick" if args.quick else "fmnist")
    n = args.n or (40 if args.quick else 1000)
    ref_n = args.ref_n or (100 if args.quick else None)
    nfes = [int(v) for v in args.nfes.split(",")] if args.nfes else [10] if args.quick else [10, 20, 50, 100]
    bpd_n = args.bpd_n if args.bpd_n is not None else (8 if args.quick else 100)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    if args.cond:  # a table row per (sampler, guidance weight)
        samplers = [f"{s} w={float(w):g}" for s in samplers for w in args.cfg.split(",") if w.strip()]

    fid.inception_path()  # fail now if the network is missing
    print(f"reference: {REF} ({ref_n or 'all'} images)", file=sys.stderr)
    ref = fid.features_of(REF, n=ref_n, progress=True)
    train_feats = fid.features_of("fashion-mnist", n=n, seed=0, progress=True)
    floor = fid.scores(train_feats.feats, ref.feats)
    if args.fid_curve:
        floor["curve"] = fid.fid_curve(train_feats.feats, ref.feats)
    print(f"floor (training images, N = {n}): FID {floor['fid']:.2f}", file=sys.stderr)
    result = {
        "issue": 19, "quick": args.quick, "n": n, "n_ref": len(ref.feats), "reference": REF, "nfes": nfes,
        "samplers": samplers, "cond": args.cond, "bpd_n": bpd_n, "floor": floor, "commit": commit(),
        "machine": machine(),
        "seed": "sample i uses seed i; the floor's training images: a random subset drawn with seed 0",
        "command": "python benchmarks/fmnist.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "sdes": {},
    }
    earlier = _earlier(out / f"{tag}.json", result) if args.resume else {}
    for name in [s.strip() for s in args.sdes.split(",") if s.strip()]:
        if name in earlier:
            print(f"[{name}] kept from {out / f'{tag}.json'}", file=sys.stderr)
            result["sdes"][name] = earlier[name]
            continue
        result["sdes"][name] = _one_sde(name, args, n, nfes, samplers, bpd_n, ref.feats, out, tag)
        _write(result, out, tag)  # after each SDE: an interrupted benchmark keeps what it measured
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    _write(result, out, tag)
    _plot(result, out / f"{tag}.png")
    print(_markdown(result))
    return 0


def _one_sde(name, args, n, nfes, samplers, bpd_n, ref_feats, out: Path, tag: str) -> dict:
    overrides = ["train.tensorboard=false", *args.set]
    if args.quick:
        overrides += ["train.steps=30", "train.warmup_steps=5", "train.ckpt_every=30", "train.log_every=10"]
    preset = f"fmnist-cond-{name}" if args.cond else f"fmnist-{name}"
    config = load_config(preset, overrides)
    run_dir = Path(args.runs) / (preset.replace("fmnist-", "fmnist-quick-") if args.quick else preset)
    print(f"[{name}] training {config.train.steps} steps -> {run_dir} (resumes; nothing if finished)",
          file=sys.stderr)
    train_run(config, run_dir, verbose=False)
    run = load_run(run_dir)
    row: dict = {"run": str(run_dir), **budget(run), "params": sum(p.numel() for p in run.net.parameters()),
                 "cells": {}}
    labels = torch.arange(n) % run.dataset_info.n_classes if args.cond else None
    clf = image_classifier("fashion-mnist") if args.cond else None  # loaded (or trained) once, not per cell
    for variant in samplers:
        sampler, _, w = variant.partition(" w=")
        for nfe in nfes:
            spec = default_sampler(run.sde, nfe) if sampler == "auto" else sampler
            key = f"{variant}@{nfe}"
            try:
                if labels is None:
                    gen = generate(run, n, sampler=spec, nfe=nfe, seed=0, batch_size=args.batch_size, progress=True)
                else:
                    gen = guided_generate(run, n, labels=labels, cfg_scale=float(w), sampler=spec, nfe=nfe, seed=0,
                                          batch_size=args.batch_size, progress=True)
            except NumericsError as e:
                row["cells"][key] = {"spec": spec, "nfe": nfe, "diverged": " ".join(str(e).split())[:200]}
                print(f"[{name}] {key} ({spec}): diverged", file=sys.stderr)
                continue
            feats = fid.inception_features(gen.x, progress=True, desc=f"inception {name} {key}")
            cell = {"spec": gen.plan.get("spec", spec), "nfe": gen.nfe, **fid.scores(feats, ref_feats),
                    "seconds_per_image": gen.seconds / n}
            if args.fid_curve:  # the features too (beside the run), to score them again without sampling
                fid.save_features(run_dir / f"fid-features-{key.replace(' ', '-')}-n{n}.npz", feats, key)
                cell["curve"] = fid.fid_curve(feats, ref_feats)
                print(f"[{name}] {key}: FID at N = {cell['curve']['sizes']}: "
                      f"{', '.join(f'{v:.2f}' for v in cell['curve']['fid'])}; N = inf {cell['curve']['fid_inf']:.2f}",
                      file=sys.stderr)
            if labels is not None and clf is not None:
                cell["class_accuracy"] = float((clf.predict(gen.x) == labels).double().mean())
                cell["classifier_test_accuracy"] = clf.test_accuracy
            row["cells"][key] = cell
            acc = f", class accuracy {cell['class_accuracy']:.3f}" if "class_accuracy" in cell else ""
            print(f"[{name}] {key} ({cell['spec']}): FID {cell['fid']:.2f} KID {cell['kid'] * 1e3:.2f}e-3 "
                  f"({cell['seconds_per_image'] * 1e3:.1f} ms/image{acc})", file=sys.stderr)
            if nfe == GRID_NFE or (nfe == nfes[-1] and GRID_NFE not in nfes):
                grid = out / f"{tag}-samples-{name}.png"
                image_grid_figure(gen.x[:100], grid, (-1.0, 1.0),
                                  title=f"{name.upper()} on Fashion-MNIST, {cell['spec']} @ {gen.nfe} NFE")
                row.setdefault("grid", str(grid.relative_to(REPO) if grid.is_relative_to(REPO) else grid))
    if bpd_n > 0:
        test = heldout(run, "test")
        ec = run.config.eval
        print(f"[{name}] bits/dim of {bpd_n} test images", file=sys.stderr)
        lik = likelihood(run, test, n=min(bpd_n, len(test)), divergence="hutchinson", method=ec.method,
                         rtol=ec.rtol, atol=ec.atol, aux_draws=ec.aux_draws, aux_estimator=ec.aux_estimator,
                         progress=True)
        row["likelihood"] = {k: lik.get(k) for k in ("bits_per_dim", "bits_per_dim_sem", "nfe", "seconds", "n",
                                                     "estimator", "rtol", "atol", "dequantization")}
    return row


def _earlier(path: Path, result: dict) -> dict:
    """The SDE rows of an earlier result file measured the same way (N, reference, NFE, samplers, bits/dim N)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    same = all(old.get(k) == result[k] for k in ("n", "n_ref", "nfes", "samplers", "bpd_n", "quick", "cond"))
    if not same:
        print(f"note: {path} was measured otherwise (N, NFE, samplers): not resumed", file=sys.stderr)
    return dict(old.get("sdes", {})) if same else {}


def _write(result: dict, out: Path, tag: str) -> None:
    (out / f"{tag}.json").write_text(json.dumps(result, indent=1, default=lambda v: None) + "\n")
    (out / f"{tag}.md").write_text(_markdown(result))


def _f(v, fmt=".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _markdown(res: dict) -> str:
    nfes, fl = res["nfes"], res["floor"]
    lines = [
        f"# Fashion-MNIST: VP vs CLD vs HOLD at equal budget{' (quick smoke test)' if res['quick'] else ''}"
        + (", class-conditional (sample i of class i mod 10; w: classifier-free guidance weight)"
           if res.get("cond") else ""),
        "",
        f"FID / KID x 10^3 of N = {res['n']} samples against {res['n_ref']} test images (standard Inception "
        f"features; FID at N = {res['n']} is biased upwards: compare rows only at this N). Floor: N = {res['n']} "
        f"training images scored the same way: FID {_f(fl['fid'])}, KID x 10^3 {_f(fl['kid'] * 1e3)}. "
        f"{res['machine']}; commit {res['commit']}; {res['seed']}. Command: `{res['command']}`.",
        "",
        "| SDE | sampler | " + " | ".join(f"NFE {k}: FID (KID)" for k in nfes)
        + " | bits/dim | training | ms/image @ NFE 50 |",
        "|---|---|" + "---|" * len(nfes) + "---|---|---|",
    ]
    for name, r in res["sdes"].items():
        lik = r.get("likelihood") or {}
        bpd = f"{_f(lik.get('bits_per_dim'), '.3f')} ± {_f(lik.get('bits_per_dim_sem'), '.3f')}" if lik else "-"
        for s in res["samplers"]:
            cells, specs = [], []
            for nfe in nfes:
                c = r["cells"].get(f"{s}@{nfe}", {})
                if "diverged" in c:
                    cells.append("diverged")
                else:
                    acc = f", acc. {c['class_accuracy']:.2f}" if "class_accuracy" in c else ""
                    cells.append(f"{_f(c.get('fid'), '.1f')} ({_f(c['kid'] * 1e3 if 'kid' in c else None)}{acc})")
                if c.get("spec") and c["spec"] not in specs:
                    specs.append(c["spec"])
            ms = r["cells"].get(f"{s}@50", {}).get("seconds_per_image")
            ms_txt = _f(ms * 1e3 if ms else None, ".1f")
            lines.append(f"| {name} | {s}: {', '.join(specs)} | " + " | ".join(cells)
                         + f" | {bpd} | {r['steps']} steps, {r['minutes']} min | {ms_txt} |")
    lines += ["", "Best FID at each NFE: " + "; ".join(_winner(res, nfe) for nfe in nfes) + "."]
    curves = [("floor (training images)", fl["curve"])] if "curve" in fl else []
    curves += [(f"{name} {key}", c["curve"]) for name, r in res["sdes"].items() for key, c in r["cells"].items()
               if "curve" in c]
    if curves:
        sizes = curves[0][1]["sizes"]
        lines += ["", "FID against the number of samples (mean ± sd over disjoint subsets) and its extrapolation "
                  "to N = infinity (intercept of FID against 1/N; Chong & Forsyth 2020):", "",
                  "| set | " + " | ".join(f"N = {m}" for m in sizes) + " | N = inf |",
                  "|---|" + "---|" * (len(sizes) + 1)]
        for label, c in curves:
            cells = [f"{v:.2f}" + (f" ± {sd:.2f}" if sd is not None else "") for v, sd in zip(c["fid"], c["fid_sd"])]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {c['fid_inf']:.2f} |")
    return "\n".join(lines) + "\n"


def _winner(res: dict, nfe: int) -> str:
    best = [(c["fid"], name, s) for name, r in res["sdes"].items() for s in res["samplers"]
            if "fid" in (c := r["cells"].get(f"{s}@{nfe}", {}))]
    if not best:
        return f"NFE {nfe}: -"
    fid_, name, s = min(best)
    return f"NFE {nfe}: {name.upper()} ({fid_:.1f})"


def _plot(res: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for i, (name, r) in enumerate(res["sdes"].items()):
        for s, ls in zip(res["samplers"], ("-", ":", "--", "-.")):
            pts = [(c["nfe"], c["fid"]) for nfe in res["nfes"] if "fid" in (c := r["cells"].get(f"{s}@{nfe}", {}))]
            if pts:
                ax.plot(*zip(*pts), ls, marker="o", ms=3, color=f"C{i}", label=f"{name} {s}")
    ax.axhline(res["floor"]["fid"], color="k", ls="--", lw=0.8, label=f"training images (N = {res['n']})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("NFE")
    ax.set_ylabel(f"FID (N = {res['n']})")
    ax.set_title("Fashion-MNIST, equal budget")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, tight=False)


if __name__ == "__main__":
    sys.exit(main())
