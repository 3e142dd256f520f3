"""The ODE likelihood's dependence on the auxiliary draw and on the ODE's start time, on trained toy runs.

For CLD/HOLD the NLL of a point is a bound, log p(x) >= E_aux[log p(x, aux) - log N(aux)], estimated from
auxiliary draws. With a learned score one draw can be far off (a side-by-side run saw 1249 nats for one
point with one draw, -1.3 with four others). This measures, on 500 held-out points of toy-{vp,cld,hold}:

* the plain one-draw estimate from Song et al.'s start t = 1e-5 (below the smallest training time) and
  from the SDE's eps (the smallest training time), four draws (seeds) each: mean, median and the worst
  point, and each point's spread over the draws;
* the importance-weighted bound over 4 draws (the new default) and the mean of the 4 draws' bounds.

    OMP_NUM_THREADS=2 python benchmarks/likelihood_aux.py --runs runs

writes benchmarks/results/likelihood-aux.json and prints the markdown table of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results" / "likelihood-aux.json"


def measure(run_dir: Path, n: int, draws: int) -> dict:
    from holdsgm.likelihood import ode_likelihood
    from holdsgm.runs import load_run
    from holdsgm.runs.evaluation import heldout

    run = load_run(run_dir)
    x = heldout(run).x[:n]
    true = float((-run.dataset_info.mixture.log_prob(x.double())).mean())
    kw = dict(divergence="exact", rtol=1e-5, atol=1e-5)
    out = {"sde": run.sde.name, "step": run.step, "n": len(x), "true_nll": true, "rows": {}}
    for label, eps in (("start 1e-5, one draw", 1e-5), (f"start eps = {run.sde.eps:g}, one draw", None)):
        t0 = time.time()
        per_seed = np.stack([ode_likelihood(run.eps_model.score, run.sde, x, noise=s, eps=eps, **kw).nll.numpy()
                             for s in range(draws)])
        out["rows"][label] = _summary(per_seed, time.time() - t0, draws)
    for estimator in ("iw", "mean"):
        t0 = time.time()
        res = ode_likelihood(run.eps_model.score, run.sde, x, noise=0, aux_draws=draws, aux_estimator=estimator,
                             **kw)
        label = f"start eps, {'importance-weighted' if estimator == 'iw' else 'mean'} over {draws} draws"
        out["rows"][label] = _summary(res.nll.numpy()[None], time.time() - t0, 1,
                                      spread=np.median(res.draws.numpy().max(0) - res.draws.numpy().min(0)))
    return out


def _summary(per_seed: np.ndarray, seconds: float, draws: int, spread: float | None = None) -> dict:
    """Over seeds (rows) and points (columns): each seed's mean, the median, the worst point, the spread."""
    return {
        "mean_per_seed": [float(v) for v in per_seed.mean(1)],
        "median": float(np.median(per_seed)),
        "worst_point": float(per_seed.max()),
        "point_spread_median": float(np.median(per_seed.max(0) - per_seed.min(0))) if spread is None else
        float(spread),
        "point_spread_max": float((per_seed.max(0) - per_seed.min(0)).max()) if draws > 1 else None,
        "seconds": round(seconds, 1),
    }


def table(doc: dict) -> None:
    print("| SDE | estimate | mean NLL (per draw) | median | worst point | spread of a point over draws (median) "
          "| s |")
    print("|---|---|---|---|---|---|---|")
    for r in doc["runs"]:
        for label, s in r["rows"].items():
            means = " / ".join(f"{v:.3f}" for v in s["mean_per_seed"])
            print(f"| {r['sde']} | {label} | {means} | {s['median']:.3f} | {s['worst_point']:.2f} | "
                  f"{s['point_spread_median']:.2f} | {s['seconds']} |")
        print(f"| {r['sde']} | true -log p(x) of the same {r['n']} points | {r['true_nll']:.3f} | | | | |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder with toy-vp, toy-cld, toy-hold")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--table-only", action="store_true", help="print the table of the saved JSON")
    a = p.parse_args()
    if not a.table_only:
        doc = {"runs": [measure(a.runs / name, a.n, a.draws) for name in ("toy-vp", "toy-cld", "toy-hold")],
               "threads": torch.get_num_threads()}
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(doc, indent=1))
    table(json.loads(OUT.read_text()))


if __name__ == "__main__":
    main()
