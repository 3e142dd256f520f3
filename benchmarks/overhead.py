"""How much does holdsgm add around the network? (issue #3's leanness targets)

* Sampling: wall time of ``holdsgm.samplers.sample`` at a given NFE vs NFE x one bare network forward at the
  same batch size (target <= 1.10x), with batch noise (one generator) and with per-sample seeds (EDM-style,
  what ``holdsgm sample`` uses).
* Training: one ``Trainer.train_step`` (data, times/noise draw, HSM loss with the SDE kernel, backward,
  clipping, AdamW, EMA, the NaN check) vs the network's bare forward+backward on a batch of the same shape
  (target <= 1.15x), plus the breakdown of the extra time.

Networks: the toy MLP (toy-hold.yaml; training at its batch 512 and at 2048, sampling at batch 2000, 1000
with --quick) and the digits U-Net (digits-hold.yaml; training at 128, sampling at 500, 200 with --quick),
HOLD (n = 3). Each ratio is the median over back-to-back pairs (library, bare network) timed alternately,
so that drifts of a shared machine affect both sides alike; the ratio of the fastest of each is given
beside it. Run on a quiet machine all the same.

    OMP_NUM_THREADS=2 python benchmarks/overhead.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from holdsgm.engine import adamw
from holdsgm.losses import EpsModel, hsm_loss
from holdsgm.plotting import pyplot, save_figure
from holdsgm.runs import load_config
from holdsgm.runs import make_engine as Trainer  # noqa: N812
from holdsgm.samplers import sample
from holdsgm.tasks.hsm import TIME_BLOCK

REPO = Path(__file__).resolve().parents[1]


def timeit(fn, repeats: int, inner: int = 1) -> float:
    """Fastest seconds per call over ``repeats`` blocks of ``inner`` calls (after a warm-up block)."""
    for _ in range(inner):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return min(times)


def paired(fn, ref, repeats: int, inner: int = 1) -> dict:
    """Time ``fn`` and ``ref`` in alternating blocks of ``inner`` calls and return the median of the
    per-pair ratios fn / ref (and each one's median seconds per call).

    Pairs taken back to back see the same machine state, so slow drifts and other processes on a shared
    machine affect both sides of a ratio alike; the median ignores the odd disturbed pair.
    """
    fn(), ref()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        for f, out in ((fn, a), (ref, b)):
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            out.append((time.perf_counter() - t0) / inner)
    return {
        "seconds": statistics.median(a),
        "ref_seconds": statistics.median(b),
        "ratio": statistics.median(x / y for x, y in zip(a, b)),
        "ratio_min": min(a) / min(b),
    }


def _perturb(net, scale=0.05):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


class _Recorder(torch.nn.Module):
    """Passes calls through to ``net`` and keeps a copy of every input (to replay them bare)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.inputs = net, []

    def forward(self, u, t):
        self.inputs.append((u.clone(), t.clone()))
        return self.net(u, t)


def sampling_rows(name: str, config, batch: int, nfes, samplers, repeats: int) -> list[dict]:
    """Sampler wall time vs NFE bare forwards of the same network at the same batch size.

    The bare forwards replay the very inputs the sampler gave the network (recorded in a first run): the
    network's own speed depends on its inputs (the toy MLP's forward is ~7 % slower on a sampler's states
    than on standard normal ones, measured), which is not the library's overhead. The ratio against
    forwards on a fixed standard normal state is reported too (``ratio_random``).
    """
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(config, d, verbose=False)
        net, sde = _perturb(trainer.net).eval(), trainer.task.sde
        trainer.close()
    em = EpsModel(net, sde)
    shape = (batch, *config_shape(config))
    u = torch.randn(sde.state_shape(shape))
    t = torch.full((batch,), 0.5)
    rows = []
    with torch.no_grad():
        for sampler in samplers:
            for nfe in nfes:
                for noise_kind in ("batch", "per-sample"):
                    noise = (lambda: 0) if noise_kind == "batch" else (lambda: list(range(batch)))
                    rec = _Recorder(net)
                    evals = sample(EpsModel(rec, sde), sde, shape, sampler=sampler, nfe=nfe, noise=noise()).nfe

                    def replay(inputs=rec.inputs):
                        for x in inputs:
                            net(*x)

                    def fixed(k=evals):
                        for _ in range(k):
                            net(u, t)

                    def run(s=sampler, k=nfe, z=noise):
                        sample(em, sde, shape, sampler=s, nfe=k, noise=z())

                    res = paired(run, replay, repeats)
                    res_fixed = paired(run, fixed, max(3, repeats // 2))
                    rows.append({"model": name, "batch": batch, "sampler": sampler, "nfe": evals,
                                 "noise": noise_kind, "seconds": res["seconds"],
                                 "forward_seconds": res["ref_seconds"] / evals, "ratio": res["ratio"],
                                 "ratio_min": res["ratio_min"],
                                 "forward_seconds_random": res_fixed["ref_seconds"] / evals,
                                 "ratio_random": res_fixed["ratio"]})
    return rows


def config_shape(config):
    from holdsgm.runs.build import dataset_info, load_split

    return dataset_info(config, load_split(config.data, "train")).data_shape


def training_row(name: str, config, repeats: int, inner: int) -> dict:
    """A trainer step vs the bare forward + backward of the same network on a batch of the same shape,
    plus the parts of the difference."""
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(config, d, verbose=False)
        sde = trainer.task.sde
        # the bare side runs a copy of the network: its zero_grad(set_to_none=True) on the trainer's own
        # parameters would make every trainer step after it re-bind the flat gradient buffer's views, a
        # cost that training never pays
        net = copy.deepcopy(trainer.net)
        b = config.train.batch_size
        shape = (b, *trainer.task.x.shape[1:])
        u = torch.randn(sde.state_shape(shape))
        t = torch.rand(b)

        def fwd_bwd():
            net.zero_grad(set_to_none=True)
            net(u, t).square().mean().backward()

        opt = adamw(list(net.parameters()), config.train)  # the trainer's optimizer (fused where available)

        def fwd_bwd_adam():
            fwd_bwd()
            opt.step()

        x0 = trainer.task.x[:b]
        tt = torch.rand(b, dtype=torch.float64) * (sde.T - sde.eps) + sde.eps

        def loss_fwd_bwd():
            net.zero_grad(set_to_none=True)
            hsm_loss(EpsModel(net, sde).eps, sde, x0, t=tt).mean().backward()

        trainer.step = 0
        res = paired(trainer.train_step, fwd_bwd, repeats, inner)
        rows = max(1, TIME_BLOCK // b)

        def times_kernels():  # a whole number of blocks: the block's kernels, per step
            trainer.task.draws._block = None
            for step in range(2 * rows):
                trainer.task.draws.times(step)

        parts = {
            "fwd_bwd_adam": timeit(fwd_bwd_adam, 3, inner),
            "loss_fwd_bwd": timeit(loss_fwd_bwd, 3, inner),
            "kernel": timeit(lambda: sde.marginal(tt), 3, inner),
            "times_kernels": timeit(times_kernels, 3) / (2 * rows),
            "ema": timeit(lambda: trainer.ema.update(10**6), 3, inner),
            "draw": timeit(lambda: (trainer.task.draws.noise(trainer.task.state_shape), trainer.task.draws.times(0)),
                           3, inner),
        }
        trainer.close()
    return {"model": name, "batch": b, "params": sum(p.numel() for p in net.parameters()),
            "train_step": res["seconds"], "fwd_bwd": res["ref_seconds"], "ratio_vs_fwd_bwd": res["ratio"],
            "ratio_min": res["ratio_min"], **parts}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and settings (a smoke test)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for JSON and PNG")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repeats = 5 if args.quick else 11
    base = ["train.tensorboard=false"]
    toy = load_config(REPO / "configs" / "toy-hold.yaml", base)
    toy_big = load_config(REPO / "configs" / "toy-hold.yaml", base + ["train.batch_size=2048"])
    digits = load_config(REPO / "configs" / "digits-hold.yaml", base)

    train_rows = [
        training_row("toy MLP", toy, repeats, 5 if args.quick else 10),
        training_row("toy MLP", toy_big, repeats, 2 if args.quick else 5),
        training_row("digits U-Net", digits, repeats, 1 if args.quick else 2),
    ]
    nfes = (10, 50) if args.quick else (10, 50, 100)
    samplers = ("em", "sscs") if args.quick else ("em", "sscs", "heun")
    samp_rows = sampling_rows("toy MLP", toy, 2000 if not args.quick else 1000, nfes, samplers, repeats)
    samp_rows += sampling_rows(
        "digits U-Net",
        digits,
        500 if not args.quick else 200,
        nfes[:1],
        samplers[:2],
        3 if args.quick else 5,
    )

    print(f"threads: {torch.get_num_threads()}; ratios: median of {repeats} back-to-back pairs "
          f"(in brackets: fastest / fastest)\n")
    print("| model | batch | params | fwd+bwd ms | train step ms | step / fwd+bwd | fwd+bwd+AdamW ms "
          "| HSM loss fwd+bwd ms | one batch's kernels ms | times + kernels per step ms | EMA ms | draw ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in train_rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['params']:,} | {1e3 * r['fwd_bwd']:.2f} | "
            f"{1e3 * r['train_step']:.2f} | {r['ratio_vs_fwd_bwd']:.3f} ({r['ratio_min']:.3f}) | "
            f"{1e3 * r['fwd_bwd_adam']:.2f} | {1e3 * r['loss_fwd_bwd']:.2f} | "
            f"{1e3 * r['kernel']:.2f} | {1e3 * r['times_kernels']:.2f} | {1e3 * r['ema']:.2f} | "
            f"{1e3 * r['draw']:.2f} |"
        )
    print("\n| model | batch | sampler | NFE | noise | seconds | NFE x forward | ratio "
          "| NFE x forward on N(0, I) | ratio to that |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in samp_rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['sampler']} | {r['nfe']} | {r['noise']} | "
            f"{r['seconds']:.3f} | {r['nfe'] * r['forward_seconds']:.3f} | "
            f"{r['ratio']:.3f} ({r['ratio_min']:.3f}) | {r['nfe'] * r['forward_seconds_random']:.3f} | "
            f"{r['ratio_random']:.3f} |"
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
    names = [f"{r['model']}\nbatch {r['batch']}" for r in train_rows]
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
    ax.set_title("sampling / (NFE x bare forward)\norange: batch noise, green: per-sample seeds", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, tight=False)


if __name__ == "__main__":
    sys.exit(main())
