"""The SDE vocoder (mel -> waveform, in the manner of ItoWave): hybrid score matching of speech segments
conditioned on their log-mel (optionally with PriorGrad's mel-derived noise scale), and the few-step
vocoder pass that stage two trains through and ``holdsgm vocode`` runs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..engine import derive_seed
from ..errors import ConfigError
from ..losses import EpsModel, hsm_loss
from ..sde.base import LinearSDE
from .hsm import STREAM_SPEECH, HSMBatch, HSMDraws


def conditioned_network(net: nn.Module, priorgrad: dict | None) -> nn.Module:
    """``net`` as the EpsModel should call it: wrapped by :class:`~holdsgm.audio.PriorGradNet` when
    ``priorgrad`` (``{"energy_max", "min_std", "hop"}``) is given (the SDE then runs on ``u / sigma``), by
    :class:`~holdsgm.audio.SpectralNet` for ``{"kind": "spectral", "scale", "hop"}`` (the SDE runs on the
    whitened MDCT coefficients)."""
    if priorgrad is None:
        return net
    from ..audio import PriorGradNet, SpectralCoordinates, SpectralNet

    if priorgrad.get("kind") == "spectral":
        return SpectralNet(net, SpectralCoordinates(priorgrad["scale"], hop=priorgrad["hop"]))

    return PriorGradNet(net, priorgrad["energy_max"], priorgrad["min_std"], priorgrad["hop"])


class SpeechSegments:
    """This rank's (wave, log-mel) training segments of a step: a pure function of (seed, step)."""

    def __init__(self, speech, batch_size: int, segment_frames: int, seed: int):
        self.speech, self.batch_size, self.segment_frames, self.seed = speech, batch_size, segment_frames, seed
        self.rows, self.device = slice(0, batch_size), torch.device("cpu")

    def bind(self, device: torch.device, rows: slice) -> None:
        self.device, self.rows = device, rows

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        from ..audio import random_segments

        wave, mel = random_segments(self.speech, self.batch_size, self.segment_frames,
                                    seed=derive_seed(self.seed, STREAM_SPEECH, step))
        return wave[self.rows].to(self.device), mel[self.rows].to(self.device)


class VocoderTask:
    """HSM training of a waveform network conditioned on the log-mel (``speech``: a
    :class:`~holdsgm.audio.SpeechDataset`; segments of ``segment_frames`` frames). ``priorgrad``: see
    :func:`conditioned_network`. ``mixed``/``data_var``: CLD's mixed score (the network predicts the residual
    to the Gaussian score of data with per-coordinate variance ``data_var``, in the SDE's coordinates);
    ``precond``: EDM-style preconditioning around the same Gaussian (:class:`~holdsgm.losses.EpsModel`)."""

    def __init__(self, sde: LinearSDE, net: nn.Module, speech, *, batch_size: int, seed: int, segment_frames: int,
                 priorgrad: dict | None = None, weighting: str = "unit", stratified: bool = True,
                 mixed: bool = False, data_var: float = 1.0, precond: bool = False):
        self.sde, self.net, self.priorgrad, self.weighting = sde, net, priorgrad, weighting
        self.mixed, self.data_var, self.precond = mixed, data_var, precond
        self.segments = SpeechSegments(speech, batch_size, segment_frames, seed)
        self.draws = HSMDraws(sde, batch_size, seed, stratified)
        self.batch_size = batch_size
        self._eps_model: tuple[nn.Module, EpsModel] | None = None

    def bind(self, device: torch.device, rank: int, world_size: int) -> None:
        local = self.batch_size // world_size
        rows = slice(rank * local, (rank + 1) * local)
        self.segments.bind(device, rows)
        self.draws.bind(device, rows)

    def eps_model(self, net: nn.Module) -> EpsModel:
        """The eps/score wrapper of ``net`` (with PriorGrad's scale where it is on), made once per network."""
        if self._eps_model is None or self._eps_model[0] is not net:
            self._eps_model = (net, EpsModel(conditioned_network(net, self.priorgrad), self.sde, mixed=self.mixed,
                                             data_var=self.data_var, precond=self.precond))
        return self._eps_model[1]

    def batch(self, step: int) -> HSMBatch:
        x0, mel = self.segments(step)
        shape = (1, *x0.shape[1:])
        if self.priorgrad is not None and self.priorgrad.get("kind") == "spectral":
            shape = (1, self.priorgrad["hop"], mel.shape[-1])
        z, _ = self.draws.noise(self.sde.state_shape(shape)[1:])
        t, kernel = self.draws.times(step)
        return HSMBatch(x0, mel, t, z, kernel)

    def split(self, batch: HSMBatch, parts: int) -> list[HSMBatch]:
        return batch.split(parts)

    def loss(self, batch: HSMBatch, net: nn.Module) -> Tensor:
        from ..audio import SpectralNet

        model = self.eps_model(net)
        x0 = batch.x0
        if isinstance(model.net, SpectralNet):  # the SDE runs on the whitened MDCT coefficients
            assert batch.y is not None  # speech batches carry their mels
            x0 = model.net.coords.encode(x0, batch.y)
        elif self.priorgrad is not None:  # the SDE runs on u / sigma
            from ..audio import priorgrad_std

            pg = self.priorgrad
            x0 = x0 / priorgrad_std(batch.y, pg["energy_max"], pg["min_std"], pg["hop"])
        return hsm_loss(model.eps, self.sde, x0, t=batch.t, z=batch.z, weighting=self.weighting, y=batch.y,
                        reduction="mean", kernel=batch.kernel, net_weight=model.loss_weight(batch.t))

    def init_weights(self) -> None:
        return None

    def state_dict(self) -> dict:
        return self.draws.state_dict()

    def load_state_dict(self, state: dict, step: int) -> None:
        self.draws.load_state_dict(state)


