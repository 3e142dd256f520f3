"""Behaviour unchanged between two commits: run the same commands with both and compare their outputs bit
for bit.

    python benchmarks/compare_commits.py --before 801c1ef --after HEAD

Each commit is checked out into a temporary git worktree and its package is run from there
(``PYTHONPATH=<worktree>/src python -m holdsgm.cli.main ...``), one command at a time, with the same
environment (threads pinned), so the only difference is the code. What is compared:

* ``holdsgm demo`` (toy-hold, 5000 steps, 2000 samples, likelihood): every metric of ``metrics.json`` except
  wall times and paths, every logged loss, and the final model and EMA weights;
* ``holdsgm bench oracle --quick``: every row of ``oracle.json`` (wall times excluded);
* trained runs: toy-cld and toy-vp (300 steps), digits-hold (U-Net, 30 steps), a vocoder (DiffWave with
  PriorGrad, 6 steps) and its stage-two fine-tuning (3 steps): every step's loss and gradient norm, and the
  final weights;
* old checkpoints: a toy-cld run written by ``--before`` to step 150 is resumed by ``--after`` to step 300;
  its losses and weights must equal ``--after``'s uninterrupted run; and ``holdsgm sample`` of the
  ``--before`` run gives the same samples with either commit.

Prints one line per check and writes them to ``--json`` (default benchmarks/results/compare_commits.json).
Exit status 1 when any check differs. About 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
VOLATILE = {"figure", "run", "checkpoint", "command", "out", "path"}  # and wall times (keys with "seconds")


def volatile(key: str) -> bool:
    return key in VOLATILE or "seconds" in key


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


class Side:
    """One commit, checked out in a worktree, running the CLI in subprocesses."""

    def __init__(self, name: str, rev: str, root: Path):
        self.name, self.rev = name, git("rev-parse", rev)
        self.tree = root / f"tree-{name}"
        self.work = root / name
        self.work.mkdir()
        git("worktree", "add", "--detach", str(self.tree), self.rev)
        self.env = {**os.environ, "PYTHONPATH": str(self.tree / "src"), "OMP_NUM_THREADS": "2",
                    "MKL_NUM_THREADS": "2", "PYTHONHASHSEED": "0"}
        where = self.python("import holdsgm, sys; sys.stdout.write(holdsgm.__file__)")
        if not where.startswith(str(self.tree)):
            raise SystemExit(f"{name}: imported holdsgm from {where}, not from {self.tree}")

    def python(self, code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def cli(self, *args, cwd: Path | None = None) -> float:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "holdsgm.cli.main", *map(str, args)], env=self.env,
                           cwd=cwd or self.work, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{self.name} ({self.rev[:7]}): holdsgm {' '.join(map(str, args))} failed:\n"
                             f"{r.stderr[-2000:]}")
        return time.perf_counter() - t0

    def close(self) -> None:
        git("worktree", "remove", "--force", str(self.tree))


# --------------------------------------------------------------------------- comparisons
def same_json(a, b, path: str = "") -> list[str]:
    """Paths where two JSON documents differ (exact equality; NaN equals NaN), volatile keys skipped."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if volatile(k):
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k} (missing on one side)")
            else:
                out += same_json(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path} (lengths {len(a)} and {len(b)})"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in same_json(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def same_losses(a: Path, b: Path, first_step: int = 0) -> tuple[list[str], int]:
    ra = [r for r in stats(a) if r["step"] > first_step]
    rb = [r for r in stats(b) if r["step"] > first_step]
    diffs = []
    if [r["step"] for r in ra] != [r["step"] for r in rb]:
        return ["logged steps differ"], 0
    for x, y in zip(ra, rb):
        for k in ("loss", "grad_norm", "lr"):
            if x[k] != y[k]:
                diffs.append(f"step {x['step']} {k}: {x[k]!r} vs {y[k]!r}")
    return diffs, len(ra)


def newest_checkpoint(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("ckpt-*"))[-1]


def same_weights(a: Path, b: Path) -> list[str]:
    diffs = []
    for f in ("model.safetensors", "ema.safetensors"):
        wa, wb = load_file(newest_checkpoint(a) / f), load_file(newest_checkpoint(b) / f)
        if set(wa) != set(wb):
            diffs.append(f"{f}: different tensor names")
            continue
        diffs += [f"{f}:{k}" for k in sorted(wa) if not torch.equal(wa[k], wb[k])]
    return diffs


def same_npz(a: Path, b: Path) -> list[str]:
    za, zb = np.load(a), np.load(b)
    if set(za.files) != set(zb.files):
        return ["different arrays"]
    return [k for k in za.files if not np.array_equal(za[k], zb[k])]


