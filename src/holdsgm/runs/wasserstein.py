"""The Wasserstein bound over training (Kwon et al. 2022): sqrt(J) and the measured W2 of every kept
checkpoint of a run (the maths is :mod:`holdsgm.eval.wasserstein_bound`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..engine import list_checkpoints
from ..errors import CheckpointError
from ..eval.metrics import wasserstein2
from ..eval.wasserstein_bound import UNITS, bound_report, w2_floor
from .evaluation import heldout
from .inference import class_labels, generate
from .loading import LoadedRun, load_run


def evaluate_checkpoints(run_dir, *, n: int = 2000, sampler: str | None = None, nfe: int | None = None,
                         grid: str | None = None, seed: int = 0, bound_n: int | None = 1000,
                         times_per_point: int = 8, which: str = "ema", batch_size: int | None = None,
                         progress: bool = False) -> dict:
    """sqrt(J) and W2 (vector data) for every complete checkpoint of a run, oldest first.

    Each checkpoint is loaded (``which`` weights), J is measured on the held-out split (same points, times and
    noise for every checkpoint: the differences are the model's), and for vector data ``n`` samples drawn with
    the config's sampler (or ``sampler``/``nfe``/``grid``) give the exact W2 against the held-out split.
    Keep checkpoints with ``train.keep_checkpoints`` (the default keeps 2).
    """
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise CheckpointError(f"no checkpoints in {run_dir} (is it a run folder?)")
    rows: list[dict] = []
    notes: list[str] = []
    first: LoadedRun | None = None  # the first checkpoint that loads
    test: Any = None  # and its held-out split (a Dataset)
    for step, path in ckpts:
        try:
            run = load_run(path, which=which)
        except CheckpointError as e:
            notes.append(f"skipped {path.name}: {' '.join(str(e).split())[:120]}")
            continue
        if first is None:
            first = run
            test = heldout(run, "test")
        info = run.dataset_info
        sc = run.config.sample
        row: dict[str, Any] = {"step": step}
        row.update(bound_report(run, test, n=bound_n, times_per_point=times_per_point, seed=seed))
        for k in ("quantity", "units", "t_range"):
            row.pop(k, None)
        if not info.is_image:
            labels = class_labels(run, n, "balanced") if info.n_classes else None
            gen = generate(run, n, sampler=sampler or sc.sampler, nfe=nfe or sc.nfe, grid=grid or sc.grid,
                           seed=seed, labels=labels, batch_size=batch_size or sc.batch_size)
            row["w2"] = wasserstein2(gen.x, test.x)
            key = "sqrt_J_esm" if "sqrt_J_esm" in row else "sqrt_J_dsm"
            row["w2_over_sqrt_J"] = row["w2"] / row[key] if row[key] > 0 else float("inf")
            row["nfe"] = gen.nfe
        rows.append(row)
        if progress:
            print(f"[w2-bound] {Path(run_dir).name} step {step}: " + ", ".join(
                f"{k}={row[k]:.4g}" for k in ("w2", "sqrt_J_esm", "sqrt_J_dsm") if k in row), file=sys.stderr)
    if first is None:
        raise CheckpointError(f"no complete checkpoint in {run_dir}")
    if len(rows) < 3:
        notes.append(f"only {len(rows)} checkpoint(s): set train.keep_checkpoints (and ckpt_every) to keep more")
    info = first.dataset_info
    out: dict[str, Any] = {"run": str(run_dir), "sde": first.sde.name, "dataset": info.name, "weights": which,
                           "sampler": sampler or first.config.sample.sampler, "n": n, "seed": seed, "units": UNITS,
                           "rows": rows, "notes": notes}
    if info.mixture is not None and not info.is_image:
        out["w2_floor"] = w2_floor(info.mixture, test.x, n, seed)
    return out


