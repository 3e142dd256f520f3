"""Text to speech with trained runs: text -> normalised mel (the text encoder's mu_y for the predicted
durations, refined by the SDE decoder or ResGrad) -> log-mel -> the vocoder's wave, and its figure. What a
run knows of its data and its training task: :mod:`holdsgm.runs.textmel`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..errors import ConfigError, HoldsgmError

log = logging.getLogger("holdsgm.tts")


# ---------------------------------------------------------------------- synthesis
#: the pause put between the sentences of a long text, in seconds
SENTENCE_PAUSE = 0.2
#: the longest part (in characters) said in one go; longer texts are split at sentence boundaries
MAX_CHARS = 200
#: features a text-to-speech run and its vocoder must share
FEATURES = ("sr", "hop", "n_fft", "n_mels", "fmin", "fmax")


def check_tts_run(run) -> None:
    """HoldsgmError (one line) unless ``run`` is a text-to-speech run (``itotts``)."""
    kind = getattr(run.net, "kind", None)
    if kind != "itotts":
        raise ConfigError(f"{run.run_dir} is not a text-to-speech run (its network is {kind!r}, not 'itotts')")


def check_vocoder(tts_run, vocoder) -> None:
    """HoldsgmError unless ``vocoder`` is a vocoder run whose mel features are the text-to-speech run's."""
    vi = vocoder.dataset_info
    if not vi.is_speech or getattr(vocoder.net, "kind", None) in ("itotts", "melunet"):
        raise ConfigError(f"{vocoder.run_dir} is not a vocoder run")
    a, b = tts_run.dataset_info.speech, vi.speech
    for k in FEATURES:
        if a[k] != b[k]:
            raise ConfigError(f"the vocoder {vocoder.run_dir} reads mels with {k} = {b[k]}, the text-to-speech "
                              f"model writes {k} = {a[k]}: use a vocoder trained on the same features")


def check_resgrad(tts_run, resgrad) -> None:
    """HoldsgmError unless ``resgrad`` is a ResGrad run in the text-to-speech run's mel units."""
    if getattr(resgrad.net, "kind", None) != "melunet":
        raise ConfigError(f"{resgrad.run_dir} is not a ResGrad run (its network is "
                          f"{getattr(resgrad.net, 'kind', None)!r}, not 'melunet')")
    a, b = tts_run.dataset_info.speech, resgrad.dataset_info.speech
    for k in (*FEATURES, "mel_mean", "mel_std"):
        if a.get(k) != b.get(k):
            raise ConfigError(f"the ResGrad run {resgrad.run_dir} was trained in other mel units ({k}) than the "
                              f"text-to-speech model; train it with data.base set to this model's run")


