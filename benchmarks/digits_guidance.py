"""Guidance, Skip-Tuning and few-step samplers on class-conditional digits (VP vs CLD vs HOLD), and the
Wasserstein bound over training on 8 Gaussians.

Digits: configs/digits-cond-{vp,cld,hold}.yaml (the same U-Net, steps, batch, seed and label dropout 0.15;
only the SDE differs) are trained (or resumed) in RUNS/digits-cond-SDE, then, with per-sample seeds
``seed + i`` and balanced labels (sample i has class i mod 10):

* ``cfg``:  accuracy of the samples' class under the HELD-OUT digit classifier
  (``holdsgm.eval.fd_digits.class_accuracy``) and FD-digits vs the classifier-free guidance weight w
  (w = 0 unconditional -- its accuracy is chance, ~0.1 --, w = 1 conditional, w > 1 guided);
* ``nfe``:  FD-digits (and accuracy) vs NFE for every sampler family: em, sscs, euler, heun (PF-ODE), and the
  exponential integrators exp1 / exp2m / exp3m / exp2s, conditional sampling (w = 1);
* ``skip``: the Skip-Tuning sweep (constant and ramp ``bottom:top`` factors) at few NFE;
* ``sega``: semantic guidance on unconditional seeds: the fraction of samples the held-out classifier puts
  in the added class (+c), or still in the removed class (-c, from class-c seeds), for several settings;
  and the figure of the same seeds edited along each direction.

FD-digits is computed on N samples against the 180 held-out test digits; its finite-sample floor (real
held-out-size digits scored the same way, ``reference_floor``) is reported at the same N.

Toy (``w2``): configs/toy-{vp,cld,hold}.yaml trained for a few thousand steps keeping every checkpoint;
for each: sqrt(J) (likelihood-weighted score-matching objective on held-out points, exact J_esm via the
mixture oracle, and the denoising J_dsm) and the measured W2 of samples vs the held-out split
(:mod:`holdsgm.eval.wasserstein_bound`).

    OMP_NUM_THREADS=1 python benchmarks/digits_guidance.py [--quick] [--parts train,cfg,nfe,skip,sega,w2]
        [--runs runs/bench-guidance] [--out benchmarks/results]

--quick: 60-step runs, few samples and settings (a smoke test of the script, numbers meaningless).
Writes OUT/guidance[-quick].{md,json} and OUT/guidance[-quick]-*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from holdsgm.errors import NumericsError
from holdsgm.guidance import parse_guide
from holdsgm.plotting import pyplot, save_figure
from holdsgm.runs import load_config, load_run
from holdsgm.runs import train as train_run
from holdsgm.runs.evaluation import heldout
from holdsgm.runs.guided import edit_figure, edit_grid, guided_generate

REPO = Path(__file__).resolve().parents[1]
SDES = ("vp", "cld", "hold")

FULL = dict(
    n=300, seed=0,
    guide_sampler="exp2m", guide_nfe=20,
    cfg_scales=[0.0, 1.0, 2.0, 4.0, 8.0],
    nfe_samplers=["em", "sscs", "euler", "heun", "exp1", "exp2m", "exp3m", "exp2s"],
    nfes=[10, 20, 40],
    skip_nfe=10, skip_specs=["1", "0.9", "0.8", "1.1", "0.8:1.0", "0.6:1.0"],
    sega_n=150,
    sega_add=["+3:scale=2", "+3:scale=4", "+3:scale=4,threshold=0.9",
              "+3:scale=4,threshold=0.9,warmup=0.2,momentum=0.5"],
    sega_remove=["-8:scale=2", "-8:scale=4,threshold=0.8", "-8:scale=4,threshold=0.8,warmup=0.2,momentum=0.5"],
    fig_guides=["+3:scale=3", "+8:scale=3,threshold=0.8,warmup=0.2,momentum=0.5", "-1:scale=2"],
    fig_k=8, fig_scales=[0.0, 1.0, 2.0, 4.0, 8.0],
    toy_steps=3000, toy_ckpt=250, toy_n=2000, toy_bound_n=1000,
)
QUICK = dict(
    FULL, n=60, steps=60,
    cfg_scales=[0.0, 1.0, 4.0], nfe_samplers=["em", "heun", "exp2m"], nfes=[10],
    skip_specs=["1", "0.8:1.0"], sega_n=30, sega_add=["+3:scale=4,threshold=0.9,warmup=0.2,momentum=0.5"],
    sega_remove=["-8:scale=4"], fig_k=3, fig_scales=[0.0, 4.0],
    toy_steps=60, toy_ckpt=20, toy_n=300, toy_bound_n=200,
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- helpers
class Scorer:
    """FD-digits and held-out-classifier accuracy/predictions, with the floor at the benchmark's N."""

    def __init__(self, test_x: torch.Tensor, n: int):
        from holdsgm.eval import fd_digits as fd
        from holdsgm.eval.classifier import digit_classifier

        self.fd = fd
        self.test_x = test_x
        self.heldout = digit_classifier(variant="heldout")
        fl = fd.reference_floor(n=min(n, 1617), repeats=3, reference=test_x)
        self.floor = {"mean": fl["mean"], "std": fl["std"], "n": fl["n"]}

    def score(self, x, labels=None) -> dict:
        out = {"fd": float(self.fd.fd_digits(x, self.test_x))}
        if labels is not None:
            out["accuracy"] = float(self.fd.class_accuracy(x, labels, classifier=self.heldout))
        return out

    def predict(self, x) -> torch.Tensor:
        return self.heldout.predict(x.clamp(-1, 1)).cpu()


