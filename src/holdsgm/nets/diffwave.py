"""A DiffWave-style network for waveforms (Kong et al. 2021, "DiffWave: A Versatile Diffusion Model for
Audio Synthesis"), used as the SDE vocoder's denoiser (mel -> waveform, in the manner of ItôWave)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .common import ScoreNetwork, check_choice, check_int, check_num, zero_init
from .embeddings import TIME_EMBEDDINGS, TimeEmbedding, prepare_time

_INV_SQRT2 = 1 / math.sqrt(2)

#: residual_channels / layers / dilation_cycle of a few sizes: ``cpu-small`` (~0.63M parameters with the
#: default 512-wide time embedding; ~1.75 train it/s for batch 4 x 1 s at 16 kHz on 2 CPU threads),
#: ``cpu-fast`` (the vocoder configs' network: the conditioner is projected to 16 channels at the frame
#: rate before upsampling and to all layers at once, and a 128-wide time embedding; ~0.15M parameters,
#: ~4x fewer multiply-adds per sample than ``cpu-small``), and the paper's BASE (64 ch, 30 layers, 2.6M)
#: and LARGE (128 ch, 30 layers, 6.9M), dilations 1..512.
DIFFWAVE_PRESETS: dict[str, dict[str, int]] = {
    "cpu-small": {"residual_channels": 32, "layers": 10, "dilation_cycle": 10},
    "cpu-fast": {"residual_channels": 32, "layers": 10, "dilation_cycle": 10, "cond_channels": 16,
                 "emb_dim": 128},
    "base": {"residual_channels": 64, "layers": 30, "dilation_cycle": 10},
    "large": {"residual_channels": 128, "layers": 30, "dilation_cycle": 10},
}


def split_stride(hop: int) -> tuple[int, int]:
    """Two upsampling strides whose product is ``hop``, as equal as possible (256 -> (16, 16))."""
    s1 = max(d for d in range(1, math.isqrt(hop) + 1) if hop % d == 0)
    return s1, hop // s1


class MelUpsampler(nn.Module):
    """DiffWave's conditioner upsampler: two 2-D transposed convolutions over (mel bin, frame) with
    kernels (3, 2s) and strides (1, s), each followed by LeakyReLU(0.4); the strides multiply to ``hop``,
    so (B, n_mels, frames) -> (B, n_mels, frames * hop)."""

    def __init__(self, hop: int):
        super().__init__()
        self.strides = split_stride(hop)
        self.convs = nn.ModuleList(
            nn.ConvTranspose2d(1, 1, (3, 2 * s), stride=(1, s), padding=(1, s // 2)) for s in self.strides)

    def forward(self, mel: Tensor) -> Tensor:
        x = mel[:, None]
        for s, conv in zip(self.strides, self.convs):
            frames = x.shape[-1]
            x = F.leaky_relu(conv(x)[..., : frames * s], 0.4)  # odd s gives one extra sample: cut it
        return x[:, 0]


class ResidualLayer(nn.Module):
    """``y = DilatedConv(x + W_t e) + W_c c``; ``z = tanh(y_f) * sigmoid(y_g)``; ``(res, skip) = W_o z``;
    returns ``((x + res) / sqrt 2, skip)``."""

    def __init__(self, channels: int, dilation: int, emb_dim: int, n_mels: int):
        super().__init__()
        self.dilated = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.time_proj = nn.Linear(emb_dim, channels)
        # n_mels = 0: no conditioner of its own (unconditional, or projected by the network for all layers)
        self.cond_proj = nn.Conv1d(n_mels, 2 * channels, 1) if n_mels > 0 else None
        self.out_proj = nn.Conv1d(channels, 2 * channels, 1)
        for conv in (self.dilated, self.out_proj, self.cond_proj):
            if conv is not None:
                nn.init.kaiming_normal_(conv.weight)

    def forward(self, x: Tensor, e: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """``cond``: the upsampled conditioner (B, n_mels, L), or its projection (B, 2 * channels, L)
        when the network projects it for all layers at once (this layer then has no ``cond_proj``)."""
        y = self.dilated(x + self.time_proj(e)[:, :, None])
        if cond is not None:
            y = y + (self.cond_proj(cond) if self.cond_proj is not None else cond)
        gate, filt = y.chunk(2, dim=1)
        res, skip = self.out_proj(torch.sigmoid(gate) * torch.tanh(filt)).chunk(2, dim=1)
        return (x + res) * _INV_SQRT2, skip


class DiffWave(ScoreNetwork):
    """DiffWave for waveforms: u (B, in_channels, L) -> (B, out_channels, L).

    The phase-space components (the wave x and its auxiliary variables v, a, ... of CLD/HOLD) arrive as
    the ``in_channels = n`` input channels; the output is the noise estimate of the component the SDE
    asks for (for n > 1, the last one), so ``out_channels = 1``.

    Layout (Kong et al. 2021): a 1x1 input convolution + ReLU; ``layers`` residual layers with dilated
    3-tap convolutions (dilation ``2 ** (i % dilation_cycle)``), gated ``tanh * sigmoid`` activations, the
    time embedding added before each dilated convolution (per-layer linear projection) and the upsampled
    mel added after it (per-layer 1x1 projection); the layers' skip outputs are summed, scaled by
    ``1/sqrt(layers)``, then 1x1 conv, ReLU, zero-initialised 1x1 conv (the network starts at 0).

    Time: ``t`` (B,) normalised to [0, 1], embedded by ``time_embedding`` features (``sinusoidal``:
    DiffWave's/DDPM's, of 1000 t; or ``fourier``) of width ``emb_dim // 4`` and a Linear-SiLU-Linear MLP
    to ``emb_dim`` (DiffWave: 128 -> 512).
    Conditioning: ``y`` the log-mel (B, n_mels, frames) with ``L = frames * hop``, upsampled by
    :class:`MelUpsampler`. ``n_mels = 0`` makes an unconditional network (``y`` must be None).
    ``cond_channels = k > 0`` is the cheap variant for CPUs: a 3-tap convolution maps the mel to ``k``
    channels at the frame rate, those are upsampled, and one 1x1 convolution projects them to every
    layer's ``2 * residual_channels`` conditioner at once; at the sample rate this costs ``2 C k`` instead of
    ``2 C n_mels`` multiply-adds per layer and sample (the per-layer mel projection dominates DiffWave's
    cost on a CPU). ``cond_channels = 0`` is the paper's layout (upsample all ``n_mels`` bands).
    Data-dependent priors (PriorGrad) act outside the network (:mod:`holdsgm.audio.priorgrad`).
    """

    kind = "diffwave"
    num_skips = 0

    def __init__(self, in_channels: int = 1, out_channels: int = 1, residual_channels: int = 32,
                 layers: int = 10, dilation_cycle: int = 10, n_mels: int = 80, hop: int = 256,
                 time_embedding: str = "sinusoidal", emb_dim: int = 512, fourier_scale: float = 16.0,
                 cond_channels: int = 0):
        super().__init__()
        check_int(in_channels, "in_channels", 1)
        check_int(out_channels, "out_channels", 1)
        check_int(residual_channels, "residual_channels", 1)
        check_int(layers, "layers", 1)
        check_int(dilation_cycle, "dilation_cycle", 1)
        check_int(n_mels, "n_mels", 0)
        check_int(hop, "hop", 1)
        check_choice(time_embedding, "time_embedding", TIME_EMBEDDINGS)
        check_int(emb_dim, "emb_dim", 8)
        check_num(fourier_scale, "fourier_scale", positive=True)
        check_int(cond_channels, "cond_channels", 0)
        if cond_channels and not n_mels:
            raise ConfigError("network argument cond_channels needs a conditioned network (n_mels > 0)")
        self.config = {"in_channels": in_channels, "out_channels": out_channels,
                       "residual_channels": residual_channels, "layers": layers,
                       "dilation_cycle": dilation_cycle, "n_mels": n_mels, "hop": hop,
                       "time_embedding": time_embedding, "emb_dim": emb_dim,
                       "fourier_scale": float(fourier_scale), "cond_channels": cond_channels}
        self.in_channels, self.out_channels, self.n_mels, self.hop = in_channels, out_channels, n_mels, hop
        c = residual_channels
        self.input_proj = nn.Conv1d(in_channels, c, 1)
        nn.init.kaiming_normal_(self.input_proj.weight)
        self.time_emb = TimeEmbedding(time_embedding, emb_dim // 4, emb_dim, fourier_scale=fourier_scale)
        self.upsampler = MelUpsampler(hop) if n_mels > 0 else None
        self.cond_in = self.cond_proj = None
        if cond_channels:
            self.cond_in = nn.Conv1d(n_mels, cond_channels, 3, padding=1)
            self.cond_proj = nn.Conv1d(cond_channels, layers * 2 * c, 1)
            nn.init.kaiming_normal_(self.cond_proj.weight)
        layer_mels = 0 if cond_channels else n_mels
        self.dilations = [2 ** (i % dilation_cycle) for i in range(layers)]
        self.layers = nn.ModuleList(ResidualLayer(c, d, emb_dim, layer_mels) for d in self.dilations)
        self.skip_proj = nn.Conv1d(c, c, 1)
        nn.init.kaiming_normal_(self.skip_proj.weight)
        self.output_proj = nn.Conv1d(c, out_channels, 1)
        zero_init(self.output_proj)

    @property
    def receptive_field(self) -> int:
        """Receptive field of the residual stack, in samples: 1 + 2 * sum of the dilations."""
        return 1 + 2 * sum(self.dilations)

    def forward(self, u: Tensor, t: Tensor, y: Tensor | None = None, skip_scale=None) -> Tensor:
        """u (B, in_channels, L), t (B,) in [0, 1], y (B, n_mels, L // hop) -> (B, out_channels, L).
        Accepts ``skip_scale`` only as None (Skip-Tuning applies to the U-Net's encoder-decoder skips)."""
        if u.dim() != 3 or u.shape[1] != self.in_channels:
            raise ConfigError(f"DiffWave expects input (B, {self.in_channels}, L), got {tuple(u.shape)}")
        if skip_scale is not None:
            raise ConfigError("skip_scale is only supported by the U-Net")
        b, _, length = u.shape
        cond = None
        if self.upsampler is None:
            if y is not None:
                raise ConfigError("this DiffWave is unconditional (n_mels=0) but a mel y was given")
        else:
            if y is None:
                raise ConfigError(f"this DiffWave is conditioned on a mel (n_mels={self.n_mels}): pass y of "
                                  f"shape (B, {self.n_mels}, L // {self.hop})")
            if y.dim() != 3 or y.shape[0] != b or y.shape[1] != self.n_mels \
                    or y.shape[2] * self.hop != length:
                raise ConfigError(f"DiffWave mel y must have shape ({b}, {self.n_mels}, "
                                  f"{length / self.hop:g}) for input length {length} = frames * hop "
                                  f"({self.hop}), got {tuple(y.shape)}")
            y = y.to(u.dtype)
            if self.cond_in is not None:
                y = self.cond_in(y)
            cond = self.upsampler(y)
        conds = [cond] * len(self.layers) if self.cond_proj is None else self.cond_proj(cond).chunk(
            len(self.layers), dim=1)
        e = F.silu(self.time_emb(prepare_time(t, b, u.device)))
        x = F.relu(self.input_proj(u))
        skips = None
        for layer, cond_l in zip(self.layers, conds):
            x, s = layer(x, e, cond_l)
            skips = s if skips is None else skips + s
        assert skips is not None  # layers >= 1
        x = F.relu(self.skip_proj(skips * (1 / math.sqrt(len(self.layers)))))
        return self.output_proj(x)
