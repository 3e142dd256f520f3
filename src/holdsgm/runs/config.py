"""Run configuration: typed dataclasses, a YAML loader with ``--set key=value`` overrides, validation.

A config has six sections, each a dataclass::

    sde:    name + SDE parameters           -> holdsgm.sde.make_sde(name, **overrides)
    data:   name/path + loader options      -> holdsgm.data.load_dataset(name, **options), then a split
    model:  network kind + its arguments    -> holdsgm.nets.build_network(kind, **kwargs), EpsModel
    train:  optimiser, EMA, logging, checkpoints, device
    sample: the default sampler of ``holdsgm sample`` / ``eval``
    eval:   sample and likelihood budgets of ``holdsgm eval``
    stage2: few-step fine-tuning of a trained vocoder (Lay et al. 2023); off unless ``enabled``

In YAML the ``sde``, ``data`` and ``model`` sections are flat: keys that are not fields of the dataclass
(``T``, ``n``, ``hidden``, ...) are the parameters passed on to the SDE, loader or network, stored in the
dataclass's ``overrides`` / ``options`` / ``kwargs`` dict. So ``--set sde.T=3`` and
``--set model.hidden=128`` work. Every user mistake raises :class:`~holdsgm.errors.ConfigError` naming
the key (as a dotted path), the value and what was expected.

Values given with ``--set`` are parsed as YAML scalars or flow lists (``--set train.betas=[0.9,0.99]``).
Unlike plain PyYAML, ``1e-3`` is read as a float (YAML 1.2 behaviour).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import checks
from ..errors import ConfigError
from ..files import atomic_write

MAX_SEED = 2**63 - 1

# ---------------------------------------------------------------------- YAML with YAML-1.2 floats


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` / ``1E5`` (no dot) as floats, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())
        raise ConfigError(f"{source}: invalid YAML: {msg}") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value: a YAML scalar or flow list (``3``, ``1e-3``, ``true``, ``[1, 2]``, ``hold``)."""
    if text.strip() == "":
        return ""
    return parse_yaml(text, f"value {text!r}")


def dump_yaml(d: dict) -> str:
    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=110)


# ---------------------------------------------------------------------- value checkers


def _type_name(v) -> str:
    return "null" if v is None else type(v).__name__


def _fail(key: str, v, expected: str) -> ConfigError:
    return ConfigError(f"config key {key}: expected {expected}, got {_type_name(v)} {v!r:.80}")


# :mod:`holdsgm.checks` with ConfigError naming the key
def _int(key: str, v, lo: int | None = None, hi: int | None = None) -> int:
    return checks.check_int(v, f"config key {key}", lo, hi, error=ConfigError, integral_floats=True)


def _float(key: str, v, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False) -> float:
    return checks.check_float(v, f"config key {key}", lo, hi, lo_open, hi_open, error=ConfigError)


def _bool(key: str, v) -> bool:
    return checks.check_bool(v, f"config key {key}", error=ConfigError)


def _str(key: str, v, choices=None) -> str:
    if choices is None:
        return checks.check_str(v, f"config key {key}", error=ConfigError)
    return checks.check_choice(v, f"config key {key}", choices, error=ConfigError)


def _mapping(key: str, v) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _fail(key, v, "a mapping")
    for k in v:
        if not isinstance(k, str):
            raise ConfigError(f"config key {key}: keys must be strings, got {_type_name(k)} {k!r:.60}")
    return dict(v)


def _plain(key: str, v, depth: int = 0):
    """A JSON/YAML-representable value (scalars, lists, string-keyed mappings)."""
    if depth > 8:
        raise ConfigError(f"config key {key}: nested too deeply")
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ConfigError(f"config key {key}: must be finite, got {v!r}")
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(f"{key}[{i}]", x, depth + 1) for i, x in enumerate(v)]
    if isinstance(v, dict):
        return {str(_str(f"{key} (a key)", k)): _plain(f"{key}.{k}", x, depth + 1) for k, x in v.items()}
    raise _fail(key, v, "a number, string, boolean, list or mapping")


def _unknown(section: str, key, valid) -> ConfigError:
    where = f"{section}.{key}" if section else str(key)
    return ConfigError(
        f"unknown config key {where!r:.100}; valid keys{' for ' + section if section else ''}: "
        f"{', '.join(sorted(valid))}"
    )


# ---------------------------------------------------------------------- sections


def doc(default, meaning: str):
    """A config field with its default and its meaning (listed by ``holdsgm config --list`` and docs/config.md)."""
    return field(default=default, metadata={"doc": meaning})



