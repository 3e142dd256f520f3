"""Sampling from a trained run with per-sample seeds (EDM's ``StackedRandomGenerator`` idea): sample i
uses seed ``seed + i``, so a sample does not depend on the batch size or on the samples beside it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import ConfigError, DataError, HoldsgmError
from ..sde import clipped_score
from ..tasks import vocoder_sample
from .loading import LoadedRun

#: the largest |sample| a vocoded wave is written with (16-bit PCM saturates at 1)
PEAK = 0.999
#: the fewest mel frames a vocoder takes (the MDCT of the frame-domain vocoder needs two)
MIN_FRAMES = 2
#: rounds of the mel-consistency projection (:func:`holdsgm.audio.mel_consistent`) after the SDE sample, by
#: default: with :data:`DEFAULT_PROJECT` on each of the 3 steps at NFE 4, 256 rounds in all. Rounds after the
#: sample alone, 8 held-out utterances at NFE 4 (PESQ / ESTOI; benchmarks/README.md section 4d): 0 rounds
#: 1.17 / 0.69, 32 2.05 / 0.92, 128 2.63 / 0.94, 256 2.94 / 0.96 (RTF +0.1 per 128 rounds on 2 cores);
#: Griffin-Lim 1.62 / 0.87. The default on 20 (section 4f): 2.87 / 0.953, RTF 0.15
DEFAULT_REFINE = 208
#: rounds of the same projection on every sampler step's data prediction, by default (GLA-Grad; see
#: :func:`holdsgm.tasks.vocoder_sample`). Chosen on 10 held-out utterances that the benchmark does not score (the
#: 21st to 30th; PESQ at 256 rounds in all, NFE 4): 0 per step 2.66, 8 2.76, 16 2.82, 32 2.75 (projection alone
#: from white noise 2.68; benchmarks/README.md section 4f)
DEFAULT_PROJECT = 16


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
    """Score evaluations used (at most the NFE asked for; see :func:`holdsgm.tasks.vocoder_times`)."""
    sampler: str
    grid: str
    seed: int
    seconds: float
    gain: float = 1.0
    """The factor the wave was scaled by so that its peak fits in [-1, 1] without clipping (1: none)."""
    refine: int = 0
    """Rounds of the mel-consistency projection applied to the SDE's sample (0: the sample itself)."""
    project: int = 0
    """Rounds of the projection applied to each sampler step's data prediction (0: none)."""

    @property
    def rtf(self) -> float:
        """Real-time factor: compute seconds / audio seconds."""
        return self.seconds * self.sr / max(1, self.wave.numel())


@torch.no_grad()
def vocode(run: LoadedRun, mel, *, nfe: int | None = None, sampler: str | None = None, grid: str | None = None,
           seed: int = 0, progress: bool = False, refine: int | None = None, project: int | None = None) -> Vocoded:
    """Vocode one log-mel (n_mels, frames) (:func:`holdsgm.audio.log_mel` of the run's features) with a
    trained speech run (:func:`vocoder_sample`; a wave whose peak exceeds :data:`PEAK` is scaled down to it,
    never clipped, and :attr:`Vocoded.gain` says by how much); ``nfe``/``sampler``/``grid``
    default to :func:`vocoder_defaults`. The noise comes from a per-sample generator seeded with ``seed``.
    ``refine`` rounds of :func:`holdsgm.audio.mel_consistent` then bring the sample's mel to the input's,
    keeping its phase and fine structure (None: :data:`DEFAULT_REFINE`; 0: the SDE's sample as it is).
    ``project`` rounds of the same projection are applied to every sampler step's data prediction, so each step
    continues from a wave whose mel is the input's (GLA-Grad; :func:`vocoder_sample`; None:
    :data:`DEFAULT_PROJECT`, or 0 when ``refine`` is 0, so that ``refine=0`` alone gives the SDE's sample)."""
    from ..audio import mel_consistent
    from ..progress import progress as progress_bar
    from ..samplers import PerSampleNoise

    info = run.dataset_info
    audio = info.audio
    if not info.is_speech or audio is None:
        raise ConfigError(f"{run.path} is not a vocoder (it was trained on {info.name!r}, not speech)")
    mel = torch.as_tensor(mel, dtype=torch.float32)
    if mel.dim() == 3 and mel.shape[0] == 1:
        mel = mel[0]
    n_mels = audio["n_mels"]
    if mel.dim() != 2 or mel.shape[0] != n_mels:
        raise DataError(f"the mel must have shape ({n_mels}, frames), got {tuple(mel.shape)}")
    if mel.shape[1] < MIN_FRAMES:
        raise DataError(f"the mel has {mel.shape[1]} frame(s); the vocoder needs at least {MIN_FRAMES} "
                        f"({MIN_FRAMES * audio['hop']} samples)")
    if not bool(torch.isfinite(mel).all()):
        raise DataError("the mel contains NaN or inf")
    if project is None:
        project = 0 if refine == 0 else DEFAULT_PROJECT
    refine = DEFAULT_REFINE if refine is None else refine
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
        raise ConfigError(f"refine must be an integer >= 0, got {refine!r}")
    if isinstance(project, bool) or not isinstance(project, int) or project < 0:
        raise ConfigError(f"project must be an integer >= 0, got {project!r}")
    d = vocoder_defaults(run)
    nfe, sampler, grid = nfe or d["nfe"], sampler or d["sampler"], grid or d["grid"]
    counter = progress_bar(enabled=False)  # counts the evaluations used (the adaptive ODE chooses its own)
    t0 = time.perf_counter()
    x = vocoder_sample(run.eps_model, run.sde, mel[None].to(run.device), nfe=nfe, sampler=sampler, grid=grid,
                       noise=PerSampleNoise([seed]), progress=progress, hop=audio["hop"], counter=counter,
                       project=project, audio=audio)
    wave = x[0, 0].float()
    if not bool(torch.isfinite(wave).all()):
        raise HoldsgmError("the vocoder produced NaN or inf (a diverging sampler? try more NFE or another sampler)")
    if refine:
        wave = mel_consistent(wave, mel.to(wave.device), refine, sr=int(audio["sr"]), n_fft=int(audio["n_fft"]),
                              hop=int(audio["hop"]), fmin=float(audio["fmin"]), fmax=float(audio["fmax"]))
    wave = wave.cpu()
    seconds = time.perf_counter() - t0
    peak = float(wave.abs().max())
    gain = PEAK / peak if peak > PEAK else 1.0
    return Vocoded(wave * gain, int(audio["sr"]), int(counter.n), sampler, grid, seed, seconds, gain, refine, project)
