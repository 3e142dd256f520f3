"""How the default samplers, grids and stops were chosen (issue: a new user's first hour).

Two measurements, each on 2 CPU cores, seed 0:

* ``--part oracle``: every sampler x time grid x stop with the exact score of the 8-Gaussians mixture on
  VP, CLD, HOLD and CLD-SGM (Dockhorn et al.'s constants, T = 1) at 10, 20, 50 and 100 NFE; per-mode W2 of
  2000 samples (floor of exact samples ~0.012 at this n). Picks each sampler's default grid and the
  default stop (``sigma_min``), by the geometric mean over the four SDEs at 10, 20 and 50 NFE.
* ``--part learned``: the same samplers at their defaults on trained runs (``--runs``: toy-{vp,cld,hold}
  give per-mode W2 of 2000 samples against the true mixture; digits-{vp,cld,hold} give FD-digits of 500
  samples against the held-out digits), plus the old preset settings for comparison.

``--part table`` prints the markdown tables of benchmarks/README.md from the JSON files.

    OMP_NUM_THREADS=2 python benchmarks/sampler_defaults.py --part oracle
    OMP_NUM_THREADS=2 python benchmarks/sampler_defaults.py --part learned --runs runs
    python benchmarks/sampler_defaults.py --part table
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results" / "sampler-defaults"
SDES = ["vp", "cld", "hold", "cld-sgm"]
NFES = [10, 20, 50, 100]
RANKED_NFES = (10, 20, 50)  # the budgets that decide a default (100 is reported)
SWEEP = {  # sampler -> grids tried; every grid with each stop in STOPS
    "em": ["uniform", "quadratic", "logsnr", "edm", "log"],
    "pc": ["uniform", "quadratic", "logsnr", "log"],
    "euler": ["uniform", "quadratic", "logsnr", "log"],
    "heun": ["uniform", "quadratic", "logsnr", "edm", "log"],
    "rk4": ["uniform", "quadratic", "logsnr", "log"],
    "sscs": ["uniform", "quadratic", "logsnr", "edm", "log"],
    "lie-trotter": ["uniform", "quadratic", "logsnr", "log"],
    "exp1": ["uniform", "quadratic", "logsnr", "edm", "log"],
    "exp2m": ["uniform", "quadratic", "logsnr", "edm", "log"],
    "exp3m": ["uniform", "quadratic", "logsnr", "log"],
    "exp2s": ["uniform", "quadratic", "logsnr", "edm", "log"],
    "exp3s": ["uniform", "quadratic", "logsnr", "log"],
    "unipc2": ["uniform", "quadratic", "logsnr", "log"],
    "unipc3": ["uniform", "quadratic", "logsnr", "edm", "log"],
    "exp-sde": ["uniform", "quadratic", "logsnr", "edm", "log"],
    "exp2m-sde": ["uniform", "quadratic", "logsnr", "log"],
}
STOPS = ["eps=0.001", "sigma_min=0.002", "sigma_min=0.01", "sigma_min=0.03"]
#: learned part: each sampler at its default, and the settings the presets and README used before
LEARNED = [*SWEEP, "sscs:grid=uniform,eps=0.001", "exp2m:grid=uniform,eps=0.001", "exp1:grid=uniform,eps=0.001"]


def _spec(sampler: str, grid: str, stop: str) -> str:
    return f"{sampler}:grid={grid},{stop}"


def run_oracle(n: int, out: Path) -> None:
    from holdsgm.eval.metrics import mixture_metrics
    from holdsgm.mixture import GaussianMixture
    from holdsgm.samplers import BatchNoise, sample
    from holdsgm.sde import MixtureOracle, make_sde

    mix = GaussianMixture.eight_gaussians()
    rows = []
    t0 = time.time()
    for sde_name in SDES:
        sde = make_sde(sde_name)
        orc = MixtureOracle(sde, mix)
        for sampler, grids in SWEEP.items():
            for grid in grids:
                for stop in STOPS:
                    spec = _spec(sampler, grid, stop)
                    for nfe in NFES:
                        try:
                            r = sample(orc.score, sde, (n, 2), sampler=spec, nfe=nfe, noise=BatchNoise(0),
                                       dtype=torch.float64, bound=None)
                            w = float(mixture_metrics(r.x.numpy(), mix)["mode_w2"])
                        except ValueError:  # NaN in the sampler, or an NFE too small for it
                            w = float("inf")
                        rows.append({"sde": sde_name, "sampler": sampler, "grid": grid, "stop": stop, "nfe": nfe,
                                     "mode_w2": w})
                print(f"[{time.time() - t0:6.0f} s] {sde_name} {sampler}", flush=True)
    floor = _floor(mix, n)
    _write(out / "oracle.json", {"mode_w2": _nest(rows), "nfes": NFES, "n": n, "floor": floor,
                                 "seconds": round(time.time() - t0), "threads": torch.get_num_threads()})


def _nest(rows: list[dict]) -> dict:
    """{sde: {sampler: {grid: {stop: [per-mode W2 at each NFE of NFES]}}}} (compact on disk)."""
    out: dict = {}
    for r in rows:
        cell = out.setdefault(r["sde"], {}).setdefault(r["sampler"], {}).setdefault(r["grid"], {})
        cell.setdefault(r["stop"], [None] * len(NFES))[NFES.index(r["nfe"])] = r["mode_w2"]
    return out


def _flat(nested: dict) -> dict:
    """(sde, sampler, grid, stop, nfe) -> per-mode W2, from :func:`_nest`'s form."""
    return {(sde, sampler, grid, stop, k): v for sde, a in nested.items() for sampler, b in a.items()
            for grid, c in b.items() for stop, vals in c.items() for k, v in zip(NFES, vals)}


