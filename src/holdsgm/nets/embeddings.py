"""Time (and class) embeddings shared by the networks. Times arrive normalised to [0, 1]."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError

TIME_EMBEDDINGS = ("fourier", "sinusoidal")


class SinusoidalEmbedding(nn.Module):
    """Transformer/DDPM sinusoidal features of ``scale * t`` (Vaswani et al. 2017; Ho et al. 2020):
    ``[cos(s t w_k), sin(s t w_k)]`` with frequencies ``w_k = max_period^(-k/half)``. ``scale=1000`` maps
    t in [0, 1] to DDPM's integer-step range."""

    freqs: Tensor

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10_000.0):
        super().__init__()
        self.dim = dim
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / max(half, 1))
        self.register_buffer("freqs", freqs * scale, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        arg = t.float()[:, None] * self.freqs[None]
        emb = torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)
        if self.dim % 2:
            emb = torch.nn.functional.pad(emb, (0, 1))
        return emb


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features ``[sin(2 pi t W), cos(2 pi t W)]`` with fixed ``W ~ N(0, scale^2)``
    (Tancik et al. 2020; NCSN++'s Gaussian Fourier projection, Song et al. 2021). ``W`` is drawn from
    ``seed`` and saved in the state dict, so a checkpoint reproduces it exactly."""

    W: Tensor

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        self.dim = dim
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("W", torch.randn((dim + 1) // 2, generator=g) * scale)

    def forward(self, t: Tensor) -> Tensor:
        arg = 2 * math.pi * t.float()[:, None] * self.W[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)[:, : self.dim]


class TimeEmbedding(nn.Module):
    """Features of t (``kind`` = ``fourier`` or ``sinusoidal``, ``feat_dim`` wide) followed by the usual
    Linear-SiLU-Linear MLP to ``out_dim``."""

    def __init__(self, kind: str, feat_dim: int, out_dim: int, fourier_scale: float = 16.0, seed: int = 0):
        super().__init__()
        if kind == "fourier":
            self.features: nn.Module = GaussianFourierEmbedding(feat_dim, scale=fourier_scale, seed=seed)
        elif kind == "sinusoidal":
            self.features = SinusoidalEmbedding(feat_dim)
        else:
            raise ConfigError(f"time_embedding must be one of {', '.join(TIME_EMBEDDINGS)}, got {kind!r}")
        self.mlp = nn.Sequential(nn.Linear(feat_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(self.features(t))


class ClassEmbedding(nn.Module):
    """Learned class embedding with an extra "null" row: labels ``0..n_classes-1`` are classes and
    ``n_classes`` (or ``y=None``) is the unconditional label used by classifier-free guidance
    (Ho & Salimans 2022). Labels are checked on CPU tensors only (a check on GPU would synchronise)."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.n_classes = n_classes
        self.emb = nn.Embedding(n_classes + 1, dim)

    def forward(self, y: Tensor | None, batch: int, device) -> Tensor:
        if y is None:
            y = torch.full((batch,), self.n_classes, dtype=torch.long, device=device)
        else:
            y = torch.as_tensor(y, device=device)
            if y.dim() == 0:
                y = y.expand(batch)
            if y.shape != (batch,) or y.dtype.is_floating_point or y.dtype == torch.bool:
                raise ConfigError(f"class labels y must be an integer tensor of shape ({batch},), got "
                                  f"{y.dtype} {tuple(y.shape)}")
            if y.device.type == "cpu" and y.numel() and (int(y.min()) < 0 or int(y.max()) > self.n_classes):
                raise ConfigError(f"class labels must be in [0, {self.n_classes}] ({self.n_classes} = "
                                  f"unconditional), got [{int(y.min())}, {int(y.max())}]")
            y = y.long()
        return self.emb(y)


def prepare_time(t, batch: int, device) -> Tensor:
    """``t`` as a float tensor (batch,): accepts a number, a 0-d tensor, (batch,) or (batch, 1)."""
    t = torch.as_tensor(t, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    elif t.numel() == batch:
        t = t.reshape(batch)
    else:
        raise ConfigError(f"time t must have shape ({batch},), got {tuple(t.shape)}")
    return t.float() if not t.dtype.is_floating_point else t
