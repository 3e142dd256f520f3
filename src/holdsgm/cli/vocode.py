"""``holdsgm vocode RUN (--wav IN.wav | --mel IN.npy) --out OUT.wav [--nfe K] [--sampler S] [--seed N]``:
turn a log-mel spectrogram into a waveform with a trained SDE vocoder (a speech run of ``holdsgm train``).

With ``--wav`` the mel is computed from the file (:func:`holdsgm.audio.log_mel`, the run's features) and the
file is the reference of the figure (and of ``--metrics``); ``--mel`` reads an ``.npy`` array of shape
(n_mels, frames) or (1, n_mels, frames). The output has ``frames * hop`` samples at the run's sample rate.
NFE, sampler and grid default to the run's: a stage-two run uses the K it was fine-tuned for. A PNG
next to OUT.wav compares the reference and output spectrograms.
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
    p.add_argument("run", metavar="RUN", help="a trained vocoder run folder (or checkpoint folder)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav", metavar="IN.wav", help="reference audio: its log-mel is vocoded")
    src.add_argument("--mel", metavar="IN.npy", help="a log-mel array (n_mels, frames) to vocode")
    p.add_argument("--out", required=True, metavar="OUT.wav", help="output WAV (16-bit PCM)")
    p.add_argument("--nfe", type=int, default=None,
                   help="score evaluations (default: the run's; a stage-two run's K)")
    add_sampler_argument(p, "the run's; a stage-two run's")
    p.add_argument("--grid", choices=GRIDS, default=None, help="time grid (default: the run's)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="use the EMA weights (--no-ema: the raw weights)")
    p.add_argument("--figure", action=argparse.BooleanOptionalAction, default=True,
                   help="write OUT.png with the reference and output spectrograms")
    p.add_argument("--metrics", action="store_true",
                   help="with --wav: print PESQ, ESTOI, MR-STFT and MCD against the reference")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _load_mel(path: str, n_mels: int):
    import numpy as np
    import torch

    from ..errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"mel file {p} does not exist")
    try:
        a = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {p} as a .npy array: {' '.join(str(e).split())}") from None
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.shape[0] != n_mels or not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{p}: expected a float log-mel of shape ({n_mels}, frames), got {a.dtype} {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def run(args) -> int:
    from ..errors import ConfigError

    if args.nfe is not None and args.nfe < 1:
        raise ConfigError(f"--nfe must be a positive integer, got {args.nfe}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    out = Path(args.out)
    if out.suffix.lower() != ".wav":
        raise ConfigError(f"--out must name a .wav file, got {out}")

    from ..audio import log_mel, read_wav, spectrogram_figure, write_wav
    from ..runs.inference import vocode
    from ..runs.loading import load_run

    run_ = load_run(args.run, which="ema" if args.ema else "model", device=args.device)
    info = run_.dataset_info
    if not info.is_speech:
        raise ConfigError(f"{args.run} is not a vocoder run (trained on {info.name!r}, not speech)")
    a = info.speech
    sr, hop = int(a["sr"]), int(a["hop"])
    ref = None
    if args.wav:
        ref = read_wav(args.wav, sr)
        if len(ref) < hop:
            raise ConfigError(f"{args.wav} is shorter than one frame ({hop} samples)")
        ref = ref[: len(ref) // hop * hop]
        mel = log_mel(ref, sr, a["n_fft"], hop, a["n_mels"], a["fmin"], a["fmax"])
    else:
        mel = _load_mel(args.mel, int(a["n_mels"]))
    res = vocode(run_, mel, nfe=args.nfe, sampler=args.sampler, grid=args.grid, seed=args.seed,
                 progress=not args.quiet and sys.stderr.isatty())
    write_wav(out, res.wave, sr)
    line = (f"wrote {out} ({res.wave.numel() / sr:.2f} s at {sr} Hz; NFE {res.nfe}, {res.sampler} on the "
            f"{res.grid} grid, seed {res.seed}; {res.seconds:.2f} s, RTF {res.rtf:.3f})")
    if args.figure:
        out_mel = log_mel(res.wave, sr, a["n_fft"], hop, a["n_mels"], a["fmin"], a["fmax"])
        label = "reference (from --wav)" if ref is not None else "input mel (--mel)"
        fig = spectrogram_figure(out.with_suffix(".png"), {label: mel, f"vocoded, NFE {res.nfe}": out_mel},
                                 sr, hop, title=f"{Path(args.run).name}: {res.sampler}, NFE {res.nfe}")
        line += f"; figure {fig}"
    print(line)
    if args.metrics:
        if ref is None:
            raise ConfigError("--metrics needs --wav (a reference)")
        from ..audio import utterance_metrics

        m = utterance_metrics(ref, res.wave, sr)
        print("  ".join(f"{k} {v:.3f}" for k, v in m.items() if k != "seconds"))
    return 0
