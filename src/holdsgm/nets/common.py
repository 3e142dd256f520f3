"""What every network shares: the :class:`ScoreNetwork` contract and the constructor-argument checks
(:mod:`holdsgm.checks` with ConfigError naming the argument)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from .. import checks
from ..errors import ConfigError


class ScoreNetwork(nn.Module):
    """The contract between a network and the rest of the library.

    ``forward(u, t, y=None, skip_scale=None)`` maps the stacked phase-space state ``u`` (batch, n * C, ...)
    at times ``t`` (batch,) with optional labels or conditioning ``y`` to a tensor with the data's C
    channels; ``kind`` names it in :data:`holdsgm.nets.NETWORKS` and ``config`` holds its constructor
    arguments (JSON values), so ``build_network(net.kind, **net.config)`` rebuilds it from a checkpoint.
    """

    kind: ClassVar[str]
    config: dict[str, Any]

    def forward(self, u: Tensor, t: Tensor, y: Tensor | None = None, skip_scale=None) -> Tensor:
        raise NotImplementedError


def zero_init(layer: nn.Conv1d | nn.Conv2d | nn.Linear) -> None:
    """Zero a layer's weight and bias (the output layers that start a residual branch or the network at zero)."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def check_int(v, name: str, lo: int | None = None) -> int:
    return checks.check_int(v, f"network argument {name}", lo, error=ConfigError)


def check_num(v, name: str, lo: float | None = None, hi: float | None = None, positive: bool = False) -> float:
    if positive:
        return checks.check_float(v, f"network argument {name}", 0.0, hi, lo_open=True, error=ConfigError)
    return checks.check_float(v, f"network argument {name}", lo, hi, error=ConfigError)


def check_choice(v, name: str, choices) -> str:
    return checks.check_choice(v, f"network argument {name}", choices, error=ConfigError)


def check_int_seq(v, name: str, lo: int = 1, allow_empty: bool = False) -> list[int]:
    """A list/tuple of ints >= lo, returned as a list (JSON-friendly for ``config``)."""
    return checks.check_int_seq(v, f"network argument {name}", lo, allow_empty, error=ConfigError)