# ---------------------------------------------------------------------- the few-step vocoder pass
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
    from ..samplers.grids import sde_time_grid

    # memoised on the SDE: the kernel grids solve for their times by bisection (~0.3 s for HOLD), too slow to
    # repeat at every stage-two step
    ts = sde.cached(("vocoder-grid", grid, steps + 1), lambda: sde_time_grid(sde, grid, steps + 1))
    return ts[:-1].clone(), steps


def vocoder_sample(eps_model, sde, mel: Tensor, *, hop: int, nfe: int, sampler: str = "exp1", grid: str = "edm",
                   noise=None, grad: bool = False, progress: bool = False, clip: float | None = 1.0,
                   counter=None, project: int = 0, audio: dict | None = None) -> Tensor:
    """Waveforms (B, 1, frames * hop) for log-mels ``mel`` (B, n_mels, frames) with at most ``nfe``
    score evaluations (see :func:`vocoder_times`): u_T from the prior, the sampler's steps without
    gradients, then the data prediction ``E[x0 | u_t]`` (:func:`holdsgm.sde.posterior.posterior_mean`)
    of the last evaluation, with gradients when ``grad`` (stage two's loss; Lay et al. 2023). For a
    PriorGrad model (``eps_model.net`` a :class:`holdsgm.audio.PriorGradNet`) the sampler works on
    ``u / sigma`` and the output is multiplied back by ``sigma``; for a frame-domain model
    (:class:`holdsgm.audio.SpectralNet`) it works on the whitened MDCT coefficients, which are decoded to the
    wave at the end. ``noise``: as in :func:`holdsgm.samplers.sample` (per-sample seeds make a sample
    independent of its batch). ``clip``: the sampler's data predictions are clipped to ``[-clip, clip]`` in
    wave units (:func:`clipped_score`; waves live in [-1, 1]), for a frame-domain model to its coordinates'
    bound ``coords.clip`` in whitened units; None: no clipping. The output itself is not clipped (stage two's
    loss needs its gradient everywhere; :func:`holdsgm.runs.inference.vocode` scales a too loud finished wave).
    ``counter``: an object whose ``update(1)`` is called at every score evaluation (e.g. a
    :func:`holdsgm.progress.progress` bar). ``project``: rounds of :func:`holdsgm.audio.mel_consistent`
    applied to every step's data prediction (decoded to the wave and encoded back; GLA-Grad, Liu et al. 2024), so
    that each step continues from a wave whose mel is the input's (0: none; ``audio``: the run's STFT settings
    ``{sr, n_fft, fmin, fmax}``, needed then)."""
    from ..audio import PriorGradNet, SpectralNet

    net = eps_model.net
    if mel.dim() != 3:
        raise ConfigError(f"mel must have shape (B, n_mels, frames), got {tuple(mel.shape)}")
    b = mel.shape[0]
    spectral = net.coords if isinstance(net, SpectralNet) else None
    shape = (b, 1, mel.shape[-1] * hop) if spectral is None else spectral.shape(mel)
    sigma = net.std(mel).to(mel.dtype) if isinstance(net, PriorGradNet) else None
    bound = None
    if clip is not None:  # whitened units for a frame-domain model (audio.mdct.SPECTRAL_CLIP)
        bound = spectral.clip if spectral is not None else float(clip) if sigma is None else float(clip) / sigma
    projector = None
    if project:
        if audio is None:
            raise ConfigError("project > 0 needs the run's STFT settings (audio={sr, n_fft, fmin, fmax})")
        projector = _mel_projector(mel, project, hop, audio, spectral, sigma, bound)
    x = conditioned_sample(eps_model, sde, mel, shape, nfe=nfe, sampler=sampler, grid=grid, noise=noise, grad=grad,
                           progress=progress, clip=bound, counter=counter, project=projector)
    if spectral is not None:
        return spectral.decode(x, mel)
    return x if sigma is None else x * sigma


