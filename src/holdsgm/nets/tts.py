"""Text-to-speech networks (Grad-TTS, Popov et al. 2021, in the ItoTTS manner): a text encoder that gives
each symbol a prior mean mu (a mel frame) and a log-duration, and a 1-D U-Net over frames, the mel bins as
channels, that predicts the noise of the phase-space SDE on the residual mel ``y - mu_y`` conditioned on
``mu_y`` (:class:`MelUNet`; also ResGrad's residual model on its own). :class:`ItoTTS` holds the three; its
``forward`` is the decoder's, so the library's eps/score wrappers and samplers use it like any score
network."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .common import ScoreNetwork, check_choice, check_int, check_int_seq, check_num, zero_init
from .embeddings import TIME_EMBEDDINGS, TimeEmbedding, prepare_time
from .framenet import ConvNeXtBlock


def sequence_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(B, T) boolean mask, True where ``t < lengths[b]``."""
    t = int(lengths.max()) if max_len is None else max_len
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def sinusoidal_positions(n: int, dim: int, device) -> Tensor:
    """(n, dim) the Transformer's sinusoidal position codes."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    out = torch.zeros(n, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


class ConvStack(nn.Module):
    """``layers`` x (conv ``kernel`` -> ReLU -> LayerNorm -> dropout), residual, masked: the pre-net of the text
    encoder and the duration predictor."""

    def __init__(self, dim: int, layers: int, kernel: int, dropout: float):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, kernel, padding=kernel // 2) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, dim, T), mask (B, 1, T) float."""
        for conv, norm in zip(self.convs, self.norms):
            h = F.relu(conv(x * mask))
            x = x + self.dropout(norm(h.transpose(1, 2)).transpose(1, 2))
        return x * mask


