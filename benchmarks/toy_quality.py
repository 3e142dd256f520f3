"""VP vs CLD vs HOLD on 2-D toy data with the same network, steps and seed (configs/toy-{vp,cld,hold}.yaml).

For each SDE: train (or resume) a run, then
* NLL of held-out points through the probability-flow ODE (exact divergence) vs their true NLL and the data's
  entropy (8 Gaussians has a closed-form density);
* W2, per-mode W2 and mode-weight TV vs NFE for the samplers em / sscs / heun / pc / exp2m and each SDE's
  tuned few-step sampler (SPECS), for the trained network and,
  as a reference that isolates discretisation error, the exact mixture score ("oracle");
* seconds per training step and per sample.

    OMP_NUM_THREADS=2 python benchmarks/toy_quality.py [--quick] [--out DIR] [--runs runs/bench-toy]

Full: the presets' 8000 steps, 2000 samples, NFE 10..200. --quick: 400 steps, 500 samples, NFE 20/50 (a smoke
of the script; its numbers say little about the SDEs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from holdsgm.errors import NumericsError
from holdsgm.eval.metrics import metric_floor
from holdsgm.plotting import pyplot, save_figure
from holdsgm.runs import load_config, load_run
from holdsgm.runs import train as train_run
from holdsgm.runs.evaluation import heldout, likelihood, sample_metrics
from holdsgm.samplers import sample
from holdsgm.sde import MixtureOracle

REPO = Path(__file__).resolve().parents[1]
SDES = ("vp", "cld", "hold")
SAMPLERS = ("em", "sscs", "heun", "pc", "exp2m", "tuned")
#: the sampler specs behind the names above, per SDE: "tuned" is each SDE's best few-step sampler on the
#: oracle benchmark (benchmarks/README.md, issue #7); "exp2m" the second-order exponential integrator
SPECS = {
    "exp2m": dict.fromkeys(SDES, "exp2m:grid=quadratic"),
    "tuned": {"vp": "exp2m:form=eps,grid=quadratic", "cld": "unipc3:ref_var=0.01,grid=quadratic,eps=0.1",
              "hold": "unipc3:ref_var=0.01,grid=quadratic,eps=0.1"},
}


def sampler_spec(sampler: str, sde: str) -> str:
    return SPECS[sampler][sde] if sampler in SPECS else sampler


def _metrics(score_fn, sde, test, mixture, n, sampler, nfe, seed=0) -> dict:
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            out = sample(score_fn, sde, (n, test.x.shape[1]), sampler=sampler, nfe=nfe, noise=seed)
    except NumericsError:
        return {"diverged": True, "w2": math.inf, "mode_w2": math.inf, "mode_tv": 1.0, "nfe": nfe}
    except ValueError as e:  # NFE too small for this sampler
        return {"skipped": str(e), "nfe": nfe}
    secs = time.perf_counter() - t0
    m = sample_metrics(out.x, test.x, mixture)
    return {
        "nfe": out.nfe,
        "w2": m["w2"],
        "mmd": m["mmd"],
        "mode_w2": m.get("mode_w2"),
        "mode_tv": m.get("mode_tv"),
        "seconds_per_sample": secs / n,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument(
        "--runs", default=str(REPO / "runs" / "bench-toy"), help="where the training runs live (resumed)"
    )
    p.add_argument(
        "--data", default="8gaussians", help="toy data set (per-mode metrics need a known density)"
    )
    p.add_argument(
        "--steps", type=int, default=None, help="training steps (default: the presets', 400 with --quick)"
    )
    p.add_argument("--no-oracle", action="store_true", help="skip the exact-score reference")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps or (400 if args.quick else None)
    n = 500 if args.quick else 2000
    nll_n = 100 if args.quick else 500
    nfes = (20, 50) if args.quick else (10, 20, 50, 100, 200)
    samplers = SAMPLERS
    tag = f"toy-{args.data}" + ("-quick" if args.quick else "")

    results = {
        "data": args.data,
        "quick": args.quick,
        "n_samples": n,
        "nll_n": nll_n,
        "threads": torch.get_num_threads(),
        "sdes": {},
    }
    for name in SDES:
        overrides = ["train.tensorboard=false", f"data.name={args.data}"] + (
            [f"train.steps={steps}"] if steps else []
        )
        if steps:
            overrides += [f"train.ckpt_every={steps}", f"train.log_every={max(1, steps // 10)}"]
        config = load_config(REPO / "configs" / f"toy-{name}.yaml", overrides)
        run_dir = Path(args.runs) / f"{tag}-{name}"
        print(f"[{name}] training {config.train.steps} steps -> {run_dir}", file=sys.stderr)
        res = train_run(config, run_dir, verbose=False)
        run = load_run(run_dir)
        test = heldout(run)
        mixture = run.dataset_info.mixture
        row = {
            "steps": res.step,
            "seconds_per_step": res.total_seconds / max(res.step, 1),
            "params": sum(p.numel() for p in run.net.parameters()),
        }
        print(f"[{name}] likelihood of {nll_n} held-out points", file=sys.stderr)
        row["likelihood"] = likelihood(
            run, test, n=min(nll_n, len(test)), divergence="exact", rtol=1e-5, atol=1e-5
        )
        score = run.eps_model.with_condition(None)
        oracle = MixtureOracle(run.sde, mixture) if (mixture is not None and not args.no_oracle) else None
        row["samplers"] = {}
        for sampler in samplers:
            for nfe in nfes:
                key = f"{sampler}@{nfe}"
                spec = sampler_spec(sampler, name)
                row["samplers"][key] = {"spec": spec,
                                        "model": _metrics(score, run.sde, test, mixture, n, spec, nfe)}
                if oracle is not None:
                    row["samplers"][key]["oracle"] = _metrics(oracle, run.sde, test, mixture, n, spec, nfe)
                print(f"[{name}] {key}: {row['samplers'][key]['model']}", file=sys.stderr)
        results["sdes"][name] = row
    if mixture is not None:
        fl = metric_floor(mixture, n, repeats=4)
        results["floor"] = {k: v[0] for k, v in fl.items()}
        results["true_entropy"] = mixture.entropy()

    _print_tables(results, samplers, nfes)
    path = out / f"{tag}.json"
    path.write_text(json.dumps(results, indent=2, default=lambda v: None) + "\n")
    _plot(results, samplers, nfes, out / f"{tag}.png")
    print(f"\nwrote {path} and {out / f'{tag}.png'}")
    return 0


def _f(v, fmt=".3f"):
    if v is None:
        return "-"
    return "inf" if isinstance(v, float) and math.isinf(v) else format(v, fmt)


def _print_tables(results, samplers, nfes) -> None:
    print(
        f"\n### {results['data']}: likelihood and cost (n={results['n_samples']} samples, threads "
        f"{results['threads']})\n"
    )
    print("| SDE | steps | s/step | NLL (nats) | true NLL of same points | NLL NFE | s/sample (sscs@50) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["sdes"].items():
        lik = r["likelihood"]
        sp = r["samplers"].get("sscs@50", {}).get("model", {}).get("seconds_per_sample")
        print(
            f"| {name} | {r['steps']} | {_f(r['seconds_per_step'], '.4f')} | "
            f"{_f(lik['nll'])} +- {_f(lik['nll_sem'])} "
            f"| {_f(lik.get('true_nll'))} | {lik['nfe']} | {_f(sp, '.2e')} |"
        )
    if "true_entropy" in results:
        print(
            f"\ntrue entropy {results['true_entropy']:.3f} nats; floor of exact samples: W2 "
            f"{results['floor']['w2']:.3f}, per-mode W2 {results['floor']['mode_w2']:.3f}"
        )
    print("\n### per-mode W2 (W2) vs NFE, trained model [oracle score]\n")
    print("tuned: " + ", ".join(f"{k} `{v}`" for k, v in SPECS["tuned"].items()) + "\n")
    print("| SDE | sampler | " + " | ".join(f"NFE {k}" for k in nfes) + " |")
    print("|---|---|" + "---|" * len(nfes))
    for name, r in results["sdes"].items():
        for s in samplers:
            cells = []
            for nfe in nfes:
                c = r["samplers"][f"{s}@{nfe}"]
                m, o = c["model"], c.get("oracle")
                if "skipped" in m:
                    cells.append("n/a")
                    continue
                cell = f"{_f(m['mode_w2'])} ({_f(m['w2'])})"
                if o is not None and "skipped" not in o:
                    cell += f" [{_f(o['mode_w2'])}]"
                cells.append(cell)
            print(f"| {name} | {s} | " + " | ".join(cells) + " |")


def _plot(results, samplers, nfes, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(samplers), figsize=(3.6 * len(samplers), 3.4), sharey=True)
    for ax, s in zip(axes, samplers):
        for i, (name, r) in enumerate(results["sdes"].items()):
            for kind, ls in (("model", "-"), ("oracle", ":")):
                xs, ys = [], []
                for nfe in nfes:
                    c = r["samplers"][f"{s}@{nfe}"].get(kind)
                    if c and c.get("mode_w2") is not None and math.isfinite(c["mode_w2"]):
                        xs.append(c["nfe"])
                        ys.append(c["mode_w2"])
                if xs:
                    ax.plot(xs, ys, ls, marker="o", ms=3, color=f"C{i}", label=f"{name} ({kind})")
        if "floor" in results:
            ax.axhline(results["floor"]["mode_w2"], color="k", lw=0.8, ls="--", label="floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_title(s)
    axes[0].set_ylabel("per-mode W2")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{results['data']}: VP vs CLD vs HOLD (same network, steps, seed)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, tight=False)


if __name__ == "__main__":
    sys.exit(main())
