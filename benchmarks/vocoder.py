"""SDE vocoder benchmark (issue 17): recordings, Griffin-Lim and the VP / CLD / HOLD frame-domain vocoders,
before and after stage two, on held-out utterances of the default voice, and out of domain on real speech.

In domain: the held-out split (5 %, by id, seed 0) of the default voice's corpus (flite ``slt``,
``holdsgm data speech --out data/speech --n 1200``); the first ``--eval-n`` held-out utterances by id of at
least 1.5 s (ESTOI needs that much speech). Out of
domain: the five LibriVox clips of Debian's ``pocketsphinx-testdata`` (real read speech, with transcripts).

Per utterance: PESQ-wb, ESTOI, multi-resolution STFT distance, MCD (dB), F0 RMSE (cents, frames voiced in
both) and voicing error (pYIN), DNSMOS P.835 OVRL/SIG/BAK (``speechmos``, if installed), pocketsphinx's
transcript against the text (WER, pooled over utterances) and the real-time factor (compute s per audio s,
warm, ``--threads`` torch threads). Rows:

* the recordings themselves (their WER and DNSMOS are the ceiling; the intrusive metrics are trivial);
* Griffin-Lim (librosa, 32 iterations, momentum 0.99) on the same log-mel;
* each trained vocoder found at ``--runs-dir/vocoder-<sde>`` (stage one) and ``vocoder-<sde>-s2`` (stage
  two) at NFE ``--nfe`` with the stage-two sampler (exp1 on the EDM grid), so that only the weights differ;
* ``--pretrained``: the voice shipped with the package (HOLD stage two), at the same NFE;
* each of these with each ``--refine`` spec ``R`` or ``P+R``: ``P`` rounds of the mel-consistency projection
  (:func:`holdsgm.audio.mel_consistent`) on every sampler step's data prediction (GLA-Grad) and ``R`` rounds
  after the sample (``0``: the sample as it is); the projection alone started from white noise (no SDE) with
  each of ``--noise-rounds`` rounds: what the vocoder adds beyond it;
* ``--gaussian``: the shipped voice with its network replaced by the analytic Gaussian part of its score
  (whitened MDCT coefficients ~ N(0, data_var), the spectral prior alone: a network that outputs 0 in the
  mixed-score parameterisation), with the same samplers and projections: what the network learned beyond it.

Mean and 95 % interval (mean +- 1.96 s / sqrt(n)) per metric; WER pooled with a bootstrap 95 % interval.
Each row names its training budget (steps, minutes from the checkpoint). Results: ``--out`` (JSON +
markdown); listening examples (the first two held-out utterances and the first LibriVox clip, every
row): ``--audio`` (``benchmarks/audio/``, ignored by git).

    holdsgm train vocoder-hold --out runs/vocoder-hold            # and -vp, -cld (stage one)
    holdsgm train vocoder-hold-stage2 --out runs/vocoder-hold-s2  # stage two
    OMP_NUM_THREADS=2 python benchmarks/vocoder.py [--sdes hold vp cld] [--pretrained] [--quick]

``--quick``: 3 utterances, NFE 1 and 4, no out-of-domain part (a smoke test of the script).
"""

from __future__ import annotations

import argparse
import dataclasses
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

from holdsgm.audio import griffin_lim, load_speech, log_mel, mel_consistent, utterance_metrics, write_wav
from holdsgm.audio.asr import corpus_wer, transcribe, word_errors
from holdsgm.audio.metrics import dnsmos_available, f0_metrics, f0_track
from holdsgm.runs import load_run, vocode
from holdsgm.runs.build import load_split
from holdsgm.runs.inference import DEFAULT_PROJECT, DEFAULT_REFINE

REPO = Path(__file__).resolve().parents[1]
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
HOP, SR = 256, 16000
MIN_SECONDS = 1.5
METRICS = ("pesq", "estoi", "mrstft", "mcd", "f0_rmse", "vuv", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "rtf")
BETTER = {"pesq": "higher", "estoi": "higher", "mrstft": "lower", "mcd": "lower", "f0_rmse": "lower",
          "vuv": "lower", "dnsmos_ovrl": "higher", "dnsmos_sig": "higher", "dnsmos_bak": "higher", "rtf": "lower",
          "wer": "lower"}


