"""``holdsgm data``: build data sets locally (nothing is downloaded).

``holdsgm data speech --out DIR --n N [--engine flite|espeak|festival] [--voice V] [--seed S] [--sr 16000]
[--jobs J] [--overwrite]`` synthesises an English speech corpus in the LJSpeech layout, with the phones
and their end times where the engine reports them (see :mod:`holdsgm.audio.corpus`).
"""

from __future__ import annotations

import argparse
import os
import sys


def _speech(args) -> int:
    from ..audio.corpus import ENGINES, build_speech_corpus

    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=args.n, unit="utt", desc=ENGINES[args.engine].program, file=sys.stderr)
    voice = "default" if args.voice is None else (None if args.voice == "mix" else args.voice)
    try:
        summary = build_speech_corpus(args.out, args.n, seed=args.seed, sr=args.sr, engine=args.engine, voice=voice,
                                      jobs=args.jobs, overwrite=args.overwrite,
                                      progress=None if bar is None else (lambda k: bar.update(1)))
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {summary.n} utterances ({summary.seconds:.1f} s of audio at {args.sr} Hz, "
          f"{summary.engine} voice {summary.voice}, seed {args.seed}) to {summary.path} in "
          f"{summary.wall_seconds:.1f} s ({summary.speed:.0f} audio-s per s); layout: wavs/<id>.wav + metadata.csv"
          f"{' + durations.csv (phones and end times)' if summary.engine != 'espeak' else ''}")
    return 0


def _default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="build data sets locally (speech corpus)",
        description="Build data sets locally; nothing is downloaded.")
    sub = parser.add_subparsers(dest="data_command", metavar="DATASET")
    speech = sub.add_parser(
        "speech", help="synthesise a single-speaker English speech corpus (flite, espeak-ng or festival; "
                       "LJSpeech layout)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Synthesise N English sentences (composed deterministically from the seed) with a "
                    "speech engine, resample, peak-normalise and write the LJSpeech layout: "
                    "DIR/wavs/<id>.wav (16-bit PCM mono), DIR/metadata.csv (id|text|normalized text) and, "
                    "for flite and festival, DIR/durations.csv (id|phones|end times in seconds).",
        epilog="Needs the engine's program (apt-get install flite; espeak-ng; festival festvox-us-slt-hts) and "
               "the audio extras (pip install 'holdsgm[audio]').\nExample (the default voice's corpus): "
               "holdsgm data speech --out data/speech --n 1000")
    speech.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    speech.add_argument("--n", required=True, type=int, metavar="N", help="number of utterances")
    speech.add_argument("--engine", choices=("flite", "espeak", "festival"), default="flite",
                        help="speech synthesiser (default flite)")
    speech.add_argument("--voice", default=None, metavar="V",
                        help="the engine's voice (default: flite slt, festival cmu_us_slt_arctic_hts, espeak-ng "
                             "'mix': a deterministic mix of accents, pitches and speeds)")
    speech.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    speech.add_argument("--sr", type=int, default=16000, help="sample rate in Hz (default 16000)")
    speech.add_argument("--jobs", type=int, default=_default_jobs(),
                        help="engine processes run at once (default: CPU count, at most 4)")
    speech.add_argument("--overwrite", action="store_true", help="replace an existing corpus in DIR")
    speech.add_argument("--quiet", action="store_true", help="no progress bar")
    speech.set_defaults(func=_speech)
    parser.set_defaults(func=lambda args: parser.print_help() or 1)