@dataclass
class SDEConfig:
    """The forward SDE: a preset name of :func:`holdsgm.sde.make_sde` and parameter overrides."""

    name: str = doc(
        "hold",
        'the SDE preset (holdsgm.sde.make_sde): vp, subvp, ve, cld, cld-sgm, hold, or langevin (any order); its'
        ' parameters are keys of this section too (below)')
    overrides: dict[str, Any] = field(default_factory=dict)

    EXTRA = "overrides"

    def validate(self) -> SDEConfig:
        from ..sde import PRESETS

        self.name = _str("sde.name", self.name, sorted(PRESETS)).lower()
        self.overrides = {
            k: _plain(f"sde.{k}", v) for k, v in _mapping("sde.overrides", self.overrides).items()
        }
        accepted = _sde_parameters(self.name)
        for k in self.overrides:
            if k == "name" or (accepted is not None and k not in accepted):
                raise _unknown("sde", k, {"name"} | (accepted or set()) - {"name"})
        if "order" in self.overrides:  # orders > 3 are solved numerically; keep them small
            self.overrides["order"] = _int("sde.order", self.overrides["order"], 1, 8)
        self.build()  # value errors (T <= 0, ...) as ConfigError
        return self

    def build(self):
        from ..sde import make_sde

        try:
            return make_sde(self.name, **self.overrides)
        except (TypeError, ValueError, ArithmeticError, RuntimeError) as e:
            msg = " ".join(str(e).split())
            keys = ", ".join(f"sde.{k}={v!r}" for k, v in self.overrides.items())
            raise ConfigError(
                f"config key sde: cannot build SDE {self.name!r}{' with ' + keys if keys else ''}: {msg}"
            ) from None

    def flat(self) -> dict:
        return {"name": self.name, **self.overrides}


def _sde_parameters(name: str) -> set[str] | None:
    """The parameters an SDE preset accepts (None for an unknown preset: then make_sde reports it)."""
    from ..sde.presets import preset_parameters

    try:
        return preset_parameters(name)
    except ValueError:
        return None


#: options understood by some data loader (holdsgm.data.load_dataset); the loader checks them per source
DATA_OPTIONS = {"n", "seed", "recursive", "labels", "channels", "key", "label_key", "layout", "value_range", "pad"}

#: ``data.name: speech`` (the vocoder's data, :mod:`holdsgm.audio`): its options and their defaults.
#: ``path``: an LJSpeech-layout folder (``holdsgm data speech``) or a folder of WAVs; ``segment_frames``:
#: training segments of that many mel frames (x 256 samples); ``sr``: sample rate; ``limit``: read only
#: the first utterances; ``recursive``: search a WAV folder recursively.
SPEECH = "speech"
SPEECH_OPTIONS = {"path": None, "segment_frames": 16, "sr": 16000, "limit": None, "recursive": True, "base": None}
#: the speech networks of text to speech (the rest are vocoders)
TTS_KINDS = ("itotts", "melunet")


@dataclass
class DataConfig:
    """The data set (a built-in name or a path) and its train/test split.

    ``options`` go to :func:`holdsgm.data.load_dataset` (e.g. ``n`` and ``seed`` of a toy set).
    Training uses the ``train`` part of a deterministic split (``test_fraction``, ``split_seed``);
    evaluation uses the held-out ``test`` part. ``test_fraction: 0`` trains on all of the data (evaluation
    then uses the training data, with a warning); ``test`` names a held-out file or folder of the user's
    own (read with the same options), and then all of ``name`` trains. ``conditional`` trains a
    class-conditional model. ``random_flip`` (images only) mirrors each training image left-right with
    probability 1/2 (a pure function of the seed and the step, so resumes stay exact).
    """

    name: str = doc(
        "8gaussians",
        'a built-in data set (8gaussians, checkerboard, swissroll, moons, pinwheel, 2spirals, digits, '
        'fashion-mnist, fashion-mnist-test, speech) or a path: a folder of PNG/JPEG images (one sub-folder per '
        'class is detected), an .npz/.npy array file, an MNIST-format *-images-idx3-ubyte[.gz] file, a .json '
        'Gaussian mixture')
    test_fraction: float = doc(
        0.1,
        'the held-out fraction of a deterministic random split, in [0, 1); 0 trains on everything (evaluation '
        'then uses the training data, with a warning)')
    split_seed: int = doc(0, 'seed of the train/test split')
    conditional: bool = doc(False, 'train a class-conditional model (the data needs labels)')
    test: str | None = doc(
        None,
        'a held-out file or folder of your own, read with the same options; when set, all of `name` trains and '
        'test_fraction is not used')
    random_flip: bool = doc(
        False,
        'images: mirror each training image left-right with probability 1/2 (a pure function of seed and step: '
        'resumes stay exact)')
    options: dict[str, Any] = field(default_factory=dict)

    EXTRA = "options"

    def validate(self) -> DataConfig:
        self.name = _str("data.name", self.name)
        if not self.name.strip():
            raise ConfigError("config key data.name: must be a data set name or path, got ''")
        self.test_fraction = _float("data.test_fraction", self.test_fraction, 0.0, 1.0, hi_open=True)
        if self.test is not None:
            self.test = _str("data.test", self.test)
            if not self.test.strip():
                raise ConfigError("config key data.test: must be a held-out data file or folder, or null")
        self.split_seed = _int("data.split_seed", self.split_seed, 0, MAX_SEED)
        self.conditional = _bool("data.conditional", self.conditional)
        self.random_flip = _bool("data.random_flip", self.random_flip)
        self.options = {k: _plain(f"data.{k}", v) for k, v in _mapping("data.options", self.options).items()}
        if self.is_speech:
            return self._validate_speech()
        for k in self.options:
            if k not in DATA_OPTIONS:
                raise _unknown("data", k, _fields(DataConfig) | DATA_OPTIONS)
        return self

    @property
    def is_speech(self) -> bool:
        return self.name == SPEECH

    def _validate_speech(self) -> DataConfig:
        if self.conditional:
            raise ConfigError("config key data.conditional: speech data is conditioned on its mel "
                              "spectrogram, not on class labels; remove it")
        for k in self.options:
            if k not in SPEECH_OPTIONS:
                raise _unknown("data", k, _fields(DataConfig) | set(SPEECH_OPTIONS))
        opts = {**SPEECH_OPTIONS, **self.options}
        if opts["path"] is None:
            raise ConfigError("config key data.path: speech data needs the folder of its corpus (an "
                              "LJSpeech layout, e.g. made by `holdsgm data speech --out DIR --n 300`)")
        opts["path"] = _str("data.path", opts["path"])
        opts["segment_frames"] = _int("data.segment_frames", opts["segment_frames"], 1, 10_000)
        opts["sr"] = _int("data.sr", opts["sr"], 1000, 192_000)
        if opts["limit"] is not None:
            opts["limit"] = _int("data.limit", opts["limit"], 1)
        opts["recursive"] = _bool("data.recursive", opts["recursive"])
        if opts["base"] is not None:
            opts["base"] = _str("data.base", opts["base"])
        self.options = opts
        return self

    def flat(self) -> dict:
        return {
            "name": self.name,
            **self.options,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
            "conditional": self.conditional,
            "test": self.test,
            "random_flip": self.random_flip,
        }


