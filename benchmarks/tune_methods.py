"""How the per-method defaults (``METHOD_DEFAULTS`` in manifold_flows/config.py) were chosen.

    python benchmarks/tune_methods.py --minutes 0.5 --data earthquake vmf_mixture_s2

Trains every candidate setting under the same wall-clock budget and network, scores it by the
*validation* NLL (the test split is not looked at), and writes a table to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402
from bench_rfm import ROOT, budgeted_config  # noqa: E402

from manifold_flows.config import TrainConfig  # noqa: E402
from manifold_flows.training import train  # noqa: E402

CANDIDATES = {
    "moser": [
        dict(lr=1e-3, activation="softplus100", lam=100.0, zero_init=True),
        dict(lr=1e-4, activation="softplus100", lam=100.0, zero_init=True),
        dict(lr=1e-3, activation="silu", lam=100.0, zero_init=True),
        dict(lr=1e-3, activation="softplus100", lam=2.0, zero_init=True),
        dict(lr=1e-3, activation="softplus100", lam=100.0, zero_init=False),
    ],
    "ppd": [
        dict(lr=1e-3, activation="silu", ppd_norm=2),
        dict(lr=1e-3, activation="silu", ppd_norm=1),
        dict(lr=1e-4, activation="silu", ppd_norm=2),
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=0.5)
    ap.add_argument("--data", nargs="+", default=["earthquake", "vmf_mixture_s2"])
    ap.add_argument("--methods", nargs="+", default=list(CANDIDATES))
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    args = ap.parse_args()
    rows = []
    for method in args.methods:
        for cand in CANDIDATES[method]:
            vals = []
            for data in args.data:
                cfg = TrainConfig(data=data, method=method, hidden=args.hidden, depth=args.depth, plot=False,
                                  progress=False, out=str(ROOT / "runs" / "tune" / f"{method}-{data}"), **cand)
                cfg = budgeted_config(cfg, args.minutes)
                m = train(cfg)
                vals.append(m["val_nll"])
                extra = f", negative mass {m['negative_mass']:.3f}" if "negative_mass" in m else ""
                print(f"{method} {cand} {data}: val NLL {m['val_nll']:.3f} ({cfg.steps} steps{extra})", flush=True)
            setting = ", ".join(f"{k}={v}" for k, v in cand.items())
            rows.append(f"| {method} | {setting} | " + " | ".join(f"{v:.3f}" for v in vals) +
                        f" | {statistics.mean(vals):.3f} |")
    body = "\n".join([
        f"Validation NLL (seed 0) after {args.minutes:g} CPU-minutes of training per run, MLP "
        f"{args.depth}×{args.hidden}, batch 512, AdamW with cosine decay, EMA 0.999. The defaults in `METHOD_DEFAULTS` "
        "are the rows with the lowest mean.",
        "",
        "| method | setting | " + " | ".join(args.data) + " | mean |",
        "|---|---|" + "---|" * (len(args.data) + 1),
        *rows,
    ])
    print(body)
    write_section("Per-method defaults (tuning runs)", body)


if __name__ == "__main__":
    main()
