"""``holdsgm vocode [RUN] (--wav IN.wav | --mel IN.npy) --out OUT.wav [--nfe K] [--sampler S] [--seed N]``:
turn a log-mel spectrogram into a waveform with a trained SDE vocoder (a speech run of ``holdsgm train``), or
with the default voice shipped with the package when no RUN is given.

With ``--wav`` the mel is computed from the file (:func:`holdsgm.audio.log_mel`, the run's features) and the
file is the reference of the figure (and of ``--metrics``); ``--mel`` reads an ``.npy`` array of shape
(n_mels, frames) or (1, n_mels, frames). The output has ``frames * hop`` samples at the run's sample rate.
NFE, sampler and grid default to the run's: a stage-two run uses the K it was fine-tuned for. Each sampler
step's data prediction goes through ``--project`` rounds (default 16) of the mel-consistency projection
(:func:`holdsgm.audio.mel_consistent`, GLA-Grad), which corrects its band energies to the input mel, and the
SDE's sample through ``--refine`` more (default 208; ``--refine 0`` alone: the SDE's sample as it is). A PNG
next to OUT.wav compares the reference and output spectrograms. A WAV of another rate is resampled and a
stereo one mixed down (each with a note); an output that would exceed full scale is scaled down, never
clipped (with a note). Bad input (a missing, corrupt or empty WAV, a clip shorter than two frames, a mel of
the wrong shape or with NaNs) is one line on stderr and exit status 2, and no output file is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import HelpFormatter, add_sampler_argument


def register(subparsers) -> None:
    from ..samplers import GRIDS

    p = subparsers.add_parser(
        "vocode", help="mel spectrogram -> waveform with a trained SDE vocoder",
        description="Vocode a log-mel spectrogram (from --wav or --mel) with a trained speech run and write "
                    "a WAV plus a spectrogram figure (OUT.png) comparing reference and output.",
        formatter_class=HelpFormatter)
    p.add_argument("run", metavar="RUN", nargs="?", default=None,
                   help="a trained vocoder run folder (or checkpoint folder); default: the shipped voice")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav", metavar="IN.wav", help="reference audio: its log-mel is vocoded")
    src.add_argument("--mel", metavar="IN.npy", help="a log-mel array (n_mels, frames) to vocode")
    p.add_argument("--out", required=True, metavar="OUT.wav", help="output WAV (16-bit PCM)")
    p.add_argument("--nfe", type=int, default=None,
                   help="score evaluations (default: the run's; a stage-two run's K)")
    add_sampler_argument(p, "the run's; a stage-two run's")
    p.add_argument("--grid", choices=GRIDS, default=None, help="time grid (default: the run's)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--refine", type=int, default=None, metavar="N",
                   help="rounds of the mel-consistency projection after the SDE (default 208; 0, without "
                        "--project: the SDE's sample as it is)")
    p.add_argument("--project", type=int, default=None, metavar="N",
                   help="rounds of the projection on every sampler step's data prediction (default 16; 0 when "
                        "--refine is 0)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="use the EMA weights (--no-ema: the raw weights)")
    p.add_argument("--figure", action=argparse.BooleanOptionalAction, default=True,
                   help="write OUT.png with the reference and output spectrograms")
    p.add_argument("--metrics", action="store_true",
                   help="with --wav: print PESQ, ESTOI, MR-STFT and MCD against the reference")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError

    if args.nfe is not None and args.nfe < 1:
        raise ConfigError(f"--nfe must be a positive integer, got {args.nfe}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if args.refine is not None and args.refine < 0:
        raise ConfigError(f"--refine must be >= 0, got {args.refine}")
    if args.project is not None and args.project < 0:
        raise ConfigError(f"--project must be >= 0, got {args.project}")
    if Path(args.out).suffix.lower() != ".wav":
        raise ConfigError(f"--out must name a .wav file, got {args.out}")
    if args.metrics and not args.wav:
        raise ConfigError("--metrics needs --wav (a reference)")
    from ..runs.loading import load_run
    from ..runs.vocoding import vocode_to_file

    if args.run is None:
        from ..runs.pretrained import DEFAULT_VOICE, load_pretrained

        if not args.ema:
            raise ConfigError("the shipped voice holds EMA weights only: drop --no-ema or give a RUN")
        run_ = load_pretrained(DEFAULT_VOICE, "vocoder", device=args.device)
        print(f"using the shipped voice {DEFAULT_VOICE!r} ({run_.path})", file=sys.stderr)
    else:
        run_ = load_run(args.run, which="ema" if args.ema else "model", device=args.device)
    r = vocode_to_file(run_, args.out, wav=args.wav, mel=args.mel, nfe=args.nfe, sampler=args.sampler,
                       grid=args.grid, seed=args.seed, figure=args.figure, metrics=args.metrics,
                       progress=not args.quiet and sys.stderr.isatty(), refine=args.refine,
                       project=args.project)
    print(f"wrote {r['out']} ({r['audio_seconds']:.2f} s at {r['sr']} Hz; NFE {r['nfe']}, {r['sampler']} on the "
          f"{r['grid']} grid, seed {r['seed']}, projection rounds {r['project']} per step + {r['refine']} after; "
          f"{r['seconds']:.2f} s, "
          f"RTF {r['rtf']:.3f})"
          + (f"; figure {r['figure']}" if r["figure"] else ""))
    for note in r["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if r["metrics"] is not None:
        print("  ".join(f"{k} {v:.3f}" for k, v in r["metrics"].items()))
    return 0