@torch.no_grad()
def prior_means(run, ids: list[int], length_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu_y (n_mels, frames), durations (symbols,)) of one symbol sequence: the encoder's means repeated
    for the predicted durations ``w = exp(log w) * length_scale`` in frames, rounded so that every token
    ends at ``round(cumsum(w))`` (the total is the rounded sum: Grad-TTS's ``ceil`` adds half a frame per
    symbol, +26 % of the length with blanks at hop 256, measured; a blank may get 0 frames)."""
    from ..text.align import durations_to_path

    x = torch.tensor([ids], dtype=torch.long, device=run.device)
    mu_x, logw, mask = run.net.encode(x, torch.tensor([len(ids)], device=run.device))
    w = torch.exp(logw.double()) * length_scale * mask[:, 0]
    ends = torch.round(torch.cumsum(w, dim=1)).clamp_min(1)  # at least one frame in all
    dur = torch.diff(ends, dim=1, prepend=torch.zeros_like(ends[:, :1])).long()
    attn = durations_to_path(dur).to(mu_x)
    return torch.einsum("bci,bij->bcj", mu_x, attn)[0], dur[0]


@torch.no_grad()
def text_to_mel(run, text: str, *, nfe: int | None = None, sampler: str | None = None, grid: str | None = None,
                resgrad=None, seed: int = 0, length_scale: float = 1.0, temperature: float = 1.0,
                progress: bool = False) -> list[dict]:
    """Log-mels of ``text``, one per part (:func:`~holdsgm.text.split_sentences`): each a dict with the part's
    ``text``, ``ipa``, ``mu_y`` and ``mel`` (log-mel units, (n_mels, frames)), ``durations`` and the NFE used.
    The mel is mu_y refined by ``resgrad`` (a ResGrad run) when given, else by the run's SDE decoder; ``nfe``
    0 gives mu_y alone. Defaults: those of the run that refines (:func:`~holdsgm.runs.inference.vocoder_defaults`:
    its ``sample`` section, or stage two's). HoldsgmError (one line) when nothing is
    speakable."""
    from ..samplers import PerSampleNoise
    from ..tasks.tts import MelNorm, tts_sample
    from ..text import FrontEnd, normalize_text, split_sentences

    check_tts_run(run)
    a = run.dataset_info.speech
    front = FrontEnd(a["symbols"], a.get("language", "en-us"))
    if not isinstance(text, str) or not text.strip():
        raise HoldsgmError("the text is empty: give a sentence to say")
    parts = split_sentences(normalize_text(text), MAX_CHARS)  # after normalising: "Mr." ends no sentence
    if not parts:
        raise HoldsgmError(f"nothing to say in {text[:60]!r}: the text has no letters or digits")
    model = resgrad if resgrad is not None else run
    from .inference import vocoder_defaults

    d = vocoder_defaults(model)  # a stage-two run: the K it was fine-tuned for
    nfe = d["nfe"] if nfe is None else nfe
    norm = MelNorm.from_lists(a["mel_mean"], a["mel_std"])
    out = []
    for i, part in enumerate(parts):
        ph = front.encode(part)
        mu_y, w = prior_means(run, ph.ids, length_scale)
        y = mu_y
        if nfe:
            y = tts_sample(model.eps_model, model.sde, mu_y[None], nfe=nfe, sampler=sampler or d["sampler"],
                           grid=grid or d["grid"], noise=PerSampleNoise([seed + i]), progress=progress,
                           temperature=temperature)[0]
        if not bool(torch.isfinite(y).all()):
            raise HoldsgmError("the decoder produced NaN or inf (try more NFE or another sampler)")
        out.append({"text": ph.text, "ipa": ph.ipa, "mu_y": norm.denormalize(mu_y).cpu(),
                    "mel": norm.denormalize(y).cpu(), "durations": w.cpu(), "nfe": nfe})
    return out


def synthesize(run, vocoder, text: str, *, nfe: int | None = None, sampler: str | None = None,
               grid: str | None = None, resgrad=None, vocoder_nfe: int | None = None, seed: int = 0,
               length_scale: float = 1.0, temperature: float = 1.0, progress: bool = False,
               vocoder_refine: int | None = None) -> dict:
    """Text -> wave: :func:`text_to_mel`, each part vocoded (:func:`holdsgm.runs.inference.vocode`, with
    ``vocoder_refine`` rounds of its mel-consistency projection; None: its default) and the parts
    joined with :data:`SENTENCE_PAUSE` of silence. Returns ``{"wave" (float32 numpy), "sr", "parts",
    "seconds" (compute), "audio_seconds", "rtf", "gain"}``; the wave's peak is at most
    :data:`~holdsgm.runs.inference.PEAK` (scaled, never clipped)."""
    import time

    import numpy as np

    from .inference import PEAK, vocode

    check_tts_run(run)
    check_vocoder(run, vocoder)
    if resgrad is not None:
        check_resgrad(run, resgrad)
    t0 = time.perf_counter()
    parts = text_to_mel(run, text, nfe=nfe, sampler=sampler, grid=grid, resgrad=resgrad, seed=seed,
                        length_scale=length_scale, temperature=temperature, progress=progress)
    sr = int(vocoder.dataset_info.speech["sr"])
    pause = np.zeros(int(SENTENCE_PAUSE * sr), dtype=np.float32)
    waves: list[np.ndarray] = []
    for i, p in enumerate(parts):
        v = vocode(vocoder, p["mel"], nfe=vocoder_nfe, seed=seed + i, refine=vocoder_refine)
        p["vocoder_nfe"] = v.nfe
        waves += ([pause] if waves else []) + [v.wave.numpy() / v.gain]  # joined first, scaled once
    wave = np.concatenate(waves).astype(np.float32)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    gain = PEAK / peak if peak > PEAK else 1.0
    seconds = time.perf_counter() - t0
    return {"wave": wave * gain, "sr": sr, "parts": parts, "seconds": seconds, "audio_seconds": wave.size / sr,
            "rtf": seconds * sr / max(1, wave.size), "gain": gain}


def tts_figure(path, part: dict, sr: int, hop: int, title: str = "") -> Path:
    """A PNG of one synthesised part: mu_y (the encoder's means for the predicted durations), the output mel
    on the same colour scale, and the alignment (symbol index against time)."""
    import numpy as np

    from ..plotting import pyplot, save_figure
    from ..text.align import durations_to_path

    plt = pyplot()
    mu, mel = part["mu_y"].numpy(), part["mel"].numpy()
    lo, hi = float(min(np.quantile(mu, 0.02), np.quantile(mel, 0.02))), float(max(mu.max(), mel.max()))
    path_m = durations_to_path(part["durations"][None])[0].numpy()
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.2), sharex=True, constrained_layout=True)
    end = mel.shape[1] * hop / sr
    for ax, (label, a) in zip(axes[:2], ((r"$\mu_y$ (text encoder, predicted durations)", mu),
                                         (f"output mel (NFE {part['nfe']})", mel))):
        im = ax.imshow(a, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma", extent=(0, end, 0, a.shape[0]))
        ax.set_ylabel("mel bin")
        ax.set_title(label, fontsize=9, loc="left")
    fig.colorbar(im, ax=axes[:2].tolist(), label="log-mel", shrink=0.9)
    axes[2].imshow(path_m, origin="lower", aspect="auto", cmap="Greys", extent=(0, end, 0, path_m.shape[0]))
    axes[2].set_ylabel("symbol")
    axes[2].set_title("alignment (symbols with blanks)", fontsize=9, loc="left")
    axes[2].set_xlabel("time (s)")
    fig.suptitle(title or part["text"][:90], fontsize=10)
    return save_figure(fig, os.fspath(path), tight=False)
