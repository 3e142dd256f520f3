"""The oracle benchmark: every SDE x sampler x NFE with the exact score of a Gaussian mixture.

No network is involved, so the numbers measure only the discretisation error of each sampler on
each SDE (and the ODE likelihood's error), the honest test of "faster mixing" claims.

Output (``out``):
    oracle.json       {"rows": [...], "floor": {...}, "settings": {...}}; each row has
                      sde, sampler, nfe, w2, mode_w2, mode_tv, ce_excess (means over seeds), their sds,
                      and nll_error (the SDE's ODE-likelihood error, the same in every row of that SDE)
    oracle.png        W2 and per-mode W2 vs NFE, one line per SDE x sampler, floors shaded
    samples/<sde>-<sampler>-<nfe>.npy   the samples of the first seed
    nll-<sde>.npy     with ``points``: the ODE estimate of -log p(x) at each point, for each SDE
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..eval.metrics import metric_floor, mixture_metrics, wasserstein2
from ..likelihood import ode_likelihood
from ..mixture import GaussianMixture
from ..plotting import pyplot, save_figure
from ..progress import progress as progress_bar
from ..samplers import SAMPLERS, BatchNoise, check_sampler, evals_per_step, parse_sampler, sample
from ..samplers.api import GRID_OPTIONS
from ..sde import MixtureOracle, make_sde

FULL = dict(sdes=["vp", "cld", "hold"], samplers=["em", "pc", "heun", "sscs", "lie-trotter", "ode", "exp1", "exp2m",
                                                   "exp3m", "exp2s", "unipc3", "exp-sde"],
            nfes=[5, 10, 20, 50, 100, 200, 500, 1000], n=4000, seeds=3, n_points=256)
QUICK = dict(sdes=["vp", "cld", "hold"], samplers=["em", "heun", "sscs"], nfes=[10, 30, 100], n=1000, seeds=1,
             n_points=32)
METRICS = ("w2", "mode_w2", "mode_tv", "ce_excess")
#: the exact score is right at every time, so the likelihood ODE starts where Song et al. start it
ORACLE_EPS = 1e-5


@dataclass
class OracleBenchSettings:
    sdes: list[str]
    samplers: list[str]
    nfes: list[int]
    n: int
    seeds: int
    n_points: int
    sde_overrides: dict = field(default_factory=dict)

    @classmethod
    def preset(cls, quick: bool, **overrides) -> "OracleBenchSettings":
        base: dict[str, Any] = dict(QUICK if quick else FULL)
        base.update({k: v for k, v in overrides.items() if v is not None})
        s = cls(**base)
        s.validate()
        return s

    def validate(self):
        from ..sde import PRESETS

        for name in self.sdes:
            if name not in PRESETS:
                raise ValueError(f"unknown SDE {name!r} in --sdes; choose from {sorted(PRESETS)}")
        for spec in self.samplers:
            try:
                if check_sampler(spec)[0] not in SAMPLERS:
                    raise ValueError(f"{spec!r} is chosen per SDE and NFE; name the samplers to compare")
            except ValueError as e:
                raise ValueError(f"--samplers: {e}") from None
        for k in self.nfes:
            if not (isinstance(k, int) and k >= 2):
                raise ValueError(f"every NFE must be an integer >= 2, got {k!r}")
        if self.n < 10 or self.seeds < 1 or self.n_points < 1:
            raise ValueError("need n >= 10 samples, seeds >= 1 and n_points >= 1")


def _feasible(sampler: str, nfe: int) -> bool:
    name, opts = parse_sampler(sampler)
    opts = {k: v for k, v in opts.items() if k not in GRID_OPTIONS}
    return SAMPLERS[name].evals_per_step == 0 or nfe >= evals_per_step(name, **opts) + 1


def run_oracle_bench(out, mixture: GaussianMixture | None = None, points: np.ndarray | None = None,
                     quick: bool = False, progress: bool = True, **overrides) -> dict:
    """Run the benchmark and write its files under ``out``; returns the JSON document."""
    settings = OracleBenchSettings.preset(quick, **overrides)
    out = Path(out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    mixture = mixture if mixture is not None else GaussianMixture.eight_gaussians()
    d = mixture.dim
    if points is not None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != d:
            raise ValueError(f"--points must be an array of shape (P, {d}) for this mixture, got {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError("--points contains NaN or inf")
    t_start = time.time()
    floor = metric_floor(mixture, settings.n, repeats=max(4, settings.seeds * 2))
    eval_points = torch.as_tensor(points) if points is not None else mixture.sample(
        settings.n_points, generator=torch.Generator().manual_seed(12345))
    true_nll = -mixture.log_prob(eval_points)
    rows = []
    log = print if progress else (lambda *a, **k: None)
    bar = progress_bar(_count_runs(settings), desc="oracle benchmark", unit="run", enabled=progress)
    for sde_name in settings.sdes:
        sde = make_sde(sde_name, **settings.sde_overrides.get(sde_name, {}))
        oracle = MixtureOracle(sde, mixture)
        t0 = time.time()
        lik = ode_likelihood(oracle.score, sde, eval_points.to(torch.float64),  # the exact score: from 1e-5
                             divergence="exact" if d <= 16 else "hutchinson", noise=0, eps=ORACLE_EPS)
        nll_error = float((lik.nll - true_nll).abs().mean())
        if points is not None:
            np.save(out / f"nll-{sde_name}.npy", lik.nll.numpy())
        log(f"[{sde_name}] ODE likelihood: mean |error| {nll_error:.4f} nats over {len(eval_points)} points "
            f"({lik.nfe} NFE, {time.time() - t0:.1f}s)")
        for sampler in settings.samplers:
            base = parse_sampler(sampler)[0]
            if SAMPLERS[base].needs_stationary and not sde.has_stationary_law:
                log(f"[{sde_name}] {sampler}: not applicable (no stationary law)")
                continue
            budgets = [None] if SAMPLERS[base].evals_per_step == 0 else [
                k for k in settings.nfes if _feasible(sampler, k)]
            for nfe in budgets:
                vals: dict[str, list[float]] = {m: [] for m in METRICS}
                used = 0
                for seed in range(settings.seeds):
                    opts = {"rtol": 1e-5, "atol": 1e-5} if nfe is None else {"nfe": nfe}
                    try:
                        res = sample(oracle.score, sde, (settings.n, d), sampler=sampler, noise=BatchNoise(seed),
                                     dtype=torch.float64, **opts)
                        x = res.x.numpy()
                        used = res.nfe
                    except ValueError:  # NumericsError: the sampler blew up at this budget
                        x = np.full((settings.n, d), np.nan)
                        used = nfe or 0
                    bar.update(1)
                    if seed == 0:
                        np.save(out / "samples" / f"{sde_name}-{_safe(sampler)}-{used}.npy", x)
                    m = mixture_metrics(x, mixture)
                    m["w2"] = wasserstein2(x, mixture.sample(settings.n, generator=torch.Generator().manual_seed(
                        10_000 + seed))) if np.isfinite(x).all() else float("inf")
                    for k in METRICS:
                        vals[k].append(m[k])
                row: dict[str, Any] = {"sde": sde_name, "sampler": sampler, "nfe": used, "nll_error": nll_error}
                for k in METRICS:
                    arr = np.asarray(vals[k], dtype=np.float64)
                    row[k] = float(arr.mean())
                    row[f"{k}_sd"] = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
                rows.append(row)
                spread = f" +- {row['mode_w2_sd']:.4f}" if settings.seeds > 1 else ""  # no spread from one seed
                if math.isfinite(row["mode_w2"]):
                    log(f"[{sde_name}] {sampler:11s} NFE {used:5d}: W2 {row['w2']:.4f}  per-mode W2 "
                        f"{row['mode_w2']:.4f}{spread}")
                else:
                    log(f"[{sde_name}] {sampler:11s} NFE {used:5d}: failed (diverged: NaN, or stopped by the "
                        f"range guard)")
    bar.close()
    doc = {
        "rows": rows,
        "floor": {k: {"mean": v[0], "sd": v[1]} for k, v in floor.items()},
        "settings": {**settings.__dict__, "mixture": mixture.to_dict() if d <= 8 else f"{mixture.n_components} "
                     f"components in {d}-D", "seconds": round(time.time() - t_start, 1),
                     "torch_threads": torch.get_num_threads()},
    }
    (out / "oracle.json").write_text(json.dumps(_finite(doc), indent=1))
    plot_oracle(doc, out / "oracle.png")
    return doc


def _count_runs(settings: OracleBenchSettings) -> int:
    """Sampler runs the benchmark will make (for its progress bar)."""
    total = 0
    for sde_name in settings.sdes:
        stationary = make_sde(sde_name, **settings.sde_overrides.get(sde_name, {})).has_stationary_law
        for sampler in settings.samplers:
            spec = SAMPLERS[parse_sampler(sampler)[0]]
            if spec.needs_stationary and not stationary:
                continue
            budgets = 1 if spec.evals_per_step == 0 else sum(_feasible(sampler, k) for k in settings.nfes)
            total += budgets * settings.seeds
    return total


def _safe(spec: str) -> str:
    """A file-name-safe version of a sampler spec (``exp2m:grid=logsnr`` -> ``exp2m_grid-logsnr``)."""
    return spec.replace(":", "_").replace(",", "_").replace("=", "-")


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def plot_oracle(doc: dict, path) -> None:
    """W2 and per-mode W2 against NFE, one line per SDE x sampler (line style: SDE, colour: sampler), the
    floor of exact samples shaded, one legend for both panels. The y-range is the finite values' range
    capped at 30x their lower quartile, so a diverged sampler does not squash the others: its points above
    the cap, and failed runs, are drawn as triangles on the top edge."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    styles = {"vp": ":", "subvp": "-.", "ve": (0, (1, 3)), "cld": "--", "cld-sgm": "--", "hold": "-"}
    names = sorted({r["sampler"] for r in doc["rows"]})
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {name: cycle[i % len(cycle)] for i, name in enumerate(names)}
    handles = {}
    for ax, metric, title in ((axes[0], "w2", "W2 (POT) vs an exact draw"),
                              (axes[1], "mode_w2", "per-mode Gaussian W2")):
        groups: dict = {}
        for r in doc["rows"]:
            if r["nfe"] > 0:  # a failed run (NaN, or stopped by the range guard) is drawn on the top edge
                value = r[metric] if r[metric] is not None and math.isfinite(r[metric]) else math.inf
                groups.setdefault((r["sde"], r["sampler"]), []).append((r["nfe"], value))
        values = np.array([v for pts in groups.values() for _, v in pts if math.isfinite(v)] or [1.0])
        fl = doc["floor"].get(metric)
        low = min(float(values.min()), fl["mean"] - fl["sd"] if fl else np.inf)
        cap = max(float(np.quantile(values, 0.25)) * 30, (fl["mean"] * 3) if fl else 0.0)
        top = min(float(values.max()), cap) * 1.3
        for (sde, sampler), pts in groups.items():
            pts.sort()
            nfe, val = (np.array(a) for a in zip(*pts))
            lw = 2.2 if sde == "hold" else 1.2
            (line,) = ax.plot(nfe, np.minimum(val, top), linestyle=styles.get(sde, "-"), marker="o", ms=3, lw=lw,
                              color=colours[sampler])
            handles[f"{sde} {sampler}"] = line
            over = val > top
            if over.any():
                ax.plot(nfe[over], np.full(int(over.sum()), top), "^", ms=7, color=colours[sampler])
        if fl:
            ax.axhspan(fl["mean"] - fl["sd"], fl["mean"] + fl["sd"], color="grey", alpha=0.25)
            handles["floor (exact samples)"] = ax.axhline(fl["mean"], color="grey", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(max(low * 0.8, 1e-6), top * 1.15)
        ax.set_xlabel("NFE (score evaluations)")
        ax.set_ylabel(f"{title} (lower is better)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(6, len(handles)), fontsize=7,
               frameon=False)
    fig.suptitle("Oracle benchmark: exact score, discretisation error only (triangles: beyond the axis)")
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(handles) / 6), 1, 1))
    save_figure(fig, path, dpi=120, tight=False)


def nfe_to_match(doc: dict, reference=("vp", "em", 1000), metric: str = "mode_w2") -> dict:
    """For each SDE x sampler, the smallest NFE whose mean ``metric`` is <= that of the reference row."""
    ref = [r for r in doc["rows"] if (r["sde"], r["sampler"], r["nfe"]) == reference
           or (r["sde"], r["sampler"]) == reference[:2] and abs(r["nfe"] - reference[2]) <= 1]
    if not ref:
        raise ValueError(f"the benchmark has no row for {reference}")
    target = ref[0][metric]
    out = {}
    for r in sorted(doc["rows"], key=lambda r: r["nfe"]):
        key = (r["sde"], r["sampler"])
        if key not in out and r[metric] is not None and r[metric] <= target:
            out[key] = r["nfe"]
    return {"target": target, "nfe": out}
