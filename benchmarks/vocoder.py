"""SDE vocoder benchmark (issue #5): Griffin-Lim vs the HOLD and VP vocoders, before and after stage two.

On the held-out split of the built-in espeak-ng corpus (``holdsgm data speech``; 300 utterances, seed 0,
10 % held out by id): PESQ (wide band), ESTOI, MR-STFT distance, mel-cepstral distortion and the real-time
factor (compute seconds per audio second, warm: the sampler's one-time coefficient plan is computed on a
warm-up call first) of

* Griffin-Lim (librosa, 32 iterations, momentum 0.99) on the same log-mel;
* the HOLD and VP vocoders (configs/vocoder-{hold,vp}.yaml, the same network, data, steps and seed) at NFE
  1, 2, 6 and 50, before (stage one, HSM) and after stage two (configs/vocoder-*-stage2.yaml, K = 2);
  every row uses the stage-two sampler (exp1, the SDE's grid) so that only the weights differ;

with the training budget (steps, minutes) of each row. Trainings are run (or resumed, or skipped when
complete) in ``--runs``; results go to ``--out`` (JSON + markdown table) and audio samples of the first
held-out utterance to ``--audio``.

    OMP_NUM_THREADS=2 python benchmarks/vocoder.py [--quick] [--threads 2]

--quick: 8 + 4 training steps, 2 utterances, NFE 1 and 2 (a smoke test of the script only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from holdsgm.audio import aggregate_metrics, build_speech_corpus, griffin_lim, log_mel, utterance_metrics, write_wav
from holdsgm.engine import load_checkpoint
from holdsgm.runs import load_config, load_run, vocode
from holdsgm.runs import train as train_run
from holdsgm.runs.build import load_split

REPO = Path(__file__).resolve().parents[1]
METRICS = ("pesq", "estoi", "mrstft", "mcd", "rtf")
BETTER = {"pesq": "higher", "estoi": "higher", "mrstft": "lower", "mcd": "lower", "rtf": "lower"}


def _train(name: str, preset: str, run_dir: Path, overrides: list[str]) -> dict:
    cfg = load_config(preset, overrides)
    t0 = time.perf_counter()
    result = train_run(cfg, run_dir, verbose=False)
    ck = load_checkpoint(run_dir)
    origin = ck.state.get("stage2_origin")
    budget = {"steps": ck.step, "minutes": round(float(ck.state.get("elapsed", 0.0)) / 60, 2),
              "complete": result.complete, "wall_seconds_this_call": round(time.perf_counter() - t0, 1)}
    if origin:
        budget["stage1_steps"] = origin["init_step"]
        budget["stage1_minutes"] = round(origin["init_seconds"] / 60, 2)
    print(f"[{name}] step {ck.step}/{cfg.train.steps}, {budget['minutes']} training minutes", file=sys.stderr)
    return budget


def _timed_gl(mel) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    wave = griffin_lim(mel, n_iter=32)
    return wave, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--corpus", default=str(REPO / "runs" / "speech"))
    p.add_argument("--n-utterances", type=int, default=300)
    p.add_argument("--runs", default=str(REPO / "runs" / "bench-vocoder"))
    p.add_argument("--stage1-steps", type=int, default=300)
    p.add_argument("--stage2-steps", type=int, default=100)
    p.add_argument("--eval-n", type=int, default=8, help="held-out utterances scored")
    p.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 6, 50])
    p.add_argument("--threads", type=int, default=2, help="torch threads for the evaluation (RTF)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--audio", default=str(REPO / "benchmarks" / "audio"))
    args = p.parse_args(argv)
    if args.quick:
        args.stage1_steps, args.stage2_steps, args.eval_n, args.nfe = 8, 4, 2, [1, 2]
        args.runs = str(Path(args.runs).with_name(Path(args.runs).name + "-quick"))
    tag = "vocoder" + ("-quick" if args.quick else "")
    out, audio_dir, runs = Path(args.out), Path(args.audio), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)

    corpus = Path(args.corpus)
    if not (corpus / "metadata.csv").is_file():
        build_speech_corpus(corpus, args.n_utterances, seed=0)
    data = [f"data.path={corpus}"]

    # ------------------------------------------------------------------ training (resumes / skips)
    budgets = {}
    for sde in ("hold", "vp"):
        budgets[sde] = _train(sde, f"vocoder-{sde}", runs / sde, [*data, f"train.steps={args.stage1_steps}"])
        budgets[f"{sde}-s2"] = _train(
            f"{sde}-s2", f"vocoder-{sde}-stage2", runs / f"{sde}-s2",
            [*data, f"train.steps={args.stage2_steps}", f"stage2.init={runs / sde}"])

    # ------------------------------------------------------------------ evaluation
    torch.set_num_threads(args.threads)
    loaded = {name: load_run(runs / name) for name in budgets}
    test = load_split(loaded["hold"].config.data, "test")
    items = sorted(test.items, key=lambda it: it.id)[: args.eval_n]
    refs = []
    for it in items:
        wave = torch.from_numpy(it.wave)
        wave = wave[: len(wave) // 256 * 256]
        refs.append((it.id, wave, log_mel(wave)))
    seconds = sum(len(w) for _, w, _ in refs) / 16000
    print(f"scoring {len(refs)} held-out utterances ({seconds:.1f} s of audio) on {args.threads} thread(s)",
          file=sys.stderr)
    audio_dir.mkdir(parents=True, exist_ok=True)
    first_id = refs[0][0]
    write_wav(audio_dir / f"{tag}-reference.wav", refs[0][1])

    rows = []
    gl_rows = []
    griffin_lim(refs[0][2][:, :8], n_iter=2)  # warm librosa (numba) before timing
    for i, (_uid, wave, mel) in enumerate(refs):
        gl, sec = _timed_gl(mel)
        gl_rows.append({**utterance_metrics(wave, gl), "rtf": sec * 16000 / len(wave)})
        if i == 0:
            write_wav(audio_dir / f"{tag}-griffin-lim.wav", gl)
    rows.append({"method": "Griffin-Lim (32 it.)", "run": None, "nfe": None, "sampler": None,
                 "budget": None, **_summary(gl_rows)})

    for name, run in loaded.items():
        s2 = loaded[name.removesuffix("-s2") + "-s2"].config.stage2  # the same sampler before and after
        sampler, grid = s2.sampler, s2.grid
        for nfe in args.nfe:
            vocode(run, refs[0][2][:, :16], nfe=nfe, sampler=sampler, grid=grid)  # warm-up: the sampler's plan
            per = []
            for i, (_uid, wave, mel) in enumerate(refs):
                res = vocode(run, mel, nfe=nfe, sampler=sampler, grid=grid, seed=i)
                per.append({**utterance_metrics(wave, res.wave), "rtf": res.rtf})
                if i == 0 and nfe in (2, 6, 50):
                    write_wav(audio_dir / f"{tag}-{name}-nfe{nfe}.wav", res.wave)
            sde = run.sde.name
            label = f"{sde.upper()} {'after stage two' if '-s2' in name else 'stage one'}"
            rows.append({"method": label, "run": name, "nfe": res.nfe, "sampler": f"{sampler}/{grid}",
                         "budget": budgets[name], **_summary(per)})
            print(f"[{name}] NFE {nfe}: " + ", ".join(f"{m} {rows[-1][m]['mean']:.3f}" for m in METRICS),
                  file=sys.stderr)

    result = {
        "issue": 5, "quick": args.quick, "corpus": str(corpus), "n_utterances_scored": len(refs),
        "audio_seconds_scored": round(seconds, 2), "utterance_ids": [r[0] for r in refs],
        "threads": args.threads, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the end", "torch": torch.__version__, "seed": 0,
        "command": "python benchmarks/vocoder.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "better": BETTER, "rows": rows, "audio_samples": {"utterance": first_id, "folder": str(audio_dir)},
    }
    (out / f"{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{tag}.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


def _summary(per: list[dict]) -> dict:
    agg = aggregate_metrics(per)
    return {m: {"mean": agg[m]["mean"], "std": agg[m]["std"], "n": agg[m]["n"]} for m in METRICS}


def _fmt(v: dict, digits: int = 3) -> str:
    mean, std = v["mean"], v["std"]
    return "n/a" if not math.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits - 1}f}"


def _markdown(res: dict) -> str:
    gl = res["rows"][0]
    lines = [
        f"# Vocoder benchmark{' (quick smoke test)' if res['quick'] else ''}",
        "",
        f"{res['n_utterances_scored']} held-out utterances ({res['audio_seconds_scored']} s) of {res['corpus']}; "
        f"{res['threads']} torch thread(s); {res['machine']}; torch {res['torch']}; seed {res['seed']}.",
        f"Command: `{res['command']}`. Mean ± std over utterances. PESQ/ESTOI: higher is better; MR-STFT, MCD "
        f"(dB), RTF (compute s per audio s, < 1 is faster than real time): lower is better. **Bold**: beats "
        f"Griffin-Lim.",
        "",
        "| method | NFE | sampler/grid | training (steps, min) | PESQ | ESTOI | MR-STFT | MCD | RTF |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        b = r["budget"]
        if b is None:
            budget = "-"
        elif "stage1_steps" in b:
            budget = (f"{b['stage1_steps']} + {b['steps']} (stage two); {b['stage1_minutes']:.1f} + "
                      f"{b['minutes']:.1f}")
        else:
            budget = f"{b['steps']}; {b['minutes']:.1f}"
        cells = []
        for m in METRICS:
            text = _fmt(r[m])
            if r is not gl and m in ("pesq", "estoi", "mrstft", "mcd"):
                better = r[m]["mean"] > gl[m]["mean"] if BETTER[m] == "higher" else r[m]["mean"] < gl[m]["mean"]
                text = f"**{text}**" if better else text
            cells.append(text)
        lines.append(f"| {r['method']} | {r['nfe'] or '-'} | {r['sampler'] or '-'} | {budget} | "
                     + " | ".join(cells) + " |")
    lines += ["", f"Audio samples (utterance {res['audio_samples']['utterance']}): {res['audio_samples']['folder']}.",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
