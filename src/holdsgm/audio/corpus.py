"""A synthetic English speech corpus made locally with espeak-ng (no download), in the LJSpeech layout.

Utterance ``i`` of seed ``s`` is fully determined by ``(s, i)`` (its own ``random.Random``), so a corpus
of ``n`` utterances is a prefix of one of ``n + k`` with the same seed, and the same espeak-ng version
gives the same audio bit for bit. Per utterance:

* a sentence composed from the built-in word lists and templates below (3-15 words; numbers and the
  abbreviations Mr./Dr. appear in the text and are spelt out in the normalized text, which is what
  espeak-ng speaks), about 1-4 s of speech;
* a voice from :data:`VOICES` (accents en-us, en-gb, en-gb-scotland, RP, Lancaster, West Midlands,
  Caribbean; male and female variants, and the Klatt synthesiser), pitch 30-70 (espeak's 0-99 scale)
  and speed 140-190 words per minute;
* espeak-ng's 22.05 kHz output, resampled to ``sr`` with soxr (HQ), cut to the speech (leading and
  trailing samples below 1 % of the peak dropped, 50 ms kept on each side), peak-normalised to 0.95,
  written as 16-bit PCM mono ``wavs/<id>.wav``; ``metadata.csv`` holds ``id|text|normalized text``.

espeak-ng is run as a subprocess with an argument list (no shell).
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import check_int
from ..errors import DataError, HoldsgmError
from ..files import atomic_write, writable_dir
from ._deps import require
from .dataset import METADATA

#: espeak-ng voices (language[+variant]). Note: variants appended to plain ``en-gb`` are silently
#: ignored by espeak-ng 1.51, so British variants use ``en-gb-x-rp``.
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
          "en-us+f2", "en-us+f3", "en-us+f4", "en-us+m3", "en-us+m7", "en-us+klatt", "en-gb-x-rp+f2",
          "en-gb-scotland+f3", "en-029+f4")
PITCH_RANGE = (30, 70)
SPEED_RANGE = (140, 190)
PEAK = 0.95
ESPEAK_INSTALL = ("install it: apt-get install espeak-ng (Debian/Ubuntu), dnf install espeak-ng (Fedora) "
                  "or brew install espeak-ng (macOS)")

_NAMES = ["Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henry", "Isla", "Jack", "Kate", "Leo",
          "Maria", "Noah", "Olivia", "Peter", "Rosa", "Sam", "Tom", "Vera"]
_TITLES = {"Mr.": "Mister", "Dr.": "Doctor"}
_SURNAMES = ["Smith", "Brown", "Wilson", "Taylor", "Clarke", "Walker", "Hughes", "Morgan"]
_ADJ = ["small", "old", "bright", "quiet", "green", "heavy", "warm", "little", "strange", "gentle", "cold",
        "yellow", "busy", "silver", "narrow", "happy", "tired", "clever", "wooden", "distant"]
_NOUNS = ["dog", "river", "house", "teacher", "garden", "window", "letter", "train", "doctor", "bridge",
          "market", "song", "table", "mountain", "child", "boat", "forest", "engine", "story", "lamp",
          "kitchen", "horse", "paper", "island"]
_PLACES = ["the station", "the old church", "the village", "the harbour", "the school", "the park",
           "the hospital", "the museum", "the library", "the farm", "the city centre", "the beach"]
_VERBS_PAST = ["found", "painted", "carried", "watched", "opened", "followed", "cleaned", "visited",
               "fixed", "described", "remembered", "moved", "bought", "noticed"]
_VERBS = ["find", "paint", "carry", "watch", "open", "follow", "clean", "visit", "fix", "describe", "move",
          "buy", "check"]
_INTRANS = ["laughed", "waited", "arrived", "slept", "smiled", "left", "listened", "stopped", "returned"]
_TIMES = ["this morning", "last night", "on Monday", "after lunch", "in the spring", "every evening",
          "before dawn", "yesterday", "at noon", "next week"]
_ADVERBS = ["slowly", "quietly", "carefully", "suddenly", "again", "early", "happily"]
_PRONOUNS = ["she", "he", "they", "we"]
_SHORT = ["Good morning.", "Thank you very much.", "Please sit down.", "Not today.", "Come here.",
          "That is correct.", "Where are you going?", "Wait a moment.", "I see.", "Very well."]

_TEMPLATES = [
    "{short}",
    "{Name} {intrans}.",
    "The {adj} {noun} {intrans}.",
    "{Name} {verb_past} the {noun}.",
    "Look at the {adj} {noun}.",
    "The {adj} {noun} {verb_past} the {noun2} {time}.",
    "{Title} {Surname} {verb_past} {num} {nouns} {time}.",
    "Please {verb} the {adj} {noun} near {place}.",
    "{Name} will {verb} the {noun} {time}.",
    "Did you see the {adj} {noun} at {place}?",
    "There were {num} {nouns} at {place} {time}.",
    "The {noun} {verb_past} {place} {adverb}, and {pronoun} {intrans}.",
    "{Name} and {Name2} {verb_past} the {adj} {noun} at {place} {time}.",
    "After the {noun} {intrans}, {pronoun} {verb_past} the {adj2} {noun2} {adverb}.",
    "{Title} {Surname} said that the {adj} {noun} {verb_past} {num} {nouns} near {place} {time}.",
    "When the {adj} {noun} {intrans} {time}, {Name} {verb_past} the {noun2} at {place}.",
]

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_to_words(n: int) -> str:
    """English words for 0 <= n < 10000 (British 'and': ``one hundred and five``)."""
    if not 0 <= n < 10000:
        raise ValueError(f"number_to_words covers 0..9999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_to_words(rest))
    rest = n % 1000
    head = _ONES[n // 1000] + " thousand"
    if rest == 0:
        return head
    return head + (" and " if rest < 100 else " ") + number_to_words(rest)


def _plural(noun: str) -> str:
    if noun == "child":
        return "children"
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def compose_sentence(rng: random.Random) -> tuple[str, str]:
    """(text, normalized text) of one random sentence; the normalized text spells out numbers and
    titles (LJSpeech's convention)."""
    template = rng.choice(_TEMPLATES)
    name, name2 = rng.sample(_NAMES, 2)
    noun, noun2 = rng.sample(_NOUNS, 2)
    adj, adj2 = rng.sample(_ADJ, 2)
    title = rng.choice(list(_TITLES))
    num = rng.choice([rng.randint(2, 12), rng.randint(13, 99), rng.randint(100, 999)])
    fields = {"short": rng.choice(_SHORT), "Name": name, "Name2": name2, "noun": noun, "noun2": noun2,
              "adj": adj, "adj2": adj2, "nouns": _plural(rng.choice(_NOUNS)), "place": rng.choice(_PLACES),
              "verb_past": rng.choice(_VERBS_PAST), "verb": rng.choice(_VERBS),
              "intrans": rng.choice(_INTRANS), "time": rng.choice(_TIMES), "adverb": rng.choice(_ADVERBS),
              "pronoun": rng.choice(_PRONOUNS), "Title": title, "Surname": rng.choice(_SURNAMES)}
    text = template.format(num=num, **fields)
    normalized = template.format(num=number_to_words(num), **{**fields, "Title": _TITLES[title]})
    return text, normalized


@dataclass(frozen=True)
class UtteranceSpec:
    """Everything that determines one utterance."""

    id: str
    text: str
    normalized_text: str
    voice: str
    pitch: int
    speed: int


def utterance_spec(seed: int, index: int, width: int = 5) -> UtteranceSpec:
    """The spec of utterance ``index`` of corpus ``seed`` (its own RNG, seeded by the pair)."""
    rng = random.Random(f"holdsgm-speech|{seed}|{index}")
    text, norm = compose_sentence(rng)
    return UtteranceSpec(f"SP{seed % 1000:03d}-{index:0{width}d}", text, norm, rng.choice(VOICES),
                         rng.randint(*PITCH_RANGE), rng.randint(*SPEED_RANGE))


def find_espeak(espeak: str = "espeak-ng") -> str:
    """Path of the espeak-ng executable, or HoldsgmError saying how to install it."""
    exe = shutil.which(espeak)
    if exe is None:
        raise HoldsgmError(f"espeak-ng was not found (looked for {espeak!r} on PATH); it is needed to "
                           f"synthesise the speech corpus; {ESPEAK_INSTALL}")
    return exe


def synthesise(spec: UtteranceSpec, sr: int, exe: str) -> np.ndarray:
    """Run espeak-ng for one spec; float32 mono wave at ``sr``, trimmed and peak-normalised."""
    sf, soxr = require("soundfile"), require("soxr")
    cmd = [exe, "-v", spec.voice, "-p", str(spec.pitch), "-s", str(spec.speed), "--stdout",
           spec.normalized_text]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HoldsgmError(f"espeak-ng failed on utterance {spec.id}: {e}") from None
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        msg = " ".join(proc.stderr.decode(errors="replace").split()) or f"exit status {proc.returncode}"
        raise HoldsgmError(f"espeak-ng failed on utterance {spec.id} (voice {spec.voice}): {msg}")
    wave, in_sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    if in_sr != sr:
        wave = soxr.resample(wave, in_sr, sr, "HQ")
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak <= 0:
        raise HoldsgmError(f"espeak-ng produced silence for utterance {spec.id} "
                           f"({spec.normalized_text!r:.60})")
    loud = np.flatnonzero(np.abs(wave) > 0.01 * peak)
    margin = int(0.05 * sr)
    wave = wave[max(0, loud[0] - margin): loud[-1] + 1 + margin]
    return np.ascontiguousarray(wave * (PEAK / peak), dtype=np.float32)


@dataclass(frozen=True)
class CorpusSummary:
    path: str
    n: int
    seconds: float  # audio written
    wall_seconds: float  # time taken

    @property
    def speed(self) -> float:
        """Audio seconds written per wall-clock second."""
        return self.seconds / max(self.wall_seconds, 1e-9)


def build_speech_corpus(out, n: int, seed: int = 0, sr: int = 16000, *, jobs: int = 1,
                        overwrite: bool = False, espeak: str = "espeak-ng", progress=None) -> CorpusSummary:
    """Synthesise ``n`` utterances into ``out`` (LJSpeech layout: ``out/wavs/<id>.wav``, 16-bit PCM mono
    at ``sr``, and ``out/metadata.csv``). ``jobs`` espeak-ng processes run at once. ``metadata.csv`` is
    written last (atomically), so an interrupted run leaves no valid-looking corpus; an existing one is
    refused unless ``overwrite`` (WAVs of an earlier, larger corpus then stay in ``wavs/`` but are no
    longer listed). ``progress``: optional callable(k) after each utterance.
    HoldsgmError when espeak-ng is missing (saying how to install it), DataError when ``out`` cannot be
    written."""
    n = check_int(n, "n", 1, 10**6, error=DataError)
    seed = check_int(seed, "seed", 0, error=DataError)
    sr = check_int(sr, "sr", 8000, 192000, error=DataError)
    jobs = check_int(jobs, "jobs", 1, 64, error=DataError)
    sf = require("soundfile")
    require("soxr")
    exe = find_espeak(espeak)
    root = Path(os.fspath(out)).expanduser()
    meta = root / METADATA
    if meta.exists() and not overwrite:
        raise DataError(f"{root} already holds a corpus ({METADATA}); pass --overwrite or choose another "
                        f"--out")
    try:
        writable_dir(root / "wavs", "the corpus folder")
    except OSError as e:
        raise DataError(f"cannot write the corpus to {root}: {str(e).rsplit(': ', 1)[-1]}") from None

    width = max(5, len(str(n - 1)))
    specs = [utterance_spec(seed, i, width) for i in range(n)]
    t0 = time.perf_counter()
    total = 0

    def make(spec: UtteranceSpec) -> int:
        wave = synthesise(spec, sr, exe)
        path = root / "wavs" / f"{spec.id}.wav"
        try:
            sf.write(str(path), wave, sr, subtype="PCM_16")
        except (RuntimeError, OSError) as e:
            raise DataError(f"cannot write {path}: {' '.join(str(e).split())}") from None
        return len(wave)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for k, samples in enumerate(pool.map(make, specs), 1):
            total += samples
            if progress is not None:
                progress(k)
    lines = "".join(f"{s.id}|{s.text}|{s.normalized_text}\n" for s in specs)
    try:
        atomic_write(meta, lines.encode("utf-8"))
    except OSError as e:
        raise DataError(f"cannot write {meta}: {e.strerror or e}") from None
    return CorpusSummary(str(root), n, total / sr, time.perf_counter() - t0)
