"""How much a frame-domain vocoder has learned beyond its spectral prior (benchmarks/README.md section 4b).

For held-out utterances, perturb the whitened MDCT coefficients x0 to u_t (noise seed 0) at several times
and compare the RMSE of two data predictions E[x0 | u_t]: the network's, and the Gaussian posterior mean
that the spectral prior alone gives (the mixed score's Gaussian part with the data's variance, i.e. a
network that adds nothing). A vocoder that only reproduces the prior's envelope-shaped noise scores the
same as the Gaussian.

    python benchmarks/vocoder_denoise.py RUN [RUN ...] [--corpus data/speech] [--ids SP000-00010 ...]
"""

from __future__ import annotations

import argparse
import sys

import torch

from holdsgm.audio import log_mel, read_wav
from holdsgm.losses import EpsModel
from holdsgm.runs import load_run
from holdsgm.sde.posterior import posterior_mean

TIMES = (0.02, 0.1, 0.3, 0.6, 0.9, 1.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--corpus", default="data/speech")
    p.add_argument("--ids", nargs="+", default=["SP000-00010", "SP000-00011", "SP000-00012"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| run | " + " | ".join(f"t/T = {t}" for t in TIMES) + " |")
    print("|---|" + "---|" * len(TIMES))
    gauss_row = None
    for path in args.runs:
        run = load_run(path)
        sde, em = run.sde, run.eps_model
        coords = em.net.coords
        gauss = EpsModel(lambda u, t, y=None, m=coords.hop: torch.zeros(u.shape[0], m, u.shape[-1]), sde, mixed=True,
                         data_var=run.dataset_info.data_var)
        err_net = dict.fromkeys(TIMES, 0.0)
        err_gauss = dict.fromkeys(TIMES, 0.0)
        for uid in args.ids:
            w = read_wav(f"{args.corpus}/wavs/{uid}.wav")
            w = w[: len(w) // coords.hop * coords.hop]
            mel = log_mel(w)[None]
            x0 = coords.encode(w[None, None], mel)
            g = torch.Generator().manual_seed(0)
            for tf in TIMES:
                t = torch.full((1,), tf * sde.T, dtype=torch.float64)
                u = sde.perturb(x0, t, torch.randn(sde.state_shape(x0.shape), generator=g))
                with torch.no_grad():
                    for score, acc in ((em.score(u, t, mel), err_net), (gauss.score(u, t, mel), err_gauss)):
                        acc[tf] += float((posterior_mean(sde, u, t, score) - x0).square().mean().sqrt()) / len(args.ids)
        print(f"| {path} (step {run.step}) | " + " | ".join(f"{err_net[t]:.3f}" for t in TIMES) + " |")
        gauss_row = " | ".join(f"{err_gauss[t]:.3f}" for t in TIMES)
    print(f"| spectral prior alone (Gaussian) | {gauss_row} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
