"""VP vs CLD vs HOLD on scikit-learn's 8x8 digits with the same U-Net, steps and seed
(configs/digits-{vp,cld,hold}.yaml).

For each SDE: train (or resume) a run, then bits/dim of the held-out split (probability-flow ODE, Hutchinson
trace, uniform dequantisation; offset log2(16/2) = 3 bits for the 17-level digits), FD-digits vs NFE for the
em and sscs samplers when ``holdsgm.eval.fd_digits`` is available (with its floor: real held-out-size digits
scored the same way), seconds per training step and per sample.

    OMP_NUM_THREADS=2 python benchmarks/digits.py [--quick] [--out DIR] [--runs runs/bench-digits]

Full: the presets' 3000 steps, 1000 samples, NFE 20/50/100/200 -> results/digits.{json,png}. Another budget
(``--steps N``) writes results/digits-Nsteps.*. --quick: 150 steps, 200 samples, NFE 50 (a smoke test of the
script only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from holdsgm.errors import NumericsError
from holdsgm.plotting import pyplot, save_figure
from holdsgm.runs import generate, load_config, load_run
from holdsgm.runs import train as train_run
from holdsgm.runs.evaluation import _fd_module, heldout, likelihood

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_quality import sampler_spec  # noqa: E402  (the per-SDE sampler specs shared by the benchmarks)

REPO = Path(__file__).resolve().parents[1]
SDES = ("vp", "cld", "hold")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--runs", default=str(REPO / "runs" / "bench-digits"))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--no-fd", action="store_true", help="skip FD-digits")
    p.add_argument("--n", type=int, default=None, help="samples per setting (default 1000, 200 with --quick)")
    p.add_argument("--nfes", default=None, help="comma-separated NFE values (default 20,50,100,200)")
    p.add_argument("--samplers", default=None,
                   help="comma-separated sampler names of benchmarks/toy_quality.py's SPECS or plain samplers "
                        "(default em,sscs)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps or (150 if args.quick else None)
    n = args.n or (200 if args.quick else 1000)
    nll_n = 40 if args.quick else 180
    nfes = tuple(int(v) for v in args.nfes.split(",")) if args.nfes else (50,) if args.quick else (20, 50, 100, 200)
    samplers = tuple(args.samplers.split(",")) if args.samplers else ("sscs",) if args.quick else ("em", "sscs")
    fd = None if args.no_fd else _fd_module()
    tag = "digits" + ("-quick" if args.quick else "")
    results = {
        "quick": args.quick,
        "n_samples": n,
        "nll_n": nll_n,
        "threads": torch.get_num_threads(),
        "fd_available": fd is not None,
        "sdes": {},
    }
    results["fd_floor"] = None  # filled once the held-out split is known
    for name in SDES:
        overrides = ["train.tensorboard=false"] + ([f"train.steps={steps}"] if steps else [])
        if steps:
            overrides += [f"train.ckpt_every={steps}", f"train.log_every={max(1, steps // 10)}"]
        config = load_config(REPO / "configs" / f"digits-{name}.yaml", overrides)
        run_dir = Path(args.runs) / f"{tag}-{name}"
        print(f"[{name}] training {config.train.steps} steps -> {run_dir}", file=sys.stderr)
        res = train_run(config, run_dir, verbose=False)
        run = load_run(run_dir)
        test = heldout(run)
        row = {
            "steps": res.step,
            "seconds_per_step": res.total_seconds / max(res.step, 1),
            "params": sum(p.numel() for p in run.net.parameters()),
        }
        print(f"[{name}] bits/dim of {nll_n} held-out digits", file=sys.stderr)
        row["likelihood"] = likelihood(
            run, test, n=min(nll_n, len(test)), divergence="hutchinson", rtol=1e-4, atol=1e-4
        )
        row["samplers"] = {}
        for sampler in samplers:
            for nfe in nfes:
                key = f"{sampler}@{nfe}"
                spec = sampler_spec(sampler, name)
                try:
                    gen = generate(run, n, sampler=spec, nfe=nfe, batch_size=n)
                except NumericsError as e:
                    row["samplers"][key] = {"diverged": str(e)}
                    continue
                cell = {"spec": spec, "nfe": gen.nfe, "seconds_per_sample": gen.seconds / n}
                if fd is not None:
                    cell["fd_digits"] = float(fd.fd_digits(gen.x, test.x))
                row["samplers"][key] = cell
                print(f"[{name}] {key}: {cell}", file=sys.stderr)
        if fd is not None and results.get("fd_floor") is None and hasattr(fd, "reference_floor"):
            fl = fd.reference_floor(n=min(n, 1617), repeats=3, reference=test.x)
            results["fd_floor"] = {"mean": fl["mean"], "std": fl["std"], "n": fl["n"]}
        results["sdes"][name] = row

    _print_tables(results, samplers, nfes)
    if args.steps and not args.quick:
        tag += f"-{args.steps}steps"  # results of a reduced budget never overwrite the full one's
    path = out / f"{tag}.json"
    path.write_text(json.dumps(results, indent=2, default=lambda v: None) + "\n")
    _plot(results, samplers, nfes, out / f"{tag}.png")
    print(f"\nwrote {path} and {out / f'{tag}.png'}")
    return 0


def _f(v, fmt=".3f"):
    return "-" if v is None else format(v, fmt)


def _print_tables(results, samplers, nfes) -> None:
    print(f"\n### digits (n={results['n_samples']} samples, threads {results['threads']})\n")
    print("| SDE | steps | params | s/step | bits/dim | NLL NFE | s/sample (sscs@50) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["sdes"].items():
        lik = r["likelihood"]
        sp = r["samplers"].get("sscs@50", {}).get("seconds_per_sample")
        print(
            f"| {name} | {r['steps']} | {r['params']:,} | {_f(r['seconds_per_step'], '.4f')} | "
            f"{_f(lik['bits_per_dim'])} +- {_f(lik['bits_per_dim_sem'])} | {lik['nfe']} | {_f(sp, '.2e')} |"
        )
    if not results["fd_available"]:
        print("\nFD-digits: holdsgm.eval.fd_digits not available (or --no-fd); skipped")
        return
    fl = results.get("fd_floor")
    print(
        f"\n### FD-digits vs NFE (floor of real digits at the same n: "
        f"{_f(fl['mean']) if fl else '-'} +- {_f(fl['std']) if fl else '-'})\n"
    )
    print("| SDE | sampler | " + " | ".join(f"NFE {k}" for k in nfes) + " |")
    print("|---|---|" + "---|" * len(nfes))
    for name, r in results["sdes"].items():
        for s in samplers:
            cells = []
            for nfe in nfes:
                c = r["samplers"].get(f"{s}@{nfe}", {})
                cells.append("diverged" if "diverged" in c else _f(c.get("fd_digits")))
            print(f"| {name} | {s} | " + " | ".join(cells) + " |")


def _plot(results, samplers, nfes, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    names = list(results["sdes"])
    axes[0].bar(
        names,
        [results["sdes"][k]["likelihood"]["bits_per_dim"] for k in names],
        color=[f"C{i}" for i in range(len(names))],
    )
    axes[0].set_ylabel("bits/dim (held out)")
    axes[0].set_title("likelihood (PF-ODE, dequantised)")
    ax = axes[1]
    for i, name in enumerate(names):
        for s, ls in zip(samplers, ("-", ":")):
            pts = [
                (c["nfe"], c["fd_digits"])
                for nfe in nfes
                if "fd_digits" in (c := results["sdes"][name]["samplers"].get(f"{s}@{nfe}", {}))
            ]
            if pts:
                ax.plot(*zip(*pts), ls, marker="o", ms=3, color=f"C{i}", label=f"{name} {s}")
    if results.get("fd_floor"):
        ax.axhline(results["fd_floor"]["mean"], color="k", ls="--", lw=0.8, label="floor")
    ax.set_xscale("log")
    ax.set_xlabel("NFE")
    ax.set_ylabel("FD-digits")
    ax.set_title("FD-digits vs NFE" if results["fd_available"] else "FD-digits unavailable")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, tight=False)


if __name__ == "__main__":
    sys.exit(main())
