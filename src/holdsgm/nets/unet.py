"""A small U-Net in the DDPM++/NCSN++ manner (Ho et al. 2020; Song et al. 2021) with call-time scaling
of the skip connections (Skip-Tuning, Ma et al. 2024)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .common import ScoreNetwork, check_choice, check_int, check_int_seq, check_num, zero_init
from .embeddings import TIME_EMBEDDINGS, ClassEmbedding, TimeEmbedding, prepare_time

_INV_SQRT2 = 1 / math.sqrt(2)


def _groups(c: int, max_groups: int) -> int:
    """GroupNorm groups for c channels: min(max_groups, c // 4), lowered until it divides c."""
    g = max(1, min(max_groups, c // 4))
    while c % g:
        g -= 1
    return g


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv, scale-shift injection of the embedding ``h = GN(h)(1 + s) + b``, SiLU,
    dropout, zero-initialised Conv; residual ``(skip(x) + h) / sqrt(2)`` (NCSN++ skip rescaling)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, max_groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in, max_groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out, max_groups), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        zero_init(self.conv2)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(e)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return (self.skip(x) + h) * _INV_SQRT2


class AttnBlock(nn.Module):
    """Multi-head self-attention over the pixels, zero-initialised output projection,
    residual ``(x + h) / sqrt(2)``."""

    def __init__(self, c: int, num_heads: int, max_groups: int):
        super().__init__()
        if c % num_heads:
            raise ConfigError(f"network argument num_heads={num_heads} must divide the channel count {c}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(_groups(c, max_groups), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        zero_init(self.proj)

    def forward(self, x: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, hgt * wid)
        q, k, v = qkv.unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = self.proj(h.transpose(-1, -2).reshape(b, c, hgt, wid))
        return (x + h) * _INV_SQRT2


class Stage(nn.Module):
    """A residual block, optionally followed by self-attention."""

    def __init__(self, c_in, c_out, emb_dim, dropout, max_groups, attn: bool, num_heads: int):
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_dim, dropout, max_groups)
        self.attn = AttnBlock(c_out, num_heads, max_groups) if attn else None

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        x = self.res(x, e)
        return self.attn(x) if self.attn is not None else x


class Downsample(nn.Module):
    """Halves H and W: a strided 3x3 convolution, or 2x2 average pooling when ``with_conv`` is False."""

    def __init__(self, c: int, with_conv: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1) if with_conv else None

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) if self.conv is not None else F.avg_pool2d(x, 2)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution when ``with_conv``."""

    def __init__(self, c: int, with_conv: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1) if with_conv else None

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class UNet(ScoreNetwork):
    """U-Net for images (B, in_channels, H, W) -> (B, out_channels, H, W).

    Layout (DDPM++): a 3x3 input conv; ``len(channel_mult)`` levels of ``num_res_blocks`` residual blocks
    with ``channels * channel_mult[i]`` channels, separated by downsampling (strided conv, or average
    pooling with ``resample_conv=False``; upsampling is nearest + conv, or nearest only); a middle block
    (res, attention if ``mid_attention``, res); a mirrored decoder of ``num_res_blocks + 1`` blocks per
    level, each consuming one skip tensor by concatenation; GroupNorm-SiLU-zero-initialised 3x3 conv.
    Self-attention follows every block of a level whose resolution (its smaller side) is listed in
    ``attn_resolutions``. The time embedding (``time_embedding`` features -> MLP, width ``emb_dim``,
    default ``4 * channels``) and the class embedding are summed and injected by scale-shift into every
    residual block.

    ``image_size`` (int or (H, W)) must be divisible by ``2 ** (len(channel_mult) - 1)``; inputs must
    have exactly that size. Class conditioning (``n_classes > 0``): labels ``0..n_classes-1``; label
    ``n_classes`` or ``y=None`` is the null/unconditional label (for classifier-free guidance with label
    dropout). With ``n_classes == 0``, ``y`` is ignored.

    Skip connections: there are ``num_skips = 1 + len(channel_mult) * num_res_blocks +
    len(channel_mult) - 1`` of them, numbered in the order the encoder produces them, i.e. from the
    highest resolution (the input conv's output, index 0) to the lowest (the last block of the lowest
    level, index ``num_skips - 1``); ``skip_resolutions[k]`` is the resolution of skip ``k``.
    ``forward(..., skip_scale=s)`` multiplies skip ``k`` by ``s[k]`` (or every skip by the number ``s``)
    before it is concatenated in the decoder; factors equal to 1 are not applied, so ``skip_scale=1``
    is bit-identical to ``None``.
    """

    kind = "unet"

    def __init__(self, in_channels: int, out_channels: int, image_size, channels: int = 32,
                 channel_mult=(1, 2, 2), num_res_blocks: int = 1, attn_resolutions=(), dropout: float = 0.0,
                 n_classes: int = 0, time_embedding: str = "fourier", emb_dim: int | None = None,
                 num_heads: int = 1, norm_groups: int = 32, mid_attention: bool = True,
                 fourier_scale: float = 16.0, resample_conv: bool = True):
        super().__init__()
        check_int(in_channels, "in_channels", 1)
        check_int(out_channels, "out_channels", 1)
        if isinstance(image_size, (list, tuple)):
            if len(image_size) != 2:
                raise ConfigError(f"network argument image_size must be an int or (H, W), "
                                  f"got {image_size!r:.60}")
            hw = tuple(check_int(s, "image_size", 1) for s in image_size)
        else:
            s = check_int(image_size, "image_size", 1)
            hw = (s, s)
        check_int(channels, "channels", 1)
        mult = check_int_seq(channel_mult, "channel_mult", 1)
        check_int(num_res_blocks, "num_res_blocks", 1)
        attn_res = check_int_seq(attn_resolutions, "attn_resolutions", 1, allow_empty=True)
        check_num(dropout, "dropout", 0.0, 1.0)
        check_int(n_classes, "n_classes", 0)
        check_choice(time_embedding, "time_embedding", TIME_EMBEDDINGS)
        emb_dim = 4 * channels if emb_dim is None else check_int(emb_dim, "emb_dim", 2)
        check_int(num_heads, "num_heads", 1)
        check_int(norm_groups, "norm_groups", 1)
        for flag, v in (("mid_attention", mid_attention), ("resample_conv", resample_conv)):
            if not isinstance(v, bool):
                raise ConfigError(f"network argument {flag} must be true or false, got {v!r:.60}")
        check_num(fourier_scale, "fourier_scale", positive=True)
        n_levels = len(mult)
        factor = 2 ** (n_levels - 1)
        if hw[0] % factor or hw[1] % factor:
            raise ConfigError(f"image size {hw[0]}x{hw[1]} is not divisible by {factor} = "
                              f"2^(len(channel_mult)-1) needed for {n_levels} levels; use fewer levels "
                              f"in channel_mult")
        level_res = [min(hw) // 2**i for i in range(n_levels)]
        unknown = sorted(set(attn_res) - set(level_res))
        if unknown:
            raise ConfigError(f"attn_resolutions {unknown} match no level of this U-Net; its resolutions are "
                              f"{level_res}")
        self.config = dict(in_channels=in_channels, out_channels=out_channels,
                           image_size=hw[0] if hw[0] == hw[1] else list(hw), channels=channels,
                           channel_mult=mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_res,
                           dropout=float(dropout), n_classes=n_classes, time_embedding=time_embedding,
                           emb_dim=emb_dim, num_heads=num_heads, norm_groups=norm_groups,
                           mid_attention=mid_attention, fourier_scale=float(fourier_scale),
                           resample_conv=resample_conv)
        self.in_channels, self.out_channels, self.image_size = in_channels, out_channels, hw
        self.n_classes = n_classes

        self.time_emb = TimeEmbedding(time_embedding, channels, emb_dim, fourier_scale=fourier_scale)
        self.class_emb = ClassEmbedding(n_classes, emb_dim) if n_classes > 0 else None
        blk: dict[str, Any] = dict(emb_dim=emb_dim, dropout=float(dropout), max_groups=norm_groups, num_heads=num_heads)

        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        ch = channels
        skip_ch, self.skip_resolutions = [ch], [level_res[0]]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, m in enumerate(mult):
            stages = nn.ModuleList()
            for _ in range(num_res_blocks):
                stages.append(Stage(ch, channels * m, attn=level_res[i] in attn_res, **blk))
                ch = channels * m
                skip_ch.append(ch)
                self.skip_resolutions.append(level_res[i])
            self.down.append(stages)
            if i < n_levels - 1:
                self.downsample.append(Downsample(ch, resample_conv))
                skip_ch.append(ch)
                self.skip_resolutions.append(level_res[i + 1])
        self.num_skips = len(skip_ch)
        self.mid = nn.ModuleList([Stage(ch, ch, attn=mid_attention, **blk), Stage(ch, ch, attn=False, **blk)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(n_levels)):
            stages = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                stages.append(Stage(ch + skip_ch.pop(), channels * mult[i], attn=level_res[i] in attn_res,
                                    **blk))
                ch = channels * mult[i]
            self.up.append(stages)
            if i > 0:
                self.upsample.append(Upsample(ch, resample_conv))
        self.norm_out = nn.GroupNorm(_groups(ch, norm_groups), ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)
        zero_init(self.conv_out)

    def _skip_factors(self, skip_scale) -> list[float] | None:
        if skip_scale is None:
            return None
        if isinstance(skip_scale, numbers.Real) and not isinstance(skip_scale, bool):
            f = [float(skip_scale)] * self.num_skips
        else:
            if isinstance(skip_scale, Tensor):
                skip_scale = skip_scale.detach().flatten().tolist()
            if isinstance(skip_scale, (str, bytes)) or not hasattr(skip_scale, "__len__"):
                raise ConfigError(f"skip_scale must be None, a number or a sequence of {self.num_skips} "
                                  f"numbers, got {type(skip_scale).__name__}")
            if len(skip_scale) != self.num_skips:
                raise ConfigError(f"skip_scale has {len(skip_scale)} factors but this U-Net has "
                                  f"{self.num_skips} skip connections (resolutions {self.skip_resolutions})")
            if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in skip_scale):
                raise ConfigError("skip_scale factors must be numbers")
            f = [float(v) for v in skip_scale]
        if not all(math.isfinite(v) for v in f):
            raise ConfigError("skip_scale factors must be finite")
        return None if all(v == 1.0 for v in f) else f

    def forward(self, u: Tensor, t: Tensor, y: Tensor | None = None, skip_scale=None) -> Tensor:
        """u (B, in_channels, H, W), t (B,) in [0, 1], y (B,) int64 or None -> (B, out_channels, H, W)."""
        if u.dim() != 4 or u.shape[1] != self.in_channels or tuple(u.shape[2:]) != self.image_size:
            raise ConfigError(f"U-Net expects input (B, {self.in_channels}, {self.image_size[0]}, "
                              f"{self.image_size[1]}), got {tuple(u.shape)}")
        factors = self._skip_factors(skip_scale)
        b = u.shape[0]
        e = self.time_emb(prepare_time(t, b, u.device))
        if self.class_emb is not None:
            e = e + self.class_emb(y, b, u.device)
        e = F.silu(e)

        h = self.conv_in(u)
        skips = [h]
        for i, stages in enumerate(self.down):
            for st in stages.children():
                h = st(h, e)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        for st in self.mid:
            h = st(h, e)
        for j, stages in enumerate(self.up):
            for st in stages.children():
                k = len(skips) - 1
                s = skips.pop()
                if factors is not None and factors[k] != 1.0:
                    s = s * factors[k]
                h = st(torch.cat([h, s], dim=1), e)
            if j < len(self.upsample):
                h = self.upsample[j](h)
        return self.conv_out(F.silu(self.norm_out(h)))
