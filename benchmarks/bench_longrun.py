"""Long runs: step time, memory and quality over 10,000 training steps of every method on two earth sets.

    python benchmarks/bench_longrun.py [--steps 10000] [--data earthquake flood] [--methods rfm moser ppd]

Each run is ``manifold-flows train --steps N --eval-every 500`` with the defaults; the training loop
records, per window of 500 steps, the milliseconds per step (validation excluded), the resident
memory and the validation NLL. The table compares the first and the last 500 steps: a method whose
steps slow down as it trains (subnormal floats, growing caches) shows a ratio far above 1. Each
finished run is appended to ``benchmarks/results/longrun.jsonl`` and skipped when present.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_LONGRUN_RESULTS", ROOT / "benchmarks" / "results" / "longrun.jsonl"))


def load() -> list:
    return [json.loads(x) for x in RESULTS.read_text().splitlines() if x.strip()] if RESULTS.exists() else []


def run(method: str, data: str, steps: int) -> dict:
    for rec in load():
        if (rec["method"], rec["data"], rec["steps"]) == (method, data, steps):
            return rec
    out = ROOT / "runs" / "bench-longrun" / f"{method}-{data}"
    cmd = [sys.executable, "-m", "manifold_flows.cli", "train", "--data", data, "--method", method,
           "--steps", str(steps), "--eval-every", "500", "--val-solver-steps", "10", "--out", str(out), "--overwrite",
           "--no-progress", "--no-plot"]
    print("$", " ".join(cmd[2:]), flush=True)
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    m = json.loads((out / "metrics.json").read_text())
    h = m["history"]
    rec = dict(method=method, data=data, steps=steps, first_ms=h[0]["step_ms"], last_ms=h[-1]["step_ms"],
               ratio=h[-1]["step_ms"] / h[0]["step_ms"], max_ms=max(x["step_ms"] for x in h),
               rss_first_mb=h[0]["rss_mb"], rss_last_mb=h[-1]["rss_mb"], test_nll=m["test_nll"],
               likelihood=m["likelihood"], curve=[(x["step"], x["step_ms"], round(x["val_nll"], 3)) for x in h],
               train_seconds=m["train_seconds"], date=datetime.date.today().isoformat(), machine=machine())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"{method} {data}: {rec['first_ms']:.1f} -> {rec['last_ms']:.1f} ms/step, test NLL {rec['test_nll']:.3f}",
          flush=True)
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--data", nargs="+", default=["earthquake", "flood"])
    p.add_argument("--methods", nargs="+", default=["rfm", "moser", "ppd"])
    args = p.parse_args()
    recs = [run(m, d, args.steps) for d in args.data for m in args.methods]
    rows = ["| method | data | ms/step, first 500 | ms/step, last 500 | last / first | slowest window "
            "| RSS first / last (MB) | test NLL |", "|---|---|---|---|---|---|---|---|"]
    for r in recs:
        rows.append(f"| {r['method']} | {r['data']} | {r['first_ms']:.1f} | {r['last_ms']:.1f} | {r['ratio']:.2f} | "
                    f"{r['max_ms']:.1f} | {r['rss_first_mb']:.0f} / {r['rss_last_mb']:.0f} | {r['test_nll']:.3f} |")
    curves = "\n".join(f"- {r['method']} {r['data']}: " + ", ".join(f"{s}: {ms:.0f} ms" for s, ms, _ in r["curve"][::4])
                       for r in recs)
    write_section("Long runs: step time over 10,000 steps", (
        f"`manifold-flows train --steps {args.steps} --eval-every 500` with each method's defaults (MLP 256x4, batch "
        f"512); milliseconds per training step over each window of 500 steps (validation excluded). "
        f"Test NLL: {recs[0]['likelihood']} (Moser: its explicit density).\n\n" + "\n".join(rows)
        + "\n\nStep time along the runs (every 2,000 steps):\n\n" + curves))


if __name__ == "__main__":
    main()