def _floor(mix, n: int) -> dict:
    from holdsgm.eval.metrics import metric_floor

    fl = metric_floor(mix, n, repeats=8)["mode_w2"]
    return {"mean": fl[0], "sd": fl[1]}


def run_learned(runs: Path, out: Path, n_toy: int, n_digits: int) -> None:
    from holdsgm.eval.metrics import mixture_metrics
    from holdsgm.runs import generate, load_run
    from holdsgm.runs.evaluation import heldout
    from holdsgm.samplers import SAMPLERS, parse_sampler

    rows = []
    t0 = time.time()
    for name in ("toy-vp", "toy-cld", "toy-hold", "digits-vp", "digits-cld", "digits-hold"):
        path = runs / name
        if not path.is_dir():
            print(f"skipping {name}: no run at {path}")
            continue
        run = load_run(path)
        digits = run.dataset_info.name == "digits"
        ref = heldout(run).x if digits else None
        n = n_digits if digits else n_toy
        for spec in LEARNED:
            sampler = parse_sampler(spec)[0]
            if SAMPLERS[sampler].needs_stationary and not run.sde.has_stationary_law:
                continue
            for nfe in NFES:
                try:
                    gen = generate(run, n, sampler=spec, nfe=nfe, seed=0, batch_size=n, bound=None)
                    if digits:
                        from holdsgm.eval.fd_digits import fd_digits

                        value = float(fd_digits(gen.x, ref))
                    else:
                        value = float(mixture_metrics(gen.x.double().numpy(), run.dataset_info.mixture)["mode_w2"])
                except ValueError:
                    value = float("inf")
                rows.append({"run": name, "sde": run.sde.name, "step": run.step, "spec": spec, "nfe": nfe,
                             "metric": "fd_digits" if digits else "mode_w2", "value": value})
            print(f"[{time.time() - t0:6.0f} s] {name} {spec}", flush=True)
    _write(out / "learned.json", {"rows": rows, "n_toy": n_toy, "n_digits": n_digits,
                                  "seconds": round(time.time() - t0), "threads": torch.get_num_threads()})


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = json.loads(json.dumps(doc, default=float).replace("Infinity", "null"))
    path.write_text(json.dumps(clean, separators=(",", ":")) + "\n")
    print(f"wrote {path}")


def _gmean(values) -> float:
    vals = [v if v is not None and math.isfinite(v) else 100.0 for v in values]  # a failure counts as 100
    return math.exp(sum(math.log(max(v, 1e-9)) for v in vals) / len(vals))


def _cell(v) -> str:
    return "fail" if v is None or not math.isfinite(v) else f"{v:.3f}"


