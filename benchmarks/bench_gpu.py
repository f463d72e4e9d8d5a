"""GPU readiness and speed: sync-free loops under CUDA's sync-debug mode, steps/s at published sizes, one earth run.

    python benchmarks/bench_gpu.py [--minutes 3] [--data earthquake] [--quick]

1. A training step of each objective, an ODE solve and a likelihood evaluation on the sphere and
   the flat torus run under ``torch.cuda.set_sync_debug_mode("error")``: any host synchronisation
   inside those loops raises.
2. Training steps per second of each objective at the published network sizes (512x6 and
   2048x12, batch 8192), medians of timed windows after a warm-up.
3. ``manifold-flows train --device cuda --minutes M`` on one earth set with the published
   earth network (RFM, 2048x12, batch 8192): test NLL, steps reached.

Without CUDA the script says so and exits 0 (nothing is written). With ``--quick`` (a smoke test)
it runs tiny sizes and writes nothing either.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from manifold_flows.config import METHOD_DEFAULTS  # noqa: E402
from manifold_flows.likelihood import log_likelihood, sample  # noqa: E402
from manifold_flows.nets import EMA, VectorField  # noqa: E402
from manifold_flows.objectives import PPD, RFM, MoserFlow  # noqa: E402
from manifolds import FlatTorus, Sphere  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OBJECTIVES = {"rfm": RFM, "moser": MoserFlow, "ppd": PPD}


def make_step(method: str, manifold, hidden: int, depth: int, batch: int, device: str) -> Callable[[], None]:
    """One optimiser step (loss, backward, AdamW, EMA) of ``method`` on random base data, on ``device``."""
    torch.manual_seed(0)
    net = VectorField(manifold, hidden=hidden, depth=depth, activation=METHOD_DEFAULTS[method]["activation"],
                      time_dependent=method != "moser").to(device)
    obj = OBJECTIVES[method](manifold, net).to(device)
    gen = torch.Generator(device).manual_seed(1)
    data = manifold.random_base(max(4 * batch, 4096), device=device, generator=gen)
    if method == "ppd":
        obj.prepare(data[: 2 * batch], data[2 * batch: 2 * batch + 512])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    ema = EMA(net, 0.999)

    def step() -> None:
        idx = torch.randint(0, data.shape[0], (batch,), device=device, generator=gen)
        loss = obj.loss(data[idx], generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(net)

    return step


def under_sync_debug(fn: Callable[[], object], repeats: int = 1) -> str:
    """``"ok"`` if ``fn`` (after a warm-up call) runs ``repeats`` times without a host sync, else the error."""
    fn()  # warm-up: caches, lazy initialisation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(repeats):
            fn()
        return "ok"
    except RuntimeError as e:
        return str(e).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")


def sync_debug_checks(device: str) -> List[str]:
    """Run the loops under sync-debug 'error' mode; returns one table row per check ("ok" or the error)."""
    lines = []
    for name, manifold in (("sphere", Sphere(2).to(device)), ("torus", FlatTorus(2).to(device))):
        for method in OBJECTIVES:
            step = make_step(method, manifold, 64, 3, 256, device)
            lines.append(f"| {name} | {method} training step | {under_sync_debug(step, repeats=3)} |")
        net = VectorField(manifold, hidden=64, depth=3).to(device)
        x = manifold.random_base(512, device=device)
        solve = partial(sample, net, 512, manifold=manifold, solver_steps=20, device=device)
        likelihood = partial(log_likelihood, net, x, manifold=manifold, solver_steps=20)
        lines.append(f"| {name} | ODE solve (rk4, 20 steps) | {under_sync_debug(solve)} |")
        lines.append(f"| {name} | likelihood (rk4, 20 steps) | {under_sync_debug(likelihood)} |")
    return lines


def steps_per_second(step: Callable[[], None], *, warmup: int = 5, windows: int = 5, per_window: int = 10) -> float:
    """Median over timed windows of ``per_window`` steps (synchronised at the window edges only)."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(windows):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(per_window):
            step()
        torch.cuda.synchronize()
        rates.append(per_window / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=3.0, help="GPU budget of the earth run")
    p.add_argument("--data", default="earthquake")
    p.add_argument("--quick", action="store_true", help="tiny sizes, nothing written (smoke test)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; skipped (nothing written)")
        return
    device = "cuda"
    lines = ["| manifold | loop | under sync-debug 'error' |", "|---|---|---|"] + sync_debug_checks(device)
    sizes = [(32, 2, 256)] if args.quick else [(512, 6, 8192), (2048, 12, 8192)]
    rates: Dict[str, Dict[str, float]] = {}
    for hidden, depth, batch in sizes:
        for method in OBJECTIVES:
            rate = steps_per_second(make_step(method, Sphere(2).to(device), hidden, depth, batch, device))
            rates.setdefault(f"{hidden}x{depth}, batch {batch}", {})[method] = rate
            print(f"{method} {hidden}x{depth} batch {batch}: {rate:.1f} steps/s", flush=True)
    table = ["| network | " + " | ".join(OBJECTIVES) + " |", "|---" * (len(OBJECTIVES) + 1) + "|"]
    table += [f"| {k} | " + " | ".join(f"{v[m]:.1f}" for m in OBJECTIVES) + " |" for k, v in rates.items()]
    out = ROOT / "runs" / "bench-gpu" / args.data
    hidden, depth, batch = (32, 2, 256) if args.quick else (2048, 12, 8192)
    cmd = [sys.executable, "-m", "manifold_flows.cli", "train", "--data", args.data, "--device", device, "--minutes",
           str(0.2 if args.quick else args.minutes), "--hidden", str(hidden), "--depth", str(depth), "--batch-size",
           str(batch), "--lr", "2e-4", "--weight-decay", "0.01", "--out", str(out), "--overwrite", "--no-progress",
           "--no-plot"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"earth run failed: {res.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    earth = (f"`{' '.join(cmd[2:])}`: test NLL {m['test_nll']:.3f} ({m['likelihood']}), {m['steps']} steps in "
             f"{m['train_seconds']:.0f} s, device {m['device']}")
    print(earth)
    if args.quick:
        return
    write_section("GPU", "Sync-free loops (a host synchronisation inside them raises):\n\n" + "\n".join(lines)
                  + "\n\nTraining steps per second on S^2 (median of 5 windows of 10 steps):\n\n" + "\n".join(table)
                  + "\n\nOne earth set for a fixed GPU budget: " + earth)


if __name__ == "__main__":
    main()
