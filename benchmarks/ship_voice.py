"""Ship a trained vocoder as the package's default voice (``src/holdsgm/pretrained/<name>/``): its EMA weights
as float16 safetensors and a manifest naming the commands and commit that trained it and its measured metrics
(the rows of ``benchmarks/results/vocoder.json`` for that run).

    python benchmarks/ship_voice.py --run runs/vocoder-hold-s2 --stage1 runs/vocoder-hold --commit 2ec97da \\
        --command "holdsgm data speech --out data/speech --n 1200 && holdsgm train vocoder-hold --out \\
                   runs/vocoder-hold && holdsgm train vocoder-hold-stage2 --out runs/vocoder-hold-s2"

The text-to-speech model (``--part tts``, rows from ``benchmarks/results/tts.json``)::

    python benchmarks/ship_voice.py --part tts --run runs/tts-hold --commit c522a53 \\
        --command "holdsgm train tts-hold --out runs/tts-hold"

Then ``holdsgm vocode --wav IN.wav --out OUT.wav`` (and ``holdsgm tts --text ...``) uses it, and
``python benchmarks/vocoder.py --pretrained`` (``benchmarks/tts.py --pretrained``) scores the shipped copy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from holdsgm.engine import load_checkpoint
from holdsgm.runs.pretrained import DEFAULT_VOICE, export_part

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="the trained vocoder run (stage two) to ship")
    p.add_argument("--stage1", default=None, help="its stage-one run (for the training budget)")
    p.add_argument("--name", default=DEFAULT_VOICE)
    p.add_argument("--command", required=True, help="the commands that trained it")
    p.add_argument("--commit", required=True, help="the commit of the code that trained it")
    p.add_argument("--part", default="vocoder", choices=["vocoder", "tts"],
                   help="what the run is: the vocoder, or the text-to-speech model (benchmarks/tts.py's results)")
    p.add_argument("--results", default=None,
                   help="benchmark results to copy the run's rows from (default: results/vocoder.json or tts.json)")
    args = p.parse_args(argv)
    run_name = Path(args.run).name
    results = args.results or str(REPO / "benchmarks" / "results" / f"{args.part}.json")
    metrics: dict = {"benchmark": str(Path(results).relative_to(REPO)) if Path(results).is_relative_to(REPO)
                     else results, "rows": []}
    res_path = Path(results)
    keep = ("recordings", "Griffin-Lim (32 it.)", "recordings' mel -> shipped vocoder (ceiling)")
    if res_path.is_file():
        res = json.loads(res_path.read_text())
        metrics["command"] = res["command"]
        for r in res["rows"]:
            if r["run"] in (run_name, "shipped") or r["method"] in keep:
                metrics["rows"].append({"domain": r.get("domain", "held out"), "method": r["method"],
                                        "nfe": r["nfe"], **{k: v["mean"] for k, v in r.items()
                                                            if isinstance(v, dict) and "mean" in v},
                                        "wer": r["wer"]["wer"]})
    ck = load_checkpoint(args.run)
    budget = {"stage2_steps": ck.step, "stage2_minutes": round(float(ck.state.get("elapsed", 0.0)) / 60, 1)}
    if args.stage1:
        s1 = load_checkpoint(args.stage1)
        budget.update(stage1_steps=s1.step, stage1_minutes=round(float(s1.state.get("elapsed", 0.0)) / 60, 1))
    metrics["training"] = budget
    path = export_part(args.run, args.name, args.part, command=args.command, commit=args.commit, metrics=metrics)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) and {path.parent / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