#: network arguments the trainer derives from the data and the SDE (not user-settable)
DERIVED_NET_ARGS = {"in_features", "out_features", "in_channels", "out_channels", "image_size", "n_classes",
                    "n_symbols"}


@dataclass
class ModelConfig:
    """The network (``kind`` of :func:`holdsgm.nets.build_network` and its arguments) and its wrapper.

    ``mixed_score`` adds CLD's analytic Gaussian score (Dockhorn et al. 2022, sec. 3.2) with per-coordinate
    data variance ``data_var`` (null: estimated from the training data). Input/output sizes and
    ``n_classes`` are derived from the data and the SDE order.

    ``conditioning`` (speech data only): ``plain`` (the mel enters only the network), ``priorgrad``
    (PriorGrad, Lee et al. 2022: the SDE runs on ``u / sigma`` with a per-sample noise scale ``sigma`` in
    ``[priorgrad_min_std, 1]`` from the mel's frame energy, see :mod:`holdsgm.audio.priorgrad`) or
    ``spectral`` (the frame domain: the SDE runs on the orthogonal MDCT coefficients of the wave divided by a
    per-coefficient scale from the mel, see :mod:`holdsgm.audio.mdct`; needs ``kind: framenet``).
    """

    kind: str = doc(
        "mlp",
        'the network: mlp (vectors), unet (images), diffwave (speech waves), framenet (speech, MDCT frames), '
        'itotts (text to mel: encoder + SDE decoder), melunet (ResGrad: residual mel model); its arguments are '
        'keys of this section too (below)')
    mixed_score: bool = doc(
        False,
        "add CLD's analytic Gaussian score to the network's output (Dockhorn et al. 2022, sec. 3.2)")
    precond: bool = doc(
        False,
        "EDM-style preconditioning (Karras et al. 2022) in phase space: the network predicts the data's "
        "deviation from the Gaussian posterior mean (data ~ N(0, data_var)) in units of its posterior std; "
        "bounded data predictions at high noise; excludes mixed_score")
    data_var: float | None = doc(
        None,
        'per-coordinate data variance of the mixed score or of precond (null: estimated from the training data; '
        'text to speech: 1, its residual is divided by residual_scale)')
    conditioning: str = doc(
        "plain",
        "speech only: plain (the mel enters the network), priorgrad (PriorGrad's mel-derived noise scale) or "
        "spectral (MDCT frames with a mel-derived scale per coefficient; kind framenet)")
    priorgrad_min_std: float = doc(0.1, 'PriorGrad: the smallest noise scale, in (0, 1]')
    kwargs: dict[str, Any] = field(default_factory=dict)

    EXTRA = "kwargs"

    def validate(self) -> ModelConfig:
        from ..nets import NETWORKS

        self.kind = _str("model.kind", self.kind, sorted(NETWORKS))
        self.mixed_score = _bool("model.mixed_score", self.mixed_score)
        self.precond = _bool("model.precond", self.precond)
        if self.mixed_score and self.precond:
            raise ConfigError("config keys model.mixed_score / model.precond: choose one (precond contains the "
                              "Gaussian part the mixed score adds)")
        if self.data_var is not None:
            self.data_var = _float("model.data_var", self.data_var, 0.0, None, lo_open=True)
        self.conditioning = _str("model.conditioning", self.conditioning, CONDITIONINGS)
        self.priorgrad_min_std = _float("model.priorgrad_min_std", self.priorgrad_min_std, 0.0, 1.0, lo_open=True)
        self.kwargs = {k: _plain(f"model.{k}", v) for k, v in _mapping("model.kwargs", self.kwargs).items()}
        if (self.kind == "framenet") != (self.conditioning == "spectral"):
            raise ConfigError("config keys model.kind / model.conditioning: the frame-domain network (framenet) and "
                              "the spectral conditioning go together (kind: framenet, conditioning: spectral)")
        accepted = network_arguments(self.kind)
        for k in self.kwargs:
            if k in DERIVED_NET_ARGS:
                raise ConfigError(f"config key model.{k}: is derived from the data and the SDE; remove it")
            if k not in accepted:
                raise _unknown("model", k, _fields(ModelConfig) | accepted)
        return self

    def flat(self) -> dict:
        return {"kind": self.kind, **self.kwargs, "mixed_score": self.mixed_score, "precond": self.precond,
                "data_var": self.data_var,
                "conditioning": self.conditioning, "priorgrad_min_std": self.priorgrad_min_std}


