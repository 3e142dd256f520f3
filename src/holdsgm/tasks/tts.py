"""Text to speech in the manner of ItoTTS / Grad-TTS: :class:`TTSTask` trains the text encoder (prior mean
mu and log-durations of the symbols), aligns text and mel by monotonic alignment search and trains the SDE
decoder on the residual mel ``y - mu_y`` conditioned on ``mu_y``; :class:`ResGradTask` trains ResGrad's
residual model (Chen et al. 2023) on the residual between a frozen fast predictor's mel and the truth.
:func:`tts_sample` is the decoder's few-step pass.

Mels are the log-mels the vocoder reads (:func:`holdsgm.audio.log_mel`), normalised per bin by the training
set's mean and standard deviation (:class:`MelNorm`), so the SDE's data is of unit scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..engine import derive_seed
from ..errors import ConfigError, HoldsgmError
from ..losses import EpsModel
from ..sde.base import LinearSDE
from ..text.align import gaussian_log_likelihood, maximum_path
from .hsm import HSMDraws
from .vocoder import conditioned_sample

STREAM_TEXT, STREAM_TTS_STAGE2 = 8, 9
LOG_2PI = math.log(2 * math.pi)
#: the bound on the decoder's data predictions (the residual y - mu_y), in normalised mel units: the
#: normalised log-mels of the default corpus lie in [-4.6, 4.2] (measured); an untrained or few-step decoder
#: can otherwise predict mels far outside what the vocoder ever saw (NaN out of the vocoder, measured)
TTS_CLIP = 6.0


@dataclass
class MelNorm:
    """Per-bin mean and standard deviation of the training log-mels: ``(mel - mean) / std`` and back."""

    mean: Tensor  # (n_mels,)
    std: Tensor

    @classmethod
    def of(cls, mels) -> MelNorm:
        cat = torch.cat([m.double() for m in mels], dim=1)
        return cls(cat.mean(1).float(), cat.std(1).clamp_min(1e-3).float())

    @classmethod
    def from_lists(cls, mean, std) -> MelNorm:
        return cls(torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32))

    def normalize(self, mel: Tensor) -> Tensor:
        return (mel - self.mean.to(mel)[:, None]) / self.std.to(mel)[:, None]

    def denormalize(self, y: Tensor) -> Tensor:
        return y * self.std.to(y)[:, None] + self.mean.to(y)[:, None]


@dataclass
class TextMelBatch:
    """Padded symbols and normalised mels, the decoder's segments and the SDE's draws of one step."""

    ids: Tensor  # (B, Tx) long
    x_len: Tensor  # (B,)
    mel: Tensor  # (B, n_mels, Ty)
    y_len: Tensor  # (B,)
    starts: Tensor  # (B,) first frame of each decoder segment
    index: Tensor  # (B,) the utterances (indices into the corpus)
    t: Tensor
    z: Tensor
    kernel: object

    def split(self, parts: int) -> list[TextMelBatch]:
        if parts == 1:
            return [self]
        raise ConfigError("text-to-speech training does not accumulate gradients; use train.grad_accum: 1")


def pad_stack(seqs: list[Tensor], value: float = 0.0) -> Tensor:
    """Tensors (..., L_i) padded at the end of the last axis to the longest and stacked."""
    n = max(int(s.shape[-1]) for s in seqs)
    return torch.stack([nn.functional.pad(s, (0, n - s.shape[-1]), value=value) for s in seqs])


def segment(x: Tensor, starts: Tensor, frames: int) -> Tensor:
    """Frames ``starts[b] .. starts[b] + frames`` of each item of ``x`` (B, C, T) (zero past the end)."""
    if x.shape[-1] < frames:
        x = nn.functional.pad(x, (0, frames - x.shape[-1]))
    idx = (starts[:, None] + torch.arange(frames, device=x.device)[None, :]).clamp_max(x.shape[-1] - 1)
    out = torch.gather(x, 2, idx[:, None, :].expand(-1, x.shape[1], -1))
    return out


def frame_mask(batch: TextMelBatch) -> Tensor:
    """(B, Ty) float: 1 on each utterance's frames, 0 on the padding."""
    t = torch.arange(batch.mel.shape[-1], device=batch.mel.device)
    return (t[None, :] < batch.y_len[:, None]).float()


def residual_scale(net: nn.Module | None) -> float:
    """The scale the SDE's data (the residual mel) is divided by (:class:`holdsgm.nets.MelUNet`; 1 for other
    networks)."""
    net = getattr(net, "module", net)  # DDP
    net = getattr(net, "net", net)  # the engine's autocast wrapper
    return float(getattr(net, "residual_scale", 1.0))


