"""Markdown tables from one or more ``holdsgm bench oracle`` outputs (issues #2, #6, #7).

    python benchmarks/oracle_table.py OUT1/oracle.json [OUT2/oracle.json ...] > table.md

For every SDE x sampler spec: the per-mode Gaussian W2 (mean +- sd over the seeds) at each NFE, the smallest
NFE of the table whose mean is within twice the metric's finite-sample floor, and the smallest NFE that
matches VP + Euler-Maruyama at 1000 steps. Then the two goals of issue #7, checked on the numbers: the
best HOLD row at <= 20 NFE against twice the floor, and HOLD's best against VP's best at every NFE >= 10.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from holdsgm.runs.oracle_bench import nfe_to_match

COLUMNS = (5, 10, 20, 50, 100, 200, 500, 1000)


def _bucket(nfe: int):
    """The NFE budget column a run belongs to: samplers with several evaluations per step use a little less
    than the budget (pc at budget 10: 4 steps x 2 + 1 = 9)."""
    return min((c for c in COLUMNS if c >= nfe), default=None)


def load(paths) -> dict:
    rows, floors, settings = [], [], []
    for p in paths:
        doc = json.loads(Path(p).read_text())
        rows += doc["rows"]
        floors.append(doc["floor"]["mode_w2"])
        settings.append(doc["settings"])
    ns = {s["n"] for s in settings}
    if len(ns) != 1:
        raise SystemExit(f"the inputs use different sample counts {sorted(ns)}; their floors differ")
    return {"rows": rows, "floor": {"mode_w2": floors[0]}, "settings": settings}


def table(doc: dict) -> str:
    floor = doc["floor"]["mode_w2"]["mean"]
    try:
        match = nfe_to_match(doc)
    except ValueError:
        match = {"target": None, "nfe": {}}
    cols = sorted({_bucket(r["nfe"]) for r in doc["rows"] if _bucket(r["nfe"]) is not None})
    keys = []
    for r in doc["rows"]:
        if (r["sde"], r["sampler"]) not in keys:
            keys.append((r["sde"], r["sampler"]))
    head = ["SDE", "sampler"] + [f"NFE {c}" for c in cols] + ["NFE <= 2x floor", "NFE to match VP+EM@1000"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sde, sampler in keys:
        rows = {r["nfe"]: r for r in doc["rows"] if (r["sde"], r["sampler"]) == (sde, sampler)}
        by_col = {_bucket(n): r for n, r in rows.items()}
        cells = []
        for c in cols:
            r = by_col.get(c)
            if r is None:
                cells.append("")
            elif r["mode_w2"] is None:
                cells.append("diverged")
            else:
                used = "" if r["nfe"] == c else f" ({r['nfe']})"
                cells.append(f"{r['mode_w2']:.4f} ± {r['mode_w2_sd']:.4f}{used}")
        ok = [n for n, r in sorted(rows.items()) if r["mode_w2"] is not None and r["mode_w2"] <= 2 * floor]
        adaptive = sampler.split(":")[0] == "ode"
        if adaptive:  # the adaptive ODE solver: one row at its own NFE
            r = next(iter(rows.values()))
            cells = [""] * len(cols)
            cells[0] = f"{r['mode_w2']:.4f} @ {r['nfe']} NFE (rtol 1e-5)"
        m = match["nfe"].get((sde, sampler))
        lines.append("| " + " | ".join([sde, f"`{sampler}`", *cells, str(ok[0]) if ok else "—",
                                        str(m) if m is not None else "—"]) + " |")
    return "\n".join(lines)


def goals(doc: dict) -> str:
    floor = doc["floor"]["mode_w2"]["mean"]
    rows = [r for r in doc["rows"] if r["mode_w2"] is not None]
    out = []
    hold20 = [r for r in rows if r["sde"] == "hold" and r["nfe"] <= 20 and r["sampler"].split(":")[0] != "ode"]
    if hold20:
        best = min(hold20, key=lambda r: r["mode_w2"])
        verdict = "met" if best["mode_w2"] <= 2 * floor else "not met"
        out.append(f"- HOLD within 2x floor ({2 * floor:.4f}) at <= 20 NFE: **{verdict}**; best "
                   f"`{best['sampler']}` at {best['nfe']} NFE, {best['mode_w2']:.4f} ± {best['mode_w2_sd']:.4f}.")
    fixed = [r for r in rows if r["sampler"].split(":")[0] != "ode"]
    for nfe in sorted({_bucket(r["nfe"]) for r in fixed if (_bucket(r["nfe"]) or 0) >= 10}):
        best = {}
        for sde in ("vp", "hold"):
            cand = [r for r in fixed if r["sde"] == sde and _bucket(r["nfe"]) == nfe]
            if cand:
                best[sde] = min(cand, key=lambda r: r["mode_w2"])
        if len(best) == 2:
            h, v = best["hold"], best["vp"]
            sd = max(h["mode_w2_sd"], v["mode_w2_sd"])
            if h["mode_w2"] <= v["mode_w2"]:
                word = "HOLD better or equal"
            elif h["mode_w2"] - v["mode_w2"] <= sd:
                word = "VP better by less than one sd"
            else:
                word = "VP better"
            out.append(f"- NFE {nfe}: best HOLD `{h['sampler']}` {h['mode_w2']:.4f} ± {h['mode_w2_sd']:.4f} vs best VP "
                       f"`{v['sampler']}` {v['mode_w2']:.4f} ± {v['mode_w2_sd']:.4f}: {word}.")
    return "\n".join(out)


def main(argv=None) -> int:
    paths = (argv if argv is not None else sys.argv[1:])
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    doc = load(paths)
    fl = doc["floor"]["mode_w2"]
    s = doc["settings"][0]
    print(f"Per-mode Gaussian W2 (mean ± sd over {s['seeds']} seeds, {s['n']} samples each); floor of exact "
          f"samples {fl['mean']:.4f} ± {fl['sd']:.4f}, twice the floor {2 * fl['mean']:.4f}.\n")
    print(table(doc))
    print()
    print(goals(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
