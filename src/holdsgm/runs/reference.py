"""The config reference: every key of a run config with its type, default and meaning, generated from the
config dataclasses (their fields' ``doc``) and from what the sections pass on (SDE preset parameters,
data-loader options, network arguments). ``holdsgm config --list [SECTION]`` prints it; ``docs/config.md``
is :func:`markdown` (a test keeps the file current)."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

from .config import DATA_OPTIONS, DERIVED_NET_ARGS, SECTIONS, SPEECH_OPTIONS, network_arguments

#: SDE preset parameters (``sde.<key>``; each preset accepts a subset, see the table)
SDE_PARAMETERS = {
    "T": "time horizon: the forward SDE runs from 0 to T, sampling from T back to the stop",
    "eps": "the smallest training time (times are drawn in [eps, T]) and the likelihood ODE's start",
    "beta_min": "linear beta(t) schedule: beta at t = 0",
    "beta_max": "linear beta(t) schedule: beta at t = T",
    "sigma_min": "VE: the noise level at t = 0",
    "sigma_max": "VE: the noise level at T (match it to the data's scale)",
    "L": "Langevin family: the stationary precision; the stationary law is N(0, I / L)",
    "alpha": "Langevin family: the auxiliaries start from N(0, alpha / L)",
    "schedule": "Langevin family: beta(t), a number (constant) or {kind: constant|linear|geometric, ...}",
    "order": "langevin: the order n (1 = VP-like OU, 2 = CLD, 3 = HOLD, ... up to 8)",
    "M_inv": "cld-sgm: the inverse mass M^-1 (Dockhorn et al.)",
    "Gamma": "cld-sgm: the friction Gamma (critical damping: Gamma^2 = 4 M)",
    "beta": "cld-sgm: the constant beta",
    "gamma": "cld-sgm: the velocity's initial variance factor (gamma M)",
    "name": "the SDE's name in reports and checkpoints",
}

#: data-loader options (``data.<key>``), by the sources that take them
DATA_OPTION_DOCS = {
    "n": "toy sets and .json mixtures: points drawn; files and folders: use at most n items (a random subset "
         "drawn with seed when there are more)",
    "seed": "seed of the toy points or of the subset",
    "recursive": "image folders: also read sub-folders (unlabelled)",
    "labels": "image folders: true = one sub-folder per class, false = none, null = detect; .npz and "
              "MNIST-format files: load the labels (null: when present)",
    "channels": "image folders: 1 or 3 (null: 1 if every image is grey)",
    "key": ".npz: the data array's name (default: the first of x, images, arr_0)",
    "label_key": ".npz: the label array's name (default: the first of y, labels)",
    "layout": ".npz with 4-D arrays: NCHW or NHWC (null: the smaller of axes 1 and 3 is the channel axis)",
    "value_range": "[lo, hi] of the raw values, mapped linearly onto [-1, 1]",
    "pad": "fashion-mnist and MNIST-format files: background pixels added on every side (2: 28x28 -> 32x32)",
}
SPEECH_OPTION_DOCS = {
    "path": "speech: an LJSpeech-layout folder (holdsgm data speech) or a folder of WAVs",
    "segment_frames": "speech: training segments of this many mel frames (x 256 samples)",
    "sr": "speech: sample rate in Hz",
    "limit": "speech: read only the first utterances",
    "base": "ResGrad (model.kind melunet): the trained text-to-speech run whose mu_y it refines (a run folder, or "
             "pretrained / pretrained:NAME: the shipped model)",
}

#: network arguments (``model.<key>``), shared names documented once
NETWORK_ARGUMENTS = {
    "hidden": "MLP: width of the hidden layers",
    "depth": "MLP: number of hidden layers",
    "time_embedding": "fourier (Gaussian Fourier features) or sinusoidal time embedding",
    "emb_dim": "width of the time (and class) embedding (U-Net: null = 4 x channels)",
    "fourier_scale": "scale of the Gaussian Fourier time features",
    "channels": "U-Net: channels at the highest resolution",
    "channel_mult": "U-Net: channel multiplier per resolution level",
    "num_res_blocks": "U-Net: residual blocks per level",
    "attn_resolutions": "U-Net: resolutions (sizes) with self-attention",
    "dropout": "dropout rate in the residual blocks",
    "num_heads": "U-Net: attention heads",
    "norm_groups": "U-Net: GroupNorm groups (capped at the channel count)",
    "mid_attention": "U-Net: self-attention in the middle block",
    "resample_conv": "U-Net: convolutional up/down-sampling (false: plain resampling)",
    "residual_channels": "DiffWave: channels of the residual layers",
    "layers": "DiffWave: residual layers; FrameNet: ConvNeXt blocks",
    "dilation_cycle": "DiffWave: dilations cycle through 2^0 .. 2^(cycle - 1)",
    "n_mels": "DiffWave, FrameNet, ItoTTS, MelUNet: mel bins of the condition (fixed by the features)",
    "hop": "DiffWave: samples per mel frame (fixed by the features)",
    "cond_channels": "DiffWave: channels of an extra condition (0: none)",
    "dim": "FrameNet: width of the ConvNeXt blocks",
    "kernel": "FrameNet, MelUNet / ItoTTS decoder: frames of the depthwise (and input) convolutions (odd)",
    "mult": "FrameNet, MelUNet / ItoTTS decoder: hidden width of a ConvNeXt block's MLP, as a multiple of its width",
    "dims": "MelUNet / ItoTTS decoder: widths of the U-Net levels (each level halves the frame rate)",
    "blocks": "MelUNet / ItoTTS decoder: ConvNeXt blocks per level (down and up)",
    "enc_dim": "ItoTTS: width of the text encoder (symbol embedding, Transformer)",
    "enc_layers": "ItoTTS: Transformer layers of the text encoder",
    "enc_heads": "ItoTTS: attention heads (enc_dim must be a multiple)",
    "enc_ffn": "ItoTTS: hidden width of the Transformer's feed-forward layers",
    "enc_dropout": "ItoTTS: dropout in the encoder's conv pre-net and the duration predictor",
    "dur_dim": "ItoTTS: width of the duration predictor",
    "dur_kernel": "ItoTTS: kernel of the encoder's pre-net and the duration predictor's convolutions",
    "residual_scale": "ItoTTS decoder, MelUNet: the SDE's data is the residual mel y - mu_y divided by this (about "
                      "its RMS in normalised mel units: unit-scale data)",
}


@dataclass
class Entry:
    """One config key."""

    key: str  # dotted, e.g. train.lr
    type: str
    default: str
    meaning: str


def _type_name(tp) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _show(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple):
        v = list(v)
    return str(v)


def _section_fields(name: str) -> list[Entry]:
    cls = SECTIONS[name]
    extra = getattr(cls, "EXTRA", None)
    out = []
    for f in dataclasses.fields(cls):
        if f.name == extra:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        out.append(Entry(f"{name}.{f.name}", _type_name(f.type), _show(default), f.metadata.get("doc", "")))
    return out


def _sde_entries() -> list[Entry]:
    from ..sde.presets import PRESETS, preset_parameters

    per_key: dict[str, list[str]] = {}
    for preset in PRESETS:
        defaults = _preset_defaults(preset)
        for key in sorted(preset_parameters(preset) - {"name"}):
            per_key.setdefault(key, []).append(f"{preset}: {_show(defaults.get(key, '-'))}")
    return [Entry(f"sde.{k}", "number" if k not in ("schedule", "order") else "number | mapping" if k == "schedule"
                  else "int", "; ".join(v), SDE_PARAMETERS.get(k, "")) for k, v in sorted(per_key.items())]


def _preset_defaults(preset: str) -> dict:
    from ..sde.presets import HOLD_CONSTANTS, PRESETS

    fn = PRESETS[preset]
    if preset in ("cld", "hold"):
        return dict(HOLD_CONSTANTS)
    if preset == "langevin":
        return {**HOLD_CONSTANTS, "order": 3}
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _data_entries() -> list[Entry]:
    out = [Entry(f"data.{k}", "", "(loader's)", DATA_OPTION_DOCS.get(k, "")) for k in sorted(DATA_OPTIONS)]
    out += [Entry(f"data.{k}", "", _show(v), SPEECH_OPTION_DOCS.get(k, "")) for k, v in SPEECH_OPTIONS.items()
            if k != "recursive"]
    return out


def _model_entries() -> list[Entry]:
    from ..nets import NETWORKS

    per_key: dict[str, list[str]] = {}
    for kind, cls in NETWORKS.items():
        params = inspect.signature(cls.__init__).parameters
        for k in sorted(network_arguments(kind)):
            per_key.setdefault(k, []).append(f"{kind}: {_show(params[k].default)}")
    return [Entry(f"model.{k}", "", "; ".join(v), NETWORK_ARGUMENTS.get(k, "")) for k, v in sorted(per_key.items())]


def reference(section: str | None = None) -> list[Entry]:
    """Every config key (of one section), in section order: the section's own fields, then what it passes on."""
    from ..errors import ConfigError

    if section is not None and section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; choose one of {', '.join(SECTIONS)}")
    passed = {"sde": _sde_entries, "data": _data_entries, "model": _model_entries}
    out = []
    for name in SECTIONS if section is None else [section]:
        out += _section_fields(name)
        if name in passed:
            out += passed[name]()
    return out


