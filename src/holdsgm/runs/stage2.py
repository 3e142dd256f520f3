"""Stage two's starting point: the weights of the trained stage-one run a config names (``stage2.init``)."""

from __future__ import annotations

import logging

from torch import Tensor

from ..engine.checkpoint import load_checkpoint
from ..errors import CheckpointError
from ..sde import sde_dicts_equal
from .config import Config

log = logging.getLogger("holdsgm.train")


def stage_one_weights(config: Config, comp) -> tuple[dict[str, Tensor], dict]:
    """(weights, origin) of ``config.stage2.init`` (``stage2.which``: its EMA or raw weights), checked to be of
    the same SDE, network and conditioning as ``comp`` (:class:`~holdsgm.runs.build.Components`)."""
    s2 = config.stage2
    try:
        ck = load_checkpoint(s2.init)
    except CheckpointError as e:
        raise CheckpointError(f"stage2.init: {e}") from None
    st, src = ck.state, ck.path / "state.pt"
    if not sde_dicts_equal(st.get("sde", {}), comp.sde.to_dict()):
        raise CheckpointError(f"stage2.init: {src} was trained with another SDE ({st.get('sde')}) than the config "
                              f"({comp.sde.to_dict()}); use the stage-one run's sde settings")
    desc = st.get("network", {})
    if desc.get("kind") != comp.net.kind or dict(desc.get("config", {})) != dict(comp.net.config):
        raise CheckpointError(f"stage2.init: {src} holds a {desc.get('kind')!r} network {desc.get('config')}, the "
                              f"config builds {comp.net.kind!r} {comp.net.config}; use the stage-one run's model "
                              f"settings")
    old = (st.get("config") or {}).get("model", {}).get("conditioning", "plain")
    if old != config.model.conditioning:
        raise CheckpointError(f"stage2.init: {src} was trained with model.conditioning={old!r}, the config has "
                              f"{config.model.conditioning!r}")
    log.info("stage two: starting from %s (step %d, %s weights)", ck.path, ck.step, s2.which)
    origin = {"init": str(ck.path.resolve()), "init_step": int(ck.step), "init_seconds": float(st.get("elapsed", 0.0)),
              "init_which": s2.which}
    return (ck.ema if s2.which == "ema" else ck.model), origin
