"""RFM, Moser Flow and PPD side by side: earth NLL table, known-density gaps, step cost and NFE.

    python benchmarks/bench_methods.py earth --minutes 0.75 --seeds 0 1 2
    python benchmarks/bench_methods.py gap --minutes 1.5 --seeds 0
    python benchmarks/bench_methods.py speed

Every method runs with the same network (MLP 4×256), batch (512), wall-clock budget, splits and
evaluation; only the objective and its per-method defaults (``METHOD_DEFAULTS``) differ. Each
finished run is appended to ``runs/bench/methods/results.jsonl`` so an interrupted benchmark
keeps what it measured, and each subcommand writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import interleaved_medians, write_section  # noqa: E402
from bench_rfm import PUBLISHED, ROOT, budgeted_config, mean_std  # noqa: E402

from manifold_flows.builders import build_objective, load_data  # noqa: E402
from manifold_flows.config import TrainConfig  # noqa: E402
from manifold_flows.likelihood import log_likelihood, sample  # noqa: E402
from manifold_flows.training import train  # noqa: E402
from manifolds import Sphere  # noqa: E402

RESULTS = ROOT / "runs" / "bench" / "methods" / "results.jsonl"
NAMES = {"rfm": "RFM", "moser": "Moser Flow", "ppd": "PPD"}
PUBLISHED_ROW = {"rfm": "RFM (2024)", "moser": "Moser Flow", "ppd": "PPD / CNF Matching"}


def run(kind: str, data: str, method: str, seed: int, minutes: float, args) -> Dict:
    out = ROOT / "runs" / "bench" / "methods" / f"{kind}-{data}-{method}-{seed}"
    cfg = TrainConfig(data=data, method=method, seed=seed, out=str(out), hidden=args.hidden, depth=args.depth,
                      batch_size=args.batch_size, plot=False, progress=False, solver_steps=args.solver_steps)
    cfg = budgeted_config(cfg, minutes)
    m = train(cfg)
    rec = {"kind": kind, "data": data, "method": method, "seed": seed, "minutes": minutes, "steps": cfg.steps,
           **{k: m[k] for k in ("test_nll", "val_nll", "base_nll", "train_seconds", "target_nll", "gap",
                                "negative_mass", "total_mass", "explicit_nll", "ode_nll", "ode_abs_diff_mean",
                                "ode_abs_diff_max", "path_nll") if k in m}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)
    return rec


def bench_earth(args) -> None:
    recs: Dict[str, Dict[str, List[Dict]]] = {}
    for data in args.datasets:
        for method in args.methods:
            for seed in args.seeds:
                rec = run("earth", data, method, seed, args.minutes, args)
                recs.setdefault(data, {}).setdefault(method, []).append(rec)
    rows = []
    for method in args.methods:
        cells = []
        for data in args.datasets:
            rs = recs[data][method]
            cells.append(f"{mean_std([r['test_nll'] for r in rs])} "
                         f"({statistics.mean(r['steps'] for r in rs):.0f} steps)")
        rows.append(f"| {NAMES[method]}, {args.minutes:g} CPU-min | " + " | ".join(cells) + " |")
    for method in args.methods:
        rows.append(f"| {NAMES[method]} (published) | " +
                    " | ".join(PUBLISHED[d][PUBLISHED_ROW[method]] for d in args.datasets) + " |")
    extra = []
    for data in args.datasets:
        if "moser" in recs[data]:
            rs = recs[data]["moser"]
            extra.append(f"| {data} | {statistics.mean(r['negative_mass'] for r in rs):.4f} | "
                         f"{statistics.mean(r['total_mass'] for r in rs):.3f} | "
                         f"{statistics.mean(r['explicit_nll'] for r in rs):.3f} | "
                         f"{statistics.mean(r['ode_nll'] for r in rs):.3f} | "
                         f"{statistics.mean(r['ode_abs_diff_mean'] for r in rs):.4f} |")
    ppd_rows = [f"| {d} | {mean_std([r['path_nll'] for r in recs[d]['ppd']])} | "
                f"{mean_std([r['test_nll'] for r in recs[d]['ppd']])} |"
                for d in args.datasets if "ppd" in recs[d]]
    body = "\n".join([
        f"Test NLL (nats, mean±std over seeds {args.seeds}), every method with MLP {args.depth}×{args.hidden}, batch "
        f"{args.batch_size}, AdamW with cosine decay and EMA 0.999, {args.minutes:g} CPU-minutes of training per run "
        "(steps calibrated to the budget), random 80/10/10 split per seed ('all rows' protocol), best-validation EMA "
        f"checkpoint tested. RFM and PPD likelihoods: RK4 with {args.solver_steps} steps and the exact divergence; "
        "Moser Flow: explicit log max(ε, μ). Uniform on S^2 scores 2.531.",
        "",
        "| method | " + " | ".join(args.datasets) + " |",
        "|---|" + "---|" * len(args.datasets),
        *rows,
        "",
        "Moser Flow checks on the test split (means over seeds): mass of μ below zero and total mass (100,000 uniform "
        "points; should be 1), and the explicit NLL against the ODE likelihood of the sampler on the first 200 test "
        f"points (RK4, {args.solver_steps} steps):",
        "",
        "| data | negative mass | total mass | explicit NLL | ODE NLL | mean abs log-density difference |",
        "|---|---|---|---|---|---|",
        *extra,
        "",
        "PPD: test NLL of the target path's t = 1 end (the kernel density estimate, bandwidth picked on validation) "
        "beside the trained model's:",
        "",
        "| data | target path NLL | model NLL |",
        "|---|---|---|",
        *ppd_rows,
    ])
    print(body)
    write_section("Three objectives on the earth data sets (CPU budget)", body)


def bench_gap(args) -> None:
    rows = []
    for data in ("vmf_mixture_s2", "wrapped_normal_t2"):
        for method in args.methods:
            gaps = [run("gap", data, method, seed, args.minutes, args) for seed in args.seeds]
            gap_values = [r["gap"] for r in gaps]
            gap_cell = mean_std(gap_values) if len(gaps) > 1 else f"{gap_values[0]:.4f}"
            rows.append(f"| {data} | {NAMES[method]} | {statistics.mean(r['test_nll'] for r in gaps):.4f} | "
                        f"{gaps[0]['target_nll']:.4f} | {gap_cell} | {statistics.mean(r['steps'] for r in gaps):.0f} |")
    body = "\n".join([
        "Test NLL minus the exact NLL of the target on the same 1,000 test points (10,000 samples, 80/10/10), MLP "
        f"{args.depth}×{args.hidden}, batch {args.batch_size}, {args.minutes:g} CPU-minutes per run, seeds "
        f"{args.seeds}.",
        "",
        "| target | method | test NLL | target NLL | gap | steps |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    print(body)
    write_section("Three objectives: known-density gaps", body)


class Counted:
    """A field that counts its evaluations."""

    def __init__(self, field):
        self.field, self.n = field, 0

    def __call__(self, x, t):
        self.n += 1
        return self.field(x, t)


def bench_speed(args) -> None:
    torch.manual_seed(0)
    sphere = Sphere(2)
    cfgs = {m: TrainConfig(data="earthquake", method=m, hidden=args.hidden, depth=args.depth,
                           batch_size=args.batch_size)
            for m in args.methods}
    data = load_data(cfgs[args.methods[0]])
    x = data["train"].to(torch.float32)
    objs, steps = {}, {}
    g = torch.Generator().manual_seed(0)
    for m, cfg in cfgs.items():
        objs[m] = build_objective(cfg, sphere)
        objs[m].prepare(x, data["val"].to(torch.float32))

        def step(obj=objs[m]):
            loss = obj.loss(x[torch.randint(0, x.shape[0], (args.batch_size,), generator=g)], generator=g)
            obj.net.zero_grad()
            loss.backward()

        steps[m] = step
    t = interleaved_medians(steps, repeats=args.repeats, warmup=3)
    lines = [f"One training step (forward + backward) on earthquake, MLP {args.depth}×{args.hidden}, batch "
             f"{args.batch_size} (Moser: plus {args.batch_size} uniform points for the penalty), median of "
             f"{args.repeats} interleaved rounds:", "", "| method | ms per step | ratio to RFM |", "|---|---|---|"]
    for m in args.methods:
        lines.append(f"| {NAMES[m]} | {t[m] * 1e3:.1f} | {t[m] / t['rfm']:.2f} |")

    # function evaluations of an adaptive solver on trained models (the earth runs' seed-0 checkpoints)
    test = data["test"].to(torch.float32)[: args.nfe_points]
    rows = []
    for m in args.methods:
        ck_path = ROOT / "runs" / "bench" / "methods" / f"earth-earthquake-{m}-0" / "best.pt"
        if not ck_path.exists():
            print(f"skipping NFE for {m}: run the earth benchmark first ({ck_path} missing)")
            continue
        obj = objs[m]
        obj.net.load_state_dict(torch.load(ck_path, weights_only=False)["ema"])
        field = Counted(obj.field())
        t0 = time.perf_counter()
        sample(field, args.nfe_points, manifold=sphere, solver="dopri5", atol=1e-5, rtol=1e-5,
               generator=torch.Generator().manual_seed(1), dtype=torch.float32)
        sample_nfe, sample_s = field.n, time.perf_counter() - t0
        field.n = 0
        t0 = time.perf_counter()
        if m == "moser":
            obj.log_prob(test)
            lik = "0 (explicit: 1 network pass + 3 backward)"
        else:
            log_likelihood(field, test, manifold=sphere, solver="dopri5", atol=1e-5, rtol=1e-5)
            lik = str(field.n)
        lik_s = time.perf_counter() - t0
        rows.append(f"| {NAMES[m]} | {sample_nfe} | {sample_s:.1f} | {lik} | {lik_s:.2f} | {4 * args.solver_steps} |")
    lines += ["", f"Function evaluations of dopri5 (atol = rtol = 1e-5) on the trained earthquake models (seed 0), "
              f"{args.nfe_points} points, and wall-clock seconds; the last column is what fixed-step RK4 with "
              f"{args.solver_steps} steps uses for either task:", "",
              "| method | sample NFE | sample s | likelihood NFE | likelihood s | RK4 NFE |",
              "|---|---|---|---|---|---|", *rows]
    body = "\n".join(lines)
    print(body)
    write_section("Three objectives: step cost and function evaluations", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["earth", "gap", "speed"])
    parser.add_argument("--minutes", type=float, default=0.75, help="training budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["volcano", "earthquake", "flood"])
    parser.add_argument("--methods", nargs="+", default=["rfm", "moser", "ppd"])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--solver-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--nfe-points", type=int, default=500)
    args = parser.parse_args()
    {"earth": bench_earth, "gap": bench_gap, "speed": bench_speed}[args.which](args)


if __name__ == "__main__":
    main()
