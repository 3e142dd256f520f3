"""From a :class:`~holdsgm.runs.config.Config` to data, SDE, network and task (shared by training, dry runs
and evaluation), and :class:`DatasetInfo`, what a trained model knows of its data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset
from ..errors import ConfigError
from ..mixture import GaussianMixture
from ..nets.common import ScoreNetwork
from ..sde.base import LinearSDE
from ..tasks import GenerationTask, StageTwoTask, VocoderTask
from .config import TTS_KINDS, Config, DataConfig
from .stage2 import stage_one_weights

log = logging.getLogger("holdsgm.train")


@dataclass
class DatasetInfo:
    """What a trained model knows of its data: shape, classes, quantisation, true density if known."""

    name: str
    data_shape: tuple[int, ...]
    n_classes: int = 0
    n_bins: int | None = None
    data_range: tuple[float, float] | None = None
    mixture: GaussianMixture | None = None
    data_var: float = 1.0
    n_train: int = 0
    data_bound: float | None = None
    """The largest |x| of the training data (vectors; images have ``data_range``): the posterior mean
    E[x0 | u_t] lies in the data's convex hull, so samplers clip their data predictions to it."""
    audio: dict | None = None
    """Speech data only: the features the network was conditioned on (``sr``, ``hop``, ``n_fft``,
    ``n_mels``, ``fmin``, ``fmax``), the training ``segment_frames``, the training audio's ``seconds``
    and PriorGrad's ``energy_max`` (None without PriorGrad)."""

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    @property
    def is_speech(self) -> bool:
        return self.audio is not None

    @property
    def speech(self) -> dict:
        """The speech features (:attr:`audio`); ConfigError when the data is not speech."""
        if self.audio is None:
            raise ConfigError(f"{self.name!r} is not speech data")
        return self.audio

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "data_shape": list(self.data_shape),
            "n_classes": self.n_classes,
            "n_bins": self.n_bins,
            "data_range": None if self.data_range is None else list(self.data_range),
            "mixture": None if self.mixture is None else self.mixture.to_dict(),
            "data_var": self.data_var,
            "n_train": self.n_train,
            "data_bound": self.data_bound,
            "audio": None if self.audio is None else dict(self.audio),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DatasetInfo:
        return cls(
            name=str(d["name"]),
            data_shape=tuple(int(s) for s in d["data_shape"]),
            n_classes=int(d.get("n_classes") or 0),
            n_bins=d.get("n_bins"),
            data_range=None if d.get("data_range") is None else (float(d["data_range"][0]), float(d["data_range"][1])),
            mixture=None if d.get("mixture") is None else GaussianMixture.from_dict(d["mixture"]),
            data_var=float(d.get("data_var", 1.0)),
            n_train=int(d.get("n_train", 0)),
            data_bound=None if d.get("data_bound") is None else float(d["data_bound"]),
            audio=None if d.get("audio") is None else dict(d["audio"]),
        )

    @property
    def clip_bound(self) -> float | None:
        """Where a sampler's data prediction is clipped: the data range of images, the largest |x| of the
        training vectors (None when unknown: runs written before it was recorded, and speech)."""
        if self.data_range is not None:
            return max(abs(self.data_range[0]), abs(self.data_range[1]))
        return self.data_bound



def priorgrad_settings(config: Config, info: DatasetInfo) -> dict | None:
    """The vocoder's data-dependent prior for :func:`holdsgm.tasks.conditioned_network`: PriorGrad's
    settings, the spectral (MDCT) coordinates' (``kind: spectral``), or None (plain)."""
    if config.model.conditioning == "spectral":
        if not (info.audio and info.audio.get("spectral_scale")):
            raise ConfigError(f"model.conditioning is spectral but the data info of {info.name!r} has no "
                              f"spectral_scale")
        return {"kind": "spectral", "scale": info.speech["spectral_scale"], "hop": info.speech["hop"]}
    if config.model.conditioning != "priorgrad":
        return None
    if not (info.audio and info.audio.get("energy_max")):
        raise ConfigError(f"model.conditioning is priorgrad but the data info of {info.name!r} has no energy_max")
    return {"energy_max": info.speech["energy_max"], "min_std": config.model.priorgrad_min_std,
            "hop": info.speech["hop"]}




def load_split(data: DataConfig, split: str = "train"):
    """The ``train`` / ``test`` part (or ``all``) of the config's data set, split deterministically: a
    :class:`~holdsgm.data.Dataset`, or for ``data.name: speech`` a :class:`~holdsgm.audio.SpeechDataset`
    (split by utterance id). With ``data.test`` (a held-out file or folder) all of ``data.name`` is the
    training part and ``data.test``, read with the same options, the test part; with ``test_fraction: 0``
    the test part is the training data (with a warning: there is nothing held out)."""
    if split not in ("train", "test", "all"):
        raise ConfigError(f"split must be train, test or all; got {split!r}")
    if split == "test" and data.test is not None:
        return _read(data, data.test)
    ds = _read(data, data.name)
    if split == "all" or data.test is not None:
        return ds
    if data.test_fraction == 0:
        if split == "test":
            log.warning("data.test_fraction is 0 and data.test is not set: there is no held-out data, so "
                        "the training data are used where held-out data would be")
        return ds
    train, test = ds.split(data.test_fraction, data.split_seed)
    return train if split == "train" else test


