"""Guided sampling from a trained run, and the "same seed, edited along each direction" figure.

:func:`guided_generate` is :func:`~holdsgm.runs.inference.generate` with classifier-free guidance, semantic
directions and Skip-Tuning (:class:`holdsgm.guidance.GuidedModel`); per-sample seeds keep every sample
independent of the batch size (all guidance operations act per sample: the threshold's quantile and the
momentum included).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..guidance import GuidanceDirection, GuidedModel
from ..plotting import pyplot, save_figure
from .inference import generate


def guided_generate(run, n: int, *, labels: Tensor | None = None, cfg_scale: float = 1.0,
                    directions: Sequence[GuidanceDirection] = (), skip_scale=None, **kwargs):
    """:func:`holdsgm.runs.inference.generate` with guidance; returns its ``Generated``.

    ``labels`` (n,) are the samples' own classes (None: unconditional); ``cfg_scale`` their classifier-free
    weight; ``directions`` semantic edits; ``skip_scale`` a Skip-Tuning spec. Other keywords (sampler, nfe,
    grid, seed, batch_size, ...) go to ``generate``.
    """
    if labels is None and cfg_scale != 1.0 and not directions:
        raise ConfigError("classifier-free guidance needs labels (a class to guide towards)")
    gm = GuidedModel(run.eps_model, cfg_scale=cfg_scale, directions=directions, skip_scale=skip_scale)
    return generate(dataclasses.replace(run, eps_model=gm), n, labels=labels, **kwargs)


def edit_grid(run, directions: Sequence[GuidanceDirection], *, k: int = 8, labels: Tensor | None = None,
              cfg_scale: float = 1.0, skip_scale=None, **kwargs) -> tuple[Tensor, list[str]]:
    """The same ``k`` seeds sampled without edits, with each direction alone, and with all of them.

    Returns (images (k, 2 + len(directions), *data_shape) -- or (k, 1 + ...) with one direction --,
    column titles). Keywords as :func:`guided_generate` (sampler, nfe, seed, ...).
    """
    lab = None if labels is None else labels[:k]
    cols: list[tuple[str, list[GuidanceDirection]]] = [("no edit", [])]
    cols += [(d.describe(), [d]) for d in directions]
    if len(directions) > 1:
        cols.append(("all edits", list(directions)))
    xs = []
    for _, dirs in cols:
        cfg = cfg_scale if lab is not None else 1.0
        g = guided_generate(run, k, labels=lab, cfg_scale=cfg, directions=dirs, skip_scale=skip_scale, **kwargs)
        xs.append(g.x)
    return torch.stack(xs, dim=1), [c[0] for c in cols]


def edit_figure(grid: Tensor, titles: Sequence[str], path, data_range=(-1.0, 1.0), title: str = "",
                row_labels: Sequence[str] | None = None) -> Path:
    """Save a (rows, cols, C, H, W) image grid with column titles (one seed per row)."""
    plt = pyplot()
    g = grid.detach().float().cpu().numpy()
    rows, cols = g.shape[:2]
    lo, hi = data_range
    fig, axes = plt.subplots(rows, cols, figsize=(1.15 * cols + 0.6, 1.15 * rows + 0.5), squeeze=False)
    for i in range(rows):
        for j in range(cols):
            img = np.clip((g[i, j] - lo) / (hi - lo), 0, 1)
            img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
            ax = axes[i, j]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=7)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, tight=False)