CONDITIONINGS = ("plain", "priorgrad", "spectral")


def _network_kinds() -> set[str]:
    from ..nets import NETWORKS

    return set(NETWORKS)


def network_arguments(kind: str) -> set[str]:
    """User-settable constructor arguments of network ``kind``."""
    import inspect

    from ..nets import NETWORKS

    params = inspect.signature(NETWORKS[kind].__init__).parameters
    return {k for k in params if k != "self"} - DERIVED_NET_ARGS


AMP_MODES = ("none", "auto", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine", "linear")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping.

    AdamW (Loshchilov & Hutter 2019) with a linear warm-up of ``warmup_steps`` to ``lr``, then
    ``lr_schedule``: ``constant``, or ``cosine`` / ``linear`` decay to ``lr_min`` at the last step;
    gradient-norm clipping (``grad_clip``; 0 disables), and an EMA of the weights with decay
    ``ema_decay``; with ``ema_warmup`` the decay at step k is ``min(ema_decay, (1 + k) / (10 + k))``
    (the TensorFlow/score_sde warm-up; early averages are not dominated by the random init).
    ``batch_size`` is the global batch (split across DDP ranks); ``grad_accum`` splits each rank's part into
    that many micro-batches whose gradients are summed, so the global batch (and the training) does not
    depend on how much fits in memory. ``amp`` (bf16/fp16 autocast) takes effect on CUDA, and ``bf16`` also
    on the CPU (~1.6x faster where the CPU has AVX512-BF16 or AMX). ``label_dropout`` replaces class labels
    by the null label with that probability (classifier-free guidance training, Ho & Salimans 2022).
    """

    steps: int = doc(
        2000,
        'optimiser updates in all (a resumed run continues to this step); shorten a run with --set '
        'train.steps=N')
    batch_size: int = doc(512, 'the global batch (split across DDP ranks)')
    grad_accum: int = doc(
        1,
        "micro-batches per update: each rank's batch is split into this many forward/backward passes whose "
        'gradients add up (the update does not depend on it; memory does)')
    lr: float = doc(1e-3, 'AdamW learning rate (after warm-up)')
    lr_schedule: str = doc("constant", 'after warm-up: constant, cosine or linear decay to lr_min at the last step')
    lr_min: float = doc(0.0, 'the learning rate the cosine/linear schedules reach at train.steps')
    weight_decay: float = doc(0.0, "AdamW's decoupled weight decay")
    betas: tuple[float, float] = doc((0.9, 0.999), "AdamW's (beta1, beta2)")
    warmup_steps: int = doc(
        100,
        'linear learning-rate warm-up from lr / warmup_steps to lr (a warning if longer than the run)')
    grad_clip: float = doc(1.0, 'clip the gradient norm to this value (0: no clipping)')
    ema_decay: float = doc(0.999, 'decay of the exponential moving average of the weights (samples use the EMA)')
    ema_warmup: bool = doc(True, "EMA decay min(ema_decay, (1 + k) / (10 + k)) at step k (score_sde's warm-up)")
    weighting: str = doc("unit", "loss weighting over time: unit, or likelihood (the ELBO's weighting)")
    stratified: bool = doc(True, 'stratified (low-discrepancy) training times per batch')
    seed: int = doc(0, 'training seed (initialisation, batches, times, noise); a run is a pure function of it')
    log_every: int = doc(100, 'steps between stats.jsonl records (and log lines)')
    ckpt_every: int = doc(1000, 'steps between checkpoints (a crash loses at most this many)')
    keep_checkpoints: int = doc(
        2,
        'checkpoints kept; older valid ones are removed after a newer one is written and verified')
    amp: str = doc("none", "mixed precision: none, bf16 or fp16 on CUDA; none or bf16 on the CPU (fp16 there: "
                   "float32); auto: bf16 where the GPU or CPU computes bf16 natively (AVX512-BF16/AMX), else float32")
    device: str = doc("auto", 'auto, cpu, cuda or cuda:N')
    label_dropout: float = doc(
        0.0,
        'probability of replacing a label by the null label (classifier-free guidance training)')
    tensorboard: bool = doc(True, 'also write TensorBoard scalars to RUN/tb')

    def validate(self) -> TrainConfig:
        from ..losses import WEIGHTINGS

        self.steps = _int("train.steps", self.steps, 1)
        self.batch_size = _int("train.batch_size", self.batch_size, 1)
        self.grad_accum = _int("train.grad_accum", self.grad_accum, 1)
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"config key train.grad_accum: the batch {self.batch_size} must be divisible by "
                              f"the number of micro-batches {self.grad_accum}")
        self.lr = _float("train.lr", self.lr, 0.0, None, lo_open=True)
        self.lr_schedule = _str("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        self.lr_min = _float("train.lr_min", self.lr_min, 0.0)
        if self.lr_min > self.lr:
            raise ConfigError(f"config key train.lr_min: must not exceed train.lr={self.lr:g}, got {self.lr_min:g}")
        self.weight_decay = _float("train.weight_decay", self.weight_decay, 0.0)
        if (
            isinstance(self.betas, (str, bytes))
            or not isinstance(self.betas, (list, tuple))
            or len(self.betas) != 2
        ):
            raise _fail("train.betas", self.betas, "a list of two numbers in [0, 1)")
        beta1, beta2 = (_float(f"train.betas[{i}]", b, 0.0, 1.0, hi_open=True) for i, b in enumerate(self.betas))
        self.betas = (beta1, beta2)
        self.warmup_steps = _int("train.warmup_steps", self.warmup_steps, 0)
        self.grad_clip = _float("train.grad_clip", self.grad_clip, 0.0)
        self.ema_decay = _float("train.ema_decay", self.ema_decay, 0.0, 1.0, hi_open=True)
        self.ema_warmup = _bool("train.ema_warmup", self.ema_warmup)
        self.weighting = _str("train.weighting", self.weighting, WEIGHTINGS)
        self.stratified = _bool("train.stratified", self.stratified)
        self.seed = _int("train.seed", self.seed, 0, MAX_SEED)
        self.log_every = _int("train.log_every", self.log_every, 1)
        self.ckpt_every = _int("train.ckpt_every", self.ckpt_every, 1)
        self.keep_checkpoints = _int("train.keep_checkpoints", self.keep_checkpoints, 1)
        if self.amp is False or self.amp is None:  # YAML reads a bare `off`/`no` as false
            self.amp = "none"
        self.amp = _str("train.amp", self.amp, AMP_MODES)
        self.device = _str("train.device", self.device)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(
                f"config key train.device: must be auto, cpu, cuda or cuda:N; got {self.device!r:.60}"
            )
        self.label_dropout = _float("train.label_dropout", self.label_dropout, 0.0, 1.0, hi_open=True)
        self.tensorboard = _bool("train.tensorboard", self.tensorboard)
        return self


@dataclass
class SampleConfig:
    """Default sampling settings (``holdsgm sample``/``eval``): ``n`` samples with ``sampler`` (a name or a
    spec ``name:key=value,...``) at ``nfe`` score evaluations on time grid ``grid`` (null: the sampler's own
    default; a ``grid=`` in the spec wins); sample i uses seed ``seed + i``; ``ema``: use the EMA weights."""

    sampler: str = doc(
        "sscs",
        'the default sampler of `holdsgm sample` / `eval`: a name or a spec name:key=value,... (holdsgm sample '
        '--help lists them)')
    nfe: int = doc(50, 'score evaluations per sample')
    grid: str | None = doc(
        None,
        "time grid: uniform, quadratic, rho, log, logell, logsnr, edm (null: the sampler's own measured "
        'default; a grid= in the spec wins)')
    n: int = doc(2000, 'samples drawn by `holdsgm sample`')
    seed: int = doc(0, 'sample i uses seed seed + i (results do not depend on the batch size)')
    ema: bool = doc(True, 'sample with the EMA weights')
    batch_size: int = doc(2048, 'samples per batch')

    def validate(self) -> SampleConfig:
        from ..samplers import GRIDS, check_sampler

        if not isinstance(self.sampler, str):
            raise ConfigError(f"config key sample.sampler: expected a sampler name or spec "
                              f"('name' or 'name:key=value,...'), got {self.sampler!r}")
        try:
            check_sampler(self.sampler)
        except ValueError as e:
            raise ConfigError(f"config key sample.sampler: {e}") from None
        self.nfe = _int("sample.nfe", self.nfe, 1)
        try:
            check_sampler(self.sampler, self.nfe)
        except ValueError as e:
            raise ConfigError(f"config key sample.nfe: {e}") from None
        if self.grid is not None:
            self.grid = _str("sample.grid", self.grid, GRIDS)
        self.n = _int("sample.n", self.n, 1, 10_000_000)
        self.seed = _int("sample.seed", self.seed, 0, MAX_SEED)
        self.ema = _bool("sample.ema", self.ema)
        self.batch_size = _int("sample.batch_size", self.batch_size, 1)
        return self


@dataclass
class EvalConfig:
    """``holdsgm eval``/``likelihood`` budgets: ``n`` generated samples for sample metrics (W2, MMD,
    per-mode W2, FD), ``nll_n`` held-out points for the ODE likelihood with ``divergence`` ('exact' or
    'hutchinson'), solved by ``method`` (scipy RK45 at ``rtol``/``atol``, or fixed-step 'rk4'). For CLD/HOLD
    each point's bound uses ``aux_draws`` draws of the auxiliaries combined by ``aux_estimator`` ('iw':
    importance-weighted, 'mean'; see :func:`holdsgm.likelihood.ode_likelihood`)."""

    n: int = doc(2000, 'generated samples for the sample metrics of `holdsgm eval`')
    nll_n: int = doc(500, 'held-out items for the ODE likelihood (0: skip it)')
    divergence: str = doc("exact", 'exact (low dimension) or hutchinson (a Rademacher probe per solve)')
    method: str = doc("RK45", 'ODE solver: RK45, RK23, DOP853 (scipy, adaptive) or rk4 (fixed step)')
    rtol: float = doc(1e-5, "the adaptive solver's relative tolerance")
    atol: float = doc(1e-5, "the adaptive solver's absolute tolerance")
    aux_draws: int = doc(4, 'CLD/HOLD: auxiliary (velocity, acceleration) draws per item in the likelihood bound')
    aux_estimator: str = doc(
        "iw",
        'how the draws combine: iw (importance-weighted bound, robust to one bad draw) or mean')
    seed: int = doc(0, "seed of the evaluation's samples, auxiliaries, probes and dequantisation")

    def validate(self) -> EvalConfig:
        self.n = _int("eval.n", self.n, 2, 10_000_000)
        self.nll_n = _int("eval.nll_n", self.nll_n, 0, 10_000_000)
        self.divergence = _str("eval.divergence", self.divergence, ("exact", "hutchinson"))
        self.method = _str("eval.method", self.method, ("RK45", "RK23", "DOP853", "rk4"))
        self.rtol = _float("eval.rtol", self.rtol, 0.0, 1.0, lo_open=True)
        self.atol = _float("eval.atol", self.atol, 0.0, 1.0, lo_open=True)
        self.aux_draws = _int("eval.aux_draws", self.aux_draws, 1, 1024)
        self.aux_estimator = _str("eval.aux_estimator", self.aux_estimator, ("iw", "mean"))
        self.seed = _int("eval.seed", self.seed, 0, MAX_SEED)
        return self


@dataclass
class Stage2Config:
    """Stage two, few-step fine-tuning (Lay et al. 2023, "Single and few-step diffusion for generative
    speech enhancement"), for speech data.

    With ``enabled``, training starts from the weights (``which``: ``ema`` or ``model``) of the trained run
    ``init`` (a run folder or checkpoint folder, same SDE and network) and replaces the HSM loss by a
    predictive one: draw u_T from the prior, take the reverse steps of ``sampler`` on ``grid`` that fit in
    ``nfe`` score evaluations, all but the last without gradients, and compare the last evaluation's data
    prediction E[x0 | u_t] (Tweedie in phase space) with the true waveform:
    ``l2_weight * L2 + mrstft_weight * MR-STFT`` (see :func:`holdsgm.tasks.vocoder_sample`).
    The run records ``nfe``, ``sampler`` and ``grid``; ``holdsgm vocode`` uses them by default.
    """

    enabled: bool = doc(False, 'fine-tune a trained vocoder for few steps (Lay et al. 2023) instead of HSM training')
    init: str | None = doc(None, 'the trained stage-one run (or checkpoint folder) to start from')
    nfe: int = doc(2, "the score evaluations the fine-tuned sampler takes (also the vocoder's default)")
    sampler: str = doc("exp1", 'the sampler unrolled during stage two')
    grid: str = doc("edm", 'the time grid of the unrolled sampler')
    which: str = doc("ema", "start from the stage-one run's ema or model weights")
    l2_weight: float = doc(1.0, 'weight of the L2 loss of the few-step output')
    mrstft_weight: float = doc(1.0, 'weight of the multi-resolution STFT loss of the few-step output')

    def validate(self) -> Stage2Config:
        from ..samplers import GRIDS, SAMPLERS

        self.enabled = _bool("stage2.enabled", self.enabled)
        if self.init is not None:
            self.init = _str("stage2.init", self.init)
            if not self.init.strip():
                raise ConfigError("config key stage2.init: must be a run folder, got ''")
        self.nfe = _int("stage2.nfe", self.nfe, 1, 1000)
        self.sampler = _str("stage2.sampler", self.sampler, sorted(SAMPLERS))
        if not SAMPLERS[self.sampler].evals_per_step:
            raise ConfigError(f"config key stage2.sampler: {self.sampler!r} is adaptive; stage two needs a "
                              f"fixed-step sampler")
        self.grid = _str("stage2.grid", self.grid, GRIDS)
        self.which = _str("stage2.which", self.which, ("ema", "model"))
        self.l2_weight = _float("stage2.l2_weight", self.l2_weight, 0.0)
        self.mrstft_weight = _float("stage2.mrstft_weight", self.mrstft_weight, 0.0)
        if self.enabled and self.init is None:
            raise ConfigError("config key stage2.init: stage two starts from a trained run; set "
                              "stage2.init=RUN (e.g. --set stage2.init=runs/vocoder-hold)")
        if self.enabled and self.l2_weight == 0 and self.mrstft_weight == 0:
            raise ConfigError("config keys stage2.l2_weight and stage2.mrstft_weight: at least one must be > 0")
        return self


SECTIONS: dict[str, type] = {
    "sde": SDEConfig,
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "sample": SampleConfig,
    "eval": EvalConfig,
    "stage2": Stage2Config,
}


def config_warnings(config: Config) -> list[str]:
    """Settings that are valid but probably not what was meant (shown by ``train`` and ``--dry-run``)."""
    tc = config.train
    out = []
    if tc.warmup_steps > tc.steps:
        out.append(f"train.warmup_steps={tc.warmup_steps} is longer than the run (train.steps={tc.steps}): the "
                   f"learning rate reaches only {tc.lr * tc.steps / tc.warmup_steps:.3g} of train.lr={tc.lr:g}; "
                   f"shorten the warm-up, e.g. --set train.warmup_steps={max(1, tc.steps // 10)}")
    return out


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.name != getattr(cls, "EXTRA", None)}


@dataclass
class Config:
    """The root config. Build with :func:`load_config` or :meth:`from_dict`; ``to_dict()`` round-trips."""

    sde: SDEConfig = field(default_factory=SDEConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)

    @classmethod
    def from_dict(cls, d) -> Config:
        """Validate a (flat-section) mapping; ConfigError naming the first bad key."""
        d = _mapping("(root)", d)
        for k in d:
            if k not in SECTIONS:
                raise _unknown("", k, SECTIONS)
        sections = {}
        for name, sec_cls in SECTIONS.items():
            raw = _mapping(name, d.get(name))
            extra_name = getattr(sec_cls, "EXTRA", None)
            known = _fields(sec_cls)
            kwargs: dict[str, Any] = {}
            extra: dict[str, Any] = {}
            if extra_name is not None and extra_name in raw:  # the explicit nested form
                extra.update(_mapping(f"{name}.{extra_name}", raw.pop(extra_name)))
            for k, v in raw.items():
                if k in known:
                    kwargs[k] = v
                elif extra_name is not None:
                    extra[k] = v
                else:
                    raise _unknown(name, k, known)
            if extra_name is not None:
                kwargs[extra_name] = extra
            sections[name] = sec_cls(**kwargs)
        cfg = cls(**sections)
        return cfg.validate()

    def validate(self) -> Config:
        # the model section's valid keys depend on its kind: validate kind first
        for name in SECTIONS:
            getattr(self, name).validate()
        from ..samplers import SAMPLERS, parse_sampler

        for key, spec in (("sample.sampler", self.sample.sampler), ("stage2.sampler", self.stage2.sampler)):
            sampler = parse_sampler(spec)[0]
            if sampler in SAMPLERS and SAMPLERS[sampler].needs_stationary and not self.sde.build().has_stationary_law:
                raise ConfigError(
                    f"config key {key}: {sampler!r} needs an SDE with a stationary "
                    f"law; sde {self.sde.name!r} has none (use em, pc, euler, heun, rk4 or ode)"
                )
        if self.train.label_dropout > 0 and not self.data.conditional:
            raise ConfigError("config key train.label_dropout: only meaningful with data.conditional: true")
        if self.data.is_speech and self.model.kind not in ("diffwave", "framenet", *TTS_KINDS):
            raise ConfigError(f"config key model.kind: speech data needs a speech network (framenet or diffwave: "
                              f"vocoders; itotts or melunet: text to speech), got {self.model.kind!r}")
        if self.data.is_speech and (self.model.kind == "melunet") != (self.data.options["base"] is not None):
            raise ConfigError("config keys model.kind / data.base: ResGrad (model.kind: melunet) refines the mels "
                              "of a trained text-to-speech run, data.base=RUN, and only it takes data.base")
        if self.model.kind in TTS_KINDS and (self.model.mixed_score or self.model.conditioning != "plain"):
            raise ConfigError("config key model.kind: text to speech trains without mixed_score and conditioning "
                              "(they are the vocoder's)")
        if self.model.kind in TTS_KINDS and self.stage2.enabled and (self.stage2.mrstft_weight
                                                                     or not self.stage2.l2_weight):
            raise ConfigError("config keys stage2.mrstft_weight / l2_weight: text-to-speech stage two fits mels, "
                              "not waves: set stage2.mrstft_weight=0 and stage2.l2_weight > 0")
        if self.model.kind in TTS_KINDS and self.train.grad_accum > 1:
            raise ConfigError("config key train.grad_accum: text-to-speech training does not accumulate "
                              "gradients; use 1")
        if self.model.conditioning != "plain" and not self.data.is_speech:
            raise ConfigError(f"config key model.conditioning: {self.model.conditioning!r} needs speech data "
                              f"(data.name: speech)")
        if self.model.conditioning == "priorgrad" and (self.model.mixed_score or self.model.precond):
            raise ConfigError("config keys model.mixed_score / model.precond: not supported with "
                              "model.conditioning: priorgrad")
        if self.data.random_flip and self.data.is_speech:
            raise ConfigError("config key data.random_flip: flips are for images, not speech")
        if self.stage2.enabled and self.train.grad_accum > 1:
            raise ConfigError("config key train.grad_accum: stage two does not accumulate gradients; use 1")
        if self.stage2.enabled and not self.data.is_speech:
            raise ConfigError("config key stage2.enabled: stage two needs speech data (data.name: speech)")
        if self.stage2.enabled and self.stage2.mrstft_weight and self.data.options["segment_frames"] < 5 \
                and self.model.kind not in TTS_KINDS:
            raise ConfigError(f"config key data.segment_frames: stage two's MR-STFT loss needs segments of at "
                              f"least 5 frames (1280 samples), got {self.data.options['segment_frames']}")
        return self

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON-safe) in the flat-section form :meth:`from_dict` reads."""
        out = {"sde": self.sde.flat(), "data": self.data.flat(), "model": self.model.flat()}
        for name in ("train", "sample", "eval", "stage2"):
            sec = dataclasses.asdict(getattr(self, name))
            out[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sec.items()}
        return copy.deepcopy(out)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    def copy(self) -> Config:
        return Config.from_dict(self.to_dict())


# ---------------------------------------------------------------------- loading


def configs_dir() -> Path:
    """The presets folder shipped with the package, ``holdsgm/configs/`` (``configs/`` in the repository
    links to it; ``$HOLDSGM_CONFIGS`` overrides)."""
    env = os.environ.get("HOLDSGM_CONFIGS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "configs"


def preset_names() -> list[str]:
    d = configs_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def resolve_config_path(path) -> Path:
    """``path`` if it exists, else a preset of ``configs/`` by name (``toy-hold`` or ``toy-hold.yaml``)."""
    p = Path(os.fspath(path))
    if p.is_dir() and (p / "config.yaml").is_file():  # a run folder: its resolved config
        return p / "config.yaml"
    if p.exists():
        return p
    if p.parent == Path(".") and not p.suffix or p.suffix in (".yaml", ".yml") and len(p.parts) == 1:
        cand = configs_dir() / (p.stem + ".yaml")
        if cand.exists():
            return cand
    names = preset_names()
    hint = f" (presets: {', '.join(names)})" if names else ""
    raise ConfigError(f"config file {p} not found{hint}")


def apply_overrides(d: dict, overrides) -> dict:
    """Apply ``["a.b=value", ...]`` to a copy of a nested dict; ``sde.T=3`` sets ``d['sde']['T']``.
    ``null`` for an option that is passed on (``data.n=null``, ``sde.T=null``, ``model.hidden=null``)
    removes it, so the loader's, SDE's or network's own default applies."""
    d = copy.deepcopy(d)
    for item in overrides or ():
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"--set expects key=value (e.g. train.lr=1e-3), got {item!r:.80}")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"--set: bad key {key!r:.80}; use dotted keys like train.lr")
        if parts[0] not in SECTIONS:
            raise _unknown("", parts[0], SECTIONS)
        if len(parts) == 1:
            raise ConfigError(
                f"--set {key}: name a key inside the section, e.g. {key}.<key>; valid keys: "
                f"{', '.join(sorted(_section_keys(parts[0], d)))}"
            )
        extra = getattr(SECTIONS[parts[0]], "EXTRA", None)
        if len(parts) > 2 and parts[1] == extra:
            parts = [parts[0], *parts[2:]]  # sde.overrides.T -> sde.T
        value = parse_value(text)
        if value is None and len(parts) == 2 and parts[1] not in _fields(SECTIONS[parts[0]]):
            # an option passed on to the SDE, loader or network: null removes it (its default applies)
            if isinstance(d.get(parts[0]), dict):
                d[parts[0]].pop(parts[1], None)
                if isinstance(d[parts[0]].get(extra), dict):
                    d[parts[0]][extra].pop(parts[1], None)
            continue
        node = d
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p) if isinstance(node, dict) else None
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return d


