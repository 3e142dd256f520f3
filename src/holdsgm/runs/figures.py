"""Figures of samples and phase-space trajectories (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..plotting import pyplot, save_figure

COMPONENT_NAMES = ("x", "v", "a")


def component_name(k: int) -> str:
    return COMPONENT_NAMES[k] if k < len(COMPONENT_NAMES) else f"u{k + 1}"


def _np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _lims(*arrays, q: float = 0.999) -> tuple[float, float]:
    pts = np.concatenate([a[np.isfinite(a).all(1)] for a in arrays if len(a)])
    if not len(pts):
        return -1.0, 1.0
    lo, hi = np.quantile(pts, 1 - q), np.quantile(pts, q)
    pad = 0.08 * (hi - lo + 1e-9)
    return float(lo - pad), float(hi + pad)


def _scatter(ax, pts: np.ndarray, title: str, lims, color: str) -> None:
    ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5, color=color, linewidths=0, rasterized=True)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(*lims)
    ax.set_ylim(*lims)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)


def scatter_figure(samples, path, reference=None, title: str = "samples") -> Path:
    """2-D scatter of samples, next to the reference data when given."""
    plt = pyplot()
    s = _np(samples).reshape(len(samples), -1)[:, :2]
    panels = [(s, title, "C1")]
    if reference is not None:
        r = _np(reference).reshape(len(reference), -1)[:, :2]
        panels.insert(0, (r, "data (held out)", "C0"))
    lims = _lims(*[p[0] for p in panels])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (pts, name, c) in zip(axes[0], panels):
        _scatter(ax, pts, f"{name} (n={len(pts)})", lims, c)
    return save_figure(fig, path)


def image_grid(x, data_range=(-1.0, 1.0), ncol: int | None = None) -> np.ndarray:
    """(N, C, H, W) -> one (rows*H, cols*W[, C]) array in [0, 1] with 1-pixel gaps."""
    a = _np(x)
    lo, hi = data_range if data_range is not None else (float(a.min()), float(a.max()))
    a = np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1)
    n, c, h, w = a.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = np.ones((nrow * (h + 1) + 1, ncol * (w + 1) + 1, c), dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = a[i].transpose(
            1, 2, 0
        )
    return grid[..., 0] if c == 1 else grid


def image_grid_figure(x, path, data_range=(-1.0, 1.0), title: str = "samples", max_images: int = 100) -> Path:
    plt = pyplot()
    g = image_grid(x[:max_images], data_range)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(g, cmap="gray" if g.ndim == 2 else None, interpolation="nearest", vmin=0, vmax=1)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    return save_figure(fig, path)


def _robust_scale(c: np.ndarray) -> tuple[float, float]:
    """(typical magnitude, largest magnitude) of a panel's finite values: the 90 % quantile of |c| and max |c|."""
    a = np.abs(c[np.isfinite(c)])
    if not a.size:
        return 1.0, 1.0
    return float(np.quantile(a, 0.9)) or 1.0, float(a.max())


def _trajectory_axes(axes, times, traj: np.ndarray, order: int, max_paths: int = 24) -> None:
    """One panel per component: its first coordinate vs time, for a few samples (reverse time, T -> 0).

    Each panel has its own y-axis; where a few paths jump far beyond the rest (a sampler diverging, or
    HOLD's acceleration near t = 0) the axis is symmetric-logarithmic, linear within the typical range, so
    the other paths stay readable. Colours: the angle at which a path's x ends (2-D data), the same in
    every panel, so one path can be followed through x, v and a."""
    comps = np.split(traj.reshape(traj.shape[0], traj.shape[1], -1), order, axis=2)
    final = comps[0][-1, :, :2] if comps[0].shape[2] >= 2 else None
    angle = np.arctan2(final[:, 1], final[:, 0]) if final is not None else np.zeros(traj.shape[1])
    colors = pyplot().cm.hsv((angle + np.pi) / (2 * np.pi))
    t = np.asarray(times)
    for k, ax in enumerate(axes):
        c = comps[k][:, :, 0]
        for j in range(min(max_paths, c.shape[1])):
            ax.plot(t, c[:, j], lw=0.7, alpha=0.8, color=colors[j])
        typical, largest = _robust_scale(c[:, :max_paths])
        if largest > 20 * typical:
            ax.set_yscale("symlog", linthresh=typical)
            ax.set_title(f"{component_name(k)}$_1$(t)  (symlog: |{component_name(k)}| up to {largest:.3g})",
                         fontsize=9)
        else:
            ax.set_title(f"{component_name(k)}$_1$(t)", fontsize=10)
        ax.set_xlim(t.max(), t.min())
        ax.set_xlabel("t (reverse time: T on the left)", fontsize=8)
        ax.set_ylabel(f"{component_name(k)}$_1$, first coordinate", fontsize=8)
        ax.tick_params(labelsize=7)
    if final is not None and len(axes):
        axes[0].text(0.02, 0.02, "colour: where x ends (angle)", transform=axes[0].transAxes, fontsize=7,
                     alpha=0.8)


def trajectory_figure(
    times, traj, order: int, path, data_range=None, title: str = "phase-space trajectory"
) -> Path:
    """Vector data: each component's first coordinate against time for a few samples. Images: rows are
    the components (x, v, a, ...), columns snapshots along the reverse-time trajectory of sample 0."""
    plt = pyplot()
    traj = _np(traj)
    if traj.ndim == 3:  # (steps, k, order*d)
        fig, axes = plt.subplots(1, order, figsize=(3.4 * order, 3.0), squeeze=False)
        _trajectory_axes(axes[0], times, traj, order)
        fig.suptitle(title, fontsize=10, y=1.04)
        return save_figure(fig, path)
    steps = traj.shape[0]
    cols = np.unique(np.linspace(0, steps - 1, min(8, steps)).round().astype(int))
    comps = np.split(traj[:, 0], order, axis=1)  # each (steps, C, H, W)
    fig, axes = plt.subplots(order, len(cols), figsize=(1.3 * len(cols), 1.4 * order), squeeze=False)
    for k in range(order):
        lim = float(np.abs(comps[k]).max()) or 1.0
        for j, s in enumerate(cols):
            img = comps[k][s]
            img = img[0] if img.shape[0] == 1 else np.clip((img.transpose(1, 2, 0) + lim) / (2 * lim), 0, 1)
            ax = axes[k, j]
            ax.imshow(
                img,
                cmap="gray",
                vmin=-lim if img.ndim == 2 else None,
                vmax=lim if img.ndim == 2 else None,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_title(f"t={times[s]:.3g}", fontsize=7)
            if j == 0:
                ax.set_ylabel(component_name(k), fontsize=9)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def demo_figure(reference, samples, times, traj, order: int, path, title: str = "") -> Path:
    """Data vs samples (2-D) and the x, v, a trajectories of a few samples, in one PNG."""
    plt = pyplot()
    r = _np(reference)[:, :2]
    s = _np(samples)[:, :2]
    has_traj = traj is not None and len(times) > 1
    ncols = 2 + (order if has_traj else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(3.3 * ncols, 3.3), squeeze=False)
    lims = _lims(r, s)
    _scatter(axes[0, 0], r, f"data (held out, n={len(r)})", lims, "C0")
    _scatter(axes[0, 1], s, f"samples (n={len(s)})", lims, "C1")
    if has_traj:
        _trajectory_axes(axes[0, 2:], times, _np(traj), order)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
