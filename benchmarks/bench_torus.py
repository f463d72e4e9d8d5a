"""High-dimensional flat tori T^d (d = 2 ... 100): training step time, likelihood time and known-density gap.

    python benchmarks/bench_torus.py speed [--dims 2 5 10 20 50 100]
    python benchmarks/bench_torus.py gap --minutes 2 [--dims ...]
    python benchmarks/bench_torus.py report

``speed`` times one training step of RFM, Moser Flow and PPD (exact and Hutchinson divergences)
and the augmented-ODE likelihood of 500 points (exact and Hutchinson) at each dimension, on
fresh networks (costs do not depend on the weights). ``gap`` trains RFM on ``torus_mixture_t{d}``
through the command line with a time budget, then re-evaluates the best checkpoint's test NLL on
300 test points with both divergences: the spread of their difference is the noise Hutchinson's
estimator adds to a test NLL. Records go to ``benchmarks/results/torus.jsonl`` as they finish
(``BENCH_RESULTS_DIR`` moves it); ``report`` writes BENCHMARKS.md from the file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import interleaved_medians, machine, write_section  # noqa: E402
from bench_manifold_gaps import RESULTS_DIR, load_results, run_cli  # noqa: E402

from manifold_flows import PPD, RFM, MoserFlow, VectorField  # noqa: E402
from manifold_flows.builders import build_objective  # noqa: E402
from manifold_flows.checkpoint import load_checkpoint  # noqa: E402
from manifold_flows.config import TrainConfig  # noqa: E402
from manifold_flows.datasets import load_dataset  # noqa: E402
from manifold_flows.divergence import HUTCHINSON_ABOVE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = RESULTS_DIR / "torus.jsonl"
DIMS = (2, 5, 10, 20, 50, 100)
BATCH, HIDDEN, DEPTH = 512, 256, 4


def _append(rec: dict) -> None:
    rec.update(date=datetime.date.today().isoformat(), machine=machine())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)


def _step(obj, x: torch.Tensor, gen: torch.Generator):
    opt = torch.optim.AdamW(obj.net.parameters(), lr=1e-4)

    def step():
        loss = obj.loss(x[torch.randint(0, x.shape[0], (BATCH,), generator=gen)], generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def speed(dims: List[int], repeats: int) -> None:
    for d in dims:
        torch.manual_seed(0)
        data = load_dataset(f"torus_mixture_t{d}", n_synthetic=4000, seed=0)
        m = data["manifold"]
        x, val = data["train"].float(), data["val"].float()
        gen = torch.Generator().manual_seed(0)
        fns = {"rfm": _step(RFM(m, VectorField(m, hidden=HIDDEN, depth=DEPTH)), x, gen)}
        for est in ("exact", "hutchinson"):
            net = VectorField(m, hidden=HIDDEN, depth=DEPTH, activation="softplus100", time_dependent=False,
                              zero_init=True)
            fns[f"moser_{est}"] = _step(MoserFlow(m, net, divergence=est), x, gen)
            ppd = PPD(m, VectorField(m, hidden=HIDDEN, depth=DEPTH), norm=1, divergence=est, kappa1=100.0, uniform=0.01)
            ppd.prepare(x, val)
            fns[f"ppd_{est}"] = _step(ppd, x, gen)
        t = interleaved_medians(fns, repeats=repeats, warmup=3)
        rfm = RFM(m, VectorField(m, hidden=HIDDEN, depth=DEPTH))
        pts = data["test"].float()[:500]
        lik = {}
        for est in ("exact", "hutchinson"):
            t0 = time.perf_counter()
            rfm.log_prob(pts, solver="rk4", solver_steps=20, divergence=est)
            lik[est] = time.perf_counter() - t0
        _append(dict(kind="speed", dim=d, batch=BATCH, hidden=HIDDEN, depth=DEPTH, repeats=repeats,
                     step_ms={k: round(v * 1e3, 2) for k, v in t.items()},
                     likelihood_s={k: round(v, 2) for k, v in lik.items()}, likelihood_points=500, likelihood_steps=20))


def _load_best(out: Path):
    ck = load_checkpoint(out / "best.pt", require=("config", "ema"))
    cfg = TrainConfig.from_dict(ck["config"]).resolved()
    data = load_dataset(cfg.data, seed=cfg.seed, n_synthetic=cfg.n_synthetic)
    obj = build_objective(cfg, data["manifold"])
    obj.net.load_state_dict(ck["ema"])
    return obj.eval(), data


ABLATION = {"ff128": ["--fourier-features", "128"]}
"""Input-feature variants run at the largest dimensions: 128 random integer-frequency features of the angles."""


def gap(dims: List[int], minutes: float, seed: int, ablation_dims: List[int]) -> None:
    gaps_file = RESULTS_DIR / "torus_gaps.jsonl"
    for d in dims:
        tag = f"torus{d}-rfm"
        rec = run_cli(tag, f"torus_mixture_t{d}", "rfm", minutes, seed, [], gaps_file, ROOT / "runs" / "bench-torus")
        if rec is None:
            continue
        have = [r for r in load_results(RESULTS)
                if r.get("kind") == "noise" and r["dim"] == d and r["minutes"] == minutes and r["seed"] == seed]
        if have:
            continue
        obj, data = _load_best(ROOT / "runs" / "bench-torus" / f"{tag}-m{minutes:g}-s{seed}")
        pts = data["test"].float()[:300]
        out, secs = {}, {}
        for est in ("exact", "hutchinson"):
            t0 = time.perf_counter()
            out[est] = obj.log_prob(pts, solver="rk4", solver_steps=25, divergence=est).double()
            secs[est] = round(time.perf_counter() - t0, 2)
        diff = out["hutchinson"] - out["exact"]
        _append(dict(kind="noise", dim=d, minutes=minutes, seed=seed, points=300, solver_steps=25,
                     nll_exact=float(-out["exact"].mean()), nll_hutchinson=float(-out["hutchinson"].mean()),
                     per_point_std=float(diff.std()), se_1000=float(diff.std() / math.sqrt(1000)), seconds=secs))
    for name, extra in ABLATION.items():
        for d in ablation_dims:
            run_cli(f"torus{d}-rfm-{name}", f"torus_mixture_t{d}", "rfm", minutes, seed, extra, gaps_file,
                    ROOT / "runs" / "bench-torus")


def report() -> None:
    recs = load_results(RESULTS)
    all_gaps = load_results(RESULTS_DIR / "torus_gaps.jsonl")
    gaps = {int(r["data"].rsplit("t", 1)[1]): r for r in all_gaps if not r["args"]}
    variants = [r for r in all_gaps if r["args"]]
    speed_recs = {r["dim"]: r for r in recs if r.get("kind") == "speed"}
    noise = {r["dim"]: r for r in recs if r.get("kind") == "noise"}
    dims = sorted(set(speed_recs) | set(gaps))
    if not dims:
        print("no results yet")
        return
    rows = ["| d | RFM step (ms) | Moser step exact / Hutch. (ms) | PPD step exact / Hutch. (ms) | likelihood exact / "
            "Hutch. (s) | RFM test NLL | target NLL | gap | RFM steps | Hutch. noise on a 1,000-point NLL |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for d in dims:
        s, g, n = speed_recs.get(d), gaps.get(d), noise.get(d)
        cells = [str(d)]
        if s:
            ms = s["step_ms"]
            cells += [f"{ms['rfm']:.1f}", f"{ms['moser_exact']:.1f} / {ms['moser_hutchinson']:.1f}",
                      f"{ms['ppd_exact']:.1f} / {ms['ppd_hutchinson']:.1f}",
                      f"{s['likelihood_s']['exact']:.2f} / {s['likelihood_s']['hutchinson']:.2f}"]
        else:
            cells += [""] * 4
        cells += ([f"{g['test_nll']:.3f}", f"{g['target_nll']:.3f}", f"{g['gap']:.3f}", str(g["steps"])] if g
                  else [""] * 4)
        cells.append(f"{n['se_1000']:.4f}" if n else "")
        rows.append("| " + " | ".join(cells) + " |")
    if variants:
        rows += ["", "Input features at the largest dimensions (same budget; the harmonics stay):", "",
                 "| d | options | RFM test NLL | gap | RFM steps | default's gap |", "|---|---|---|---|---|---|"]
        for r in variants:
            d = int(r["data"].rsplit("t", 1)[1])
            base = f"{gaps[d]['gap']:.3f}" if d in gaps else ""
            rows.append(f"| {d} | `{' '.join(r['args'])}` | {r['test_nll']:.3f} | {r['gap']:.3f} | {r['steps']} | "
                        f"{base} |")
    any_rec = next(iter(speed_recs.values()), None) or next(iter(gaps.values()))
    minutes = sorted({g["minutes"] for g in gaps.values()})
    body = "\n".join([
        "Targets `torus_mixture_t{d}`: four equal-weight wrapped normals (std 0.6 per angle, means uniform from a "
        f"fixed seed). Step times: median of interleaved runs, MLP {DEPTH}x{HIDDEN}, batch {BATCH}, fresh networks, "
        "one AdamW step; Moser Flow and PPD differentiate a divergence (exact: d backward passes; Hutchinson: one "
        "Rademacher probe). Likelihood: 500 points, RK4 with 20 steps, fresh RFM network. RFM gap: `manifold-flows "
        f"train --data torus_mixture_t{{d}} --minutes {'/'.join(f'{m:g}' for m in minutes)}` (defaults; likelihoods "
        f"exact up to d = {HUTCHINSON_ABOVE}, Hutchinson above), test NLL on 1,000 points with RK4 100 steps minus the "
        "target's. Hutchinson noise: the standard deviation over 300 test points of the Hutchinson minus exact "
        f"log-likelihood (RK4, 25 steps, trained model), divided by sqrt(1000). Measured on {any_rec['machine']}, one "
        "core of a 2-core AMD EPYC, one torch thread (queue jobs).",
        "",
        *rows,
    ])
    print(body)
    write_section("High-dimensional flat tori", body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    s.add_argument("--repeats", type=int, default=15)
    g = sub.add_parser("gap")
    g.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    g.add_argument("--minutes", type=float, default=2.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--ablation-dims", type=int, nargs="*", default=[50, 100])
    sub.add_parser("report")
    args = p.parse_args()
    if args.cmd == "speed":
        speed(args.dims, args.repeats)
    elif args.cmd == "gap":
        gap(args.dims, args.minutes, args.seed, args.ablation_dims)
    else:
        report()


if __name__ == "__main__":
    main()