def _gen(run, n, cfg, *, sampler, nfe, seed, labels=None, directions=(), skip=None):
    t0 = time.perf_counter()
    g = guided_generate(run, n, labels=labels, cfg_scale=cfg, directions=directions, skip_scale=skip,
                        sampler=sampler, nfe=nfe, seed=seed, batch_size=n)
    return g, time.perf_counter() - t0


def balanced(n: int) -> torch.Tensor:
    return torch.arange(n) % 10


# --------------------------------------------------------------------------------------------------- parts
def part_train(name, p, runs: Path, steps) -> dict:
    overrides = ["train.tensorboard=false"]
    if steps:
        overrides += [f"train.steps={steps}", f"train.ckpt_every={steps}", f"train.log_every={max(1, steps // 4)}",
                      "train.warmup_steps=10"]
    config = load_config(REPO / "configs" / f"digits-cond-{name}.yaml", overrides)
    run_dir = runs / f"digits-cond-{name}{'-quick' if steps else ''}"
    log(f"[{name}] training {config.train.steps} steps -> {run_dir}")
    res = train_run(config, run_dir, verbose=False)
    return {"run_dir": str(run_dir), "steps": res.step, "batch_size": config.train.batch_size,
            "label_dropout": config.train.label_dropout, "train_seconds": res.total_seconds,
            "seconds_per_step": res.total_seconds / max(res.step, 1), "last_loss": res.last_loss,
            "params": res.n_params}


def part_cfg(name, run, p, scorer, prefix: str) -> list[dict]:
    rows, firsts = [], {}
    labels = balanced(p["n"])
    for w in p["cfg_scales"]:
        try:
            g, sec = _gen(run, p["n"], w, sampler=p["guide_sampler"], nfe=p["guide_nfe"], seed=p["seed"],
                          labels=labels)
        except NumericsError as e:
            rows.append({"scale": w, "diverged": str(e)})
            continue
        row = {"scale": w, "nfe": g.nfe, "seconds": sec, **scorer.score(g.x, labels)}
        rows.append(row)
        firsts[w] = g.x[:10]
        log(f"[{name}] cfg w={w:g}: acc {row['accuracy']:.3f} fd {row['fd']:.2f}")
    scales = [w for w in p["fig_scales"] if w in firsts]
    if scales:
        grid = torch.stack([firsts[w] for w in scales], dim=1)  # (10 classes, scales, 1, 8, 8)
        edit_figure(grid, [f"w = {w:g}" for w in scales], f"{prefix}-cfg-{name}.png",
                    title=f"{name}: classifier-free guidance, {p['guide_sampler']} @ {p['guide_nfe']} NFE "
                    f"(row = class, same seed across w)", row_labels=[f"class {c}" for c in range(10)])
    return rows