def residual_hsm_loss(eps_model: EpsModel, sde: LinearSDE, x0: Tensor, cond: Tensor, mask: Tensor, t: Tensor,
                      z: Tensor, kernel) -> Tensor:
    """The HSM loss (unit weighting, in the network's units: :meth:`EpsModel.loss_weight`) of the residual
    ``x0`` (B, C, N) (already divided by the network's :func:`residual_scale`) conditioned on ``cond``, averaged
    over the frames where ``mask`` (B, 1, N) is 1 (short utterances are padded)."""
    u_t = sde.perturb(x0, t, z, kernel=kernel)
    pred = eps_model.eps(u_t, t, cond)
    err = (pred - sde.last(z)).square() * mask
    weight = eps_model.loss_weight(t)
    if weight is not None:
        err = err * weight.to(err).reshape(-1, 1, 1)
    return err.sum() / (mask.sum() * x0.shape[1]).clamp_min(1.0)


class TextMel:
    """A corpus as (symbol ids, normalised mel) pairs: ``ids`` lists of ints (with blanks), ``mels`` (n_mels,
    T) tensors; pairs with more symbols than frames are left out (no alignment exists)."""

    def __init__(self, ids: list[list[int]], mels: list[Tensor], names: list[str] | None = None):
        keep = [i for i, (s, m) in enumerate(zip(ids, mels)) if 0 < len(s) <= m.shape[-1]]
        if not keep:
            raise HoldsgmError("no utterance of the corpus has a transcript and at least as many mel frames as "
                               "symbols: text-to-speech needs an LJSpeech layout with texts")
        self.ids = [torch.tensor(ids[i], dtype=torch.long) for i in keep]
        self.mels = [mels[i] for i in keep]
        self.names = [names[i] for i in keep] if names is not None else [str(i) for i in keep]
        self.dropped = len(ids) - len(keep)

    def __len__(self) -> int:
        return len(self.ids)