class TextEncoder(nn.Module):
    """Symbols -> (mu (B, n_mels, Tx), log-durations (B, Tx)): embedding, a conv pre-net, a Transformer
    (sinusoidal positions, key padding mask), a linear map to the mel bins; the duration predictor (a conv
    stack) reads the encoder's states with their gradient stopped (Glow-TTS, Grad-TTS). ``dropout`` acts in
    the conv stacks (pre-net and duration predictor)."""

    def __init__(self, n_symbols: int, n_mels: int, dim: int, layers: int, heads: int, ffn: int, kernel: int,
                 dropout: float, dur_dim: int):
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(n_symbols, dim)
        nn.init.normal_(self.embed.weight, 0.0, dim**-0.5)
        self.prenet = ConvStack(dim, 3, kernel, dropout)
        # no dropout inside the Transformer: on a CPU the masks cost ~15 % of a training step (measured)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, 0.0, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.proj_mu = nn.Linear(dim, n_mels)
        self.dur_in = nn.Conv1d(dim, dur_dim, kernel, padding=kernel // 2)
        self.dur = ConvStack(dur_dim, 2, kernel, dropout)
        self.dur_out = nn.Conv1d(dur_dim, 1, 1)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """ids (B, Tx) long, lengths (B,) -> (mu (B, n_mels, Tx), log-durations (B, Tx), mask (B, 1, Tx))."""
        mask = sequence_mask(lengths, ids.shape[1])
        m = mask[:, None, :].float()
        x = self.embed(ids) * math.sqrt(self.dim)  # (B, Tx, dim)
        x = self.prenet(x.transpose(1, 2), m).transpose(1, 2)
        x = x + sinusoidal_positions(ids.shape[1], self.dim, ids.device)
        x = self.norm(self.transformer(x, src_key_padding_mask=~mask))
        h = x.transpose(1, 2) * m  # (B, dim, Tx)
        mu = self.proj_mu(x).transpose(1, 2) * m
        d = self.dur(F.relu(self.dur_in(h.detach() * m)), m)
        logw = self.dur_out(d * m).squeeze(1) * mask
        return mu, logw, m


class _Level(nn.ModuleList):
    """ConvNeXt blocks applied in turn, each modulated by the time embedding."""

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        for blk in self:
            x = blk(x, e)
        return x


class MelUNet(ScoreNetwork):
    """1-D U-Net over frames with the mel bins as channels: u (B, in_channels, N) -> (B, out_channels, N),
    conditioned on ``y`` = mu_y (B, n_mels, N) and the diffusion time.

    The phase-space components of the residual mel (``in_channels = n * n_mels``) and mu_y are concatenated
    and mapped to ``dims[0]`` channels; each level has ``blocks`` ConvNeXt blocks (:class:`~holdsgm.nets.
    framenet.ConvNeXtBlock`, the time embedding modulating their LayerNorm) and halves the frame rate (a
    strided convolution) to the next; the way up doubles it (nearest + convolution) and adds the skip of the
    same level. A LayerNorm and a zero-initialised linear map give the noise estimate of the last component.
    Inputs whose frame count is not a multiple of ``2^(levels - 1)`` are padded (replicating the last frame)
    and the output cut back.

    ``residual_scale`` is not used by the network itself: the SDE's data is the residual mel divided by it
    (about the residual's RMS, so that the data have about unit scale, EDM's sigma_data; measured: with the
    raw residual, RMS 0.35 in normalised mel units, the loss was ~0.013 for t >= 2 of HOLD's T = 5, i.e.
    most draws of t taught nothing), and samples are multiplied back (:mod:`holdsgm.tasks.tts`)."""

    kind = "melunet"
    num_skips = 0

    def __init__(self, in_channels: int = 80, out_channels: int = 80, n_mels: int = 80,
                 dims: list[int] | tuple[int, ...] = (192, 256, 320), blocks: int = 2, kernel: int = 5,
                 mult: int = 2, time_embedding: str = "sinusoidal", emb_dim: int = 128,
                 fourier_scale: float = 16.0, residual_scale: float = 1.0):
        super().__init__()
        for v, name, lo in ((in_channels, "in_channels", 1), (out_channels, "out_channels", 1),
                            (n_mels, "n_mels", 1), (blocks, "blocks", 1), (kernel, "kernel", 1),
                            (mult, "mult", 1), (emb_dim, "emb_dim", 8)):
            check_int(v, name, lo)
        dims = check_int_seq(dims, "dims", 8)
        if kernel % 2 == 0:
            raise ConfigError(f"network argument kernel must be odd, got {kernel}")
        check_choice(time_embedding, "time_embedding", TIME_EMBEDDINGS)
        check_num(fourier_scale, "fourier_scale", positive=True)
        check_num(residual_scale, "residual_scale", positive=True)
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "n_mels": n_mels,
                       "dims": list(dims), "blocks": blocks, "kernel": kernel, "mult": mult,
                       "time_embedding": time_embedding, "emb_dim": emb_dim, "fourier_scale": float(fourier_scale),
                       "residual_scale": float(residual_scale)}
        self.residual_scale = float(residual_scale)
        self.in_channels, self.out_channels, self.n_mels = in_channels, out_channels, n_mels
        self.factor = 2 ** (len(dims) - 1)
        self.time_emb = TimeEmbedding(time_embedding, emb_dim // 4, emb_dim, fourier_scale=fourier_scale)
        self.input = nn.Conv1d(in_channels + n_mels, dims[0], kernel, padding=kernel // 2)
        block = lambda d: _Level(ConvNeXtBlock(d, kernel, mult, emb_dim) for _ in range(blocks))
        self.down = nn.ModuleList(block(d) for d in dims)
        self.downsample = nn.ModuleList(nn.Conv1d(a, b, 3, stride=2, padding=1) for a, b in zip(dims, dims[1:]))
        self.up = nn.ModuleList(block(d) for d in dims[:-1])
        self.upsample = nn.ModuleList(nn.Conv1d(b, a, 3, padding=1) for a, b in zip(dims, dims[1:]))
        self.norm = nn.LayerNorm(dims[0])
        self.output = nn.Linear(dims[0], out_channels)
        zero_init(self.output)

    def forward(self, u: Tensor, t: Tensor, y: Tensor | None = None, skip_scale=None) -> Tensor:
        if skip_scale is not None:
            raise ConfigError("skip_scale is only supported by the U-Net")
        if u.dim() != 3 or u.shape[1] != self.in_channels:
            raise ConfigError(f"MelUNet expects input (B, {self.in_channels}, frames), got {tuple(u.shape)}")
        b, _, n = u.shape
        if y is None or y.dim() != 3 or y.shape[0] != b or y.shape[1] != self.n_mels or y.shape[2] != n:
            raise ConfigError(f"MelUNet needs mu_y of shape ({b}, {self.n_mels}, {n}), got "
                              f"{None if y is None else tuple(y.shape)}")
        e = F.silu(self.time_emb(prepare_time(t, b, u.device)))
        x = torch.cat([u, y.to(u.dtype)], dim=1)
        pad = (-n) % self.factor
        if pad:
            x = F.pad(x, (0, pad), mode="replicate")
        x = self.input(x)
        skips = []
        for i, level in enumerate(self.down):
            x = level(x, e)
            if i < len(self.downsample):
                skips.append(x)
                x = self.downsample[i](x)
        for i in reversed(range(len(self.up))):
            x = self.upsample[i](F.interpolate(x, scale_factor=2.0, mode="nearest")) + skips.pop()
            x = self.up[i](x, e)
        out = self.output(self.norm(x.transpose(1, 2))).transpose(1, 2)
        return out[..., :n]


class ItoTTS(ScoreNetwork):
    """The text-to-mel model: :class:`TextEncoder` (``encoder``: mu and log-durations of the symbols) and the
    SDE decoder :class:`MelUNet` (``decoder``); ``forward(u, t, y)`` is the decoder's (``y`` = mu_y), so the
    eps model, samplers and checkpoints treat the whole as one score network."""

    kind = "itotts"
    num_skips = 0

    def __init__(self, n_symbols: int = 128, in_channels: int = 80, n_mels: int = 80, enc_dim: int = 192,
                 enc_layers: int = 4, enc_heads: int = 2, enc_ffn: int = 768, enc_dropout: float = 0.1,
                 dur_dim: int = 192, dur_kernel: int = 3, dims: list[int] | tuple[int, ...] = (192, 256, 320),
                 blocks: int = 2, kernel: int = 5, mult: int = 2, time_embedding: str = "sinusoidal",
                 emb_dim: int = 128, fourier_scale: float = 16.0, residual_scale: float = 1.0):
        super().__init__()
        for v, name, lo in ((n_symbols, "n_symbols", 2), (enc_dim, "enc_dim", 8), (enc_layers, "enc_layers", 1),
                            (enc_heads, "enc_heads", 1), (enc_ffn, "enc_ffn", 1), (dur_dim, "dur_dim", 1),
                            (dur_kernel, "dur_kernel", 1)):
            check_int(v, name, lo)
        check_num(enc_dropout, "enc_dropout", 0.0, 0.9)
        if enc_dim % enc_heads:
            raise ConfigError(f"network argument enc_dim ({enc_dim}) must be a multiple of enc_heads ({enc_heads})")
        self.encoder = TextEncoder(n_symbols, n_mels, enc_dim, enc_layers, enc_heads, enc_ffn, dur_kernel,
                                   float(enc_dropout), dur_dim)
        self.decoder = MelUNet(in_channels, n_mels, n_mels, dims, blocks, kernel, mult, time_embedding, emb_dim,
                               fourier_scale, residual_scale)
        self.residual_scale = self.decoder.residual_scale
        self.config = {"n_symbols": n_symbols, "enc_dim": enc_dim, "enc_layers": enc_layers, "enc_heads": enc_heads,
                       "enc_ffn": enc_ffn, "enc_dropout": float(enc_dropout), "dur_dim": dur_dim,
                       "dur_kernel": dur_kernel, **self.decoder.config}
        del self.config["out_channels"]
        self.in_channels, self.n_mels, self.n_symbols = in_channels, n_mels, n_symbols

    def forward(self, u: Tensor, t: Tensor, y: Tensor | None = None, skip_scale=None) -> Tensor:
        return self.decoder(u, t, y, skip_scale)

    def encode(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """See :meth:`TextEncoder.forward`."""
        if ids.dim() != 2 or lengths.dim() != 1 or lengths.shape[0] != ids.shape[0]:
            raise ConfigError(f"ItoTTS.encode takes ids (B, Tx) and lengths (B,), got {tuple(ids.shape)} and "
                              f"{tuple(lengths.shape)}")
        if int(ids.max()) >= self.n_symbols or int(ids.min()) < 0:
            raise ConfigError(f"symbol ids must lie in [0, {self.n_symbols}), got {int(ids.min())}..{int(ids.max())}")
        return self.encoder(ids, lengths)