def part_nfe(name, run, p, scorer) -> dict:
    out = {}
    labels = balanced(p["n"])
    for sampler in p["nfe_samplers"]:
        cells = []
        for nfe in p["nfes"]:
            try:
                g, sec = _gen(run, p["n"], 1.0, sampler=sampler, nfe=nfe, seed=p["seed"], labels=labels)
                cell = {"nfe": g.nfe, "seconds": sec, **scorer.score(g.x, labels)}
            except (NumericsError, ValueError) as e:
                cell = {"nfe": nfe, "diverged": " ".join(str(e).split())[:160]}
            cells.append(cell)
            shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in cell.items()}
            log(f"[{name}] {sampler}@{nfe}: {shown}")
        out[sampler] = cells
    return out


def part_skip(name, run, p, scorer) -> list[dict]:
    rows = []
    labels = balanced(p["n"])
    for spec in p["skip_specs"]:
        try:
            g, sec = _gen(run, p["n"], 1.0, sampler=p["guide_sampler"], nfe=p["skip_nfe"], seed=p["seed"],
                          labels=labels, skip=spec)
            row = {"skip_scale": spec, "nfe": g.nfe, "seconds": sec, **scorer.score(g.x, labels)}
        except NumericsError as e:
            row = {"skip_scale": spec, "diverged": str(e)}
        rows.append(row)
        log(f"[{name}] skip {spec}: {row}")
    return rows


def part_sega(name, run, p, scorer, prefix: str) -> dict:
    n = p["sega_n"]
    kw = dict(sampler=p["guide_sampler"], nfe=p["guide_nfe"], seed=p["seed"])
    res = {"add": [], "remove": []}
    base_u, _ = _gen(run, n, 1.0, **kw)
    pred = scorer.predict(base_u.x)
    for spec in p["sega_add"]:
        d = parse_guide(spec)
        g, sec = _gen(run, n, 1.0, directions=[d], **kw)
        pe = scorer.predict(g.x)
        res["add"].append({"guide": spec, "base": "unconditional",
                           "p_class_before": float((pred == d.concept).double().mean()),
                           "p_class_after": float((pe == d.concept).double().mean()),
                           "changed": float((pe != pred).double().mean()), "seconds": sec})
        log(f"[{name}] sega {spec}: {res['add'][-1]}")
    for spec in p["sega_remove"]:
        d = parse_guide(spec)
        lab = torch.full((n,), d.concept)
        base_c, _ = _gen(run, n, 1.0, labels=lab, **kw)
        pb = scorer.predict(base_c.x)
        g, sec = _gen(run, n, 1.0, labels=lab, directions=[d], **kw)
        pe = scorer.predict(g.x)
        res["remove"].append({"guide": spec, "base": f"class {d.concept}",
                              "p_class_before": float((pb == d.concept).double().mean()),
                              "p_class_after": float((pe == d.concept).double().mean()), "seconds": sec})
        log(f"[{name}] sega {spec}: {res['remove'][-1]}")
    dirs = [parse_guide(s) for s in p["fig_guides"]]
    grid, titles = edit_grid(run, dirs, k=p["fig_k"], **kw)
    res["figure"] = str(edit_figure(grid, titles, f"{prefix}-sega-{name}.png",
                                    title=f"{name}: semantic guidance, same unconditional seeds edited "
                                    f"({p['guide_sampler']} @ {p['guide_nfe']} NFE)",
                                    row_labels=[f"seed {p['seed'] + i}" for i in range(p["fig_k"])]))
    return res


def part_w2(p, runs: Path, quick: bool, prefix: str) -> list[dict]:
    from holdsgm.eval.wasserstein_bound import over_training_figure
    from holdsgm.runs.wasserstein import evaluate_checkpoints

    results = []
    for name in SDES:
        steps = p["toy_steps"]
        overrides = ["train.tensorboard=false", f"train.steps={steps}", f"train.ckpt_every={p['toy_ckpt']}",
                     f"train.keep_checkpoints={steps // p['toy_ckpt'] + 1}", f"train.log_every={p['toy_ckpt']}"]
        config = load_config(REPO / "configs" / f"toy-{name}.yaml", overrides)
        run_dir = runs / f"toy-{name}{'-quick' if quick else ''}"
        log(f"[w2 {name}] training {steps} steps -> {run_dir}")
        tr = train_run(config, run_dir, verbose=False)
        res = evaluate_checkpoints(run_dir, n=p["toy_n"], bound_n=p["toy_bound_n"], seed=p["seed"], progress=True)
        res["train_seconds"] = tr.total_seconds
        results.append(res)
    over_training_figure(results, f"{prefix}-w2bound.png",
                         title="8 Gaussians: measured W2 and sqrt(likelihood-weighted score-matching loss) "
                         "over training")
    return results


