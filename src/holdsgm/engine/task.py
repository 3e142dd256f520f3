"""The contract between the training engine and a task: what one kind of model trains on and how.

A task owns its data, its random streams and its loss; the engine owns the loop around it (optimiser,
learning-rate schedule, gradient accumulation and clipping, EMA, flat buffers, DDP, AMP, checkpoints,
signals, the NaN stop) and knows nothing else about it. Every batch is a pure function of the global step,
so a resumed run and any number of DDP ranks see the same data (the engine gives the task its rank).

Adding a kind of model (text-to-speech, say) means writing a task, never editing the engine.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Task(Protocol):
    """What the engine calls; see :class:`holdsgm.tasks.GenerationTask` for a full example."""

    net: nn.Module
    """The network whose parameters are trained, averaged (EMA) and checkpointed."""

    def bind(self, device: torch.device, rank: int, world_size: int) -> None:
        """Called once before training: where to put batches, and which rows of a global batch are this
        rank's (``world_size`` ranks split every global batch in equal, consecutive parts)."""

    def batch(self, step: int) -> Any:
        """This rank's part of the global batch of update ``step`` (0-based): a pure function of the task's
        seed and ``step``."""

    def split(self, batch: Any, parts: int) -> list[Any]:
        """``batch`` in ``parts`` equal micro-batches (gradient accumulation); ``[batch]`` for one part."""

    def loss(self, batch: Any, net: nn.Module) -> torch.Tensor:
        """The mean training loss of ``batch``, a scalar with gradients, computed through ``net`` (the
        engine's wrapping of :attr:`net`: DDP and autocast where they are on)."""

    def init_weights(self) -> dict[str, torch.Tensor] | None:
        """Weights to start a fresh run from (e.g. stage two starts from a trained stage one), or None to
        keep the network's initialisation. Not called when a run resumes."""

    def state_dict(self) -> dict:
        """What the task checkpoints besides the network: its random generators' states and the like,
        merged into the checkpoint's state (dicts one level deep)."""

    def load_state_dict(self, state: dict, step: int) -> None:
        """Resume from the checkpoint ``state`` (the whole of it) written at ``step``."""

    # Optional: ``loss_parts``, a dict of floats the task sets in ``loss`` (the named terms of a loss that is a
    # sum, e.g. text to speech's duration, prior and diffusion losses); the engine logs their averages beside
    # the loss as ``loss/<name>``.
