"""Training on meshes at real CPU budgets: time-budgeted runs of the command line, kept in a results file.

    python benchmarks/bench_mesh_training.py tune --minutes 3 --density eig:10 [--only TAG ...]
    python benchmarks/bench_mesh_training.py targets --minutes 10 --seeds 0 1 2 --densities eig:10 eig:50 eig:100
    python benchmarks/bench_mesh_training.py meshes --steps 1000
    python benchmarks/bench_mesh_training.py ends
    python benchmarks/bench_mesh_training.py report

Every run is ``manifold-flows train ...`` exactly as a user types it, one at a time, on the data
``--data mesh:NAME --density eig:K --n-synthetic 100000`` (80,000 training points: with the 8,000
of a 10,000-point draw the models fit the sample, not the density). Each finished run is
appended to ``benchmarks/results/mesh.jsonl`` (``BENCH_MESH_RESULTS`` overrides it) at once, a run
already in the file is skipped, and ``report`` writes the tables of BENCHMARKS.md from the file.
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
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_MESH_RESULTS", ROOT / "benchmarks" / "results" / "mesh.jsonl"))
BEFORE = RESULTS.parent / "mesh-before-fourier.jsonl"
"""Runs made before the mesh defaults gained random Fourier features and Moser Flow its scaled field."""
"""Where finished runs are appended (``BENCH_MESH_RESULTS`` overrides it, e.g. to run from a pinned checkout)."""
RUNS = ROOT / "runs" / "bench-mesh"
N_SYNTHETIC = 100_000

VARIANTS: Dict[str, List[str]] = {
    # RFM: conditional paths (geodesic: banks of traced geodesics), inputs, learning rate
    "rfm geodesic": ["--method", "rfm", "--path", "geodesic", "--eig-features", "0"],
    "rfm geodesic eig32": ["--method", "rfm", "--path", "geodesic", "--eig-features", "32"],
    "rfm geodesic eig64": ["--method", "rfm", "--path", "geodesic", "--eig-features", "64"],
    "rfm geodesic ff64/4": ["--method", "rfm", "--path", "geodesic", "--eig-features", "0", "--fourier-features", "64",
                            "--fourier-scale", "4"],
    "rfm geodesic eig32 ff64/4": ["--method", "rfm", "--path", "geodesic", "--eig-features", "32",
                                  "--fourier-features", "64", "--fourier-scale", "4"],
    "rfm geodesic eig32 lr3e-3": ["--method", "rfm", "--path", "geodesic", "--eig-features", "32", "--lr", "3e-3"],
    "rfm biharmonic": ["--method", "rfm", "--path", "biharmonic", "--eig-features", "0", "--batch-size", "2000"],
    "rfm biharmonic eig32": ["--method", "rfm", "--path", "biharmonic", "--eig-features", "32", "--batch-size", "2000"],
    "rfm biharmonic eig32 sim10": ["--method", "rfm", "--path", "biharmonic", "--eig-features", "32",
                                   "--batch-size", "500", "--sim-steps", "10"],
    "rfm diffusion eig32": ["--method", "rfm", "--path", "diffusion", "--eig-features", "32", "--batch-size", "2000"],
    # Moser Flow: inputs, learning rate
    "moser": ["--method", "moser", "--eig-features", "0"],
    "moser eig32": ["--method", "moser", "--eig-features", "32"],
    "moser eig64": ["--method", "moser", "--eig-features", "64"],
    "moser ff64/4": ["--method", "moser", "--eig-features", "0", "--fourier-features", "64", "--fourier-scale", "4"],
    "moser eig32 lr3e-3": ["--method", "moser", "--eig-features", "32", "--lr", "3e-3"],
    # the defaults as they are
    "rfm default": ["--method", "rfm"],
    "moser default": ["--method", "moser"],
}
"""Tuning variants: one lever at a time (``--eig-features 0`` keeps the comparison explicit whatever the default)."""


def _gap_before(rec: dict, before: List[dict]) -> str:
    """The gap of the same 1,000-step run in ``before`` (same mesh, variant, target, steps and seed), or ''."""
    same = [o for o in before if o["kind"] == "meshes"
            and all(o.get(k) == rec.get(k) for k in ("mesh", "tag", "density", "steps", "seed"))]
    return f"{same[-1]['gap']:.3f}" if same else ""


def _unsettled(rec: dict) -> str:
    """A mark after a test NLL whose ODE solve had not settled (the run's solver check), or ''."""
    if rec.get("solver_check") != "not settled":
        return ""
    return f" (not settled: {rec['solver_check_change']:+.2f} with twice the steps)"


def _collar(rec: dict) -> str:
    """The shares of samples and test points in the boundary collar of an open mesh (``collar_shares``), or ''."""
    if "collar_samples" not in rec:
        return ""
    return f"{100 * rec['collar_samples']:.0f}% / {100 * rec['collar_data']:.0f}%"


def load_results(path: Path = RESULTS) -> List[dict]:
    """Every finished run in a results file."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def exact_entropy(mesh_name: str, density: str) -> float:
    """The closed-form entropy of the target (the best NLL achievable in expectation)."""
    from manifold_flows.datasets.mesh import load_mesh, parse_density

    return parse_density(load_mesh(mesh_name), density).entropy()[0]


def run_name(kind: str, tag: str, mesh: str, density: str, seed: int) -> str:
    """The folder under ``runs/bench-mesh`` of one run."""
    return f"{kind}-{tag}-{mesh}-{density}-s{seed}".replace(" ", "_").replace("/", "-").replace(":", "")


def run_one(tag: str, mesh: str, density: str, seed: int, extra: List[str], *, minutes: Optional[float] = None,
            steps: Optional[int] = None, kind: str = "tune", describe: Optional[dict] = None) -> Optional[dict]:
    """Train one run through the CLI (skipped if the results file has it); returns its record."""
    key = dict(kind=kind, tag=tag, mesh=mesh, density=density, seed=seed, minutes=minutes, steps=steps)
    for rec in load_results():
        if all(rec.get(k) == v for k, v in key.items()):
            print(f"have {key}: test NLL {rec['test_nll']:.3f}", flush=True)
            return rec
    budget = ["--minutes", str(minutes)] if minutes is not None else ["--steps", str(steps)]
    out = RUNS / run_name(kind, tag, mesh, density, seed)
    cmd = [sys.executable, "-m", "manifold_flows.cli", "train", "--data", f"mesh:{mesh}", "--density", density,
           "--n-synthetic", str(N_SYNTHETIC), "--seed", str(seed), "--out", str(out), "--no-progress", "--no-plot",
           "--overwrite", *budget, *extra]
    print("$", shlex.join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        print(res.stderr[-3000:], flush=True)
        return None
    m = json.loads((out / "metrics.json").read_text())
    entropy = exact_entropy(mesh, density)
    rec = dict(key, args=extra, test_nll=m["test_nll"], entropy=entropy, gap=m["test_nll"] - entropy,
               base_nll=m["base_nll"], val_nll=m["val_nll"], steps_done=m["steps"], best_step=m["best_step"],
               train_seconds=m["train_seconds"], steps_per_second=m["steps_per_second"], wall_seconds=round(wall, 1),
               likelihood=m["likelihood"], n_test=m["n_test"], config={k: m["config"][k] for k in (
                   "path", "eig_features", "lr", "batch_size", "sim_steps", "hidden", "depth", "fourier_features")},
               validation_seconds=round(sum(h.get("val_seconds", 0.0) for h in m["history"]), 1),
               history=[(h["step"], round(h["val_nll"], 4)) for h in m["history"]],
               date=datetime.date.today().isoformat(), machine=machine())
    for k in ("negative_mass", "log_normalizer", "solver_check", "solver_check_change"):
        if k in m:
            rec[k] = m[k]
    rec.update(describe or {})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"{tag} {mesh} {density} seed {seed}: test NLL {rec['test_nll']:.3f}, gap {rec['gap']:+.3f} "
          f"({rec['steps_done']} steps)", flush=True)
    return rec


def mean_std(values: List[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _cmd_line(records: List[dict]) -> str:
    r = records[0]
    budget = f"--minutes {r['minutes']:g}" if r["minutes"] is not None else f"--steps {r['steps']}"
    return (f"`manifold-flows train --data mesh:{r['mesh']} --density {r['density']} "
            f"--n-synthetic {N_SYNTHETIC} {budget}`")


def report() -> None:
    """Write the tuning, targets and meshes tables of BENCHMARKS.md from the results file."""
    results = load_results()
    note = ("one core of a 2-core AMD EPYC, one torch thread (`taskset`, `OMP_NUM_THREADS=1`), "
            f"{N_SYNTHETIC:,} target samples (80/10/10 split), test NLL of the best validation checkpoint (EMA)")
    tune = [r for r in results if r["kind"] == "tune"]
    if tune:
        rows = ["| variant | target | test NLL | gap to entropy | steps (it/s) | validation s |",
                "|---|---|---|---|---|---|"]
        for r in sorted(tune, key=lambda r: (r["density"], r["tag"].split()[0], r["gap"])):
            rows.append(f"| {r['tag']} | {r['density']} | {r['test_nll']:.3f} | {r['gap']:+.3f} | "
                        f"{r['steps_done']} ({r['steps_per_second']:.1f}) | {r['validation_seconds']:.0f} |")
        write_section("Mesh tuning (bunny, CPU budget)", (
            f"{_cmd_line(tune)} plus each variant's options (`benchmarks/bench_mesh_training.py`, VARIANTS); {note}; "
            "seed 0; the budget counts training and validation. Rows sorted by gap within each method.\n\n"
            + "\n".join(rows)))
    before = load_results(BEFORE)
    latest = {(r["density"], r["tag"], r["seed"]): r for r in results if r["kind"] == "targets"}
    targets = list(latest.values())  # a rerun of a seed replaces it; the earlier runs stay in the results file
    if targets:
        rows = ["| target | method | seeds | test NLL | exact entropy | gap | steps | uniform NLL | "
                "before: seeds, gap |",
                "|---|---|---|---|---|---|---|---|---|"]
        groups: Dict[tuple, List[dict]] = {}
        for r in targets:
            groups.setdefault((r["density"], r["tag"]), []).append(r)
        for (density, tag), rs in sorted(groups.items(), key=lambda kv: (int(kv[0][0].split(":")[1]), kv[0][1])):
            old = [r["gap"] for r in before if r["kind"] == "targets" and (r["density"], r["tag"]) == (density, tag)]
            rows.append(f"| {density} | {tag} | {len(rs)} | {mean_std([r['test_nll'] for r in rs])} | "
                        f"{rs[0]['entropy']:.3f} | {mean_std([r['gap'] for r in rs])} | "
                        f"{round(statistics.mean(r['steps_done'] for r in rs))} | {rs[0]['base_nll']:.3f} | "
                        f"{f'{len(old)}, {mean_std(old)}' if old else ''} |")
        write_section("Bunny eigenfunction targets (10 CPU-minutes)", (
            f"{_cmd_line(targets)} --method rfm|moser with the defaults; {note}; mean ± standard deviation over "
            "seeds (seed sets the network, the batches and the split; the latest run of each seed). Target: gap "
            "<= 0.05 nats.\n\n"
            + "\n".join(rows)))
    meshes = list({(r["mesh"], r["density"], r["tag"], r["steps"], r["seed"]): r
                   for r in results if r["kind"] == "meshes"}.values())  # the latest run of each
    if meshes:
        rows = ["| mesh | faces | open | target | method | test NLL | uniform NLL | exact entropy | gap | "
                "below uniform | it/s | in collar: samples / data | gap before |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(meshes, key=lambda r: (r["mesh"], r["tag"])):
            below = "yes" if r["test_nll"] < r["base_nll"] - 0.1 * (r["base_nll"] - r["entropy"]) else "**no**"
            rows.append(f"| {r['mesh']} | {r.get('faces', '')} | {'yes' if r.get('open') else 'no'} | {r['density']} | "
                        f"{r['tag']} | {r['test_nll']:.3f}{_unsettled(r)} | {r['base_nll']:.3f} | {r['entropy']:.3f} | "
                        f"{r['gap']:.3f} | {below} | {r['steps_per_second']:.1f} | {_collar(r)} | "
                        f"{_gap_before(r, before)} |")
        write_section("Meshes after 1,000 steps", (
            f"{_cmd_line(meshes)} with the defaults; {note}; seed 0. Open meshes train RFM only (Moser Flow needs "
            "a closed surface). Below uniform: the test NLL closes at least a tenth of the way from the uniform NLL "
            "to the exact entropy; it/s: training steps per second; gap before: the same run with the earlier "
            "defaults (raw coordinates as the network's only inputs; Moser Flow's floor and field not scaled; open "
            "meshes with the collar that stopped the whole field, whose runs with the features are kept in "
            "mesh-before-collar.jsonl); in collar: the shares of 2,000 samples of the model (rk4, 100 steps) and "
            "of the test points within the boundary collar of an open mesh (a band of 5% of its area), where "
            "mass that piles up against the walls shows. Not settled: the test NLL of 200 points moved by more than "
            "0.05 nats when the solver steps were doubled (shown for runs that recorded the check). Two runs may "
            "share the machine, one per core. A rerun replaces a row (the latest run of each mesh, variant and "
            "seed; the earlier runs stay in the results file).\n\n"
            + "\n".join(rows)))


MESHES = ["bunny", "bunny-20k", "icosphere", "capsule", "torus", "sheet", "hemisphere", "maze"]
MESH_VARIANTS: Dict[str, List[str]] = {
    # other RFM paths and inputs on the meshes of `meshes --variants` (the defaults run always)
    "rfm shortest": ["--method", "rfm", "--path", "shortest"],
    "rfm biharmonic": ["--method", "rfm", "--path", "biharmonic"],
    "rfm diffusion": ["--method", "rfm", "--path", "diffusion"],
    "rfm eig64": ["--method", "rfm", "--eig-features", "64"],
    "rfm shortest eig64": ["--method", "rfm", "--path", "shortest", "--eig-features", "64"],
    "rfm patched": ["--method", "rfm", "--path", "patched"],
}


def collar_shares(run: Path, n: int = 2000) -> Dict[str, float]:
    """Shares of the model's samples and of the test points within the boundary collar of an open mesh.

    The collar is a band of about 5% of the area along the boundary; a model that lets mass pile up
    against the walls has many more of its samples there than the data has.
    """
    import torch

    from manifold_flows import load_run

    torch.manual_seed(0)
    _, data, objective, _ = load_run(run)
    collar = data["manifold"].collar
    with torch.no_grad():
        samples = objective.sample(n).double()
    share = lambda x: float((collar.distance(x.double()) < collar.width).double().mean())  # noqa: E731
    return dict(collar_samples=share(samples), collar_data=share(data["test"]))


def traced_ends(names: List[str], pairs: int = 2000) -> None:
    """How far the traced geodesic paths of RFM's default bank start from their base points, per mesh.

    A bank's path is traced backwards from ``x1`` along ``log_{x1}(x0)`` and ends at ``x0'``;
    where the log map is poor (far points, non-convex surfaces) ``x0'`` misses ``x0`` and the
    starts of the bank are not distributed as the base the model later samples from.
    """
    import math

    import numpy as np
    import torch

    from manifold_flows.datasets.mesh import load_mesh
    from manifold_flows.geodesic_bank import GeodesicBank, trace_states

    rows = ["| mesh | faces | open | median | 90% | share beyond 5% | one bank: log-map rows, seconds |",
            "|---|---|---|---|---|---|---|"]
    for name in names:
        mesh = load_mesh(name)
        gen = torch.Generator().manual_seed(0)
        x1, x0 = (mesh.random_base(pairs, dtype=torch.float64, generator=gen) for _ in range(2))
        ends = trace_states(mesh, x1, x0, torch.zeros(pairs, 1, dtype=torch.float64))[0]
        miss = np.linalg.norm(ends - x0.numpy(), axis=1) / math.sqrt(mesh.area)
        q50, q90 = np.quantile(miss, [0.5, 0.9])
        # the default bank's first draw on a fresh mesh: every log-map row it needs is computed in it
        fresh = load_mesh(name)
        bank = GeodesicBank(fresh)
        start = time.perf_counter()
        bank.prepare(fresh.random_base(N_SYNTHETIC, dtype=torch.float64, generator=gen))
        seconds = time.perf_counter() - start
        rows.append(f"| {name} | {mesh.n_faces} | {'yes' if mesh.has_boundary else 'no'} | {q50:.3f} | {q90:.3f} | "
                    f"{(miss > 0.05).mean():.0%} | {fresh.geodesics.rows_computed}, {seconds:.1f} |")
        print(rows[-1], flush=True)
    write_section("Traced geodesic paths: where they start", (
        f"{pairs} pairs of uniform points `x1, x0` per mesh (seed 0, float64): the path RFM's default bank traces "
        "backwards from `x1` along the log map `log_{x1}(x0)` ends at `x0'`; the table gives `|x0' - x0| / "
        "sqrt(area)`. Where it is large the bank's paths do not start from the base distribution the model samples "
        "from. `--path shortest` and `--path patched` (the traced path closed by a shortest path to `x0`) start at "
        "the base points (\"Meshes after 1,000 steps\" compares the three). The log map of each path comes from one "
        "vector heat row, that of the nearest corner of `x1`'s face. Last column: the default bank (16,384 pairs "
        "from 1,024 uniform `x1`) traced on a fresh mesh, one thread: the log-map rows it computed and its seconds; "
        "a bank is traced every 500 training steps.\n\n" + "\n".join(rows)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tune")
    t.add_argument("--minutes", type=float, default=3.0)
    t.add_argument("--mesh", default="bunny")
    t.add_argument("--density", default="eig:10")
    t.add_argument("--only", nargs="*", default=None, help="variant tags to run (default: all)")
    g = sub.add_parser("targets")
    g.add_argument("--minutes", type=float, default=10.0)
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    g.add_argument("--densities", nargs="+", default=["eig:10", "eig:50", "eig:100"])
    g.add_argument("--methods", nargs="+", default=["rfm", "moser"])
    m = sub.add_parser("meshes")
    m.add_argument("--steps", type=int, default=1000)
    m.add_argument("--meshes", nargs="+", default=MESHES)
    m.add_argument("--density", default="eig:10")
    m.add_argument("--methods", nargs="+", default=["rfm", "moser"], help="methods run (Moser Flow: closed meshes)")
    m.add_argument("--variants", nargs="*", default=[], choices=sorted(MESH_VARIANTS),
                   help="other RFM paths and inputs to run on these meshes as well")
    e = sub.add_parser("ends", help="how far traced paths start from their base points, per mesh")
    e.add_argument("--meshes", nargs="+", default=MESHES)
    sub.add_parser("report")
    args = p.parse_args()
    if args.cmd == "ends":
        traced_ends(args.meshes)
        return
    if args.cmd == "tune":
        for tag, extra in VARIANTS.items():
            if args.only is None or tag in args.only:
                run_one(tag, args.mesh, args.density, 0, extra, minutes=args.minutes)
    elif args.cmd == "targets":
        for seed in args.seeds:
            for density in args.densities:
                for method in args.methods:
                    run_one(f"{method} default", "bunny", density, seed, ["--method", method], minutes=args.minutes,
                            kind="targets")
    elif args.cmd == "meshes":
        from manifold_flows.datasets.mesh import load_mesh

        for name in args.meshes:
            mesh = load_mesh(name)
            runs = {f"{method} default": ["--method", method]
                    for method in args.methods if method == "rfm" or not mesh.has_boundary}
            runs.update({tag: MESH_VARIANTS[tag] for tag in args.variants})
            for tag, extra in runs.items():
                rec = run_one(tag, name, args.density, 0, extra, steps=args.steps, kind="meshes")
                if rec is not None and "faces" not in rec:  # describe the mesh once, in the record itself
                    lines = [json.loads(x) for x in RESULTS.read_text().splitlines() if x.strip()]
                    lines[-1].update(faces=mesh.n_faces, open=mesh.has_boundary)
                    if mesh.has_boundary:
                        lines[-1].update(collar_shares(RUNS / run_name("meshes", tag, name, args.density, 0)))
                    RESULTS.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report()


if __name__ == "__main__":
    main()
