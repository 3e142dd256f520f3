"""``holdsgm data``: build data sets locally (nothing is downloaded).

``holdsgm data speech --out DIR --n N [--seed S] [--sr 16000] [--jobs J] [--overwrite]`` synthesises an
English speech corpus with espeak-ng in the LJSpeech layout (see :mod:`holdsgm.audio.corpus`).
"""

from __future__ import annotations

import argparse
import os
import sys


def _speech(args) -> int:
    from ..audio.corpus import VOICES, build_speech_corpus

    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=args.n, unit="utt", desc="espeak-ng", file=sys.stderr)
    try:
        summary = build_speech_corpus(args.out, args.n, seed=args.seed, sr=args.sr, jobs=args.jobs,
                                      overwrite=args.overwrite,
                                      progress=None if bar is None else (lambda k: bar.update(1)))
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {summary.n} utterances ({summary.seconds:.1f} s of audio at {args.sr} Hz, "
          f"{len(VOICES)} voices, seed {args.seed}) to {summary.path} in {summary.wall_seconds:.1f} s "
          f"({summary.speed:.0f} audio-s per s); layout: wavs/<id>.wav + metadata.csv")
    return 0


def _default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="build data sets locally (speech corpus)",
        description="Build data sets locally; nothing is downloaded.")
    sub = parser.add_subparsers(dest="data_command", metavar="DATASET")
    speech = sub.add_parser(
        "speech", help="synthesise an English speech corpus with espeak-ng (LJSpeech layout)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Synthesise N English sentences with espeak-ng (voices, pitch and speed varied "
                    "deterministically from the seed), resample, peak-normalise and write the LJSpeech "
                    "layout: DIR/wavs/<id>.wav (16-bit PCM mono) and DIR/metadata.csv "
                    "(id|text|normalized text).",
        epilog="Needs the espeak-ng program (apt-get install espeak-ng) and the audio extras "
               "(pip install 'holdsgm[audio]').\nExample: holdsgm data speech --out data/speech --n 200")
    speech.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    speech.add_argument("--n", required=True, type=int, metavar="N", help="number of utterances")
    speech.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    speech.add_argument("--sr", type=int, default=16000, help="sample rate in Hz (default 16000)")
    speech.add_argument("--jobs", type=int, default=_default_jobs(),
                        help="espeak-ng processes run at once (default: CPU count, at most 4)")
    speech.add_argument("--overwrite", action="store_true", help="replace an existing corpus in DIR")
    speech.add_argument("--quiet", action="store_true", help="no progress bar")
    speech.set_defaults(func=_speech)
    parser.set_defaults(func=lambda args: parser.print_help() or 1)
