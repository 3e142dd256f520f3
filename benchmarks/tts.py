"""Text-to-speech benchmark (issue 18): the recordings, their mel through the shipped vocoder (the ceiling),
mu_y alone, the SDE decoder at several NFE (the jointly trained HOLD model, and VP / CLD / HOLD decoders
trained at equal budget on its frozen encoder) and ResGrad, on held-out sentences of the default voice.

Held-out: the test split (5 %, by id, seed 0) of the default voice's corpus (flite ``slt``, ``holdsgm data
speech --out data/speech --n 1200``), the first ``--eval-n`` utterances by id. Every synthesised row goes
through the same vocoder (the one shipped with the package, at its default NFE and ``--vocoder-refine``
rounds of its mel-consistency projection) and is compared with the
recording of the same sentence:

* WER: pocketsphinx's transcript against the sentence's normalised text (pooled, bootstrap 95 % interval);
* MCD (dB) after DTW of the mel cepstra (:func:`holdsgm.audio.mel_cepstral_distortion`, ``align=True``);
* log-F0 RMSE (cents) and voicing error along the same DTW path (pYIN; :func:`holdsgm.audio.metrics.
  aligned_f0_metrics`);
* duration error: (synthesised - recorded length) / recorded length, in %, and its absolute value;
* DNSMOS P.835 OVRL (``speechmos``), and the real-time factor of text -> WAV (front end, decoder, vocoder;
  compute s per audio s, ``--threads`` torch threads, warm).

Mean and 95 % interval (1.96 s / sqrt(n)) per metric. Each row names its training budget. Results: ``--out``
(JSON + markdown); listening examples (the first two sentences, every row): ``--audio``
(``benchmarks/audio/tts/``, ignored by git).

    holdsgm train tts-hold --out runs/tts-hold                    # the joint model (encoder + decoder)
    holdsgm train resgrad-hold --out runs/resgrad-hold            # ResGrad on its mu_y
    holdsgm train resgrad-hold-stage2 --out runs/resgrad-hold-s2  # + stage two (K = 2, L2 on the mel)
    for s in vp cld hold; do                                      # decoders at equal budget, frozen encoder
      holdsgm train resgrad-hold --out runs/tts-eq/$s --set sde.name=$s --set model.dims=[128,192,256] \\
          --set model.blocks=2 --set train.steps=1000; done
    OMP_NUM_THREADS=2 python benchmarks/tts.py [--quick]
    # or in two processes of one thread each (the metrics are single-threaded; RTF then at 1 thread):
    python benchmarks/tts.py --rows main --threads 1 --tag tts-main & python benchmarks/tts.py --rows eq \\
        --threads 1 --tag tts-eq

``--quick``: 3 sentences, NFE 2 and 4 (a smoke test of the script).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from holdsgm.audio import mel_cepstral_distortion, write_wav
from holdsgm.audio.asr import corpus_wer, transcribe, word_errors
from holdsgm.audio.metrics import aligned_f0_metrics, dnsmos, dnsmos_available, f0_track
from holdsgm.runs import load_run, vocode
from holdsgm.runs.build import load_split
from holdsgm.runs.inference import DEFAULT_PROJECT, DEFAULT_REFINE
from holdsgm.runs.pretrained import DEFAULT_VOICE, load_pretrained
from holdsgm.runs.tts import synthesize

REPO = Path(__file__).resolve().parents[1]
SR, HOP = 16000, 256
#: the sampler of a row: the first-order exponential integrator (data prediction, deterministic) at few steps,
#: the library's measured default at 50 (exp2m-sde); measured here: exp1 drifts off (residual RMS 3-4, the
#: clip's bound) at 50-200 NFE with these decoders, and exp3s ('auto' at 10 NFE) gave MCD 6.6 against exp1's 2.1
SAMPLER_AT = lambda nfe: "exp1" if nfe < 20 else "exp2m-sde"  # noqa: E731
METRICS = ("mcd", "f0_rmse", "vuv", "dur_err", "dur_abs", "dnsmos_ovrl", "rtf")


def _budget(run) -> dict:
    from holdsgm.engine import load_checkpoint

    ck = load_checkpoint(run.path)
    b = {"steps": ck.step, "minutes": round(float(ck.state.get("elapsed", 0.0)) / 60, 1)}
    origin = ck.state.get("stage2_origin")
    if origin:  # stage two: the stage-one run's steps and minutes come first
        b.update(stage1_steps=origin["init_step"], stage1_minutes=round(origin["init_seconds"] / 60, 1))
    return b


def _param(run) -> str:
    """' precond' for a model with EDM-style preconditioning (model.precond), else ''."""
    return " precond" if getattr(run.eps_model, "precond", False) else ""


def _score(utts, make, args, audio_dir: Path, tag: str) -> dict:
    """Per-utterance metrics of ``make(i, utt) -> (wave, compute seconds or None)`` against the recordings."""
    per, wer_pairs = [], []
    for i, u in enumerate(utts):
        wave, seconds = make(i, u)
        wave = np.asarray(wave, dtype=np.float32)
        m = {"dur_err": 100.0 * (len(wave) - len(u["wave"])) / len(u["wave"])}
        m["dur_abs"] = abs(m["dur_err"])
        if tag != "recording":
            m["mcd"] = mel_cepstral_distortion(u["wave"], wave, SR, align=True)
            if args.f0:
                m.update(aligned_f0_metrics(u["wave"], wave, SR, ref_track=u["f0"]))
        if args.dnsmos:
            m["dnsmos_ovrl"] = dnsmos(wave, SR)["dnsmos_ovrl"]
        m["rtf"] = seconds * SR / len(wave) if seconds is not None else math.nan
        per.append(m)
        wer_pairs.append(word_errors(u["text"], transcribe(wave)))
        if i < 2:
            write_wav(audio_dir / f"{u['id']}-{tag}.wav", wave)
    out = {}
    for k in METRICS:
        v = np.array([r.get(k, math.nan) for r in per], dtype=np.float64)
        v = v[np.isfinite(v)]
        half = 1.96 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else math.nan
        out[k] = {"mean": float(v.mean()) if v.size else math.nan, "ci95": float(half), "n": int(v.size)}
    out["wer"] = corpus_wer(wer_pairs)
    return out


def _line(s: dict) -> str:
    return (", ".join(f"{k} {s[k]['mean']:.3f}" for k in ("mcd", "f0_rmse", "dur_abs", "dnsmos_ovrl", "rtf"))
            + f", WER {100 * s['wer']['wer']:.1f} %")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(REPO / "data" / "speech"))
    p.add_argument("--tts", default=str(REPO / "runs" / "tts-hold"), help="the jointly trained text-to-speech run")
    p.add_argument("--pretrained", action="store_true",
                   help="score the text-to-speech model shipped with the package instead of --tts")
    p.add_argument("--eq-dir", default=str(REPO / "runs" / "tts-eq"),
                   help="decoders at equal budget on the frozen encoder: EQ_DIR/{vp,cld,hold}")
    p.add_argument("--resgrad", nargs="+", default=[str(REPO / "runs" / "resgrad-hold"),
                                                    str(REPO / "runs" / "resgrad-hold-s2")],
                   help="ResGrad runs (stage one, stage two)")
    p.add_argument("--eval-n", type=int, default=30, help="held-out sentences scored")
    p.add_argument("--nfe", type=int, nargs="+", default=[2, 4, 10, 50])
    p.add_argument("--resgrad-nfe", type=int, nargs="+", default=[2, 4])
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.5],
                   help="the joint decoder's rows at each temperature (the others at the first)")
    p.add_argument("--rows", nargs="+", default=["main", "eq"], choices=["main", "eq"],
                   help="main: recordings, ceiling, mu_y, the joint decoder, ResGrad; eq: the equal-budget decoders "
                        "(two processes can share the work, one thread each)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (RTF)")
    p.add_argument("--no-dnsmos", dest="dnsmos", action="store_false")
    p.add_argument("--no-f0", dest="f0", action="store_false", help="skip the F0 metrics (pYIN is the slow part)")
    p.add_argument("--tag", default="tts", help="results file name (default tts: results/tts.json)")
    p.add_argument("--vocoder-refine", type=int, default=DEFAULT_REFINE,
                   help="rounds of the vocoder's mel-consistency projection after its sample, plus DEFAULT_PROJECT "
                        "on each sampler step's prediction (0: the SDE's sample as it is)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--audio", default=str(REPO / "benchmarks" / "audio" / "tts"))
    args = p.parse_args(argv)
    if args.dnsmos and not dnsmos_available():
        print("note: speechmos/onnxruntime not installed: no DNSMOS (pip install 'holdsgm[dnsmos]')", file=sys.stderr)
        args.dnsmos = False
    if args.quick:
        args.eval_n, args.nfe, args.resgrad_nfe = 3, [2, 4], [2]
    torch.set_num_threads(args.threads)
    tag = args.tag + ("-quick" if args.quick else "")
    out, audio_dir = Path(args.out), Path(args.audio)
    out.mkdir(parents=True, exist_ok=True)
    audio_dir.mkdir(parents=True, exist_ok=True)

    vocoder = load_pretrained(DEFAULT_VOICE, "vocoder")
    tts = load_pretrained(DEFAULT_VOICE, "tts") if args.pretrained else load_run(args.tts)
    tts_budget = ({"steps": tts.step, "minutes": math.nan} if args.pretrained else _budget(tts))
    data_cfg = tts.config.data
    data_cfg.options["path"] = args.corpus
    test = load_split(data_cfg, "test")
    items = sorted((it for it in test.items if it.normalized_text or it.text), key=lambda it: it.id)[: args.eval_n]
    utts = []
    for it in items:
        w = it.wave[: len(it.wave) // HOP * HOP]
        utts.append({"id": it.id, "text": it.normalized_text or it.text, "wave": w,
                     "f0": f0_track(w, SR) if args.f0 else None})
    seconds = sum(len(u["wave"]) for u in utts) / SR
    print(f"scoring {len(utts)} held-out sentences ({seconds:.1f} s) on {args.threads} thread(s)", file=sys.stderr)

    rows: list[dict] = []

    def add(method: str, make, tagname: str, nfe=None, budget=None, run=None):
        t0 = time.perf_counter()
        s = _score(utts, make, args, audio_dir, tagname)
        rows.append({"method": method, "nfe": nfe, "budget": budget, "run": run, **s})
        print(f"{method} NFE {nfe}: {_line(s)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    main_rows = "main" in args.rows
    if main_rows:
        add("recordings", lambda i, u: (u["wave"], None), "recording")

    def ceiling(i, u):
        from holdsgm.audio import log_mel

        t0 = time.perf_counter()
        v = vocode(vocoder, log_mel(torch.from_numpy(u["wave"])), seed=i, refine=args.vocoder_refine)
        return v.wave.numpy(), time.perf_counter() - t0

    if main_rows:
        add("recordings' mel -> shipped vocoder (ceiling)", ceiling, "ceiling")
    synthesize(tts, vocoder, "Warm up.", nfe=2)  # the sampler's plan, phonemizer, vocoder

    def tts_make(nfe, resgrad=None, temperature=1.0):
        sampler = SAMPLER_AT(nfe)

        def make(i, u):
            r = synthesize(tts, vocoder, u["text"], nfe=nfe, resgrad=resgrad, seed=i, sampler=sampler, grid="edm",
                           temperature=temperature, vocoder_refine=args.vocoder_refine)
            return r["wave"], r["seconds"]

        return make

    name = "shipped" if args.pretrained else Path(args.tts).name
    if main_rows:
        add("mu_y alone (text encoder)", tts_make(0), "mu_y", 0, tts_budget, name)
        for k, tau in enumerate(args.temperatures):
            for nfe in (args.nfe if k == 0 else [n for n in args.nfe if n == 10]):
                add(f"decoder HOLD{_param(tts)} (joint), {SAMPLER_AT(nfe)}, tau {tau:g}",
                    tts_make(nfe, temperature=tau), f"decoder-nfe{nfe}-tau{tau:g}", nfe, tts_budget, name)
    eq = Path(args.eq_dir)
    for sde in ("vp", "cld", "hold") if "eq" in args.rows else ():
        if not (eq / sde / "checkpoints").is_dir():
            print(f"note: no run {eq / sde}: its rows are left out", file=sys.stderr)
            continue
        dec = load_run(eq / sde)
        b = {**_budget(dec), "encoder_steps": tts_budget["steps"]}
        for nfe in args.nfe:
            add(f"decoder {sde.upper()}{_param(dec)} (equal budget, frozen encoder), {SAMPLER_AT(nfe)}",
                tts_make(nfe, dec),
                f"eq-{sde}-nfe{nfe}", nfe, b, str(eq / sde))
    for path in args.resgrad if main_rows else ():
        if not (Path(path) / "checkpoints").is_dir():
            print(f"note: no ResGrad run {path}: its rows are left out", file=sys.stderr)
            continue
        rg = load_run(path)
        b = {**_budget(rg), "encoder_steps": tts_budget["steps"]}
        s2 = rg.config.stage2
        label = (f"ResGrad {rg.sde.name.upper()}{_param(rg)} on mu_y"
                 + (f" + stage two (K = {s2.nfe})" if s2.enabled else "") + f", {SAMPLER_AT(2)}")
        for nfe in ([s2.nfe] if s2.enabled else args.resgrad_nfe):
            add(label, tts_make(nfe, rg), f"{Path(path).name}-nfe{nfe}", nfe, b, path)

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=False).stdout.strip()
    except OSError:
        commit = ""
    result = {
        "issue": 18, "quick": args.quick, "corpus": args.corpus, "n_sentences": len(utts),
        "audio_seconds": round(seconds, 2), "utterance_ids": [u["id"] for u in utts], "threads": args.threads,
        "commit": commit, "vocoder": f"shipped {DEFAULT_VOICE!r}, NFE {vocoder.config.stage2.nfe}, "
                                       f"mel projection: {DEFAULT_PROJECT if args.vocoder_refine else 0} rounds per "
                                       f"sampler step + {args.vocoder_refine} after",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end",
        "torch": torch.__version__, "seed": "sentence i uses noise seed i (decoder and vocoder)",
        "command": "python benchmarks/tts.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows, "audio": str(audio_dir), "row_sets": args.rows,
    }
    (out / f"{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{tag}.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


def _fmt(v: dict, digits: int = 2) -> str:
    if not math.isfinite(v["mean"]):
        return "-"
    ci = "" if not math.isfinite(v["ci95"]) else f" ± {v['ci95']:.{digits}f}"
    return f"{v['mean']:.{digits}f}{ci}"


def _markdown(res: dict) -> str:
    lines = [
        f"# Text-to-speech benchmark{' (quick smoke test)' if res['quick'] else ''}",
        "",
        f"{res['n_sentences']} held-out sentences ({res['audio_seconds']} s of recordings) of {res['corpus']}; "
        f"vocoder: {res['vocoder']}; {res['threads']} torch thread(s); {res['machine']}; torch {res['torch']}; "
        f"commit {res['commit']}; {res['seed']}.",
        f"Command: `{res['command']}`. Mean ± 95 % interval over sentences; WER pooled with a bootstrap 95 % "
        f"interval. MCD (dB) and F0 RMSE (cents) / V/UV along the DTW path of the mel cepstra; duration: "
        f"(synthesised - recorded) / recorded length in %; RTF: text -> WAV compute s per audio s.",
        "",
        "| method | NFE | training (steps; min) | WER % | MCD | F0 RMSE | V/UV | duration % | abs. duration % | "
        "DNSMOS OVRL | RTF |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        b = r["budget"]
        if b is None:
            budget = "-"
        elif "stage1_steps" in b:
            budget = (f"encoder {b['encoder_steps']} + {b['stage1_steps']} + {b['steps']}; + {b['stage1_minutes']} + "
                      f"{b['minutes']}")
        elif "encoder_steps" in b:
            budget = f"encoder {b['encoder_steps']} + {b['steps']}; + {b['minutes']}"
        else:
            budget = f"{b['steps']}; {b['minutes']}"
        w = r["wer"]
        cells = [f"{100 * w['wer']:.1f} [{100 * w['lo']:.1f}, {100 * w['hi']:.1f}]", _fmt(r["mcd"]),
                 _fmt(r["f0_rmse"], 0), _fmt(r["vuv"], 3), _fmt(r["dur_err"], 1), _fmt(r["dur_abs"], 1),
                 _fmt(r["dnsmos_ovrl"]), _fmt(r["rtf"], 3)]
        nfe = "-" if r["nfe"] is None else r["nfe"]
        lines.append(f"| {r['method']} | {nfe} | {budget} | " + " | ".join(cells) + " |")
    lines += ["", f"Listening examples: {res['audio']} (`<utterance>-<row>.wav`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
