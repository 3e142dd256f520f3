"""A frame-rate ConvNeXt for the SDE vocoder in the MDCT domain (the backbone of Vocos, Siuzdak 2023, and
of RFWave; ConvNeXt blocks from Liu et al. 2022), conditioned on the log-mel and the diffusion time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .common import ScoreNetwork, check_choice, check_int, check_num, zero_init
from .embeddings import TIME_EMBEDDINGS, TimeEmbedding, prepare_time

#: log-mel offset and scale at the input (natural-log mels of speech lie in about [-11.5, 2])
MEL_SHIFT, MEL_SCALE = 5.0, 3.0


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (``kernel`` frames) -> LayerNorm modulated by the time embedding (scale and shift,
    as adaLN in DiT) -> Linear(dim, mult*dim) -> GELU -> Linear(mult*dim, dim) -> layer scale; residual."""

    def __init__(self, dim: int, kernel: int, mult: int, emb_dim: int):
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.mod = nn.Linear(emb_dim, 2 * dim)
        zero_init(self.mod)
        self.fc1 = nn.Linear(dim, mult * dim)
        self.fc2 = nn.Linear(mult * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-2))

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """x (B, dim, N), e (B, emb_dim)."""
        h = self.dw(x).transpose(1, 2)  # (B, N, dim)
        scale, shift = self.mod(e)[:, None].chunk(2, dim=-1)
        h = self.norm(h) * (1 + scale) + shift
        h = self.fc2(F.gelu(self.fc1(h)))
        return x + (self.gamma * h).transpose(1, 2)


class FrameNet(ScoreNetwork):
    """ConvNeXt over frames: u (B, in_channels, N) -> (B, out_channels, N), conditioned on a log-mel
    y (B, n_mels, N) at the same frame rate.

    The phase-space components of the MDCT coefficients (``in_channels = n * bins``: x, v, a, ... of each
    of ``bins`` coefficients) and the log-mel (shifted and scaled to about unit range) are concatenated
    and mapped by a ``kernel``-frame convolution to ``dim`` channels; ``layers`` ConvNeXt blocks follow
    (:class:`ConvNeXtBlock`, the time embedding modulating each block's LayerNorm), then LayerNorm and a
    zero-initialised linear map to ``out_channels`` (the noise estimate of the last component of each
    coefficient; the network starts at 0). All of it runs at the frame rate (62.5 Hz for hop 256 at
    16 kHz): about ``2 * layers * mult * dim^2`` multiply-adds per frame, large matrix products a CPU runs
    well.
    """

    kind = "framenet"
    num_skips = 0

    def __init__(self, in_channels: int = 256, out_channels: int = 256, n_mels: int = 80, dim: int = 256,
                 layers: int = 8, kernel: int = 7, mult: int = 3, time_embedding: str = "sinusoidal",
                 emb_dim: int = 128, fourier_scale: float = 16.0):
        super().__init__()
        for v, name, lo in ((in_channels, "in_channels", 1), (out_channels, "out_channels", 1), (n_mels, "n_mels", 1),
                            (dim, "dim", 1), (layers, "layers", 1), (kernel, "kernel", 1), (mult, "mult", 1),
                            (emb_dim, "emb_dim", 8)):
            check_int(v, name, lo)
        if kernel % 2 == 0:
            raise ConfigError(f"network argument kernel must be odd, got {kernel}")
        check_choice(time_embedding, "time_embedding", TIME_EMBEDDINGS)
        check_num(fourier_scale, "fourier_scale", positive=True)
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "n_mels": n_mels, "dim": dim,
                       "layers": layers, "kernel": kernel, "mult": mult, "time_embedding": time_embedding,
                       "emb_dim": emb_dim, "fourier_scale": float(fourier_scale)}
        self.in_channels, self.out_channels, self.n_mels = in_channels, out_channels, n_mels
        self.time_emb = TimeEmbedding(time_embedding, emb_dim // 4, emb_dim, fourier_scale=fourier_scale)
        self.input = nn.Conv1d(in_channels + n_mels, dim, kernel, padding=kernel // 2)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, kernel, mult, emb_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.output = nn.Linear(dim, out_channels)
        zero_init(self.output)

    def forward(self, u: Tensor, t: Tensor, y: Tensor | None = None, skip_scale=None) -> Tensor:
        if skip_scale is not None:
            raise ConfigError("skip_scale is only supported by the U-Net")
        if u.dim() != 3 or u.shape[1] != self.in_channels:
            raise ConfigError(f"FrameNet expects input (B, {self.in_channels}, frames), got {tuple(u.shape)}")
        b, _, n = u.shape
        if y is None or y.dim() != 3 or y.shape[0] != b or y.shape[1] != self.n_mels or y.shape[2] != n:
            raise ConfigError(f"FrameNet needs the log-mel y of shape ({b}, {self.n_mels}, {n}), got "
                              f"{None if y is None else tuple(y.shape)}")
        e = F.silu(self.time_emb(prepare_time(t, b, u.device)))
        x = self.input(torch.cat([u, (y.to(u.dtype) + MEL_SHIFT) / MEL_SCALE], dim=1))
        for block in self.blocks:
            x = block(x, e)
        return self.output(self.norm(x.transpose(1, 2))).transpose(1, 2)