# --------------------------------------------------------------------------- the checks
TOY = ["--set", "train.log_every=1", "--set", "train.tensorboard=false", "--quiet"]
VOCODER = ["model.residual_channels=8", "model.layers=4", "model.dilation_cycle=4", "model.cond_channels=4",
           "model.emb_dim=32", "data.segment_frames=8", "train.batch_size=4", "train.log_every=1",
           "train.warmup_steps=1", "train.tensorboard=false"]


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def run_checks(before: Side, after: Side, report) -> None:
    sides = (before, after)

    for s in sides:
        s.cli("demo", "--out", s.work / "demo")
    a, b = before.work / "demo", after.work / "demo"
    diffs = same_json(json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text()))
    m = json.loads((b / "metrics.json").read_text())
    report("demo: metrics.json", diffs, f"mode_w2 {m['mode_w2']:.6f}, w2 {m['w2']:.6f}, nll {m['nll']:.6f}")
    d, n = same_losses(a / "run", b / "run")
    report("demo: training losses", d, f"{n} logged steps")
    report("demo: final model and EMA weights", same_weights(a / "run", b / "run"), "every tensor")

    for s in sides:
        s.cli("bench", "oracle", "--quick", "--out", s.work / "bench", "--quiet")
    ja = json.loads((before.work / "bench" / "oracle.json").read_text())
    jb = json.loads((after.work / "bench" / "oracle.json").read_text())
    report("bench oracle --quick: rows", same_json(ja, jb), f"{len(jb['rows'])} rows")

    for preset, steps in (("toy-cld", 300), ("toy-vp", 300), ("digits-hold", 30)):
        for s in sides:
            s.cli("train", REPO / "configs" / f"{preset}.yaml", "--out", s.work / preset,
                  "--set", f"train.steps={steps}", "--set", f"train.ckpt_every={steps}", *TOY)
        d, n = same_losses(before.work / preset, after.work / preset)
        report(f"train {preset}: losses, gradient norms", d, f"{n} steps")
        report(f"train {preset}: final weights", same_weights(before.work / preset, after.work / preset), "")

    corpus = before.work.parent / "corpus"
    after.cli("data", "speech", "--out", corpus, "--n", 6, "--seed", 7, "--jobs", 2, "--quiet")
    for s in sides:
        s.cli("train", "vocoder-hold", "--out", s.work / "voc", *sets([*VOCODER, f"data.path={corpus}",
                                                                        "train.steps=6", "train.ckpt_every=6"]),
              "--quiet")
        s.cli("train", "vocoder-hold-stage2", "--out", s.work / "voc-s2",
              *sets([*VOCODER, f"data.path={corpus}", "train.steps=3", "train.ckpt_every=3",
                     f"stage2.init={s.work / 'voc'}"]), "--quiet")
    for run in ("voc", "voc-s2"):
        what = "vocoder-hold" if run == "voc" else "vocoder-hold-stage2"
        d, n = same_losses(before.work / run, after.work / run)
        report(f"train {what}: losses, gradient norms", d, f"{n} steps")
        report(f"train {what}: final weights", same_weights(before.work / run, after.work / run), "")

    old, full = before.work / "resume", after.work / "resume-full"
    before.cli("train", REPO / "configs" / "toy-cld.yaml", "--out", old, "--set", "train.steps=150",
               "--set", "train.ckpt_every=150", *TOY)
    for s in sides:
        s.cli("sample", old, "--out", s.work / "old-samples", "--n", 500, "--seed", 3, "--quiet")
    report("sample a --before run", same_npz(before.work / "old-samples" / "samples.npz",
                                             after.work / "old-samples" / "samples.npz"), "500 samples")
    resumed = after.work / "resume"
    shutil.copytree(old, resumed)
    after.cli("train", REPO / "configs" / "toy-cld.yaml", "--out", resumed, "--set", "train.steps=300",
              "--set", "train.ckpt_every=150", *TOY)
    after.cli("train", REPO / "configs" / "toy-cld.yaml", "--out", full, "--set", "train.steps=300",
              "--set", "train.ckpt_every=150", *TOY)
    d, n = same_losses(resumed, full, first_step=150)
    report("resume a --before checkpoint with --after: losses", d, f"steps 151-300 vs uninterrupted ({n})")
    report("resume a --before checkpoint with --after: weights", same_weights(resumed, full), "step 300")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="801c1ef", help="the older commit (default: 801c1ef, before the layering)")
    ap.add_argument("--after", default="HEAD", help="the newer commit (default: HEAD)")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "compare_commits.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (runs, outputs)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="holdsgm-compare-"))
    rows, t0 = [], time.perf_counter()

    def report(what: str, diffs: list[str], note: str) -> None:
        ok = not diffs
        rows.append({"check": what, "identical": ok, "note": note, "differences": diffs[:10]})
        print(f"{'identical' if ok else 'DIFFERENT':9s}  {what}" + (f"  ({note})" if note else ""), flush=True)
        for d in diffs[:5]:
            print(f"           {d}", flush=True)

    sides = []
    try:
        sides = [Side("before", args.before, root), Side("after", args.after, root)]
        print(f"before {sides[0].rev[:10]}, after {sides[1].rev[:10]}; work in {root}", flush=True)
        run_checks(*sides, report)
    finally:
        for s in sides:
            s.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    doc = {"command": "python benchmarks/compare_commits.py " + " ".join(sys.argv[1:]),
           "before": sides[0].rev, "after": sides[1].rev, "machine": f"{platform.machine()}, "
           f"{os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}",
           "threads": 2, "seconds": round(time.perf_counter() - t0, 1), "checks": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    bad = [r for r in rows if not r["identical"]]
    print(f"{len(rows) - len(bad)}/{len(rows)} checks identical ({doc['seconds']:.0f} s); wrote {args.json}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