class Utterance:
    def __init__(self, uid: str, wave: torch.Tensor, text: str):
        self.id, self.text = uid, text
        self.wave = wave[: len(wave) // HOP * HOP]
        self.mel = log_mel(self.wave)
        self.f0 = f0_track(self.wave.numpy())


def _librivox() -> list[Utterance]:
    texts = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        body, _, uid = line.rpartition("(")
        texts[uid.strip(" )")] = body.replace("<s>", "").replace("</s>", "").strip()
    ds = load_speech(LIBRIVOX, SR)
    return [Utterance(it.id, torch.from_numpy(it.wave), texts[it.id]) for it in ds if it.id in texts]


def _score(utts: list[Utterance], make, with_dnsmos: bool, audio_dir: Path | None, tag: str, n_audio: int) -> dict:
    """Per-utterance metrics of the waves ``make(i, utt) -> (wave, compute seconds)``, summarised."""
    per, wer_pairs = [], []
    for i, u in enumerate(utts):
        wave, seconds = make(i, u)
        wave = wave[: len(u.wave)]
        m = utterance_metrics(u.wave, wave, SR, with_dnsmos=with_dnsmos)
        m.update(f0_metrics(u.wave.numpy(), wave.numpy(), SR, ref_track=u.f0[: _frames(len(wave))]))
        m["rtf"] = seconds * SR / len(wave) if seconds is not None else math.nan
        per.append(m)
        wer_pairs.append(word_errors(u.text, transcribe(wave)))
        if audio_dir is not None and i < n_audio:
            write_wav(audio_dir / f"{u.id}-{tag}.wav", wave)
    return _summary(per, wer_pairs)


def _frames(n_samples: int) -> int:
    return 1 + n_samples // (SR // 100)


def _summary(per: list[dict], wer_pairs: list) -> dict:
    out = {}
    for m in METRICS:
        v = np.array([r.get(m, math.nan) for r in per], dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            half = 1.96 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else math.nan
            out[m] = {"mean": float(v.mean()), "ci95": float(half), "n": int(v.size)}
        else:
            out[m] = {"mean": math.nan, "ci95": math.nan, "n": 0}
    out["wer"] = corpus_wer(wer_pairs)
    return out


def _budget(run) -> dict:
    from holdsgm.engine import load_checkpoint

    ck = load_checkpoint(run.path)
    b = {"steps": ck.step, "minutes": round(float(ck.state.get("elapsed", 0.0)) / 60, 1)}
    origin = ck.state.get("stage2_origin")
    if origin:
        b.update(stage1_steps=origin["init_step"], stage1_minutes=round(origin["init_seconds"] / 60, 1))
    return b


def _vocoder_rows(name: str, run, utts, nfes, sampler, grid, args, audio_dir, n_audio, domain) -> list[dict]:
    rows = []
    budget = None if name == "shipped-gaussian" else _budget(run) if name != "shipped" else _shipped_budget(run)
    for project, refine in args.refine:
        for nfe in nfes:
            vocode(run, utts[0].mel[:, :16], nfe=nfe, sampler=sampler, grid=grid)  # warm-up: the sampler's plan

            def make(i, u, nfe=nfe, refine=refine, project=project):
                res = vocode(run, u.mel, nfe=nfe, sampler=sampler, grid=grid, seed=i, refine=refine, project=project)
                return res.wave, res.seconds

            t0 = time.perf_counter()
            s = _score(utts, make, args.dnsmos, audio_dir, f"{name}-nfe{nfe}-project{project}-refine{refine}",
                       n_audio)
            stage = "stage two" if name.endswith("-s2") or name.startswith("shipped") else "stage one"
            label = f"{run.sde.name.upper()} {stage}"
            label += " (shipped)" if name == "shipped" else ""
            label += " (shipped), Gaussian score, no network" if name == "shipped-gaussian" else ""
            label += f" + projection ({project} rounds per step)" if project else ""
            label += f" + mel projection ({refine} rounds)" if refine else ""
            rows.append({"domain": domain, "method": label, "run": name, "nfe": nfe, "sampler": f"{sampler}/{grid}",
                         "project": project, "refine": refine, "budget": budget, **s})
            print(f"[{domain}] {label} NFE {nfe}: " + _line(s) + f" ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr)
    return rows


def _refine_spec(text: str) -> tuple[int, int]:
    """``R`` or ``P+R`` -> (P, R): projection rounds per sampler step and after the sample."""
    p, _, r = text.rpartition("+")
    try:
        out = (int(p) if p else 0, int(r))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected R or P+R (integers), got {text!r}") from None
    if min(out) < 0:
        raise argparse.ArgumentTypeError(f"rounds must be >= 0, got {text!r}")
    return out


class _ZeroNet(torch.nn.Module):
    """A frame network that outputs 0: in the mixed-score parameterisation the score is then exactly the
    Gaussian part (the whitened coefficients ~ N(0, data_var))."""

    def __init__(self, bins: int):
        super().__init__()
        self.bins = bins

    def forward(self, u, t, y=None, **kwargs):
        return torch.zeros(u.shape[0], self.bins, u.shape[-1], dtype=u.dtype, device=u.device)


def _gaussian_run(run):
    """``run`` with its network replaced by the analytic Gaussian score of its coordinates (the ablation)."""
    from holdsgm.audio import SpectralNet
    from holdsgm.losses import EpsModel

    coords = run.eps_model.net.coords
    model = EpsModel(SpectralNet(_ZeroNet(coords.hop), coords), run.sde, mixed=True, data_var=run.eps_model.data_var)
    return dataclasses.replace(run, eps_model=model)


def _shipped_budget(run) -> dict:
    """Stage one and two steps and minutes of the shipped voice, from its manifest."""
    from holdsgm.runs.pretrained import DEFAULT_VOICE, PRETRAINED_DIR, read_manifest

    t = read_manifest(PRETRAINED_DIR / DEFAULT_VOICE)["vocoder"]["metrics"].get("training", {})
    if "stage1_steps" not in t:
        return {"steps": run.step, "minutes": math.nan}
    return {"steps": t["stage2_steps"], "minutes": t["stage2_minutes"], "stage1_steps": t["stage1_steps"],
            "stage1_minutes": t["stage1_minutes"]}


def _line(s: dict) -> str:
    return ", ".join(f"{m} {s[m]['mean']:.3f}" for m in ("pesq", "estoi", "mcd", "f0_rmse", "dnsmos_ovrl")) + \
        f", WER {100 * s['wer']['wer']:.1f} %"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(REPO / "data" / "speech"))
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    p.add_argument("--sdes", nargs="+", default=["vp", "cld", "hold"])
    p.add_argument("--pretrained", action="store_true", help="also score the voice shipped with the package")
    p.add_argument("--eval-n", type=int, default=20, help="held-out utterances scored")
    p.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 4, 6, 50])
    p.add_argument("--ood-nfe", type=int, nargs="+", default=[4, 50], help="NFE of the out-of-domain rows")
    p.add_argument("--refine", type=_refine_spec, nargs="+", default=[(0, 0), (DEFAULT_PROJECT, DEFAULT_REFINE)],
                   metavar="[P+]R",
                   help="R: rounds of the mel-consistency projection after each vocoder's sample (0: the sample); "
                        "P+R: also P rounds on every sampler step's data prediction")
    p.add_argument("--noise-rounds", type=int, nargs="+", default=None, metavar="N",
                   help="rows of the projection alone from white noise (default: each spec's total rounds at NFE 4 "
                        "with exp1, i.e. 3 P + R)")
    p.add_argument("--gaussian", action="store_true",
                   help="also the shipped voice with its network replaced by its analytic Gaussian score")
    p.add_argument("--threads", type=int, default=2, help="torch threads (RTF)")
    p.add_argument("--no-dnsmos", dest="dnsmos", action="store_false")
    p.add_argument("--no-ood", dest="ood", action="store_false", help="skip the out-of-domain (LibriVox) rows")
    p.add_argument("--ood-only", action="store_true", help="only the out-of-domain (LibriVox) rows")
    p.add_argument("--tag", default="vocoder", help="results file name (default vocoder: results/vocoder.json)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--audio", default=str(REPO / "benchmarks" / "audio" / "vocoder"))
    args = p.parse_args(argv)
    if args.dnsmos and not dnsmos_available():
        print("note: speechmos/onnxruntime not installed: no DNSMOS (pip install 'holdsgm[dnsmos]')", file=sys.stderr)
        args.dnsmos = False
    if args.quick:
        args.eval_n, args.nfe = 3, [1, 4]
    torch.set_num_threads(args.threads)
    tag = args.tag + ("-quick" if args.quick else "")
    out, audio_dir, runs_dir = Path(args.out), Path(args.audio), Path(args.runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    audio_dir.mkdir(parents=True, exist_ok=True)

    runs = {}
    for sde in args.sdes:
        for name in (f"vocoder-{sde}", f"vocoder-{sde}-s2"):
            if (runs_dir / name / "checkpoints").is_dir():
                runs[name] = load_run(runs_dir / name)
            else:
                print(f"note: no run {runs_dir / name}: its rows are left out", file=sys.stderr)
    if args.pretrained:
        from holdsgm.runs.pretrained import DEFAULT_VOICE, load_pretrained

        runs["shipped"] = load_pretrained(DEFAULT_VOICE)
        if args.gaussian:
            runs["shipped-gaussian"] = _gaussian_run(runs["shipped"])
    if not runs:
        raise SystemExit("no vocoder runs found (train them first; see the docstring)")
    any_run = next(iter(runs.values()))
    data_cfg = any_run.config.data
    data_cfg.options["path"] = args.corpus
    test = load_split(data_cfg, "test")
    # at least MIN_SECONDS: ESTOI needs 30 frames of 384 ms of speech (it returns 1e-5 on "Not today.")
    items = [it for it in sorted(test.items, key=lambda it: it.id) if it.num_samples >= MIN_SECONDS * SR]
    items = items[: args.eval_n]
    utts = [Utterance(it.id, torch.from_numpy(it.wave), it.normalized_text) for it in items]
    seconds = sum(len(u.wave) for u in utts) / SR
    print(f"scoring {len(utts)} held-out utterances ({seconds:.1f} s) on {args.threads} thread(s)", file=sys.stderr)

    domains = [] if args.ood_only else [("in domain", utts, args.nfe, 2)]
    if args.ood and not LIBRIVOX.is_dir():
        print(f"note: no {LIBRIVOX} (apt-get install pocketsphinx-testdata): no out-of-domain rows", file=sys.stderr)
    if not args.quick and args.ood and LIBRIVOX.is_dir():
        domains.append(("LibriVox (out of domain)", _librivox(), args.ood_nfe, 1))
    griffin_lim(utts[0].mel[:, :8], n_iter=2)  # warm librosa (numba) before timing
    rows: list[dict] = []
    for domain, us, nfes, n_audio in domains:
        rows.append({"domain": domain, "method": "recordings", "run": None, "nfe": None, "sampler": None,
                     "budget": None, **_score(us, lambda i, u: (u.wave, None), args.dnsmos, audio_dir, "recording",
                                              n_audio)})
        print(f"[{domain}] recordings: {_line(rows[-1])}", file=sys.stderr)

        def gl(i, u):
            t0 = time.perf_counter()
            w = griffin_lim(u.mel, n_iter=32)
            return w, time.perf_counter() - t0

        rows.append({"domain": domain, "method": "Griffin-Lim (32 it.)", "run": None, "nfe": None, "sampler": None,
                     "budget": None, **_score(us, gl, args.dnsmos, audio_dir, "griffin-lim", n_audio)})
        print(f"[{domain}] Griffin-Lim: {_line(rows[-1])}", file=sys.stderr)
        noise_rounds = args.noise_rounds if args.noise_rounds is not None else \
            sorted({3 * p + r for p, r in args.refine if p or r})
        for refine in [r for r in noise_rounds if r > 0]:
            def projected_noise(i, u, refine=refine):
                # the projection alone, from white noise (seed i): what the vocoder's sample adds beyond it
                t0 = time.perf_counter()
                g = torch.Generator().manual_seed(i)
                w = mel_consistent(0.05 * torch.randn(len(u.wave), generator=g), u.mel, refine)
                return w, time.perf_counter() - t0

            label = f"mel projection from white noise ({refine} rounds; no SDE)"
            rows.append({"domain": domain, "method": label, "run": None, "nfe": None, "sampler": None,
                         "refine": refine, "budget": None,
                         **_score(us, projected_noise, args.dnsmos, audio_dir, f"noise-refine{refine}", n_audio)})
            print(f"[{domain}] {label}: {_line(rows[-1])}", file=sys.stderr)
        for name, run in runs.items():
            s2 = run.config.stage2
            sampler, grid = (s2.sampler, s2.grid) if s2.enabled else ("exp1", "edm")
            rows += _vocoder_rows(name, run, us, nfes, sampler, grid, args, audio_dir, n_audio, domain)

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=False).stdout.strip()
    except OSError:
        commit = ""
    result = {
        "issue": 17, "quick": args.quick, "corpus": args.corpus, "n_utterances_scored": len(utts),
        "audio_seconds_scored": round(seconds, 2), "utterance_ids": [u.id for u in utts],
        "threads": args.threads, "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end",
        "torch": torch.__version__, "seed": "utterance i uses noise seed i",
        "command": "python benchmarks/vocoder.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "better": BETTER, "rows": rows, "audio": str(audio_dir),
    }
    (out / f"{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{tag}.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


def _fmt(v: dict, digits: int = 2) -> str:
    if not math.isfinite(v["mean"]):
        return "n/a"
    ci = "" if not math.isfinite(v["ci95"]) else f" ± {v['ci95']:.{digits}f}"
    return f"{v['mean']:.{digits}f}{ci}"


def _markdown(res: dict) -> str:
    lines = [
        f"# Vocoder benchmark{' (quick smoke test)' if res['quick'] else ''}",
        "",
        f"{res['n_utterances_scored']} held-out utterances ({res['audio_seconds_scored']} s) of {res['corpus']}; "
        f"{res['threads']} torch thread(s); {res['machine']}; torch {res['torch']}; commit {res['commit']}; "
        f"{res['seed']}.",
        f"Command: `{res['command']}`. Mean ± 95 % interval over utterances; WER pooled over utterances with a "
        f"bootstrap 95 % interval. Higher is better for PESQ, ESTOI, DNSMOS; lower for the rest. F0 RMSE in "
        f"cents, V/UV: fraction of 10 ms frames whose voicing differs, RTF: compute s per audio s. **Bold**: "
        f"better than Griffin-Lim.",
    ]
    gl = {}
    for r in res["rows"]:
        if r["method"].startswith("Griffin"):
            gl[r["domain"]] = r
    domain = None
    for r in res["rows"]:
        if r["domain"] != domain:
            domain = r["domain"]
            lines += ["", f"## {domain}", "",
                      "| method | NFE | training (steps; min) | PESQ | ESTOI | MR-STFT | MCD | F0 RMSE | V/UV | "
                      "DNSMOS OVRL | WER % | RTF |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        b = r["budget"]
        if b is None:
            budget = "-"
        elif "stage1_steps" in b:
            budget = f"{b['stage1_steps']} + {b['steps']}; {b['stage1_minutes']} + {b['minutes']}"
        else:
            budget = f"{b['steps']}; {b['minutes']}"
        cells = []
        g = gl.get(r["domain"])
        for m in ("pesq", "estoi", "mrstft", "mcd", "f0_rmse", "vuv", "dnsmos_ovrl"):
            text = _fmt(r[m], 3 if m in ("estoi", "vuv") else 2)
            if g is not None and r is not g and r["method"] != "recordings" and math.isfinite(r[m]["mean"]):
                better = r[m]["mean"] > g[m]["mean"] if BETTER[m] == "higher" else r[m]["mean"] < g[m]["mean"]
                text = f"**{text}**" if better else text
            cells.append(text)
        w = r["wer"]
        cells.append(f"{100 * w['wer']:.1f} [{100 * w['lo']:.1f}, {100 * w['hi']:.1f}]")
        cells.append(_fmt(r["rtf"], 3))
        lines.append(f"| {r['method']} | {r['nfe'] or '-'} | {budget} | " + " | ".join(cells) + " |")
    lines += ["", f"Listening examples: {res['audio']} (`<utterance>-<row>.wav`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
