"""From a :class:`~holdsgm.train.config.Config` to data, SDE and network (shared by training, dry runs
and evaluation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import Dataset, load_dataset
from ..errors import ConfigError
from .checkpoint import DatasetInfo
from .config import Config, DataConfig


def load_split(data: DataConfig, split: str = "train") -> Dataset:
    """The ``train`` / ``test`` part (or ``all``) of the config's data set, split deterministically."""
    if split not in ("train", "test", "all"):
        raise ConfigError(f"split must be train, test or all; got {split!r}")
    ds = load_dataset(data.name, **data.options)
    if split == "all":
        return ds
    train, test = ds.split(data.test_fraction, data.split_seed)
    return train if split == "train" else test


def dataset_info(config: Config, train: Dataset) -> DatasetInfo:
    """Shape, classes, quantisation and (per-coordinate) variance of the training data."""
    if config.data.conditional and not train.n_classes:
        raise ConfigError(f"config key data.conditional: data set {train.name!r} has no class labels")
    if train.x.dim() not in (2, 4):
        raise ConfigError(f"data set {train.name!r} has items of shape {train.data_shape}; holdsgm trains on "
                          f"vectors (N, d) or images (N, C, H, W)")
    var = float(train.x.double().var()) if len(train) > 1 else 1.0
    return DatasetInfo(name=train.name, data_shape=train.data_shape,
                       n_classes=train.n_classes if config.data.conditional else 0, n_bins=train.n_bins,
                       data_range=train.data_range, mixture=train.mixture, data_var=var if var > 0 else 1.0,
                       n_train=len(train))


def network_kwargs(config: Config, info: DatasetInfo, order: int) -> dict:
    """The network's constructor arguments: the config's plus sizes derived from the data and SDE order."""
    kw = dict(config.model.kwargs)
    shape = info.data_shape
    if config.model.kind == "mlp":
        if len(shape) != 1:
            raise ConfigError(f"config key model.kind: the MLP takes vector data, but {info.name!r} has items "
                              f"of shape {shape}; use model.kind=unet")
        kw.update(in_features=order * shape[0], out_features=shape[0])
    elif config.model.kind == "unet":
        if len(shape) != 3:
            raise ConfigError(f"config key model.kind: the U-Net takes images (C, H, W), but {info.name!r} has "
                              f"items of shape {shape}; use model.kind=mlp")
        c, h, w = shape
        kw.update(in_channels=order * c, out_channels=c, image_size=h if h == w else [h, w])
    kw["n_classes"] = info.n_classes
    return kw


def build_network_for(config: Config, info: DatasetInfo, order: int) -> nn.Module:
    from ..nets import build_network

    return build_network(config.model.kind, **network_kwargs(config, info, order))


@dataclass
class Components:
    """Everything training needs, built from a config (on the CPU)."""

    sde: object
    train: Dataset
    info: DatasetInfo
    net: nn.Module
    data_var: float


def build_components(config: Config, seed: int | None = None) -> Components:
    """Load the training split, build the SDE and the network (initialised from ``seed``)."""
    sde = config.sde.build()
    train = load_split(config.data, "train")
    info = dataset_info(config, train)
    if seed is not None:
        torch.manual_seed(seed)
    net = build_network_for(config, info, sde.order)
    data_var = config.model.data_var if config.model.data_var is not None else info.data_var
    return Components(sde, train, info, net, data_var)
