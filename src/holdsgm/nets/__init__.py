"""Score/denoiser networks. They know nothing of SDEs: each maps ``(u, t, y)`` to a tensor with the
data's channels, where ``u`` stacks the phase-space components (x, v, a, ...) along the channel axis.

Every network has ``forward(u, t, y=None, skip_scale=None)``, a ``kind`` and a ``config`` dict of its
constructor arguments, so ``build_network(net.kind, **net.config)`` rebuilds it (e.g. from a checkpoint).
"""

from __future__ import annotations

import inspect

from torch import nn

from ..errors import ConfigError, HoldsgmError
from .common import ScoreNetwork
from .diffwave import DiffWave
from .embeddings import ClassEmbedding, GaussianFourierEmbedding, SinusoidalEmbedding, TimeEmbedding
from .framenet import FrameNet
from .mlp import MLP
from .tts import ItoTTS, MelUNet
from .unet import UNet

NETWORKS: dict[str, type[ScoreNetwork]] = {"mlp": MLP, "unet": UNet, "diffwave": DiffWave, "framenet": FrameNet,
                                       "itotts": ItoTTS, "melunet": MelUNet}


def build_network(kind: str, **kwargs) -> ScoreNetwork:
    """Build the network ``kind`` (``mlp``, ``unet``, ``diffwave``, ``framenet``, ``itotts`` or ``melunet``)
    from keyword arguments; ConfigError on an unknown kind, an unknown or missing argument (naming it and
    listing the accepted ones) or a bad value."""
    if not isinstance(kind, str) or kind not in NETWORKS:
        raise ConfigError(f"unknown network kind {kind!r:.60}; choices: {', '.join(NETWORKS)}")
    cls = NETWORKS[kind]
    params = {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    accepted = ", ".join(params)
    for k in kwargs:
        if k not in params:
            raise ConfigError(f"unknown argument {k!r:.60} for network {kind!r}; accepted: {accepted}")
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ConfigError(f"network {kind!r} needs argument(s) {', '.join(missing)}; accepted: {accepted}")
    try:
        return cls(**kwargs)
    except HoldsgmError:
        raise
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"cannot build network {kind!r}: {' '.join(str(e).split())}") from None


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "ClassEmbedding", "DiffWave", "FrameNet", "GaussianFourierEmbedding", "ItoTTS", "MLP", "MelUNet", "NETWORKS",
    "ScoreNetwork",
    "SinusoidalEmbedding",
    "TimeEmbedding", "UNet", "build_network", "count_parameters",
]