def tables(out: Path) -> None:
    from holdsgm.samplers import DEFAULT_SIGMA_MIN, SAMPLERS

    oracle = json.loads((out / "oracle.json").read_text())
    key = _flat(oracle["mode_w2"])
    print(f"#### Oracle: each sampler's grid and stop (per-mode W2, n = {oracle['n']}, seed 0; floor "
          f"{oracle['floor']['mean']:.4f} +- {oracle['floor']['sd']:.4f})\n")
    print("Score: geometric mean over VP, CLD, HOLD, CLD-SGM at 10, 20, 50 NFE (a failed run counts as 100). "
          "Best three grid/stop settings per sampler; **bold**: the sampler's default now.\n")
    print("| sampler | grid, stop | score | vp @10/20/50/100 | cld | hold | cld-sgm |")
    print("|---|---|---|---|---|---|---|")
    stop_scores: dict[str, list[float]] = {s: [] for s in STOPS}
    for sampler, grids in SWEEP.items():
        scored = []
        for grid in grids:
            for stop in STOPS:
                sc = _gmean(key[(s, sampler, grid, stop, k)] for s in SDES for k in RANKED_NFES)
                scored.append((sc, grid, stop))
        for stop in STOPS:
            stop_scores[stop].append(min(sc for sc, g, st in scored if st == stop))
        scored.sort()
        default = (SAMPLERS[sampler].grid, f"sigma_min={DEFAULT_SIGMA_MIN:g}")
        shown = scored[:3] + [x for x in scored if (x[1], x[2]) == default and x not in scored[:3]]
        for sc, grid, stop in shown:
            label = f"{grid}, {stop}"
            if (grid, stop) == default:
                label = f"**{label}**"
            cells = [" / ".join(_cell(key[(s, sampler, grid, stop, k)]) for k in NFES) for s in SDES]
            print(f"| `{sampler}` | {label} | {sc:.4f} | " + " | ".join(cells) + " |")
    print("\nEach stop's score with each sampler's best grid for it (geometric mean over the samplers): "
          + ", ".join(f"{st} {_gmean(v):.4f}" for st, v in stop_scores.items()) + ".\n")

    learned_path = out / "learned.json"
    learned = json.loads(learned_path.read_text()) if learned_path.exists() else {"rows": []}
    lkey = {(r["run"], r["spec"], r["nfe"]): r["value"] for r in learned["rows"]}
    runs = sorted({r["run"] for r in learned["rows"]}, key=lambda r: (r.startswith("digits"), r))
    print(f"#### Each sampler at its defaults: oracle (per-mode W2) and learned scores (toy: per-mode W2, "
          f"n = {learned.get('n_toy')}; digits: FD-digits, n = {learned.get('n_digits')}), NFE 10 / 20 / 50 / 100\n")
    print("| sampler (defaults) | " + " | ".join(f"oracle {s}" for s in SDES[:3]) + " | "
          + " | ".join(runs) + " |")
    print("|---|" + "---|" * (3 + len(runs)))
    for spec in LEARNED:
        sampler = spec.split(":")[0]
        if ":" in spec:
            grid, stop = spec.split(":")[1].split(",")
            grid = grid.split("=")[1]
        else:
            grid, stop = SAMPLERS[sampler].grid, f"sigma_min={DEFAULT_SIGMA_MIN:g}"
        orc = [" / ".join(_cell(key.get((s, sampler, grid, stop, k))) for k in NFES) for s in SDES[:3]]
        lrn = [" / ".join(_cell(lkey.get((r, spec, k))) for k in NFES) for r in runs]
        label = spec if ":" in spec else f"{spec} ({grid}, sigma_min={DEFAULT_SIGMA_MIN:g})"
        print(f"| `{label}` | " + " | ".join(orc + lrn) + " |")
    print()
    ranking(key, lkey)


def ranking(key: dict, lkey: dict) -> None:
    """Per SDE and NFE: each sampler (at its defaults) scored by the geometric mean, over the exact score,
    the toy model and the digits model, of its value relative to the best sampler there."""
    from holdsgm.samplers import DEFAULT_SIGMA_MIN, SAMPLERS
    from holdsgm.samplers.api import DEFAULTS

    stop = f"sigma_min={DEFAULT_SIGMA_MIN:g}"
    print("#### Ranking: geometric mean of (value / best value) over the exact score, the toy model and the "
          "digits model (1.00 = best in all three); `DEFAULTS` in bold\n")
    print("| SDE | NFE | first | second | third |")
    print("|---|---|---|---|---|")
    for sde, order in (("vp", 1), ("cld", 2), ("hold", 3)):
        for nfe in NFES:
            cols = {s: (key.get((sde, s, SAMPLERS[s].grid, stop, nfe)), lkey.get((f"toy-{sde}", s, nfe)),
                        lkey.get((f"digits-{sde}", s, nfe))) for s in SWEEP}
            best = [min((v[i] for v in cols.values() if v[i] is not None and math.isfinite(v[i])), default=1.0)
                    for i in range(3)]
            scored = sorted((_gmean([v[i] / best[i] if v[i] is not None and math.isfinite(v[i]) else None
                                     for i in range(3)]), s) for s, v in cols.items())
            chosen = next(name for bound, name in DEFAULTS[order] if nfe < bound)
            cells = [f"**`{s}`** {sc:.2f}" if s == chosen else f"`{s}` {sc:.2f}" for sc, s in scored[:3]]
            if chosen not in [s for _, s in scored[:3]]:
                cells[-1] += f" (default `{chosen}`: {dict((s, sc) for sc, s in scored)[chosen]:.2f})"
            print(f"| {sde} | {nfe} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("oracle", "learned", "table"), required=True)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder with toy-* and digits-* runs")
    p.add_argument("--n", type=int, default=2000, help="samples per oracle / toy cell")
    p.add_argument("--n-digits", type=int, default=500, help="samples per digits cell")
    a = p.parse_args()
    if a.part == "oracle":
        run_oracle(a.n, a.out)
    elif a.part == "learned":
        run_learned(a.runs, a.out, a.n, a.n_digits)
    else:
        tables(a.out)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
