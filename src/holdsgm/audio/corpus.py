"""A synthetic English speech corpus made locally with a speech synthesiser (no download), in the
LJSpeech layout.

Engines (:data:`ENGINES`; Debian packages, run as subprocesses with an argument list, no shell):

* ``flite`` (the default, voice ``slt``; also ``rms``, ``awb``, ``kal16``, ``kal``): one natural-sounding
  speaker at 16 kHz; it reports each phone's end time (``-psdur``), written to ``durations.csv``;
* ``espeak`` (espeak-ng): with ``voice=None`` a mix of accents, pitches and speeds (:data:`VOICES`), or
  one voice; hard to learn and hard to transcribe (pocketsphinx WER 85 %), kept for variety;
* ``festival`` (voice ``cmu_us_slt_arctic_hts`` from ``festvox-us-slt-hts``, or any installed festival
  voice): phone end times from the utterance's segments.

Utterance ``i`` of seed ``s`` is fully determined by ``(s, i)`` (its own ``random.Random``), so a corpus
of ``n`` utterances is a prefix of one of ``n + k`` with the same seed, and the same engine version
gives the same audio bit for bit. Per utterance:

* a sentence composed from the built-in word lists and templates below (3-15 words; numbers and the
  abbreviations Mr./Dr. appear in the text and are spelt out in the normalized text, which is what
  the engine speaks), about 1-4 s of speech;
* for espeak-ng's mix: a voice from :data:`VOICES` (accents en-us, en-gb, en-gb-scotland, RP, Lancaster,
  West Midlands, Caribbean; male and female variants, and the Klatt synthesiser), pitch 30-70 (espeak's
  0-99 scale) and speed 140-190 words per minute;
* the engine's output, mixed to mono, resampled to ``sr`` with soxr (HQ), cut to the speech (leading
  and trailing samples below 1 % of the peak dropped, 50 ms kept on each side), peak-normalised to
  0.95, written as 16-bit PCM mono ``wavs/<id>.wav``; ``metadata.csv`` holds ``id|text|normalized
  text``; where the engine reports phones, ``durations.csv`` holds ``id|phones|end times`` (space
  separated; the engine's phone set, ``pau`` for pauses; end times in seconds of the written, trimmed
  wave).
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import check_int
from ..errors import DataError, HoldsgmError
from ..files import atomic_write, writable_dir
from ..text.frontend import number_to_words
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
DURATIONS = "durations.csv"


@dataclass(frozen=True)
class Engine:
    """A speech synthesiser: its program, default voice and how to install it."""

    name: str
    program: str
    default_voice: str | None
    install: str


ENGINES = {
    "flite": Engine("flite", "flite", "slt", "install it: apt-get install flite (Debian/Ubuntu)"),
    "espeak": Engine("espeak", "espeak-ng", None, ESPEAK_INSTALL),
    "festival": Engine("festival", "festival", "cmu_us_slt_arctic_hts",
                       "install it: apt-get install festival festvox-us-slt-hts (Debian/Ubuntu)"),
}
DEFAULT_ENGINE = "flite"

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
    """Everything that determines one utterance (``pitch`` and ``speed`` are espeak-ng's; other engines
    speak at their voice's own pitch and rate)."""

    id: str
    text: str
    normalized_text: str
    voice: str
    pitch: int
    speed: int


def utterance_spec(seed: int, index: int, width: int = 5, voice: str | None = None) -> UtteranceSpec:
    """The spec of utterance ``index`` of corpus ``seed`` (its own RNG, seeded by the pair). ``voice``:
    one voice for every utterance; None: espeak-ng's mix (:data:`VOICES`). The text does not depend on
    the voice."""
    rng = random.Random(f"holdsgm-speech|{seed}|{index}")
    text, norm = compose_sentence(rng)
    mixed = rng.choice(VOICES)
    return UtteranceSpec(f"SP{seed % 1000:03d}-{index:0{width}d}", text, norm, voice or mixed,
                         rng.randint(*PITCH_RANGE), rng.randint(*SPEED_RANGE))


def find_program(engine: str = DEFAULT_ENGINE, program: str | None = None) -> str:
    """Path of the engine's executable, or HoldsgmError saying how to install it."""
    eng = _engine(engine)
    exe = shutil.which(program or eng.program)
    if exe is None:
        raise HoldsgmError(f"{eng.program} was not found (looked for {program or eng.program!r} on PATH); it is "
                           f"needed to synthesise the speech corpus; {eng.install}")
    return exe


def _engine(engine: str) -> Engine:
    if engine not in ENGINES:
        raise DataError(f"unknown speech engine {engine!r:.40}; choices: {', '.join(ENGINES)}")
    return ENGINES[engine]


def _run(cmd: list[str], spec: UtteranceSpec, what: str) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HoldsgmError(f"{what} failed on utterance {spec.id}: {e}") from None
    if proc.returncode != 0:
        msg = " ".join(proc.stderr.decode(errors="replace").split()) or f"exit status {proc.returncode}"
        raise HoldsgmError(f"{what} failed on utterance {spec.id} (voice {spec.voice}): {msg:.300}")
    return proc


def _parse_segments(text: str) -> tuple[list[str], list[float]]:
    """``phone:end phone:end ...`` (flite -psdur) -> (phones, end times)."""
    phones, ends = [], []
    for tok in text.split():
        name, _, end = tok.rpartition(":")
        try:
            ends.append(float(end))
        except ValueError:
            continue
        phones.append(name)
    return phones, ends


def _synth_raw(engine: str, spec: UtteranceSpec, exe: str, tmp: Path):
    """(wave float32 mono, its rate, phones or None, end times or None) straight from the engine."""
    sf = require("soundfile")
    phones = ends = None
    if engine == "espeak":
        proc = _run([exe, "-v", spec.voice, "-p", str(spec.pitch), "-s", str(spec.speed), "--stdout",
                     spec.normalized_text], spec, "espeak-ng")
        if len(proc.stdout) <= 44:
            raise HoldsgmError(f"espeak-ng wrote no audio for utterance {spec.id} (voice {spec.voice})")
        wave, in_sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    else:
        wav = tmp / f"{spec.id}.raw.wav"
        if engine == "flite":
            proc = _run([exe, "-voice", spec.voice, "-psdur", "-t", spec.normalized_text, "-o", str(wav)], spec,
                        "flite")
            phones, ends = _parse_segments(proc.stdout.decode(errors="replace"))
        else:  # festival: a Scheme script, the text passed as a Scheme string
            segs = tmp / f"{spec.id}.segs"
            quoted = spec.normalized_text.replace("\\", " ").replace('"', " ")
            script = tmp / f"{spec.id}.scm"
            script.write_text(f'(voice_{spec.voice})\n(set! u (Utterance Text "{quoted}"))\n(utt.synth u)\n'
                              f'(utt.save.wave u "{wav}" \'riff)\n(utt.save.segs u "{segs}")\n')
            _run([exe, "--batch", str(script)], spec, "festival")
            try:
                lines = segs.read_text(errors="replace").split("#", 1)[-1].split("\n")
            except OSError as e:
                raise HoldsgmError(f"festival wrote no segments for utterance {spec.id}: {e}") from None
            rows = [ln.split() for ln in lines if len(ln.split()) >= 3]
            phones, ends = [r[2] for r in rows], [float(r[0]) for r in rows]
        try:
            wave, in_sr = sf.read(str(wav), dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as e:
            raise HoldsgmError(f"{engine} wrote no readable audio for utterance {spec.id}: "
                               f"{' '.join(str(e).split()):.200}") from None
    return wave.mean(axis=1), int(in_sr), phones, ends


def synthesise(spec: UtteranceSpec, sr: int, exe: str, engine: str = "espeak", tmp=None):
    """Run the engine for one spec: (float32 mono wave at ``sr``, trimmed and peak-normalised; phones or
    None; their end times in seconds of the returned wave, or None). ``tmp``: a folder for the engine's
    own files (flite and festival write files)."""
    soxr = require("soxr")
    _engine(engine)
    if tmp is None and engine != "espeak":
        raise ValueError("synthesise needs a tmp folder for flite and festival")
    wave, in_sr, phones, ends = _synth_raw(engine, spec, exe, Path(tmp) if tmp is not None else Path("."))
    if in_sr != sr:
        wave = soxr.resample(wave, in_sr, sr, "HQ")
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak <= 0:
        raise HoldsgmError(f"{engine} produced silence for utterance {spec.id} ({spec.normalized_text!r:.60})")
    loud = np.flatnonzero(np.abs(wave) > 0.01 * peak)
    margin = int(0.05 * sr)
    start, stop = max(0, loud[0] - margin), loud[-1] + 1 + margin
    wave = wave[start:stop]
    if ends is not None:
        length = len(wave) / sr
        ends = [round(min(max(e - start / sr, 0.0), length), 4) for e in ends]
    return np.ascontiguousarray(wave * (PEAK / peak), dtype=np.float32), phones, ends


@dataclass(frozen=True)
class CorpusSummary:
    path: str
    n: int
    seconds: float  # audio written
    wall_seconds: float  # time taken
    engine: str = "espeak"
    voice: str = "mix"

    @property
    def speed(self) -> float:
        """Audio seconds written per wall-clock second."""
        return self.seconds / max(self.wall_seconds, 1e-9)


def build_speech_corpus(out, n: int, seed: int = 0, sr: int = 16000, *, engine: str = DEFAULT_ENGINE,
                        voice: str | None = "default", jobs: int = 1, overwrite: bool = False,
                        espeak: str = "espeak-ng", program: str | None = None, progress=None) -> CorpusSummary:
    """Synthesise ``n`` utterances with ``engine`` into ``out`` (LJSpeech layout: ``out/wavs/<id>.wav``,
    16-bit PCM mono at ``sr``, ``out/metadata.csv``, and ``out/durations.csv`` where the engine reports
    phones). ``voice``: ``"default"`` the engine's default (flite ``slt``; espeak-ng's mix), None the mix
    (espeak only), or a voice name. ``jobs`` engine processes run at once. ``metadata.csv`` is written
    last (atomically), so an interrupted run leaves no valid-looking corpus; an existing one is refused
    unless ``overwrite`` (WAVs of an earlier, larger corpus then stay in ``wavs/`` but are no longer
    listed). ``program``: the engine's executable (default: from PATH; ``espeak`` is the same for
    espeak-ng). ``progress``: optional callable(k) after each utterance. HoldsgmError when the engine is
    missing (saying how to install it) or fails, DataError for bad arguments or when ``out`` cannot be
    written."""
    n = check_int(n, "n", 1, 10**6, error=DataError)
    seed = check_int(seed, "seed", 0, error=DataError)
    sr = check_int(sr, "sr", 8000, 192000, error=DataError)
    jobs = check_int(jobs, "jobs", 1, 64, error=DataError)
    eng = _engine(engine)
    if voice == "default":
        voice = eng.default_voice
    if voice is None and engine != "espeak":
        raise DataError(f"the {engine} engine needs a voice (its default: {eng.default_voice})")
    if voice is not None and (not isinstance(voice, str) or not voice.strip() or voice.startswith("-")
                              or any(c in voice for c in ' \t\n()"')):
        raise DataError(f"bad voice name {voice!r:.60}")
    sf = require("soundfile")
    require("soxr")
    exe = find_program(engine, program or (espeak if engine == "espeak" else None))
    root = Path(os.fspath(out)).expanduser()
    meta = root / METADATA
    if meta.exists() and not overwrite:
        raise DataError(f"{root} already holds a corpus ({METADATA}); pass --overwrite or choose another "
                        f"--out")
    try:
        writable_dir(root / "wavs", "the corpus folder")
    except OSError as e:
        raise DataError(f"cannot write the corpus to {root}: {str(e).rsplit(': ', 1)[-1]}") from None
    if engine != "espeak" and voice is not None:
        _check_voice(engine, voice, exe, root)

    width = max(5, len(str(n - 1)))
    specs = [utterance_spec(seed, i, width, voice) for i in range(n)]
    t0 = time.perf_counter()
    total = 0
    durations: dict[str, str] = {}

    with tempfile.TemporaryDirectory(prefix="holdsgm-corpus-") as tmp:
        def make(spec: UtteranceSpec) -> int:
            wave, phones, ends = synthesise(spec, sr, exe, engine, tmp)
            path = root / "wavs" / f"{spec.id}.wav"
            try:
                sf.write(str(path), wave, sr, subtype="PCM_16")
            except (RuntimeError, OSError) as e:
                raise DataError(f"cannot write {path}: {' '.join(str(e).split())}") from None
            if phones is not None and ends is not None:
                durations[spec.id] = f"{spec.id}|{' '.join(phones)}|{' '.join(f'{e:g}' for e in ends)}\n"
            return len(wave)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for k, samples in enumerate(pool.map(make, specs), 1):
                total += samples
                if progress is not None:
                    progress(k)
    lines = "".join(f"{s.id}|{s.text}|{s.normalized_text}\n" for s in specs)
    try:
        if durations:
            atomic_write(root / DURATIONS, "".join(durations[s.id] for s in specs if s.id in durations).encode())
        elif (root / DURATIONS).exists():
            (root / DURATIONS).unlink()
        atomic_write(meta, lines.encode("utf-8"))
    except OSError as e:
        raise DataError(f"cannot write {meta}: {e.strerror or e}") from None
    return CorpusSummary(str(root), n, total / sr, time.perf_counter() - t0, engine, voice or "mix")


def _check_voice(engine: str, voice: str, exe: str, root: Path) -> None:
    """DataError naming the voices when the engine does not have ``voice`` (flite lists them; festival
    is asked for ``voice_<name>``)."""
    if engine == "flite":
        proc = subprocess.run([exe, "-lv"], capture_output=True, timeout=30, check=False)
        have = proc.stdout.decode(errors="replace").split(":", 1)[-1].split()
        if voice not in have:
            raise DataError(f"flite has no voice {voice!r}; voices: {', '.join(have)}")
    elif engine == "festival":
        script = root / f".voice-check-{os.getpid()}.scm"
        script.write_text(f"(voice_{voice})\n")
        try:
            proc = subprocess.run([exe, "--batch", str(script)], capture_output=True, timeout=60, check=False)
        finally:
            script.unlink(missing_ok=True)
        err = proc.stderr.decode(errors="replace")
        if proc.returncode != 0 or "unbound variable" in err or "SIOD ERROR" in err:
            raise DataError(f"festival has no voice {voice!r} (apt-get install festvox-us-slt-hts gives "
                            f"cmu_us_slt_arctic_hts)")


def read_durations(path) -> dict[str, tuple[list[str], list[float]]]:
    """``durations.csv`` of a corpus -> {id: (phones, end times in seconds)}; {} when there is none."""
    p = Path(os.fspath(path))
    p = p / DURATIONS if p.is_dir() else p
    if not p.is_file():
        return {}
    out = {}
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("|")
        if len(fields) != 3:
            raise DataError(f"{p}:{lineno}: expected 'id|phones|end times', got {line!r:.80}")
        phones, ends = fields[1].split(), [float(e) for e in fields[2].split()]
        if len(phones) != len(ends):
            raise DataError(f"{p}:{lineno}: {len(phones)} phones but {len(ends)} end times")
        out[fields[0]] = (phones, ends)
    return out
