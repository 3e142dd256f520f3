"""``holdsgm tts [RUN] (--text "..." | --text-file F) --out DIR_OR_WAV [--vocoder VRUN] [--nfe K] [--sampler S]
[--resgrad RUN]``: say a text with a trained text-to-speech run (``holdsgm train tts-hold``) and a vocoder, or
with the default voice shipped with the package when no RUN is given.

The text is normalised (numbers, currency, abbreviations), turned into espeak-ng phonemes and cut at sentence
boundaries when long; each part goes through the text encoder (mu_y for the predicted durations), the SDE
decoder (or ResGrad's refiner with ``--resgrad``; ``--nfe 0``: mu_y alone) and the vocoder, and the parts are
joined with a short pause. ``--out`` is a ``.wav`` file or a folder (then ``tts.wav`` in it); a figure
(mu_y, output mel, alignment) is written beside it. Characters the front end cannot speak are dropped with a
warning naming them. Bad input (empty text, only punctuation, a file that is not UTF-8, a vocoder of other
mel features) is one line on stderr and exit status 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import HelpFormatter, add_sampler_argument


def register(subparsers) -> None:
    from ..samplers import GRIDS

    p = subparsers.add_parser(
        "tts", help="text -> speech (WAV) with a trained text-to-speech model and a vocoder",
        description="Say a text with a text-to-speech run and a vocoder (default: the voice shipped with the "
                    "package) and write a WAV plus a figure (mu_y, output mel, alignment).",
        formatter_class=HelpFormatter)
    p.add_argument("run", metavar="RUN", nargs="?", default=None,
                   help="a trained text-to-speech run folder; default: the shipped voice")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to say")
    src.add_argument("--text-file", metavar="F", help="a UTF-8 text file to say")
    p.add_argument("--out", required=True, metavar="DIR_OR_WAV", help="output .wav, or a folder for tts.wav")
    p.add_argument("--vocoder", metavar="VRUN", default=None,
                   help="a trained vocoder run (default: the shipped voice's vocoder)")
    p.add_argument("--resgrad", metavar="RUN", default=None,
                   help="a ResGrad run: refine mu_y with it instead of the run's SDE decoder")
    p.add_argument("--nfe", type=int, default=None,
                   help="score evaluations of the decoder or ResGrad (default: the run's; 0: mu_y alone)")
    add_sampler_argument(p, "the run's")
    p.add_argument("--grid", choices=GRIDS, default=None, help="time grid (default: the run's)")
    p.add_argument("--vocoder-nfe", type=int, default=None, help="the vocoder's score evaluations (its default)")
    p.add_argument("--vocoder-refine", type=int, default=None, metavar="N",
                   help="rounds of the vocoder's mel-consistency projection after its sample (default 208, plus 16 on "
                        "each sampler step's prediction; 0: none)")
    p.add_argument("--length-scale", type=float, default=1.0, help="speaking slower (> 1) or faster (< 1)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="Grad-TTS's tau: the prior draw has variance 1/tau (> 1: smoother, less varied)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--figure", action=argparse.BooleanOptionalAction, default=True,
                   help="write OUT.png with mu_y, the output mel and the alignment")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _read_text(args) -> str:
    from ..errors import DataError

    if args.text is not None:
        return args.text
    f = Path(args.text_file)
    try:
        return f.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"{f}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{f} is a folder, not a text file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{f} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise DataError(f"cannot read {f}: {e.strerror or e}") from None


def run(args) -> int:
    from ..errors import ConfigError

    if args.nfe is not None and args.nfe < 0:
        raise ConfigError(f"--nfe must be >= 0, got {args.nfe}")
    if args.vocoder_nfe is not None and args.vocoder_nfe < 1:
        raise ConfigError(f"--vocoder-nfe must be a positive integer, got {args.vocoder_nfe}")
    if args.vocoder_refine is not None and args.vocoder_refine < 0:
        raise ConfigError(f"--vocoder-refine must be >= 0, got {args.vocoder_refine}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if not 0.25 <= args.length_scale <= 4:
        raise ConfigError(f"--length-scale must lie in [0.25, 4], got {args.length_scale}")
    if not 0.1 <= args.temperature <= 10:
        raise ConfigError(f"--temperature must lie in [0.1, 10], got {args.temperature}")
    out = Path(args.out)
    if out.suffix.lower() != ".wav":
        if out.suffix or out.is_file():
            raise ConfigError(f"--out must name a .wav file or a folder, got {out}")
        out = out / "tts.wav"
    text = _read_text(args)
    from ..audio import write_wav
    from ..runs.loading import load_run
    from ..runs.pretrained import DEFAULT_VOICE, load_pretrained
    from ..runs.tts import synthesize, tts_figure

    def shipped(part: str):
        r = load_pretrained(DEFAULT_VOICE, part, device=args.device)
        print(f"using the shipped voice {DEFAULT_VOICE!r}'s {part} ({r.path})", file=sys.stderr)
        return r

    tts_run = shipped("tts") if args.run is None else load_run(args.run, device=args.device)
    vocoder = shipped("vocoder") if args.vocoder is None else load_run(args.vocoder, device=args.device)
    resgrad = None if args.resgrad is None else load_run(args.resgrad, device=args.device)
    r = synthesize(tts_run, vocoder, text, nfe=args.nfe, sampler=args.sampler, grid=args.grid, resgrad=resgrad,
                   vocoder_nfe=args.vocoder_nfe, seed=args.seed, length_scale=args.length_scale,
                   temperature=args.temperature, vocoder_refine=args.vocoder_refine,
                   progress=not args.quiet and sys.stderr.isatty())
    write_wav(out, r["wave"], r["sr"])
    figure = None
    if args.figure:
        a = tts_run.dataset_info.speech
        figure = tts_figure(out.with_suffix(".png"), r["parts"][0], int(a["sr"]), int(a["hop"]),
                            title=f"{r['parts'][0]['text'][:80]}")
    nfe = r["parts"][0]["nfe"]
    how = "mu_y alone" if nfe == 0 else f"{'ResGrad' if resgrad is not None else 'decoder'} NFE {nfe}"
    print(f"wrote {out} ({r['audio_seconds']:.2f} s at {r['sr']} Hz, {len(r['parts'])} part(s); {how}, vocoder "
          f"NFE {r['parts'][0]['vocoder_nfe']}; {r['seconds']:.2f} s, RTF {r['rtf']:.3f})"
          + (f"; figure {figure}" if figure else ""))
    if r["gain"] != 1.0:
        print(f"note: scaled by {r['gain']:.3g} so that nothing clips", file=sys.stderr)
    return 0
