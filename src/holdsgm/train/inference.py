"""Sampling from a trained run with per-sample seeds (EDM's ``StackedRandomGenerator`` idea): sample i
uses seed ``seed + i``, so a sample does not depend on the batch size or on the samples beside it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import ConfigError
from .checkpoint import LoadedRun


@dataclass
class Generated:
    """Samples and how they were made."""

    x: Tensor
    """Data component (n, *data_shape), CPU float32."""
    u: Tensor
    """Full final phase-space state (n, order*C, ...), CPU float32."""
    nfe: int
    seconds: float
    seeds: list[int]
    labels: Tensor | None = None
    traj_times: list[float] = field(default_factory=list)
    """Times of the recorded trajectory states (T first, then after each step)."""
    traj: Tensor | None = None
    """States (len(traj_times), k, order*C, ...) of the first k samples along the way."""


def class_labels(run: LoadedRun, n: int, label) -> Tensor | None:
    """Labels for n samples: None (unconditional), an int class for all, or 'balanced' (0, 1, ..., K-1, 0, ...)."""
    k = run.dataset_info.n_classes
    if label is None:
        return None
    if not k:
        raise ConfigError(f"--class given, but the model in {run.path} is not class-conditional")
    if label == "balanced":
        return torch.arange(n) % k
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < k:
        raise ConfigError(f"class must be an integer in [0, {k - 1}], got {label!r}")
    return torch.full((n,), int(label), dtype=torch.long)


@torch.no_grad()
def generate(run: LoadedRun, n: int, *, sampler: str = "sscs", nfe: int | None = 50, grid: str = "uniform",
             seed: int = 0, labels: Tensor | None = None, batch_size: int = 2048, trajectory: int = 0,
             progress: bool = False, **options) -> Generated:
    """Draw ``n`` samples from ``run`` (see :func:`holdsgm.samplers.sample` for sampler/nfe/grid).

    ``labels`` (n,) conditions a class-conditional model (None: the unconditional/null label).
    ``trajectory = k`` records the states of the first ``k`` samples at every step.
    """
    from ..samplers import sample

    if not (isinstance(n, int) and n >= 1):
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    shape = run.dataset_info.data_shape
    device = run.device
    xs, us, nfe_used = [], [], 0
    traj_times: list[float] = []
    traj_states: list[Tensor] = []
    k = min(trajectory, n, batch_size)
    t0 = time.perf_counter()
    for i0 in range(0, n, batch_size):
        i1 = min(n, i0 + batch_size)
        seeds = list(range(seed + i0, seed + i1))
        y = None if labels is None else labels[i0:i1].to(device)
        score_fn = run.eps_model.with_condition(y)
        callback = None
        if k and i0 == 0:
            from ..samplers import PerSampleNoise

            # the prior draw is the first draw of each per-sample generator: reproduce it for the figure
            u_T = run.sde.prior_sample((k, *shape), noise=PerSampleNoise(seeds[:k]), device=device)
            traj_times.append(float(run.sde.T))
            traj_states.append(u_T.float().cpu())

            def callback(i, t, u):  # noqa: E306 - closes over this batch's lists
                traj_times.append(float(t))
                traj_states.append(u[:k].detach().float().cpu().clone())
        out = sample(score_fn, run.sde, (i1 - i0, *shape), sampler=sampler, nfe=nfe, grid=grid, noise=seeds,
                     progress=progress, callback=callback, device=device, **options)
        xs.append(out.x.float().cpu())
        us.append(out.u.float().cpu())
        nfe_used = out.nfe
    seconds = time.perf_counter() - t0
    traj = torch.stack(traj_states) if traj_states else None
    return Generated(torch.cat(xs), torch.cat(us), nfe_used, seconds, list(range(seed, seed + n)),
                     None if labels is None else labels.cpu(), traj_times, traj)