def _mel_projector(mel: Tensor, rounds: int, hop: int, audio: dict, spectral, sigma, bound):
    """``project(xhat, t)`` for :func:`conditioned_sample`: the data prediction (in the sampler's coordinates)
    as a wave, ``rounds`` of :func:`holdsgm.audio.mel_consistent` towards ``mel``, back to the coordinates."""
    from ..audio import mel_consistent

    kw = {k: audio[k] for k in ("sr", "n_fft", "fmin", "fmax") if k in audio}

    def project(xhat: Tensor, t: Tensor) -> Tensor:
        wave = spectral.decode(xhat, mel) if spectral is not None else xhat if sigma is None else xhat * sigma
        wave = mel_consistent(wave[:, 0], mel, rounds, hop=hop, **kw)[:, None]
        out = spectral.encode(wave, mel) if spectral is not None else wave if sigma is None else wave / sigma
        return out if bound is None else torch.clamp(out, -bound, bound)

    return project


def conditioned_sample(eps_model, sde, cond: Tensor, shape: tuple[int, ...], *, nfe: int, sampler: str = "exp1",
                       grid: str = "edm", noise=None, grad: bool = False, progress: bool = False,
                       clip: float | Tensor | None = None, counter=None, prior_scale: float = 1.0,
                       project=None) -> Tensor:
    """The data (shape ``shape``) a few-step pass of the reverse SDE conditioned on ``cond`` ends at, with at
    most ``nfe`` score evaluations (:func:`vocoder_times`): u_T from the prior, the sampler's steps without
    gradients (data predictions clipped to ``[-clip, clip]`` unless None), then the data prediction
    ``E[x0 | u_t]`` of the last evaluation, with gradients when ``grad`` (stage two). ``prior_scale``
    multiplies u_T (Grad-TTS's temperature tau starts from N(mu, I / tau): ``prior_scale = tau^-1/2``, less
    varied, smoother output). ``project(xhat, t)``: maps each step's (clipped) data prediction before the
    sampler uses it (:func:`~holdsgm.sde.posterior.projected_score`; the last evaluation's is returned as it
    is). Shared by the vocoder
    (:func:`vocoder_sample`) and the text-to-speech decoder (:func:`holdsgm.tasks.tts.tts_sample`)."""
    from ..samplers import SAMPLERS
    from ..samplers.noise import as_noise
    from ..sde.posterior import clipped_score, posterior_mean, projected_score

    name, opts, _ = _vocoder_spec(sampler, grid, sde, nfe)
    ts, steps = vocoder_times(sde, nfe, sampler, grid)
    noise = as_noise(noise)
    b = shape[0]
    u = sde.prior_sample(shape, noise=noise, dtype=cond.dtype, device=cond.device)
    if prior_scale != 1.0:
        u = u * prior_scale
    score_fn = eps_model.with_condition(cond)
    if counter is not None:
        from ..progress import ticking

        score_fn = ticking(score_fn, counter)
    if steps is None or steps:
        step_score = score_fn if clip is None else clipped_score(score_fn, sde, clip)
        if project is not None:
            step_score = projected_score(step_score, sde, project)
        with torch.no_grad():
            kw = {} if steps is None else {"noise": noise, "progress": progress}  # the ODE has neither
            u = SAMPLERS[name].fn(step_score, sde, u, ts, denoise=False, **kw, **opts).u
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        t = torch.full((b,), float(ts[-1]), dtype=torch.float64, device=cond.device)
        return posterior_mean(sde, u, t, score_fn(u, t))
