"""Sampling from a trained run with per-sample seeds (EDM's ``StackedRandomGenerator`` idea): sample i
uses seed ``seed + i``, so a sample does not depend on the batch size or on the samples beside it."""

from __future__ import annotations

import functools
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
    plan: dict = field(default_factory=dict)
    """What was run: the sampler's full spec, grid, stop and steps (:meth:`SamplingPlan.describe`)."""


def class_labels(run: LoadedRun, n: int, label) -> Tensor | None:
    """Labels for n samples: None (unconditional), one class for all, or 'balanced' (0, 1, .., K-1, 0, ..)."""
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
def generate(
    run: LoadedRun,
    n: int,
    *,
    sampler: str | None = "sscs",
    nfe: int | None = 50,
    grid: str | None = None,
    seed: int = 0,
    labels: Tensor | None = None,
    batch_size: int = 2048,
    trajectory: int = 0,
    progress: bool = False,
    bound: float | str | None = "auto",
    clip: bool = True,
    **options,
) -> Generated:
    """Draw ``n`` samples from ``run`` (see :func:`holdsgm.samplers.sample` for sampler/nfe/grid).

    ``labels`` (n,) conditions a class-conditional model (None: the unconditional/null label).
    ``trajectory = k`` records the states of the first ``k`` samples at every step. ``sampler=None``: the
    measured default for the run's SDE at this NFE. ``bound``: the sampler's range guard (see
    :func:`holdsgm.samplers.sample`). ``clip``: clip the model's data predictions E[x0 | u_t] to the data's
    range (:func:`clipped_score`; DDPM's ``clip_denoised``): where the prediction is inside, nothing
    changes; at high noise it stops the 1 / kappa_t ~ 100x amplification of a network's error in the data
    prediction, which let a half-trained model's data-prediction samplers diverge.
    """
    from ..progress import progress as progress_bar
    from ..progress import ticking
    from ..samplers import SAMPLERS, plan_sampling, sample

    plan = plan_sampling(run.sde, sampler, nfe=nfe, grid=grid, **options)  # fails fast on a bad spec
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
    batches = -(-n // batch_size)
    adaptive = not SAMPLERS[plan.sampler].evals_per_step
    bar = progress_bar(None if adaptive or nfe is None else batches * nfe, unit="NFE", enabled=progress,
                       desc=f"sampling {n} ({plan.sampler} @ {'adaptive' if adaptive else nfe} NFE"
                            f"{f', {batches} batches' if batches > 1 else ''})")
    t0 = time.perf_counter()
    for i0 in range(0, n, batch_size):
        i1 = min(n, i0 + batch_size)
        seeds = list(range(seed + i0, seed + i1))
        y = None if labels is None else labels[i0:i1].to(device)
        score_fn = run.eps_model.with_condition(y)
        if clip and run.dataset_info.clip_bound is not None:
            score_fn = clipped_score(score_fn, run.sde, run.dataset_info.clip_bound)
        score_fn = ticking(score_fn, bar)
        callback = None
        if k and i0 == 0:
            from ..samplers import PerSampleNoise

            # the prior draw is the first draw of each per-sample generator: reproduce it for the figure
            u_T = run.sde.prior_sample((k, *shape), noise=PerSampleNoise(seeds[:k]), device=device)
            traj_times.append(float(run.sde.T))
            traj_states.append(u_T.float().cpu())

            def callback(i, t, u):
                traj_times.append(float(t))
                traj_states.append(u[:k].detach().float().cpu().clone())

        out = sample(
            score_fn,
            run.sde,
            (i1 - i0, *shape),
            sampler=sampler,
            nfe=nfe,
            grid=grid,
            noise=seeds,
            callback=callback,
            device=device,
            bound=bound,
            **options,
        )
        xs.append(out.x.float().cpu())
        us.append(out.u.float().cpu())
        nfe_used = out.nfe
    bar.close()
    seconds = time.perf_counter() - t0
    traj = torch.stack(traj_states) if traj_states else None
    return Generated(
        torch.cat(xs),
        torch.cat(us),
        nfe_used,
        seconds,
        list(range(seed, seed + n)),
        None if labels is None else labels.cpu(),
        traj_times,
        traj,
        plan.describe(),
    )


# ---------------------------------------------------------------------- the vocoder (speech runs)
def _vocoder_spec(sampler: str, grid: str, sde=None, nfe: int | None = None) -> tuple[str, dict, str]:
    """(name, sampler options, grid) of a sampler spec for the vocoder (ConfigError on a bad spec; 'auto':
    the default for ``sde`` at ``nfe``). The stop options (``eps``, ``sigma_min``) do not apply: the
    vocoder's last evaluation is its output."""
    from ..samplers import AUTO, check_sampler, default_sampler

    try:
        name, opts = check_sampler(sampler)
    except ValueError as e:
        raise ConfigError(f"sampler: {e}") from None
    if name == AUTO:
        name = default_sampler(sde, nfe)
    grid = opts.pop("grid", grid)
    for key in ("eps", "sigma_min", "rho"):
        opts.pop(key, None)
    return name, opts, grid


def vocoder_times(sde, nfe: int, sampler: str, grid: str) -> tuple[Tensor, int | None]:
    """(ts, steps) of a vocoder pass with ``nfe`` score evaluations: ``steps = (nfe - 1) // e`` steps of
    ``sampler`` (a name or spec; ``e`` evaluations per step) on the first ``steps + 1`` times
    ``T = t_0 > ... > t_steps`` of the ``grid`` with ``steps + 1`` intervals, then one evaluation at
    ``t_steps`` whose data prediction is the output. Dropping the grid's last point (``eps``) spends no
    evaluation where the state is already clean: the last step's mean is the data prediction (for
    ``nfe = 1``: at ``T``). The adaptive ``ode`` integrates from T to the default stop (noise level
    :data:`~holdsgm.samplers.DEFAULT_SIGMA_MIN`) with its own steps: ``steps`` is None then."""
    from ..samplers import DEFAULT_SIGMA_MIN, SAMPLERS, evals_per_step
    from ..samplers.grids import time_at_noise_level

    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ConfigError(f"nfe must be a positive integer, got {nfe!r}")
    name, opts, grid = _vocoder_spec(sampler, grid, sde, nfe)
    if not SAMPLERS[name].evals_per_step:
        return torch.tensor([sde.T, time_at_noise_level(sde, DEFAULT_SIGMA_MIN)], dtype=torch.float64), None
    steps = (nfe - 1) // evals_per_step(name, **opts)
    return _grid(sde, grid, steps + 1)[:-1].clone(), steps


@functools.lru_cache(maxsize=32)
def _grid(sde, grid: str, steps: int) -> Tensor:
    """:func:`~holdsgm.samplers.grids.sde_time_grid`, cached per SDE object (the kernel grids solve for their
    times by bisection, ~0.3 s for HOLD: too slow to repeat at every stage-two step)."""
    from ..samplers.grids import sde_time_grid

    return sde_time_grid(sde, grid, steps)


def clipped_score(score_fn, sde, bound: Tensor):
    """``score_fn`` with its data prediction clipped to ``[-bound, bound]`` (DDPM's ``clip_denoised``; Ho
    et al. 2020): with ``eps_n = a_t^T u - kappa_t x0`` (:mod:`holdsgm.sde.posterior`), the score
    ``s = -ell_t (a_t^T u - kappa_t xhat)`` is returned with ``xhat`` replaced by ``clamp(xhat, -bound, bound)``.
    Unchanged where the prediction lies inside; at high noise (``kappa_T ~ 0.01``) it stops a small error
    of the network from becoming a 100x larger error of the few-step sampler's first data prediction.
    ``bound`` broadcasts against the data component (a number, or per sample / per position)."""
    from ..sde.posterior import reference_kernel

    def score(u: Tensor, t: Tensor) -> Tensor:
        s = score_fn(u, t)
        tt = sde._batch_time(t, u)
        ell, a, kappa, _ = reference_kernel(sde, tt[:1] if bool((tt == tt[0]).all()) else tt)
        comps = torch.stack(sde.components(u), dim=1)
        au = (a.to(u.dtype).reshape(-1, sde.order, *([1] * (comps.dim() - 2))) * comps).sum(1)
        ell, kappa = sde._per_sample(ell, s), sde._per_sample(kappa, s)
        xhat = (au + s / ell) / kappa
        return -ell * (au - kappa * torch.clamp(xhat, -bound, bound))

    return score


def vocoder_sample(eps_model, sde, mel: Tensor, *, hop: int, nfe: int, sampler: str = "exp1", grid: str = "edm",
                   noise=None, grad: bool = False, progress: bool = False, clip: float | None = 1.0,
                   counter=None) -> Tensor:
    """Waveforms (B, 1, frames * hop) for log-mels ``mel`` (B, n_mels, frames) with at most ``nfe``
    score evaluations (see :func:`vocoder_times`): u_T from the prior, the sampler's steps without
    gradients, then the data prediction ``E[x0 | u_t]`` (:func:`holdsgm.sde.posterior.posterior_mean`)
    of the last evaluation, with gradients when ``grad`` (stage two's loss; Lay et al. 2023). For a
    PriorGrad model (``eps_model.net`` a :class:`holdsgm.audio.PriorGradNet`) the sampler works on
    ``u / sigma`` and the output is multiplied back by ``sigma``. ``noise``: as in
    :func:`holdsgm.samplers.sample` (per-sample seeds make a sample independent of its batch). ``clip``:
    the sampler's data predictions are clipped to ``[-clip, clip]`` in wave units (:func:`clipped_score`;
    waves live in [-1, 1]); None: no clipping. The output itself is not clipped (stage two's loss needs
    its gradient everywhere; :func:`vocode` clips the finished wave). ``counter``: an object whose
    ``update(1)`` is called at every score evaluation (e.g. a :func:`holdsgm.progress.progress` bar)."""
    from ..audio import PriorGradNet
    from ..samplers import SAMPLERS
    from ..samplers.noise import as_noise
    from ..sde.posterior import posterior_mean

    net = eps_model.net
    if mel.dim() != 3:
        raise ConfigError(f"mel must have shape (B, n_mels, frames), got {tuple(mel.shape)}")
    name, opts, _ = _vocoder_spec(sampler, grid, sde, nfe)
    ts, steps = vocoder_times(sde, nfe, sampler, grid)
    noise = as_noise(noise)
    b = mel.shape[0]
    u = sde.prior_sample((b, 1, mel.shape[-1] * hop), noise=noise, dtype=mel.dtype, device=mel.device)
    score_fn = eps_model.with_condition(mel)
    if counter is not None:
        from ..progress import ticking

        score_fn = ticking(score_fn, counter)
    sigma = net.std(mel).to(mel.dtype) if isinstance(net, PriorGradNet) else None
    if steps is None or steps:
        step_score = score_fn
        if clip is not None:
            step_score = clipped_score(score_fn, sde, float(clip) if sigma is None else float(clip) / sigma)
        with torch.no_grad():
            kw = {} if steps is None else {"noise": noise, "progress": progress}  # the ODE has neither
            u = SAMPLERS[name].fn(step_score, sde, u, ts, denoise=False, **kw, **opts).u
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        t = torch.full((b,), float(ts[-1]), dtype=torch.float64, device=mel.device)
        x = posterior_mean(sde, u, t, score_fn(u, t))
    return x if sigma is None else x * sigma


def vocoder_defaults(run: LoadedRun) -> dict:
    """``{nfe, sampler, grid}`` a run vocodes with by default: stage two's (the K it was fine-tuned for)
    when it is a stage-two run, else its ``sample`` section's."""
    c = run.config
    src = c.stage2 if c.stage2.enabled else c.sample
    return {"nfe": src.nfe, "sampler": src.sampler, "grid": src.grid}


@dataclass
class Vocoded:
    """A waveform made by :func:`vocode` and how."""

    wave: Tensor
    """(frames * hop,) float32 on the CPU."""
    sr: int
    nfe: int
    """Score evaluations used (at most the NFE asked for; see :func:`vocoder_times`)."""
    sampler: str
    grid: str
    seed: int
    seconds: float

    @property
    def rtf(self) -> float:
        """Real-time factor: compute seconds / audio seconds."""
        return self.seconds * self.sr / max(1, self.wave.numel())


@torch.no_grad()
def vocode(run: LoadedRun, mel, *, nfe: int | None = None, sampler: str | None = None, grid: str | None = None,
           seed: int = 0, progress: bool = False) -> Vocoded:
    """Vocode one log-mel (n_mels, frames) (:func:`holdsgm.audio.log_mel` of the run's features) with a
    trained speech run (:func:`vocoder_sample`, the wave clipped to [-1, 1]); ``nfe``/``sampler``/``grid``
    default to :func:`vocoder_defaults`. The noise comes from a per-sample generator seeded with ``seed``."""
    from ..progress import progress as progress_bar
    from ..samplers import PerSampleNoise

    info = run.dataset_info
    if not info.is_speech:
        raise ConfigError(f"{run.path} is not a vocoder (it was trained on {info.name!r}, not speech)")
    mel = torch.as_tensor(mel, dtype=torch.float32)
    if mel.dim() == 3 and mel.shape[0] == 1:
        mel = mel[0]
    n_mels = info.audio["n_mels"]
    if mel.dim() != 2 or mel.shape[0] != n_mels or mel.shape[1] < 1:
        raise ConfigError(f"the mel must have shape ({n_mels}, frames), got {tuple(mel.shape)}")
    if not bool(torch.isfinite(mel).all()):
        raise ConfigError("the mel contains NaN or inf")
    d = vocoder_defaults(run)
    nfe, sampler, grid = nfe or d["nfe"], sampler or d["sampler"], grid or d["grid"]
    counter = progress_bar(enabled=False)  # counts the evaluations used (the adaptive ODE chooses its own)
    t0 = time.perf_counter()
    x = vocoder_sample(run.eps_model, run.sde, mel[None].to(run.device), nfe=nfe, sampler=sampler, grid=grid,
                       noise=PerSampleNoise([seed]), progress=progress, hop=info.audio["hop"], counter=counter)
    seconds = time.perf_counter() - t0
    wave = x[0, 0].float().cpu().clamp(-1.0, 1.0)
    return Vocoded(wave, int(info.audio["sr"]), int(counter.n), sampler, grid, seed, seconds)
