"""A trained run, ready to use: what a checkpoint says of its data (:class:`DatasetInfo`), and
:func:`load_run`, which builds the network, SDE and score of a run from its newest valid checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..engine.checkpoint import STATE_FILE, WEIGHT_FILES, load_checkpoint, load_weights_into
from ..errors import CheckpointError, HoldsgmError
from ..losses import EpsModel
from ..nets import build_network
from ..sde import LinearSDE, sde_dicts_equal, sde_from_dict
from ..tasks import conditioned_network
from .build import DatasetInfo, priorgrad_settings
from .config import Config


@dataclass
class LoadedRun:
    """A trained model ready for sampling and likelihoods (see :func:`load_run`)."""

    net: nn.Module
    eps_model: EpsModel
    sde: LinearSDE
    config: Config
    step: int
    dataset_info: DatasetInfo
    path: Path
    which: str = "ema"

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def run_dir(self) -> Path:
        """The run folder (``path`` is the checkpoint loaded, ``RUN/checkpoints/ckpt-<step>`` in a run)."""
        return self.path.parent.parent if self.path.parent.name == "checkpoints" else self.path


def build_from_state(state: dict, source) -> tuple[nn.Module, LinearSDE, Config]:
    """(network, sde, config) described by a checkpoint state; CheckpointError when inconsistent."""

    try:
        config = Config.from_dict(state["config"])
        net_desc = state["network"]
        net = build_network(net_desc["kind"], **net_desc["config"])
        sde = sde_from_dict(state["sde"])
    except KeyError as e:
        raise CheckpointError(
            f"{source} lacks {e.args[0]!r}; it is not a complete holdsgm checkpoint"
        ) from None
    except (HoldsgmError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source} describes an invalid model: {' '.join(str(e).split())}") from None
    want = config.sde.build().to_dict()
    if not sde_dicts_equal(want, sde.to_dict()):
        raise CheckpointError(
            f"{source} was trained with SDE {sde.to_dict()} but its config specifies {want}"
        )
    return net, sde, config


def load_run(run_dir, which: str = "ema", device="cpu") -> LoadedRun:
    """Load a trained run (its newest valid checkpoint, or a given checkpoint folder) for inference.

    Args:
        run_dir: a run folder (``holdsgm train --out RUN``) or one checkpoint folder.
        which: ``'ema'`` (the averaged weights, what samples should use) or ``'model'`` (raw weights).
        device: where to put the network.

    Returns a :class:`LoadedRun` whose ``eps_model`` (an :class:`holdsgm.losses.EpsModel`) gives the
    score for samplers and likelihoods. The network is in eval mode with gradients disabled. For a
    PriorGrad vocoder the score is that of the whitened state ``u / sigma``
    (:class:`holdsgm.audio.PriorGradNet`; :func:`holdsgm.runs.inference.vocode` handles it).
    """
    if which not in ("ema", "model"):
        raise ValueError(f"which must be 'ema' or 'model', got {which!r}")
    ck = load_checkpoint(run_dir)
    src = ck.path / STATE_FILE
    net, sde, config = build_from_state(ck.state, src)
    load_weights_into(net, ck.ema if which == "ema" else ck.model, ck.path / WEIGHT_FILES[which])
    return ready_run(net, sde, config, ck.state, ck.step, ck.path, which, device)


def ready_run(net: nn.Module, sde: LinearSDE, config: Config, state: dict, step: int, path: Path, which: str,
              device) -> LoadedRun:
    """A :class:`LoadedRun` of a network with its weights loaded: on ``device``, in eval mode without
    gradients, with the eps model (its conditioning and mixed score) that ``state``'s ``dataset`` and
    ``eps_model`` entries describe (a checkpoint's state, or a shipped model's manifest part)."""
    net.to(device).eval().requires_grad_(False)
    info = DatasetInfo.from_dict(state["dataset"])
    em = state.get("eps_model", {})
    eps_model = EpsModel(
        conditioned_network(net, priorgrad_settings(config, info)), sde, mixed=bool(em.get("mixed", False)),
        data_var=float(em.get("data_var", 1.0)), precond=bool(em.get("precond", False))
    )
    return LoadedRun(net, eps_model, sde, config, step, info, Path(path), which)
