"""How much does holdsgm add around the network? (issue #3's leanness targets)

* Sampling: wall time of ``holdsgm.samplers.sample`` at a given NFE vs NFE x one bare network forward at the
  same batch size (target <= 1.10x), with batch noise (one generator) and with per-sample seeds (EDM-style,
  what ``holdsgm sample`` uses).
* Training: one ``Trainer.train_step`` (data, times/noise draw, HSM loss with the SDE kernel, backward,
  clipping, AdamW, EMA, the NaN check) vs the network's bare forward+backward on a batch of the same shape
  (target <= 1.15x), plus the breakdown of the extra time.

Networks: the toy MLP (toy-hold.yaml, batch 512 / 2000) and the digits U-Net (digits-hold.yaml, 128 / 500),
HOLD (n = 3). Times are the fastest of repeated blocks; run on a quiet machine (other processes skew them).

    OMP_NUM_THREADS=2 python benchmarks/overhead.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from holdsgm.losses import EpsModel, hsm_loss
from holdsgm.plotting import pyplot, save_figure
from holdsgm.samplers import sample
from holdsgm.train import load_config
from holdsgm.train.trainer import Trainer, _adamw

REPO = Path(__file__).resolve().parents[1]


def timeit(fn, repeats: int, inner: int = 1) -> float:
    """Fastest seconds per call over ``repeats`` blocks of ``inner`` calls (after a warm-up block); the
    minimum is the least disturbed by other processes on a shared machine."""
    for _ in range(inner):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return min(times)


def _perturb(net, scale=0.05):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


def sampling_rows(name: str, config, batch: int, nfes, samplers, repeats: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(config, d, verbose=False)
        net, sde = _perturb(trainer.net).eval(), trainer.sde
        trainer.close()
    em = EpsModel(net, sde)
    shape = (batch, *config_shape(config))
    u = torch.randn(sde.state_shape(shape))
    t = torch.full((batch,), 0.5)
    with torch.no_grad():
        fwd = timeit(lambda: net(u, t), repeats, inner=3)
        score = timeit(
            lambda: em.score(u, torch.full((batch,), 0.5 * sde.T, dtype=torch.float64)), repeats, 3
        )
    rows = []
    for sampler in samplers:
        for nfe in nfes:
            for noise_kind in ("batch", "per-sample"):
                noise = (lambda: 0) if noise_kind == "batch" else (lambda: list(range(batch)))
                with torch.no_grad():
                    secs = timeit(
                        lambda s=sampler, k=nfe, z=noise: sample(em, sde, shape, sampler=s, nfe=k, noise=z()),
                        max(1, repeats // 2),
                    )
                    # the bare forward again beside each row: the fastest of all its measurements is the
                    # least disturbed (a shared machine once made one early measurement 2x slow)
                    fwd = min(fwd, timeit(lambda: net(u, t), repeats, inner=3))
                rows.append(
                    {
                        "model": name,
                        "batch": batch,
                        "sampler": sampler,
                        "nfe": nfe,
                        "noise": noise_kind,
                        "seconds": secs,
                        "forward_seconds": fwd,
                        "score_seconds": score,
                    }
                )
    for r in rows:
        r["forward_seconds"] = fwd
        r["ratio"] = r["seconds"] / (r["nfe"] * fwd)
    return rows


def config_shape(config):
    from holdsgm.train.builders import dataset_info, load_split

    return dataset_info(config, load_split(config.data, "train")).data_shape


def training_row(name: str, config, repeats: int, inner: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(config, d, verbose=False)
        net, sde = trainer.net, trainer.sde
        b = config.train.batch_size
        shape = (b, *trainer.info.data_shape)
        u = torch.randn(sde.state_shape(shape))
        t = torch.rand(b)

        def fwd_bwd():
            net.zero_grad(set_to_none=True)
            net(u, t).square().mean().backward()

        opt = _adamw(list(net.parameters()), config.train)  # the trainer's optimizer (fused where available)

        def fwd_bwd_adam():
            fwd_bwd()
            opt.step()

        x0 = trainer.train_x[:b]
        tt = torch.rand(b, dtype=torch.float64) * (sde.T - sde.eps) + sde.eps

        def kernel():
            sde.marginal(tt)

        def loss_fwd_bwd():
            net.zero_grad(set_to_none=True)
            hsm_loss(EpsModel(net, sde).eps, sde, x0, t=tt).mean().backward()

        res = {
            "model": name,
            "batch": b,
            "params": sum(p.numel() for p in net.parameters()),
            "fwd_bwd": timeit(fwd_bwd, repeats, inner),
            "fwd_bwd_adam": timeit(fwd_bwd_adam, repeats, inner),
            "kernel": timeit(kernel, repeats, inner),
            "loss_fwd_bwd": timeit(loss_fwd_bwd, repeats, inner),
            "ema": timeit(lambda: trainer.ema.update(10**6), repeats, inner),
            "draw": timeit(trainer._draw, repeats, inner),
        }
        trainer.step = 0
        res["train_step"] = timeit(trainer.train_step, repeats, inner)
        res["fwd_bwd"] = min(res["fwd_bwd"], timeit(fwd_bwd, repeats, inner))  # again: the least disturbed
        trainer.close()
    res["ratio_vs_fwd_bwd"] = res["train_step"] / res["fwd_bwd"]
    res["ratio_vs_fwd_bwd_adam"] = res["train_step"] / res["fwd_bwd_adam"]
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and settings (a smoke test)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for JSON and PNG")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repeats = 3 if args.quick else 7
    base = ["train.tensorboard=false"]
    toy = load_config(REPO / "configs" / "toy-hold.yaml", base)
    digits = load_config(REPO / "configs" / "digits-hold.yaml", base)

    train_rows = [
        training_row("toy MLP", toy, repeats, 5 if args.quick else 20),
        training_row("digits U-Net", digits, repeats, 2 if args.quick else 5),
    ]
    nfes = (10, 50) if args.quick else (10, 50, 100)
    samplers = ("em", "sscs") if args.quick else ("em", "sscs", "heun")
    samp_rows = sampling_rows("toy MLP", toy, 2000 if not args.quick else 1000, nfes, samplers, repeats)
    samp_rows += sampling_rows(
        "digits U-Net",
        digits,
        500 if not args.quick else 200,
        nfes[:1] if args.quick else nfes,
        samplers[:2],
        repeats,
    )

    print(f"threads: {torch.get_num_threads()}\n")
    print(
        "| model | batch | params | fwd+bwd ms | +AdamW ms | train step ms | step / fwd+bwd "
        "| step / (fwd+bwd+AdamW) "
        "| kernel ms | EMA ms | draw ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in train_rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['params']:,} | {1e3 * r['fwd_bwd']:.2f} | "
            f"{1e3 * r['fwd_bwd_adam']:.2f} | {1e3 * r['train_step']:.2f} | {r['ratio_vs_fwd_bwd']:.2f}x | "
            f"{r['ratio_vs_fwd_bwd_adam']:.2f}x | "
            f"{1e3 * r['kernel']:.2f} | {1e3 * r['ema']:.2f} | {1e3 * r['draw']:.2f} |"
        )
    print("\n| model | batch | sampler | NFE | noise | seconds | NFE x forward | ratio | score() / forward |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in samp_rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['sampler']} | {r['nfe']} | {r['noise']} | "
            f"{r['seconds']:.3f} | "
            f"{r['nfe'] * r['forward_seconds']:.3f} | {r['ratio']:.2f}x | "
            f"{r['score_seconds'] / r['forward_seconds']:.2f}x |"
        )

    result = {
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "training": train_rows,
        "sampling": samp_rows,
        "targets": {"sampling_ratio": 1.10, "training_ratio": 1.15},
    }
    (out / "overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(train_rows, samp_rows, out / "overhead.png")
    print(f"\nwrote {out / 'overhead.json'} and {out / 'overhead.png'}")
    return 0


def _plot(train_rows, samp_rows, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    names = [r["model"] for r in train_rows]
    ax.bar(names, [r["ratio_vs_fwd_bwd"] for r in train_rows], color="C0", label="step / fwd+bwd")
    ax.axhline(1.15, color="k", ls="--", lw=1, label="target 1.15x")
    ax.set_ylabel("time ratio")
    ax.set_title("training step vs bare forward+backward")
    ax.legend(fontsize=8)
    ax = axes[1]
    labels = [f"{r['model'].split()[0]} {r['sampler']} {r['nfe']} {r['noise'][:5]}" for r in samp_rows]
    ax.bar(
        range(len(samp_rows)),
        [r["ratio"] for r in samp_rows],
        color=["C1" if r["noise"] == "batch" else "C2" for r in samp_rows],
    )
    ax.axhline(1.10, color="k", ls="--", lw=1, label="target 1.10x")
    ax.set_xticks(range(len(samp_rows)))
    ax.set_xticklabels(labels, rotation=70, fontsize=7)
    ax.set_title("sampling vs NFE x bare forward (orange: batch noise, green: per-sample)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, tight=False)


if __name__ == "__main__":
    sys.exit(main())