class _Draws:
    """The text batches of a step (a pure function of seed and step) and this rank's rows of them."""

    def __init__(self, data: TextMel, batch_size: int, segment_frames: int, seed: int):
        self.data, self.batch_size, self.segment_frames, self.seed = data, batch_size, segment_frames, seed
        self.rows, self.device = slice(0, batch_size), torch.device("cpu")

    def bind(self, device: torch.device, rows: slice) -> None:
        self.device, self.rows = device, rows

    def __call__(self, step: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        rng = np.random.default_rng(derive_seed(self.seed, STREAM_TEXT, step))
        idx = rng.integers(0, len(self.data), self.batch_size)
        lengths = np.array([self.data.mels[i].shape[-1] for i in idx])
        starts = (rng.random(self.batch_size) * np.maximum(lengths - self.segment_frames + 1, 1)).astype(np.int64)
        idx, starts = idx[self.rows], starts[self.rows]
        ids = pad_stack([self.data.ids[i] for i in idx]).to(self.device)
        mel = pad_stack([self.data.mels[i] for i in idx]).to(self.device)
        x_len = torch.tensor([len(self.data.ids[i]) for i in idx], device=self.device)
        y_len = torch.tensor([self.data.mels[i].shape[-1] for i in idx], device=self.device)
        return ids, x_len, mel, y_len, torch.as_tensor(starts, device=self.device), torch.as_tensor(idx)


class _ResidualTask:
    """What the text-to-speech decoder and ResGrad share: segments, draws, the masked residual loss."""

    net: nn.Module

    def __init__(self, sde: LinearSDE, data: TextMel, *, batch_size: int, seed: int, segment_frames: int,
                 n_mels: int, stratified: bool = True, precond: bool = False, data_var: float = 1.0):
        self.sde, self.n_mels, self.segment_frames = sde, n_mels, segment_frames
        self.precond, self.data_var = precond, data_var
        self.text = _Draws(data, batch_size, segment_frames, seed)
        self.draws = HSMDraws(sde, batch_size, seed, stratified)
        self.batch_size = batch_size
        self._eps: tuple[nn.Module, EpsModel] | None = None

    def bind(self, device: torch.device, rank: int, world_size: int) -> None:
        if world_size > 1:
            raise ConfigError("text-to-speech training runs on one process for now (its encoder is called "
                              "outside the distributed wrapper); run it without torchrun")
        local = self.batch_size // world_size
        rows = slice(rank * local, (rank + 1) * local)
        self.text.bind(device, rows)
        self.draws.bind(device, rows)

    def eps_model(self, net: nn.Module) -> EpsModel:
        if self._eps is None or self._eps[0] is not net:
            self._eps = (net, EpsModel(net, self.sde, precond=self.precond, data_var=self.data_var))
        return self._eps[1]

    def batch(self, step: int) -> TextMelBatch:
        ids, x_len, mel, y_len, starts, index = self.text(step)
        z, _ = self.draws.noise(self.sde.state_shape((1, self.n_mels, self.segment_frames))[1:])
        t, kernel = self.draws.times(step)
        return TextMelBatch(ids, x_len, mel, y_len, starts, index, t, z, kernel)

    def split(self, batch: TextMelBatch, parts: int) -> list[TextMelBatch]:
        return batch.split(parts)

    def segments(self, batch: TextMelBatch, mu_y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(mask (B, 1, S), mu_y, true mel) of the batch's decoder segments, zero past each utterance's end."""
        s = self.segment_frames
        mask = segment(frame_mask(batch)[:, None, :], batch.starts, s)
        return mask, segment(mu_y, batch.starts, s) * mask, segment(batch.mel, batch.starts, s) * mask

    def residual_loss(self, net: nn.Module, batch: TextMelBatch, mu_y: Tensor) -> Tensor:
        """The decoder's loss on segments of ``y - mu_y`` conditioned on ``mu_y`` (no gradient into mu_y)."""
        mask, mu, y = self.segments(batch, mu_y.detach())
        x0 = (y - mu) / residual_scale(self.net)
        return residual_hsm_loss(self.eps_model(net), self.sde, x0, mu, mask, batch.t, batch.z, batch.kernel)

    def init_weights(self) -> None:
        return None

    def state_dict(self) -> dict:
        return self.draws.state_dict()

    def load_state_dict(self, state: dict, step: int) -> None:
        self.draws.load_state_dict(state)


def aligned_means(net, ids: Tensor, x_len: Tensor, mel: Tensor, y_len: Tensor) -> tuple[Tensor, Tensor, Tensor,
                                                                                           Tensor]:
    """(mu_x, log-durations, x_mask, alignment (B, Tx, Ty)) of a batch: the encoder's outputs and the MAS
    alignment of its means to the true mels (no gradient through the search)."""
    mu_x, logw, x_mask = net.encode(ids, x_len)
    with torch.no_grad():
        log_p = gaussian_log_likelihood(mu_x, mel)
        attn = torch.from_numpy(maximum_path(log_p, x_len, y_len)).to(mel)
    return mu_x, logw, x_mask, attn


class TTSTask(_ResidualTask):
    """Grad-TTS training of :class:`holdsgm.nets.ItoTTS` on ``data`` (:class:`TextMel`): the duration loss
    (MSE of log-durations against MAS's, per symbol), the prior loss (Gaussian NLL of the true mel around
    mu_y = mu_x aligned, per mel bin and frame) and the decoder's HSM loss on random ``segment_frames``-frame
    segments of ``y - mu_y`` (Grad-TTS's ``out_size``). ``loss_parts`` holds the last step's three parts."""

    def __init__(self, sde: LinearSDE, net: nn.Module, data: TextMel, **kw):
        super().__init__(sde, data, **kw)
        self.net = net
        self.loss_parts: dict[str, float] = {}

    def loss(self, batch: TextMelBatch, net: nn.Module) -> Tensor:
        mu_x, logw, x_mask, attn = aligned_means(self.net, batch.ids, batch.x_len, batch.mel, batch.y_len)
        logw_true = torch.log(1e-8 + attn.sum(-1)) * x_mask[:, 0]
        dur_loss = ((logw - logw_true).square() * x_mask[:, 0]).sum() / batch.x_len.sum()
        mu_y = torch.einsum("bci,bij->bcj", mu_x, attn)
        y_mask = frame_mask(batch)
        prior = 0.5 * ((batch.mel - mu_y).square() + LOG_2PI) * y_mask[:, None, :]
        prior_loss = prior.sum() / (y_mask.sum() * self.n_mels)
        diff_loss = self.residual_loss(net, batch, mu_y)
        self.loss_parts = {k: float(v.detach()) for k, v in (("dur", dur_loss), ("prior", prior_loss),
                                                             ("diff", diff_loss))}
        return dur_loss + prior_loss + diff_loss


class ResGradTask(_ResidualTask):
    """ResGrad (Chen et al. 2023): an SDE model (``net``, a :class:`holdsgm.nets.MelUNet`) of the residual
    between a frozen fast predictor's mel and the true mel, conditioned on the former. ``data`` holds the
    true mels and ``base`` the predictor's mels of the same utterances, frame-aligned (mu_y of a trained
    text-to-speech run aligned to the truth by MAS, or mels given as files)."""

    def __init__(self, sde: LinearSDE, net: nn.Module, data: TextMel, base: list[Tensor], **kw):
        super().__init__(sde, data, **kw)
        if len(base) != len(data) or any(b.shape != m.shape for b, m in zip(base, data.mels)):
            raise HoldsgmError("ResGrad needs one base mel per utterance with the true mel's shape")
        self.net, self.base = net, base

    def loss(self, batch: TextMelBatch, net: nn.Module) -> Tensor:
        base = pad_stack([self.base[int(i)] for i in batch.index]).to(batch.mel)
        return self.residual_loss(net, batch, base)


def tts_sample(eps_model, sde: LinearSDE, mu_y: Tensor, *, nfe: int, sampler: str = "exp1", grid: str = "edm",
               noise=None, progress: bool = False, counter=None, clip: float | None = TTS_CLIP,
               grad: bool = False, temperature: float = 1.0) -> Tensor:
    """Normalised mels (B, n_mels, N) from the decoder: ``mu_y`` plus the residual a few-step pass of the
    reverse SDE conditioned on ``mu_y`` ends at (:func:`holdsgm.tasks.vocoder.conditioned_sample`); the
    residual's data predictions, the last one included, are clipped to ``[-clip, clip]`` (None: not). ``grad``:
    the last evaluation keeps its gradients (stage two). The SDE runs on the residual divided by the network's
    :func:`residual_scale`; the output is in normalised mel units. ``temperature`` (Grad-TTS's tau, 1.5 in its
    paper): the prior draw u_T is divided by sqrt(tau) (variance 1 / tau)."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    if mu_y.dim() != 3:
        raise ConfigError(f"mu_y must have shape (B, n_mels, frames), got {tuple(mu_y.shape)}")
    scale = residual_scale(getattr(eps_model, "net", None))
    bound = None if clip is None else clip / scale
    res = conditioned_sample(eps_model, sde, mu_y, tuple(mu_y.shape), nfe=nfe, sampler=sampler, grid=grid,
                             noise=noise, progress=progress, clip=bound, counter=counter, grad=grad,
                             prior_scale=temperature ** -0.5)
    return mu_y + scale * (res if bound is None else res.clamp(-bound, bound))


class TTSStageTwoTask:
    """Stage two (Lay et al. 2023) for the text-to-speech decoder or ResGrad: the few-step pass of ``sampler``
    on ``grid`` with ``nfe`` evaluations around the batch's mu_y (:func:`tts_sample`, all but the last
    evaluation without gradients) is fitted to the true mel segment (masked L2 in normalised mel units).
    ``inner``: the stage-one task (:class:`TTSTask` or :class:`ResGradTask`) that draws the batches and
    gives mu_y; ``init()``: the trained stage one's weights and where they came from."""

    def __init__(self, inner: _ResidualTask, *, nfe: int, sampler: str, grid: str, l2_weight: float, init):
        self.inner, self.net = inner, inner.net
        self.nfe, self.sampler, self.grid, self.l2_weight = nfe, sampler, grid, l2_weight
        self._init = init
        self.origin: dict | None = None
        self.generator = torch.Generator().manual_seed(derive_seed(inner.text.seed, STREAM_TTS_STAGE2))
        self.rows = slice(0, inner.batch_size)

    def bind(self, device: torch.device, rank: int, world_size: int) -> None:
        self.inner.bind(device, rank, world_size)
        self.rows = self.inner.text.rows

    def batch(self, step: int) -> tuple[TextMelBatch, list[int]]:
        seeds = torch.randint(0, 2**62, (self.inner.batch_size,), generator=self.generator)
        return self.inner.batch(step), seeds[self.rows].tolist()

    def split(self, batch, parts: int) -> list:
        if parts != 1:
            raise ConfigError("stage two does not accumulate gradients (train.grad_accum must be 1)")
        return [batch]

    def loss(self, batch, net: nn.Module) -> Tensor:
        from ..samplers import PerSampleNoise

        b, seeds = batch
        inner = self.inner
        with torch.no_grad():
            if isinstance(inner, ResGradTask):
                mu_y = pad_stack([inner.base[int(i)] for i in b.index]).to(b.mel)
            else:
                mu_x, _, _, attn = aligned_means(self.net, b.ids, b.x_len, b.mel, b.y_len)
                mu_y = torch.einsum("bci,bij->bcj", mu_x, attn)
        mask, mu, y = inner.segments(b, mu_y)
        out = tts_sample(inner.eps_model(net), inner.sde, mu, nfe=self.nfe, sampler=self.sampler, grid=self.grid,
                         noise=PerSampleNoise(seeds), grad=True)
        return self.l2_weight * ((out - y).square() * mask).sum() / (mask.sum() * y.shape[1]).clamp_min(1.0)

    def init_weights(self) -> dict[str, Tensor] | None:
        weights, self.origin = self._init()
        return weights

    def state_dict(self) -> dict:
        return {"rng": {"generator": self.generator.get_state()}, "stage2_origin": self.origin}

    def load_state_dict(self, state: dict, step: int) -> None:
        self.generator.set_state(state["rng"]["generator"])
        self.origin = state.get("stage2_origin")
