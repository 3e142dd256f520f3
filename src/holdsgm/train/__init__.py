"""Training: configs, the trainer, crash-safe checkpoints and the loaders of trained runs.

Public API::

    load_config(path, overrides) -> Config            # YAML + --set key=value, validated
    Trainer(config, run_dir).fit() -> TrainResult     # or train(config, run_dir)
    load_run(run_dir, which="ema", device="cpu") -> LoadedRun(net, eps_model, sde, config, step, dataset_info)
    load_checkpoint(path) -> Checkpoint
"""

from .checkpoint import (
    Checkpoint,
    DatasetInfo,
    LoadedRun,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_run,
    save_checkpoint,
    verify_checkpoint,
)
from .config import (
    Config,
    DataConfig,
    EvalConfig,
    ModelConfig,
    SampleConfig,
    SDEConfig,
    TrainConfig,
    apply_overrides,
    load_config,
    preset_names,
    resolve_config_path,
    save_config,
)
from .ema import EMA, ema_decay_at
from .trainer import Trainer, TrainResult, lr_at, train

__all__ = [
    "EMA",
    "Checkpoint",
    "Config",
    "DataConfig",
    "DatasetInfo",
    "EvalConfig",
    "LoadedRun",
    "ModelConfig",
    "SDEConfig",
    "SampleConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_overrides",
    "ema_decay_at",
    "find_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "load_run",
    "lr_at",
    "preset_names",
    "resolve_config_path",
    "save_checkpoint",
    "save_config",
    "train",
    "verify_checkpoint",
]