def undocumented() -> list[str]:
    """Keys without a meaning (a test keeps this empty)."""
    return [e.key for e in reference() if not e.meaning]


def text(section: str | None = None) -> str:
    """The reference as plain text for a terminal (``holdsgm config --list [SECTION]``)."""
    lines = []
    for e in reference(section):
        lines.append(f"{e.key}  ({e.type + ', ' if e.type else ''}default {e.default})")
        lines.append(f"    {e.meaning}")
    return "\n".join(lines)


def markdown() -> str:
    """docs/config.md."""
    head = [
        "# Config reference",
        "",
        "Generated from the config dataclasses by `holdsgm config --markdown > docs/config.md` (a test checks",
        "that this file is current). Every key can be set in a YAML config or on the command line with",
        "`--set section.key=value` (YAML syntax: `--set train.betas=[0.9,0.99]`); `--set section.key=null`",
        "removes a key that is passed on to the SDE, loader or network, so its own default applies.",
        "`holdsgm config --list [SECTION]` prints the same in a terminal.",
        "",
        "The sde, data and model sections are flat: besides their own keys they take the parameters of the",
        "chosen SDE preset, data source or network (the rows after each section's own keys; a default like",
        "`vp: 0.1; hold: 5.0` is per preset or network kind). Sizes derived from the data and the SDE",
        f"({', '.join(sorted(DERIVED_NET_ARGS))}) are not settable.",
    ]
    body: list[str] = []
    current = None
    for e in reference():
        section = e.key.split(".")[0]
        if section != current:
            current = section
            body += ["", f"## {section}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        body.append(f"| `{e.key}` | {e.type.replace('|', '&#124;')} | {e.default.replace('|', '&#124;')} | "
                    f"{e.meaning.replace('|', '&#124;')} |")
    return "\n".join(head + body) + "\n"
