"""Riemannian Flow Matching benchmarks: earth NLL table, known-density gaps, and speed.

    python benchmarks/bench_rfm.py earth --minutes 2 --seeds 0 1 2
    python benchmarks/bench_rfm.py gap --minutes 10
    python benchmarks/bench_rfm.py speed

Each subcommand writes its own section of BENCHMARKS.md. Training runs are budgeted in
wall-clock minutes: a short calibration measures the step rate and the run gets as many steps
as fit (so the cosine schedule still anneals to zero), with four validations along the way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import interleaved_medians, write_section  # noqa: E402

from manifold_flows.builders import build_objective, load_data  # noqa: E402
from manifold_flows.config import TrainConfig  # noqa: E402
from manifold_flows.nets import VectorField  # noqa: E402
from manifold_flows.objectives import RFM  # noqa: E402
from manifold_flows.training import train  # noqa: E402
from manifolds import Euclidean, Sphere  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = {  # test NLL, REFERENCES.md section 2
    "volcano": {"Moser Flow": "-2.02±0.42", "PPD / CNF Matching": "-2.38±0.17", "Riemannian diffusion": "-6.61±0.97",
                "RFM (2024)": "-7.93±1.67"},
    "earthquake": {"Moser Flow": "-0.09±0.02", "PPD / CNF Matching": "-0.38±0.01", "Riemannian diffusion": "-0.40±0.05",
                   "RFM (2024)": "-0.28±0.08"},
    "flood": {"Moser Flow": "0.62±0.04", "PPD / CNF Matching": "0.25±0.02", "Riemannian diffusion": "0.43±0.07",
              "RFM (2024)": "0.42±0.05"},
}
BEST_PUBLISHED = {"volcano": -7.93, "earthquake": -0.40, "flood": 0.25}


def training_step(cfg: TrainConfig) -> Callable[[], None]:
    """One optimiser step of ``cfg``'s objective on its training data (float32, fixed seeds)."""
    cfg = cfg.resolved()
    data = load_data(cfg)
    torch.manual_seed(0)
    obj = build_objective(cfg, data["manifold"])
    x = data["train"].to(torch.float32)
    obj.prepare(x, data["val"].to(torch.float32))
    opt = torch.optim.AdamW(obj.net.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(0, x.shape[0], (cfg.batch_size,), generator=g)
        loss = obj.loss(x[idx], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def budgeted_config(cfg: TrainConfig, minutes: float) -> TrainConfig:
    """``cfg`` with as many steps as fit in ``minutes`` at the measured training rate."""
    cfg = cfg.resolved()
    step = training_step(cfg)
    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(40):
        step()
    rate = 40 / (time.perf_counter() - t0)
    steps = max(50, int(0.85 * minutes * 60 * rate))  # leave room for validations
    return replace(cfg, steps=steps, eval_every=max(1, steps // 4), warmup=min(cfg.warmup, steps // 10))


def mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f}±{statistics.stdev(values):.2f}"


def bench_earth(args) -> None:
    rows = []
    results: Dict[str, Dict[str, List[float]]] = {}
    for name in args.datasets:
        for dedupe in (False, True):
            protocol = "distinct points" if dedupe else "all rows"
            nlls, base = [], []
            for seed in args.seeds:
                out = ROOT / "runs" / "bench" / f"{name}-{'dedupe' if dedupe else 'all'}-{seed}"
                cfg = TrainConfig(data=name, method="rfm", seed=seed, dedupe=dedupe, out=str(out),
                                  hidden=args.hidden, depth=args.depth, batch_size=args.batch_size, lr=args.lr,
                                  plot=False, progress=False, solver_steps=args.solver_steps)
                cfg = budgeted_config(cfg, args.minutes)
                m = train(cfg)
                nlls.append(m["test_nll"])
                base.append(m["base_nll"])
                print(f"{name} {protocol} seed {seed}: test NLL {m['test_nll']:.3f} ({cfg.steps} steps, "
                      f"{m['train_seconds']:.0f} s)", flush=True)
            results.setdefault(name, {})[protocol] = nlls
            rows.append(f"| {name} | {protocol} | {mean_std(nlls)} | {cfg.steps} | {statistics.mean(base):.2f} | "
                        f"{BEST_PUBLISHED[name]:.2f} | "
                        f"{'yes' if statistics.mean(nlls) < BEST_PUBLISHED[name] else 'no'} |")
    pub = ["| method | " + " | ".join(args.datasets) + " |", "|---|" + "---|" * len(args.datasets)]
    for method in PUBLISHED["volcano"]:
        pub.append(f"| {method} (published) | " + " | ".join(PUBLISHED[d][method] for d in args.datasets) + " |")
    body = "\n".join([
        f"RFM, MLP {args.depth}×{args.hidden} (SiLU), batch {args.batch_size}, AdamW lr {args.lr} with cosine decay, "
        f"EMA 0.999, {args.minutes:g} CPU-minutes of training per run, seeds {args.seeds}; random 80/10/10 split per "
        f"seed, best-validation EMA checkpoint tested; likelihood by RK4 with {args.solver_steps} steps and the exact "
        "divergence. 'distinct points' removes exact duplicates before splitting (volcano: 267 of 827 rows).",
        "",
        "| data | protocol | test NLL (mean±std) | steps | uniform NLL | best published | beats it |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Published rows (GPU-days of training, 'all rows' protocol; REFERENCES.md):",
        "",
        *pub,
    ])
    print(body)
    write_section("RFM on the earth data sets (CPU budget)", body)


def bench_gap(args) -> None:
    rows = []
    for name in ("vmf_mixture_s2", "wrapped_normal_t2"):
        gaps = []
        for seed in args.seeds:
            cfg = TrainConfig(data=name, method="rfm", seed=seed, out=str(ROOT / "runs" / "bench" / f"{name}-{seed}"),
                              hidden=args.hidden, depth=args.depth, batch_size=args.batch_size, lr=args.lr, plot=False,
                              progress=False, solver_steps=args.solver_steps)
            cfg = budgeted_config(cfg, args.minutes)
            m = train(cfg)
            gaps.append(m["gap"])
            print(f"{name} seed {seed}: test NLL {m['test_nll']:.4f}, target NLL {m['target_nll']:.4f}, "
                  f"gap {m['gap']:.4f}", flush=True)
            rows.append(f"| {name} | {seed} | {m['test_nll']:.4f} | {m['target_nll']:.4f} | {m['gap']:.4f} | "
                        f"{cfg.steps} |")
        rows.append(f"| {name} | mean | | | {statistics.mean(gaps):.4f} | |")
    body = "\n".join([
        "Test NLL minus the exact NLL of the target on the same 1,000 test points (10,000 samples, 80/10/10). RFM, "
        f"MLP {args.depth}×{args.hidden}, batch {args.batch_size}, {args.minutes:g} CPU-minutes per run. Target: gap ≤ "
        "0.05 nats.",
        "",
        "| target | seed | test NLL | target NLL | gap | steps |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    print(body)
    write_section("RFM known-density gap", body)


def bench_speed(args) -> None:
    torch.manual_seed(0)
    b, lines = args.batch_size, []
    sphere, eucl = Sphere(2), Euclidean(3)
    x1_s = sphere.random_base(b)
    x1_e = torch.randn(b, 3)
    rfm = RFM(sphere, VectorField(sphere, hidden=args.hidden, depth=args.depth))
    fm_net = VectorField(eucl, hidden=args.hidden, depth=args.depth)
    fm_net.load_state_dict(rfm.net.state_dict())

    def rfm_step():
        loss = rfm.loss(x1_s)
        rfm.net.zero_grad()
        loss.backward()

    def fm_step():  # plain Euclidean flow matching, same network and batch
        x0 = torch.randn_like(x1_e)
        t = torch.rand(b)
        xt = x0 + t[:, None] * (x1_e - x0)
        loss = (fm_net(xt, t) - (x1_e - x0)).pow(2).sum(-1).mean()
        fm_net.zero_grad()
        loss.backward()

    t = interleaved_medians({"rfm": rfm_step, "fm": fm_step}, repeats=args.repeats, warmup=5)
    lines += [
        f"One training step (forward + backward), MLP {args.depth}×{args.hidden}, batch {b}, median of {args.repeats}:",
        "",
        "| step | ms | ratio |",
        "|---|---|---|",
        f"| Euclidean flow matching in R^3 | {t['fm'] * 1e3:.2f} | 1.00 |",
        f"| RFM on S^2 (geodesic path, tangent projections, Riemannian norm) | {t['rfm'] * 1e3:.2f} | "
        f"{t['rfm'] / t['fm']:.2f} |",
        "",
    ]
    n = 10_000
    x = sphere.random_base(n)
    timing = []
    for method in ("euler", "rk4"):
        ts = interleaved_medians({
            "sample": partial(rfm.sample, n, solver_steps=100, solver=method),
            "loglik": partial(rfm.log_prob, x, solver_steps=100, solver=method),
        }, repeats=3, warmup=1)
        timing.append(f"| {method} | {ts['sample']:.2f} | {ts['loglik']:.2f} |")
    lines += [f"Sampling and exact likelihood of {n:,} points with 100 solver steps (seconds):", "",
              "| solver | sample | log-likelihood |", "|---|---|---|", *timing, ""]

    # NLL against the number of solver steps, with and without the OT coupling
    steps_list = (10, 20, 50, 100, 1000)
    res = {}
    for coupling in ("independent", "ot"):
        cfg = TrainConfig(data="vmf_mixture_s2", method="rfm", coupling=coupling, seed=0, hidden=args.hidden,
                          depth=args.depth, batch_size=b, plot=False, progress=False,
                          out=str(ROOT / "runs" / "bench" / f"steps-{coupling}"))
        cfg = budgeted_config(cfg, args.minutes)
        m = train(cfg)
        obj = build_objective(cfg, Sphere(2))
        obj.net.load_state_dict(torch.load(Path(cfg.out) / "best.pt", weights_only=False)["ema"])
        test = load_data(cfg)["test"].to(torch.float32)
        for method in ("euler", "rk4"):
            res[(coupling, method)] = [float(-obj.log_prob(test, solver_steps=s, solver=method).mean())
                                       for s in steps_list]
        res[(coupling, "target")] = m["target_nll"]
        res[(coupling, "steps")] = cfg.steps
    header = "| coupling | solver | " + " | ".join(str(s) for s in steps_list) + " |"
    lines += [f"Test NLL on vmf_mixture_s2 against solver steps ({args.minutes:g} CPU-minutes of training each; "
              f"target NLL {res[('independent', 'target')]:.3f}):", "", header, "|---|---|" + "---|" * len(steps_list)]
    for coupling in ("independent", "ot"):
        for method in ("euler", "rk4"):
            vals = " | ".join(f"{v:.3f}" for v in res[(coupling, method)])
            lines.append(f"| {coupling} ({res[(coupling, 'steps')]} steps) | {method} | {vals} |")
    body = "\n".join(lines)
    print(body)
    write_section("RFM speed and solver steps", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["earth", "gap", "speed"])
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["volcano", "earthquake", "flood"])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--solver-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    {"earth": bench_earth, "gap": bench_gap, "speed": bench_speed}[args.which](args)


if __name__ == "__main__":
    main()