def _read(data: DataConfig, source: str):
    """All of the data set ``source`` (``data.name`` or ``data.test``) with the config's options."""
    if data.is_speech:
        from ..audio import load_speech

        o = data.options
        return load_speech(o["path"] if source == data.name else source, o["sr"], recursive=o["recursive"],
                           limit=o["limit"])
    return load_dataset(source, **data.options)


def speech_info(config: Config, train=None) -> DatasetInfo:
    """What a vocoder knows of its speech data: segment shape, features, the variance of the SDE's data
    (the samples'; for the spectral conditioning the whitened MDCT coefficients'), PriorGrad's
    ``energy_max`` (the largest frame energy of the training mels) or the spectral prior's scale.
    ``train=None``: from the config alone (the features and shapes; no statistics, ``n_train = 0``)."""
    import numpy as np

    from ..audio import FMAX, FMIN, HOP, N_FFT, N_MELS, max_frame_energy

    o = config.data.options
    audio = {"sr": o["sr"], "hop": HOP, "n_fft": N_FFT, "n_mels": N_MELS, "fmin": FMIN, "fmax": FMAX,
             "segment_frames": o["segment_frames"], "seconds": 0.0, "energy_max": None}
    shape = (1, o["segment_frames"] * HOP)
    if config.model.kind in TTS_KINDS:
        from .textmel import tts_audio_info

        name, tshape, audio, n_train = tts_audio_info(config, train, audio)
        return DatasetInfo(name=name, data_shape=tshape, n_train=n_train, audio=audio)
    if train is None:
        return DatasetInfo(name=Path(o["path"]).name or o["path"], data_shape=shape, audio=audio)
    var = float(np.concatenate([it.wave for it in train]).astype(np.float64).var())
    audio.update(sr=train.sr, seconds=train.seconds)
    if config.model.conditioning == "priorgrad":
        audio["energy_max"] = max_frame_energy(train.mel(i) for i in range(len(train)))
    if config.model.conditioning == "spectral":
        from ..audio.mdct import spectral_scale, whitened_variance

        waves, mels = [it.wave for it in train], [train.mel(i) for i in range(len(train))]
        audio["spectral_scale"] = spectral_scale(waves, mels, m=HOP)
        var = whitened_variance(waves, mels, audio["spectral_scale"], m=HOP)  # the SDE's data: MDCT / sigma
    return DatasetInfo(name=train.name, data_shape=shape, data_var=var if var > 0 else 1.0, n_train=len(train),
                       audio=audio)


def dataset_info(config: Config, train) -> DatasetInfo:
    """Shape, classes, quantisation and (per-coordinate) variance of the training data."""
    if config.data.is_speech:
        return speech_info(config, train)
    if config.data.conditional and not train.n_classes:
        raise ConfigError(f"config key data.conditional: data set {train.name!r} has no class labels (give "
                          f"them as one sub-folder per class of an image folder, or as an array y / labels "
                          f"in the .npz, named with data.label_key; or train unconditionally: "
                          f"--set data.conditional=false)")
    if train.x.dim() not in (2, 4):
        raise ConfigError(
            f"data set {train.name!r} has items of shape {train.data_shape}; holdsgm trains on "
            f"vectors (N, d) or images (N, C, H, W)"
        )
    var = float(train.x.double().var()) if len(train) > 1 else 1.0
    return DatasetInfo(
        name=train.name,
        data_shape=train.data_shape,
        n_classes=train.n_classes if config.data.conditional else 0,
        n_bins=train.n_bins,
        data_range=train.data_range,
        mixture=train.mixture,
        data_var=var if var > 0 else 1.0,
        n_train=len(train),
        data_bound=float(train.x.abs().max()) if len(train) else None,
    )


