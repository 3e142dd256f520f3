"""Training a run: a config's data, SDE, network and task handed to the training engine, with what a
checkpoint must say for the run to be loaded again (the config, the SDE, the network, the data)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..engine import CONFIG_FILE, Engine, Faults, TrainResult
from ..errors import CheckpointError
from ..sde import sde_dicts_equal
from .build import build_components, build_task
from .config import Config, config_warnings, save_config

log = logging.getLogger("holdsgm.train")


def _resume_check(config: Config, comp):
    """``f(state, source)`` for the engine: CheckpointError when a checkpoint was made by another SDE, network
    kind or data than ``config`` builds (another architecture shows as the weights fail to load)."""
    def check(st: dict, src: Path) -> None:
        if not sde_dicts_equal(st.get("sde", {}), comp.sde.to_dict()):
            raise CheckpointError(f"{src} was trained with another SDE ({st.get('sde')}) than the config "
                                  f"({comp.sde.to_dict()}); use a new --out folder")
        kind = st.get("network", {}).get("kind")
        if kind != comp.net.kind:
            raise CheckpointError(f"{src} holds a {kind!r} network but the config builds {comp.net.kind!r}; use "
                                  f"a new --out folder")
        old = st.get("dataset", {})
        if tuple(old.get("data_shape", ())) != tuple(comp.info.data_shape) or old.get("name") != comp.info.name:
            raise CheckpointError(f"{src} was trained on data {old.get('name')!r} {tuple(old.get('data_shape', ()))}"
                                  f", the config loads {comp.info.name!r} {comp.info.data_shape}")

    return check


def make_engine(config: Config, run_dir, *, verbose: bool = True, restart: bool = False,
                faults: Faults | None = None) -> Engine:
    """The engine that trains ``config`` in ``run_dir`` (resuming it when it holds checkpoints): the components
    built with the training seed, the task, the metadata every checkpoint carries, and the config written
    to ``run_dir/config.yaml`` once the folder is ready."""
    comp = build_components(config, seed=config.train.seed)
    metadata = {
        "config": config.to_dict(),
        "sde": comp.sde.to_dict(),
        "network": {"kind": comp.net.kind, "config": dict(comp.net.config)},
        "eps_model": {"mixed": config.model.mixed_score, "precond": config.model.precond, "data_var": comp.data_var},
        "dataset": comp.info.to_dict(),
    }

    def on_start(folder: Path, step: int) -> None:
        save_config(config, folder / CONFIG_FILE)
        if step < config.train.steps:
            for w in config_warnings(config):
                log.warning("%s", w)

    if config.data.random_flip and len(comp.info.data_shape) != 3:
        from ..errors import ConfigError

        raise ConfigError(f"config key data.random_flip: flips are for images; {comp.info.name!r} has items of "
                          f"shape {comp.info.data_shape}")
    return Engine(build_task(config, comp), config.train, run_dir, metadata=metadata,
                  resume_check=_resume_check(config, comp), verbose=verbose, restart=restart, faults=faults,
                  on_start=on_start)


def train(config: Config, run_dir, *, verbose: bool = True, restart: bool = False,
          faults: Faults | None = None) -> TrainResult:
    """Train (or resume) the run ``config`` describes in ``run_dir`` and release the engine (also on errors).
    ``restart``: start over, moving the folder's checkpoints aside first; ``faults``: the crash-safety tests'
    fault points (None, the default, outside them)."""
    engine = make_engine(config, run_dir, verbose=verbose, restart=restart, faults=faults)
    try:
        return engine.fit()
    finally:
        engine.close()
