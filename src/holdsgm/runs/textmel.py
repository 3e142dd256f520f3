"""What a text-to-speech run knows of its data (symbol table, mel normalisation) and its training task built
from a config: the text-to-speech model's (:class:`~holdsgm.tasks.TTSTask`), ResGrad's on a frozen base run
(:class:`~holdsgm.tasks.ResGradTask`), and their stage two. Used by :mod:`holdsgm.runs.build`; it reads a base
run's checkpoint directly (not through :mod:`holdsgm.runs.loading`, which builds on :mod:`.build`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import ConfigError, HoldsgmError
from .config import Config

log = logging.getLogger("holdsgm.train")


def tts_audio_info(config: Config, train, audio: dict):
    """``(name, data shape, audio, n_train)`` of a text-to-speech run's
    :class:`~holdsgm.runs.build.DatasetInfo`: items are (n_mels, segment_frames) mel segments; ``audio`` gains
    the symbol table and the per-bin mel mean and std (of the training mels; a ResGrad run takes its base
    run's, so both read and write the same units)."""
    from ..text import SYMBOLS

    o = config.data.options
    shape = (audio["n_mels"], o["segment_frames"])
    name = Path(o["path"]).name or o["path"]
    if config.model.kind == "melunet" and train is None:  # a dry run: the base run need not exist yet
        audio.update(symbols=None, language=None, mel_mean=None, mel_std=None)
    elif config.model.kind == "melunet":
        base = _base_info(o["base"])
        for k in ("symbols", "mel_mean", "mel_std", "language"):
            audio[k] = base[k]
        for k in ("sr", "hop", "n_fft", "n_mels", "fmin", "fmax"):
            if base[k] != audio[k]:
                raise ConfigError(f"data.base: the base run's mels have {k} = {base[k]}, these {audio[k]}")
    else:
        audio.update(symbols=list(SYMBOLS), language="en-us", mel_mean=None, mel_std=None)
    if train is None:
        return name, shape, audio, 0
    audio.update(sr=train.sr, seconds=train.seconds)
    if config.model.kind == "itotts":
        from ..tasks.tts import MelNorm

        norm = MelNorm.of(train.mel(i) for i in range(len(train)))
        audio.update(mel_mean=norm.mean.tolist(), mel_std=norm.std.tolist())
    return train.name, shape, audio, len(train)


def _base_model(base) -> tuple[dict, dict, Path]:
    """(state, EMA weights, weight file) of the base run: a run folder's newest valid checkpoint, or the shipped
    text-to-speech model (``pretrained`` / ``pretrained:NAME``); checked to be a text-to-speech (itotts) model."""
    from ..engine.checkpoint import WEIGHT_FILES, load_checkpoint
    from .shipped import read_part, shipped_name

    try:
        name = shipped_name(base)
        if name is not None:
            state, ema, path = read_part(name, "tts")
        else:
            ck = load_checkpoint(base)
            state, ema, path = ck.state, ck.ema, ck.path / WEIGHT_FILES["ema"]
    except HoldsgmError as e:
        raise ConfigError(f"config key data.base: {e}") from None
    kind = state.get("network", {}).get("kind")
    if kind != "itotts":
        raise ConfigError(f"config key data.base: {base} is a {kind!r} run, not a text-to-speech (itotts) run")
    return state, ema, path


def _base_info(base) -> dict:
    return dict(_base_model(base)[0]["dataset"]["audio"])


def text_mel(speech, info):
    """The corpus ``speech`` (a :class:`~holdsgm.audio.SpeechDataset` with texts) as
    :class:`~holdsgm.tasks.tts.TextMel`: symbol ids of the normalised texts through the run's symbol table,
    log-mels normalised with the run's statistics."""
    from ..tasks.tts import MelNorm, TextMel
    from ..text import FrontEnd

    a = info.speech
    front = FrontEnd(a["symbols"], a.get("language", "en-us"))
    texts = [it.normalized_text or it.text for it in speech]
    if not any(t.strip() for t in texts):
        raise HoldsgmError(f"{speech.name or 'the corpus'} has no texts: text to speech needs an LJSpeech layout "
                           f"(metadata.csv: id|text|normalized text)")
    phon = front.encode_many([t if t.strip() else "" for t in texts])
    norm = MelNorm.from_lists(a["mel_mean"], a["mel_std"])
    ids = [p.ids if t.strip() else [] for p, t in zip(phon, texts)]
    data = TextMel(ids, [norm.normalize(speech.mel(i)) for i in range(len(speech))], speech.ids)
    if data.dropped:
        log.warning("%d utterance(s) without text or shorter than their symbols were left out", data.dropped)
    return data


def build_tts_task(config: Config, comp):
    """:class:`~holdsgm.tasks.TTSTask` (``model.kind: itotts``) or :class:`~holdsgm.tasks.ResGradTask`
    (``melunet``, on the mels of the frozen run ``data.base``)."""
    from ..tasks.tts import ResGradTask, TTSStageTwoTask, TTSTask
    from .stage2 import stage_one_weights

    data = text_mel(comp.train, comp.info)
    kw = dict(batch_size=config.train.batch_size, seed=config.train.seed,
              segment_frames=config.data.options["segment_frames"], n_mels=comp.info.speech["n_mels"],
              stratified=config.train.stratified, precond=config.model.precond, data_var=comp.data_var)
    task: TTSTask | ResGradTask
    if config.model.kind == "itotts":
        task = TTSTask(comp.sde, comp.net, data, **kw)
    else:
        task = ResGradTask(comp.sde, comp.net, data, base_mels(config.data.options["base"], data), **kw)
    if not config.stage2.enabled:
        return task
    s2 = config.stage2
    return TTSStageTwoTask(task, nfe=s2.nfe, sampler=s2.sampler, grid=s2.grid, l2_weight=s2.l2_weight,
                           init=lambda: stage_one_weights(config, comp))


@torch.no_grad()
def base_mels(base, data) -> list[torch.Tensor]:
    """mu_y of the trained text-to-speech run ``base`` (its EMA weights) for every utterance of ``data``,
    aligned to its true mel by MAS (teacher forcing, as ResGrad trains on FastSpeech 2's output with true
    durations)."""
    from ..engine.checkpoint import load_weights_into
    from ..nets import build_network
    from ..tasks.tts import aligned_means

    state, ema, path = _base_model(base)
    desc = state["network"]
    net = build_network(desc["kind"], **desc["config"])
    load_weights_into(net, ema, path)
    net.eval()
    out = []
    for ids, mel in zip(data.ids, data.mels):
        mu_x, _, _, attn = aligned_means(net, ids[None], torch.tensor([len(ids)]), mel[None],
                                         torch.tensor([mel.shape[-1]]))
        out.append(torch.einsum("bci,bij->bcj", mu_x, attn)[0])
    return out


