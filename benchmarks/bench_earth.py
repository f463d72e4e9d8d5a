"""Earth test NLL at real CPU budgets: time-budgeted runs of the command line, kept in a results file.

    python benchmarks/bench_earth.py run --data earthquake --minutes 3 --tag base [-- --hidden 512 ...]
    python benchmarks/bench_earth.py ablation --minutes 3 --data earthquake flood
    python benchmarks/bench_earth.py budget --minutes 10 --seeds 0 1 2 --data volcano earthquake flood
    python benchmarks/bench_earth.py report

Every run is ``manifold-flows train --minutes M ...`` exactly as a user types it, one at a time
(never two timed jobs at once). Each finished run is appended to ``benchmarks/results/earth.jsonl``
at once, and a run already in the file is skipped, so a campaign that takes hours can stop and
go on in a later session. ``report`` writes the tables of BENCHMARKS.md from the file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_EARTH_RESULTS", ROOT / "benchmarks" / "results" / "earth.jsonl"))
"""Where finished runs are appended (``BENCH_EARTH_RESULTS`` overrides it, e.g. to run from a pinned checkout)."""
RUNS = ROOT / "runs" / "bench-earth"
PROTOCOLS = {"all": [], "distinct": ["--dedupe"]}
"""The published protocol (random 80/10/10 of all rows) and the duplicate-free one beside it."""

PUBLISHED = {  # test NLL, REFERENCES.md section 2 ('all rows' protocol, GPU-days of training)
    "Moser Flow": {"volcano": -2.02, "earthquake": -0.09, "flood": 0.62},
    "PPD / CNF Matching": {"volcano": -2.38, "earthquake": -0.38, "flood": 0.25},
    "Riemannian diffusion": {"volcano": -6.61, "earthquake": -0.40, "flood": 0.43},
    "RFM (2024)": {"volcano": -7.93, "earthquake": -0.28, "flood": 0.42},
}
BEST_PUBLISHED = {"volcano": -7.93, "earthquake": -0.40, "flood": 0.25}

FF = ["--fourier-features", "128", "--fourier-scale", "16"]
ABLATION: Dict[str, List[str]] = {
    "rfm 256x4": ["--method", "rfm"],
    "rfm 256x4 ff64/8": ["--method", "rfm", "--fourier-features", "64", "--fourier-scale", "8"],
    "rfm 256x4 ff128/16": ["--method", "rfm", *FF],
    "rfm 256x4 ff128/32": ["--method", "rfm", "--fourier-features", "128", "--fourier-scale", "32"],
    "rfm 256x4 ff256/16": ["--method", "rfm", "--fourier-features", "256", "--fourier-scale", "16"],
    "rfm 512x4 ff128/16": ["--method", "rfm", "--hidden", "512", *FF],
    "rfm 256x4 ff128/16 batch 2048": ["--method", "rfm", "--batch-size", "2048", *FF],
    "rfm 256x4 ff128/16 lr 3e-3": ["--method", "rfm", "--lr", "3e-3", *FF],
    "rfm 512x6": ["--method", "rfm", "--hidden", "512", "--depth", "6"],
    "moser 256x4": ["--method", "moser"],
    "moser 256x4 ff64/8": ["--method", "moser", "--fourier-features", "64", "--fourier-scale", "8"],
    "moser 256x4 ff128/16": ["--method", "moser", *FF],
    "ppd 256x4": ["--method", "ppd"],
    "moser 256x4 ff64/4": ["--method", "moser", "--fourier-features", "64", "--fourier-scale", "4"],
}
"""Variants of the ablation: one lever changed at a time from the defaults (raw coordinates, 256x4, batch 512)."""


DEFAULTS_TAG = "defaults"
"""Tag of the runs with no option but the budget: the recipe a user gets."""


def load_results() -> List[dict]:
    """Every finished run in the results file."""
    if not RESULTS.exists():
        return []
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def run_one(tag: str, data: str, minutes: float, seed: int, protocol: str, extra: List[str]) -> Optional[dict]:
    """Train one budgeted run through the CLI (skipped if the results file has it); returns its record."""
    key = dict(tag=tag, data=data, minutes=minutes, seed=seed, protocol=protocol)
    for rec in load_results():
        if all(rec.get(k) == v for k, v in key.items()):
            print(f"have {key}: test NLL {rec['test_nll']:.3f}", flush=True)
            return rec
    out = RUNS / f"{tag.replace(' ', '_').replace('/', '-')}-{data}-{protocol}-m{minutes:g}-s{seed}"
    cmd = [sys.executable, "-m", "manifold_flows.cli", "train", "--data", data, "--minutes", str(minutes), "--seed",
           str(seed), "--out", str(out), "--no-progress", "--no-plot", "--overwrite", *PROTOCOLS[protocol], *extra]
    print("$", shlex.join(cmd[1:]), flush=True)
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr[-3000:], flush=True)
        return None
    m = json.loads((out / "metrics.json").read_text())
    rec = dict(key, args=extra, test_nll=m["test_nll"], val_nll=m["val_nll"], steps=m["steps"],
               best_step=m["best_step"], train_seconds=m["train_seconds"], likelihood=m["likelihood"],
               n_test=m["n_test"], validation_seconds=round(sum(h.get("val_seconds", 0.0) for h in m["history"]), 1),
               history=[(h["step"], round(h["val_nll"], 4)) for h in m["history"]],
               date=datetime.date.today().isoformat(), machine=machine())
    for k in ("log_normalizer", "ode_abs_diff_mean", "negative_mass"):
        if k in m:
            rec[k] = m[k]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"{tag} {data} {protocol} seed {seed}: test NLL {rec['test_nll']:.3f} ({rec['steps']} steps)", flush=True)
    return rec


def mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f}±{statistics.stdev(values):.2f}"


def budget_report(results: List[dict]) -> None:
    """The table of the defaults at each time budget, beside the published rows."""
    runs = [r for r in results if r["tag"] == DEFAULTS_TAG]
    if not runs:
        return
    datas = [d for d in ("volcano", "earthquake", "flood") if any(r["data"] == d for r in runs)]
    rows = ["| budget | protocol | seeds | " + " | ".join(datas) + " |", "|---" * (len(datas) + 3) + "|"]
    for minutes in sorted({r["minutes"] for r in runs}):
        for protocol in ("all", "distinct"):
            cells, seeds = [], set()
            for d in datas:
                rs = [r for r in runs if r["minutes"] == minutes and r["protocol"] == protocol and r["data"] == d]
                seeds |= {r["seed"] for r in rs}
                steps = f", {min(r['steps'] for r in rs)}-{max(r['steps'] for r in rs)} steps" if rs else ""
                cells.append(f"{mean_std([r['test_nll'] for r in rs])}{steps}" if rs else "")
            if any(cells):
                rows.append(f"| {minutes:g} min | {protocol} | {len(seeds)} | " + " | ".join(cells) + " |")
    for name, row in PUBLISHED.items():
        rows.append(f"| published: {name} | all rows | 5 | " + " | ".join(f"{row[d]:.2f}" for d in datas) + " |")
    cfg = runs[0]
    write_section("Earth test NLL at CPU budgets (the defaults)", (
        "`manifold-flows train --data SET --minutes M --seed S [--dedupe]` with nothing else set: the defaults a user "
        "gets. Protocol 'all': random 80/10/10 split of all rows per seed (the published one); 'distinct': exact "
        "duplicate locations removed first (most volcano rows are duplicates, so 'all' rewards memorising them). Test "
        "NLL of the best-validation EMA checkpoint (mean±std over seeds; steps reached in the budget). Likelihood: "
        f"{cfg['likelihood']}. Machine: {cfg['machine']}; the other core ran other single-thread jobs "
        "(pinned, one thread) during these runs. Published rows: GPU-days of training.\n\n" + "\n".join(rows)))


def changes_report(results: List[dict]) -> None:
    """Runs of ``run --tag T -- OPTIONS`` (the defaults with options changed) beside the defaults' same run."""
    runs = [r for r in results if r["tag"] != DEFAULTS_TAG and r["tag"] not in ABLATION]
    if not runs:
        return
    rows = ["| data | minutes | protocol | seed | changed | test NLL | validation NLL | steps | defaults: test NLL, "
            "validation NLL, steps | best published |", "|---" * 10 + "|"]
    for r in sorted(runs, key=lambda r: (r["minutes"], r["data"], r["tag"])):
        base = [b for b in results if b["tag"] == DEFAULTS_TAG and all(b[k] == r[k] for k in
                                                                        ("data", "minutes", "seed", "protocol"))]
        ref = f"{base[0]['test_nll']:.3f}, {base[0]['val_nll']:.3f}, {base[0]['steps']}" if base else "not run"
        rows.append(f"| {r['data']} | {r['minutes']:g} | {r['protocol']} | {r['seed']} | `{shlex.join(r['args'])}` | "
                    f"{r['test_nll']:.3f} | {r['val_nll']:.3f} | {r['steps']} | {ref} | "
                    f"{BEST_PUBLISHED[r['data']]:.2f} |")
    write_section("Earth: the defaults with one option changed", (
        "`manifold-flows train --data SET --minutes M --seed S OPTIONS` (`bench_earth.py run --tag T -- OPTIONS`), "
        "beside the same run with the defaults; best-validation EMA checkpoint. Likelihood: "
        f"{runs[0]['likelihood']}. Machine: {runs[0]['machine']}; one run per core, one torch thread.\n\n"
        + "\n".join(rows)))