def _section_keys(section: str, d: dict) -> set[str]:
    cls = SECTIONS[section]
    keys = _fields(cls)
    if section == "model":
        kind = (d.get("model") or {}).get("kind", "mlp") if isinstance(d.get("model"), dict) else "mlp"
        if isinstance(kind, str) and kind in _network_kinds():
            keys |= network_arguments(kind)
    elif section == "data":
        keys |= DATA_OPTIONS | set(SPEECH_OPTIONS)
    elif section == "sde":
        name = (d.get("sde") or {}).get("name", "hold") if isinstance(d.get("sde"), dict) else "hold"
        keys |= _sde_parameters(str(name).lower()) or set()
    return keys


def load_config(path=None, overrides=()) -> Config:
    """Read a YAML config (a path or a preset name of ``configs/``), apply ``--set`` overrides, validate.

    ``path=None`` starts from the defaults. Raises :class:`ConfigError` naming the file or the key.
    """
    if path is None:
        raw: Any = {}
    else:
        p = resolve_config_path(path)
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise ConfigError(f"cannot read config file {p}: {reason}") from None
        raw = parse_yaml(text, f"config file {p}")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"config file {p}: expected a mapping of sections "
                f"({', '.join(SECTIONS)}), got {_type_name(raw)}"
            )
    try:
        return Config.from_dict(apply_overrides(raw, overrides))
    except ConfigError as e:
        if path is not None and "config file" not in str(e):
            raise ConfigError(f"{e} (in {path})") from None
        raise


def save_config(config: Config, path) -> None:
    """Write ``config`` as YAML, atomically."""
    atomic_write(Path(path), config.to_yaml().encode())
