"""Runs: everything between a config file and a trained model's results.

The config schema and its reference (:mod:`.config`, :mod:`.reference`), building data, SDE, network and
task from a config (:mod:`.build`), training a run with the engine (:mod:`.training`), loading a trained run
(:mod:`.loading`), sampling and vocoding with it (:mod:`.inference`, :mod:`.guided`), evaluating it
(:mod:`.evaluation`, :mod:`.wasserstein`), the oracle benchmark (:mod:`.oracle_bench`), the demo
(:mod:`.demo`), text to speech (:mod:`.tts`), figures and reports.

Public API::

    load_config(path, overrides) -> Config            # YAML + --set key=value, validated
    train(config, run_dir) -> TrainResult             # or make_engine(config, run_dir).fit()
    load_run(run_dir, which="ema", device="cpu") -> LoadedRun(net, eps_model, sde, config, step, dataset_info)
    generate(run, n, sampler=..., nfe=...) -> Generated
    load_pretrained("slt") -> LoadedRun                # the voice shipped with the package (:mod:`.pretrained`)
    vocode(run, mel, nfe=..., sampler=...) -> Vocoded
    synthesize(tts_run, vocoder_run, text, nfe=...) -> {"wave", "sr", "parts", ...}   # text to speech (:mod:`.tts`)
"""

from .build import DatasetInfo
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
from .inference import Generated, class_labels, generate, vocode
from .loading import LoadedRun, load_run
from .pretrained import load_pretrained
from .training import make_engine, train
from .tts import synthesize, text_to_mel

__all__ = [
    "Config", "DataConfig", "DatasetInfo", "EvalConfig", "Generated", "LoadedRun", "ModelConfig", "SDEConfig",
    "SampleConfig", "TrainConfig", "apply_overrides", "class_labels", "generate", "load_config", "load_pretrained",
    "load_run", "make_engine", "preset_names", "resolve_config_path", "save_config", "synthesize", "text_to_mel",
    "train", "vocode",
]