def network_kwargs(config: Config, info: DatasetInfo, order: int) -> dict:
    """The network's constructor arguments: the config's plus sizes derived from the data and SDE order."""
    kw = dict(config.model.kwargs)
    shape = info.data_shape
    if config.model.kind == "diffwave":
        if not info.is_speech:
            raise ConfigError(f"config key model.kind: DiffWave takes speech (data.name: speech), but "
                              f"{info.name!r} has items of shape {shape}")
        for k in ("n_mels", "hop"):  # fixed by the one log-mel feature function
            if k in kw and kw[k] != info.speech[k]:
                raise ConfigError(f"config key model.{k}: the speech features have {k} = {info.speech[k]}, "
                                  f"got {kw[k]}; remove it")
            kw[k] = info.speech[k]
        kw.update(in_channels=order, out_channels=1)
        return kw
    if config.model.kind in TTS_KINDS:
        if not info.is_speech or (config.model.kind == "itotts" and not info.speech.get("symbols")):
            raise ConfigError(f"config key model.kind: {config.model.kind} takes speech with texts (data.name: "
                              f"speech), not {info.name!r}")
        n_mels = info.speech["n_mels"]
        kw.update(in_channels=order * n_mels, n_mels=n_mels)
        if config.model.kind == "itotts":
            kw["n_symbols"] = len(info.speech["symbols"])
        else:
            kw["out_channels"] = n_mels
        return kw
    if config.model.kind == "framenet":
        if not info.is_speech:
            raise ConfigError(f"config key model.kind: the frame network takes speech (data.name: speech), but "
                              f"{info.name!r} has items of shape {shape}")
        if "n_mels" in kw and kw["n_mels"] != info.speech["n_mels"]:
            raise ConfigError(f"config key model.n_mels: the speech features have n_mels = {info.speech['n_mels']}, "
                              f"got {kw['n_mels']}; remove it")
        hop = info.speech["hop"]
        kw.update(n_mels=info.speech["n_mels"], in_channels=order * hop, out_channels=hop)
        return kw
    if config.model.kind == "mlp":
        if len(shape) != 1:
            raise ConfigError(
                f"config key model.kind: the MLP takes vector data, but {info.name!r} has items "
                f"of shape {shape}; use model.kind=unet"
            )
        kw.update(in_features=order * shape[0], out_features=shape[0])
    elif config.model.kind == "unet":
        if len(shape) != 3:
            raise ConfigError(
                f"config key model.kind: the U-Net takes images (C, H, W), but {info.name!r} has "
                f"items of shape {shape}; use model.kind=mlp"
            )
        c, h, w = shape
        kw.update(in_channels=order * c, out_channels=c, image_size=h if h == w else [h, w])
    kw["n_classes"] = info.n_classes
    return kw


def build_network_for(config: Config, info: DatasetInfo, order: int) -> ScoreNetwork:
    from ..nets import build_network

    return build_network(config.model.kind, **network_kwargs(config, info, order))


@dataclass
class Components:
    """Everything training needs, built from a config (on the CPU)."""

    sde: LinearSDE
    train: Any  # a Dataset; a SpeechDataset for speech; None for speech read with read_speech=False
    info: DatasetInfo
    net: ScoreNetwork
    data_var: float


def build_components(config: Config, seed: int | None = None, *, read_speech: bool = True) -> Components:
    """Load the training split, build the SDE and the network (initialised from ``seed``).
    ``read_speech=False`` (``--dry-run``): speech data is not read (``train`` is None and the info has
    only the features and shapes), so a vocoder config can be checked before its corpus is built."""
    sde = config.sde.build()
    if config.data.is_speech and not read_speech:
        train, info = None, speech_info(config)
    else:
        train = load_split(config.data, "train")
        info = dataset_info(config, train)
    if seed is not None:
        torch.manual_seed(seed)
    net = build_network_for(config, info, sde.order)
    data_var = config.model.data_var if config.model.data_var is not None else info.data_var
    return Components(sde, train, info, net, data_var)


def build_task(config: Config, comp: Components):
    """The task of a config (:mod:`holdsgm.tasks`): stage two of a vocoder, a vocoder, or generation."""
    tc = config.train
    if config.model.kind in TTS_KINDS:
        from .textmel import build_tts_task

        return build_tts_task(config, comp)
    if config.data.is_speech:
        speech = dict(speech=comp.train, batch_size=tc.batch_size, seed=tc.seed,
                      segment_frames=comp.info.speech["segment_frames"],
                      priorgrad=priorgrad_settings(config, comp.info), mixed=config.model.mixed_score,
                      data_var=comp.data_var, precond=config.model.precond)
        if config.stage2.enabled:
            s2 = config.stage2
            return StageTwoTask(comp.sde, comp.net, hop=comp.info.speech["hop"], nfe=s2.nfe, sampler=s2.sampler,
                                grid=s2.grid, l2_weight=s2.l2_weight, mrstft_weight=s2.mrstft_weight,
                                init=lambda: stage_one_weights(config, comp), **speech)
        return VocoderTask(comp.sde, comp.net, weighting=tc.weighting, stratified=tc.stratified, **speech)
    train = comp.train
    return GenerationTask(comp.sde, comp.net, train.x, batch_size=tc.batch_size, seed=tc.seed,
                          labels=train.y, n_classes=comp.info.n_classes, label_dropout=tc.label_dropout,
                          random_flip=config.data.random_flip, weighting=tc.weighting, stratified=tc.stratified,
                          mixed=config.model.mixed_score, data_var=comp.data_var, precond=config.model.precond)
