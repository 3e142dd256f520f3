"""Sampling a run into a folder (``holdsgm sample``): samples.npz, a figure of the samples (a scatter beside
the held-out data, or an image grid), the x/v/a trajectory figure, optionally one PNG per sample and the
guidance edit figure, and sample.json describing what was run."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, HoldsgmError
from ..files import atomic_write
from .evaluation import heldout
from .figures import image_grid_figure, scatter_figure, trajectory_figure
from .guided import edit_figure, edit_grid, guided_generate
from .inference import class_labels, generate
from .loading import LoadedRun
from .reports import save_image_files, write_json


@dataclass
class SampleRequest:
    """What to sample; None fields take the run's ``sample`` section."""

    n: int | None = None
    sampler: str | None = None
    nfe: int | None = None
    grid: str | None = None
    seed: int | None = None
    batch_size: int | None = None
    label: int | str | None = None
    """A class, 'balanced', or None (unconditional)."""
    cfg_scale: float = 1.0
    directions: list = field(default_factory=list)
    skip: object | None = None
    trajectory: int = 16
    save_images: bool = False
    edit_figure: bool = True
    edit_k: int = 8
    progress: bool = True

    @property
    def guided(self) -> bool:
        return bool(self.directions) or self.skip is not None or self.cfg_scale != 1.0


def check_request(run: LoadedRun, req: SampleRequest) -> None:
    """ConfigError for what the run cannot do (guidance without classes, image files of vectors); a warning
    for guidance of a run trained without label dropout."""
    from ..guidance import check_concepts, skip_scale_kwargs

    info = run.dataset_info
    if req.save_images and not info.is_image:
        raise ConfigError(f"--save-images writes image files; {run.path} models items of shape {info.data_shape} "
                          f"(samples.npz holds them)")
    if not req.guided:
        return
    conditional = bool(req.directions) or req.cfg_scale != 1.0
    if conditional and not info.n_classes:
        raise ConfigError(f"guidance (--guide/--cfg-scale) needs a class-conditional model; {run.path} is not "
                          f"(train with data.conditional=true and train.label_dropout > 0)")
    check_concepts(req.directions, info.n_classes)
    if conditional and not run.config.train.label_dropout:
        print(f"holdsgm sample: warning: {run.path} was trained without label dropout (train.label_dropout = 0): "
              f"its unconditional (null-label) prediction is untrained, so guidance will not work well",
              file=sys.stderr)
    skip_scale_kwargs(req.skip, run.net)  # fails now if the spec does not fit the network


def sample_to_folder(run: LoadedRun, out: Path, req: SampleRequest) -> dict:
    """Draw the samples of ``req`` and write them and their figures to ``out``; returns the summary."""
    from ..guidance import GuidedModel

    check_request(run, req)
    sc, info = run.config.sample, run.dataset_info
    n = req.n or sc.n
    labels = class_labels(run, n, req.label)
    common: dict[str, Any] = dict(sampler=req.sampler or sc.sampler, nfe=req.nfe or sc.nfe, grid=req.grid or sc.grid,
                  seed=sc.seed if req.seed is None else req.seed, batch_size=req.batch_size or sc.batch_size)
    kw: dict[str, Any] = dict(labels=labels, trajectory=max(req.trajectory, 0), progress=req.progress, **common)
    gen = (guided_generate(run, n, cfg_scale=req.cfg_scale, directions=req.directions, skip_scale=req.skip, **kw)
           if req.guided else generate(run, n, **kw))
    arrays: dict[str, Any] = {"x": gen.x.numpy(), "u": gen.u.numpy(), "seeds": np.asarray(gen.seeds, dtype=np.int64)}
    if gen.labels is not None:
        arrays["labels"] = gen.labels.numpy()
    if gen.traj is not None:
        arrays["trajectory"], arrays["trajectory_times"] = gen.traj.numpy(), np.asarray(gen.traj_times)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    npz = atomic_write(out / "samples.npz", buf.getvalue())
    spec = gen.plan["spec"]
    title = f"{run.sde.name}, {spec} @ {gen.nfe} NFE, step {run.step}"
    png = image_grid_figure(gen.x, out / "samples.png", info.data_range, title=title) if info.is_image else \
        scatter_figure(gen.x, out / "samples.png", reference=_reference(run), title=title)
    images = save_image_files(gen.x, out / "images", info.data_range) if req.save_images else None
    traj_png = None if gen.traj is None else trajectory_figure(
        gen.traj_times, gen.traj, run.sde.order, out / "trajectory.png", info.data_range,
        title=f"{run.sde.name}: reverse-time trajectory ({gen.plan['sampler']})")
    summary = {"run": str(run.path), "step": run.step, "weights": run.which, "n": n, "sampler": spec,
               "nfe": gen.nfe, "grid": gen.plan["grid"], "stop_time": gen.plan["stop_time"], "seconds": gen.seconds,
               "samples": str(npz), "figure": str(png), "trajectory": str(traj_png) if traj_png else None,
               "images": str(images) if images else None, "finite": bool(np.isfinite(arrays["u"]).all()),
               "max_abs": float(np.abs(arrays["u"]).max())}  # within the sampler's range guard, or it had stopped
    if req.guided:
        summary["guidance"] = GuidedModel(run.eps_model, cfg_scale=req.cfg_scale, directions=req.directions,
                                          skip_scale=req.skip).describe()
        summary["edits"] = None
        if req.directions and req.edit_figure and info.is_image:
            grid_x, titles = edit_grid(run, req.directions, k=min(req.edit_k, n), labels=labels,
                                       cfg_scale=req.cfg_scale, skip_scale=req.skip, **common)
            base = "unconditional" if labels is None else f"class {req.label}, cfg {req.cfg_scale:g}"
            summary["edits"] = str(edit_figure(
                grid_x, titles, out / "edits.png", info.data_range or (-1.0, 1.0),
                title=f"{run.sde.name}, {gen.plan['sampler']} @ {gen.nfe} NFE: same seeds ({base}) edited",
                row_labels=[f"seed {s}" for s in gen.seeds[: grid_x.shape[0]]]))
    write_json(out / "sample.json", summary)
    return summary


def _reference(run: LoadedRun):
    """The run's held-out data for the scatter figure, or None (with a note) when it cannot be read now."""
    try:
        return heldout(run).x
    except (HoldsgmError, OSError) as e:
        print(f"holdsgm sample: note: the figure shows no reference data ({' '.join(str(e).split())[:120]})",
              file=sys.stderr)
        return None