# ------------------------------------------------------------------------------------------------- reports
def _f(v, fmt=".3f"):
    return "-" if v is None else format(v, fmt)


def markdown(results: dict) -> str:
    p = results["params"]
    L = [f"# Guidance on class-conditional digits (VP / CLD / HOLD){' -- QUICK' if results['quick'] else ''}", ""]
    L += [f"Machine: {results['machine']}. Seed {p['seed']} (sample i uses seed {p['seed']} + i). Command: "
          f"`{results['command']}`. Total wall time {results['seconds'] / 60:.1f} min.", ""]
    sd = results["sdes"]
    if any("train" in r for r in sd.values()):
        L += ["## Training (same U-Net, data, steps, batch, seed; label dropout for classifier-free guidance)", "",
              "| SDE | steps | batch | label dropout | params | train time (s) | s/step | final loss |",
              "|---|---|---|---|---|---|---|---|"]
        for name, r in sd.items():
            t = r.get("train")
            if t:
                L.append(f"| {name} | {t['steps']} | {t['batch_size']} | {t['label_dropout']} | {t['params']:,} | "
                         f"{t['train_seconds']:.0f} | {t['seconds_per_step']:.2f} | {_f(t['last_loss'], '.4f')} |")
        L.append("")
    fl = results.get("fd_floor")
    floor = f"{fl['mean']:.2f} +- {fl['std']:.2f} (n={fl['n']})" if fl else "-"
    n = p["n"]
    if any("cfg" in r for r in sd.values()):
        L += [f"## Classifier-free guidance: held-out-classifier accuracy / FD-digits vs w "
              f"({p['guide_sampler']} @ {p['guide_nfe']} NFE, n={n}, balanced classes; FD floor {floor})", "",
              "| w | " + " | ".join(f"{s} acc | {s} FD" for s in sd) + " |",
              "|---|" + "---|---|" * len(sd)]
        for i, w in enumerate(p["cfg_scales"]):
            cells = []
            for r in sd.values():
                row = r.get("cfg", [None] * len(p["cfg_scales"]))[i] or {}
                cells += [_f(row.get("accuracy")), _f(row.get("fd"), ".2f")]
            L.append(f"| {w:g} | " + " | ".join(cells) + " |")
        L += ["", "w = 0 is the unconditional model (accuracy = chance), w = 1 the conditional model.", ""]
    if any("nfe" in r for r in sd.values()):
        L += [f"## FD-digits vs NFE per sampler (conditional, w = 1, n={n}; floor {floor}; accuracy in brackets)", "",
              "| sampler | " + " | ".join(f"{s} @ {k}" for s in sd for k in p["nfes"]) + " |",
              "|---|" + "---|" * (len(sd) * len(p["nfes"]))]
        for sampler in p["nfe_samplers"]:
            cells = []
            for r in sd.values():
                for cell in r.get("nfe", {}).get(sampler, [{}] * len(p["nfes"])):
                    cells.append("diverged" if "diverged" in cell else
                                 f"{_f(cell.get('fd'), '.2f')} ({_f(cell.get('accuracy'), '.2f')})")
            L.append(f"| {sampler} | " + " | ".join(cells) + " |")
        L.append("")
    if any("skip" in r for r in sd.values()):
        L += [f"## Skip-Tuning sweep ({p['guide_sampler']} @ {p['skip_nfe']} NFE, w = 1, n={n}): "
              "FD-digits (accuracy)", "",
              "`a:b` = ramp from a at the lowest-resolution skip to b at the highest; `1` = the trained network.", "",
              "| skip scale | " + " | ".join(sd) + " |", "|---|" + "---|" * len(sd)]
        for i, spec in enumerate(p["skip_specs"]):
            cells = []
            for r in sd.values():
                row = r.get("skip", [{}] * len(p["skip_specs"]))[i]
                cells.append("diverged" if "diverged" in row else
                             f"{_f(row.get('fd'), '.2f')} ({_f(row.get('accuracy'), '.2f')})")
            L.append(f"| {spec} | " + " | ".join(cells) + " |")
        L.append("")
    if any("sega" in r for r in sd.values()):
        L += [f"## Semantic guidance (SEGA-style), n={p['sega_n']}, {p['guide_sampler']} @ {p['guide_nfe']} NFE", "",
              "Fraction of samples the held-out classifier assigns to the concept, before -> after the edit "
              "(add: unconditional seeds; remove: seeds conditioned on that class).", "",
              "| edit | base | " + " | ".join(sd) + " |", "|---|---|" + "---|" * len(sd)]
        first = next(r["sega"] for r in sd.values() if "sega" in r)
        for kind in ("add", "remove"):
            for i, row0 in enumerate(first[kind]):
                cells = []
                for r in sd.values():
                    row = r.get("sega", {}).get(kind, [{}] * len(first[kind]))[i]
                    cells.append(f"{_f(row.get('p_class_before'), '.2f')} -> {_f(row.get('p_class_after'), '.2f')}")
                L.append(f"| `{row0['guide']}` | {row0['base']} | " + " | ".join(cells) + " |")
        L.append("")
    if results.get("w2"):
        L += ["## Wasserstein bound over training (8 Gaussians, MLP; sqrt(J) on held-out points, W2 of samples "
              "vs held-out)", "",
              "J_esm: likelihood-weighted explicit score matching with the exact (oracle) score; J_dsm: the "
              "denoising form (= J_esm + a model-independent constant). J is dimensionless (J/2 bounds a KL in "
              "nats); W2 is in data units.", "",
              "| SDE | step | sqrt(J_esm) | sqrt(J_dsm) | W2 | W2 / sqrt(J_esm) | W2 floor |",
              "|---|---|---|---|---|---|---|"]
        for res in results["w2"]:
            for r in res["rows"]:
                L.append(f"| {res['sde']} | {r['step']} | {_f(r.get('sqrt_J_esm'))} | {_f(r.get('sqrt_J_dsm'))} | "
                         f"{_f(r.get('w2'))} | {_f(r.get('w2_over_sqrt_J'))} | {_f(res.get('w2_floor'))} |")
        L.append("")
    L += ["Figures: " + ", ".join(f"`{Path(f).name}`" for f in results.get("figures", [])), ""]
    return "\n".join(L)