def report() -> None:
    """Write the ablation and budget tables of BENCHMARKS.md from the results file."""
    results = load_results()
    budget_report(results)
    changes_report(results)
    abl = [r for r in results if r["tag"] in ABLATION]
    tables = []
    for minutes in sorted({r["minutes"] for r in abl}):
        at = [r for r in abl if r["minutes"] == minutes]
        datas = [d for d in ("volcano", "earthquake", "flood") if any(r["data"] == d for r in at)]
        rows = [f"**{minutes:g} minutes**\n", "| variant | " + " | ".join(f"{d} (steps)" for d in datas) + " |",
                "|---" * (len(datas) + 1) + "|"]
        for tag in ABLATION:
            cells = []
            for d in datas:
                rs = [r for r in at if r["tag"] == tag and r["data"] == d]
                cells.append(f"{mean_std([r['test_nll'] for r in rs])} ({rs[0]['steps']})" if rs else "")
            if any(cells):
                rows.append(f"| {tag} | " + " | ".join(cells) + " |")
        tables.append("\n".join(rows))
    if tables:
        write_section("Earth ablation (CPU budget)", (
            "Test NLL (seed 0, 'all rows' protocol) after M minutes of training and validation per run "
            "(`bench_earth.py ablation`); one lever changed at a time from the old defaults (raw coordinates, MLP "
            f"256x4, batch 512, lr 1e-3). Likelihood: {abl[0]['likelihood']}. Machine: {abl[0]['machine']}.\n\n"
            + "\n\n".join(tables)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", required=True)
    r.add_argument("--minutes", type=float, required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--protocol", choices=sorted(PROTOCOLS), default="all")
    r.add_argument("--tag", required=True)
    r.add_argument("extra", nargs=argparse.REMAINDER)
    a = sub.add_parser("ablation")
    a.add_argument("--minutes", type=float, default=3.0)
    a.add_argument("--data", nargs="+", default=["earthquake", "flood"])
    a.add_argument("--only", nargs="*", default=None, help="variant tags to run (default: all)")
    b = sub.add_parser("budget", help="the defaults (what a user gets) at a time budget, several seeds and protocols")
    b.add_argument("--minutes", type=float, default=10.0)
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    b.add_argument("--data", nargs="+", default=["volcano", "earthquake", "flood"])
    b.add_argument("--protocols", nargs="+", choices=sorted(PROTOCOLS), default=["all", "distinct"])
    sub.add_parser("report")
    args = p.parse_args()
    if args.cmd == "run":
        extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
        run_one(args.tag, args.data, args.minutes, args.seed, args.protocol, extra)
    elif args.cmd == "budget":
        for minutes in [args.minutes]:
            for seed in args.seeds:
                for protocol in args.protocols:
                    for data in args.data:
                        run_one(DEFAULTS_TAG, data, minutes, seed, protocol, [])
        report()
    elif args.cmd == "ablation":
        for data in args.data:
            for tag, extra in ABLATION.items():
                if args.only is None or tag in args.only:
                    run_one(tag, data, args.minutes, 0, "all", extra)
        report()
    else:
        report()


if __name__ == "__main__":
    main()