def plots(results: dict, figs_prefix: Path) -> list[str]:
    plt = pyplot()
    out = []
    p, sd = results["params"], results["sdes"]
    fl = results.get("fd_floor")
    if any("nfe" in r for r in sd.values()):
        fig, axes = plt.subplots(1, len(sd), figsize=(4.3 * len(sd), 3.6), squeeze=False, sharey=True)
        for ax, (name, r) in zip(axes[0], sd.items(), strict=False):
            for sampler, cells in r.get("nfe", {}).items():
                pts = [(c["nfe"], c["fd"]) for c in cells if "fd" in c]
                if pts:
                    ax.plot([a for a, _ in pts], [b for _, b in pts], "o-", label=sampler, lw=1.2, ms=4)
            if fl:
                ax.axhline(fl["mean"], color="k", ls=":", lw=1, label="floor (real digits)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("NFE")
            ax.set_title(name)
        axes[0, 0].set_ylabel(f"FD-digits (n={p['n']})")
        axes[0, -1].legend(fontsize=7)
        fig.tight_layout()
        path = Path(f"{figs_prefix}-nfe.png")
        save_figure(fig, path, tight=False)
        out.append(str(path))
    if any("cfg" in r for r in sd.values()):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for name, r in sd.items():
            rows = [row for row in r.get("cfg", []) if "fd" in row]
            axes[0].plot([x["scale"] for x in rows], [x["accuracy"] for x in rows], "o-", label=name)
            axes[1].plot([x["scale"] for x in rows], [x["fd"] for x in rows], "o-", label=name)
        axes[0].set_xlabel("guidance weight w")
        axes[0].set_ylabel("held-out classifier accuracy")
        axes[1].set_xlabel("guidance weight w")
        axes[1].set_ylabel(f"FD-digits (n={p['n']})")
        if fl:
            axes[1].axhline(fl["mean"], color="k", ls=":", lw=1, label="floor")
        axes[0].legend()
        axes[1].legend()
        fig.suptitle(f"classifier-free guidance ({p['guide_sampler']} @ {p['guide_nfe']} NFE)", fontsize=10)
        fig.tight_layout()
        path = Path(f"{figs_prefix}-cfg.png")
        save_figure(fig, path, tight=False)
        out.append(str(path))
    return out


# ---------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="train,cfg,nfe,skip,sega,w2",
                    help="comma-separated subset of train,cfg,nfe,skip,sega,w2")
    ap.add_argument("--sdes", default=",".join(SDES))
    ap.add_argument("--runs", default=str(REPO / "runs" / "bench-guidance"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--n", type=int, default=None, help="samples per setting (default 300; 60 with --quick)")
    ap.add_argument("--nfes", default=None, help="comma-separated NFE values of the sampler sweep (default 10,20,40)")
    ap.add_argument("--samplers", default=None, help="comma-separated samplers of the NFE sweep")
    ap.add_argument("--cfg-scales", default=None, help="comma-separated classifier-free guidance scales")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    bad = parts - {"train", "cfg", "nfe", "skip", "sega", "w2"}
    if bad:
        ap.error(f"unknown parts {sorted(bad)}")
    p = dict(QUICK if args.quick else FULL)
    if args.n is not None:
        p["n"], p["sega_n"] = args.n, max(1, args.n // 2)
    if args.nfes:
        p["nfes"] = [int(v) for v in args.nfes.split(",")]
    if args.samplers:
        p["nfe_samplers"] = args.samplers.split(",")
    if args.cfg_scales:
        p["cfg_scales"] = [float(v) for v in args.cfg_scales.split(",")]
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    tag = "guidance" + ("-quick" if args.quick else "")
    figs = out / tag  # prefix: OUT/guidance-<figure>.png
    t_start = time.perf_counter()
    results = {
        "quick": args.quick, "params": p,
        "command": "OMP_NUM_THREADS=1 python benchmarks/digits_guidance.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
                   f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
                   f"Python {platform.python_version()}",
        "sdes": {}, "figures": [],
    }
    fig_dir = out
    scorer = None
    for name in args.sdes.split(","):
        r: dict = {}
        results["sdes"][name] = r
        if parts & {"train", "cfg", "nfe", "skip", "sega"}:
            r["train"] = part_train(name, p, runs, p.get("steps"))
        if not parts & {"cfg", "nfe", "skip", "sega"}:
            continue
        run = load_run(r["train"]["run_dir"])
        if scorer is None:
            scorer = Scorer(heldout(run, "test").x, p["n"])
            results["fd_floor"] = scorer.floor
        if "cfg" in parts:
            r["cfg"] = part_cfg(name, run, p, scorer, str(figs))
        if "nfe" in parts:
            r["nfe"] = part_nfe(name, run, p, scorer)
        if "skip" in parts:
            r["skip"] = part_skip(name, run, p, scorer)
        if "sega" in parts:
            r["sega"] = part_sega(name, run, p, scorer, str(figs))
        _save(results, out, tag, t_start)  # partial results survive an interruption
    if "w2" in parts:
        results["w2"] = part_w2(p, runs, args.quick, str(figs))
    results["figures"] = sorted(str(f) for f in fig_dir.glob(f"{tag}-*.png"))
    results["figures"] = sorted(set(results["figures"]) | set(plots(results, figs)))
    _save(results, out, tag, t_start)
    print(markdown(results))
    return 0


def _save(results, out: Path, tag: str, t_start: float) -> None:
    results["seconds"] = time.perf_counter() - t_start
    (out / f"{tag}.json").write_text(json.dumps(results, indent=1, default=lambda v: None) + "\n")
    (out / f"{tag}.md").write_text(markdown(results) + "\n")


if __name__ == "__main__":
    sys.exit(main())
