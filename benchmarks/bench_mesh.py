"""Mesh benchmarks: projection throughput, training speed on the bunny, and bunny eigenfunction NLLs.

    python benchmarks/bench_mesh.py projection   # points/s of Mesh.closest at 5k and 100k faces
    python benchmarks/bench_mesh.py speed        # RFM (spectral premetric) and Moser iterations/s on the bunny
    python benchmarks/bench_mesh.py nll --minutes 1.5   # test NLL and gap on bunny eig:10/50/100
    python benchmarks/bench_mesh.py geodesics    # exp/log/dist accuracy on icospheres and throughput
    python benchmarks/bench_mesh.py paths --minutes 2   # RFM on the bunny: geodesic vs biharmonic vs diffusion paths

Each writes its section of BENCHMARKS.md (machine, command, date).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import interleaved_medians, median_seconds, write_section  # noqa: E402
from bench_rfm import budgeted_config, training_step  # noqa: E402

from manifold_flows.builders import load_data  # noqa: E402
from manifold_flows.config import TrainConfig  # noqa: E402
from manifold_flows.datasets.mesh import MESHES  # noqa: E402
from manifold_flows.evaluation import nll  # noqa: E402
from manifold_flows.runs import load_run  # noqa: E402
from manifold_flows.training import train  # noqa: E402
from manifolds import Mesh  # noqa: E402


def torus_mesh(R: float, r: float, nu: int, nv: int) -> trimesh.Trimesh:
    """A closed torus of revolution as a ``nu x nv`` grid of quads split into ``2 nu nv`` triangles."""
    u, v = np.meshgrid(np.arange(nu) * 2 * np.pi / nu, np.arange(nv) * 2 * np.pi / nv, indexing="ij")
    pts = np.stack([(R + r * np.cos(v)) * np.cos(u), (R + r * np.cos(v)) * np.sin(u), r * np.sin(v)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a, b = i * nv + j, ((i + 1) % nu) * nv + j
    c, d = ((i + 1) % nu) * nv + (j + 1) % nv, i * nv + (j + 1) % nv
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return trimesh.Trimesh(pts, faces, process=False)


def brute(sub: torch.Tensor, table: torch.Tensor) -> None:
    """Closest faces of the points ``sub [n, 3]`` by testing every face of ``table`` (blocks of 64 points)."""
    from manifolds.mesh_index import closest_on_faces

    for i in range(0, sub.shape[0], 64):
        q = sub[i:i + 64]
        closest_on_faces((q[:, 0:1], q[:, 1:2], q[:, 2:3]), list(table.unbind(0)), full=False).min(1)


def bench_projection(args) -> None:
    torch.set_num_threads(2)
    meshes = {
        "bunny (5,000 faces)": Mesh(MESHES["bunny"], scale=1 / 250),
        "torus grid (100,000 faces)": Mesh(torus_mesh(1.0, 0.4, 250, 200), name="torus"),
    }
    rows = ["| mesh | points | on the surface (pts/s) | within 2% of its size (pts/s) "
            "| brute force, on the surface (pts/s) |",
            "|---|---|---|---|---|"]
    for label, m in meshes.items():
        g = torch.Generator().manual_seed(0)
        n = args.points
        on = m.random_base(n, generator=g)
        near = on + 0.02 * m.length_scale * torch.randn(n, 3, generator=g)
        table = m.index.cast(torch.float32, torch.device("cpu"))["table"]
        sub = on[: max(64, n // 64)]
        t = interleaved_medians({"on": partial(m.closest, on), "near": partial(m.closest, near)}, repeats=5, warmup=1)
        tb = median_seconds(partial(brute, sub, table), repeats=3, warmup=1)
        rows.append(f"| {label} | {n} | {n / t['on']:,.0f} | {n / t['near']:,.0f} | {sub.shape[0] / tb:,.0f} |")
        print(rows[-1], flush=True)
    body = "\n".join(rows) + (
        "\n\nFloat32, 2 threads. The index answers exactly what brute force answers (tests compare them on "
        "random, near, far, vertex and edge points); brute force tests every face (here in blocks of 64 points)."
    )
    write_section("Mesh projection throughput", body)


def _step_rate(cfg: TrainConfig, repeats: int = 15) -> float:
    return 1.0 / median_seconds(training_step(cfg), repeats=repeats, warmup=3)


def bench_speed(args) -> None:
    torch.set_num_threads(2)
    base = TrainConfig(data="mesh:bunny", density="eig:10", n_synthetic=20_000)
    cases = [
        ("RFM, 40 paths x 50 Euler steps (batch 2000)",
         replace(base, method="rfm", batch_size=2000, sim_steps=50)),
        ("RFM, 10 paths x 300 Euler steps (batch 3000: the published simulation length)",
         replace(base, method="rfm", batch_size=3000, sim_steps=300)),
        ("Moser Flow, batch 512 + 512 uniform points", replace(base, method="moser", batch_size=512)),
    ]
    rows = ["| objective | iterations/s | vs published 0.42 it/s |", "|---|---|---|"]
    for label, cfg in cases:
        rate = _step_rate(cfg)
        rows.append(f"| {label} | {rate:.2f} | {rate / 0.42:.0f}x |")
        print(rows[-1], flush=True)
    body = "\n".join(rows) + (
        "\n\nMLP 4 x 256, float32, 2 threads, median of 15 steps after 3 warm-up steps. An RFM iteration "
        "simulates its paths (projected Euler on the biharmonic premetric, 100 eigenpairs) and regresses on "
        "every state along them; the published implementation ran 0.42 it/s on the bunny with 300-step "
        "simulations on a GPU (its batch size is not stated in our sources)."
    )
    write_section("Mesh training speed (bunny)", body)


PUBLISHED = {("rfm", 10): "1.06 +- 0.05 (biharmonic)"}


def _bunny_config(args, k: int, out: Path, **fields) -> TrainConfig:
    """Training on the bunny's eig:k target as the NLL benchmarks run it (``fields`` add method, path, batch size)."""
    return TrainConfig(data="mesh:bunny", density=f"eig:{k}", n_synthetic=args.n, seed=0, max_val_points=300,
                       solver_steps=args.solver_steps, progress=False, plot=False, out=str(out), **fields)


def _fine_test_nll(cfg: TrainConfig, data) -> float:
    """Test NLL of the run's best checkpoint with 4x its solver steps (is the ODE likelihood converged?)."""
    _, _, objective, _ = load_run(cfg.out)
    test = data["test"].to(next(objective.net.parameters()).dtype)
    return nll(objective, test, objective.net, replace(cfg, solver_steps=4 * cfg.solver_steps))


def bench_nll(args) -> None:
    torch.set_num_threads(2)
    out_root = Path(args.out)
    results = []
    for k in args.ks:
        for method in args.methods:
            cfg = _bunny_config(args, k, out_root / f"eig{k}-{method}", method=method,
                                batch_size=2000 if method == "rfm" else 512)
            cfg = budgeted_config(cfg, args.minutes)
            t0 = time.perf_counter()
            m = train(cfg)
            res = {"k": k, "method": method, "steps": cfg.steps, "train_seconds": m["train_seconds"],
                   "test_nll": m["test_nll"], "target_nll": m["target_nll"], "gap": m["gap"],
                   "entropy": None, "wall": time.perf_counter() - t0,
                   "negative_mass": m.get("negative_mass"), "total_mass": m.get("total_mass")}
            data = load_data(cfg)
            res["entropy"] = data["target"].entropy()[0]
            if method == "rfm":
                res["test_nll_fine"] = _fine_test_nll(cfg, data)
            results.append(res)
            print(json.dumps(res), flush=True)
            with open(out_root / "results.jsonl", "a") as f:
                f.write(json.dumps(res) + "\n")
    rows = ["| target | method | steps | test NLL | same, 4x solver steps | exact entropy | gap | published NLL |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        pub = PUBLISHED.get((r["method"], r["k"]), "-")
        extra = f" (negative mass {r['negative_mass']:.3f})" if r["negative_mass"] is not None else ""
        fine = f"{r['test_nll_fine']:.3f}" if r.get("test_nll_fine") is not None else "(explicit)"
        rows.append(f"| eig:{r['k']} | {r['method']}{extra} | {r['steps']} | {r['test_nll']:.3f} | {fine} | "
                    f"{r['entropy']:.3f} | {r['test_nll'] - r['entropy']:+.3f} | {pub} |")
    body = "\n".join(rows) + (
        f"\n\nBunny scaled by 1/250 as in the published runs (area 9.467, uniform NLL log(area) = 2.248). {args.n} "
        f"samples of each target (80/10/10 split, seed 0), MLP 4 x 256, {args.minutes} CPU-minutes of training per run "
        f"(steps from a measured rate), best validation checkpoint (EMA) tested on {args.n // 10} points. RFM: "
        "biharmonic premetric, 100 eigenpairs, 40 paths x 50 Euler steps per iteration, likelihood by RK4 with "
        f"{args.solver_steps} steps (and {4 * args.solver_steps} in the next column). Moser Flow: explicit "
        "log-density. 'exact entropy' is the target's closed-form entropy (the best NLL achievable in expectation); "
        "the gap is test NLL minus it. The published figure is from GPU training of unstated length. Published runs "
        "also draw 500k target samples, while these draw fewer."
    )
    write_section("Bunny eigenfunction targets", body)


def _great_circle(x: torch.Tensor, y: torch.Tensor):
    xs, ys = x / x.norm(dim=-1, keepdim=True), y / y.norm(dim=-1, keepdim=True)
    ang = torch.arccos((xs * ys).sum(-1).clamp(-1, 1))
    w = ys - (xs * ys).sum(-1, keepdim=True) * xs
    return ang, w / w.norm(dim=-1, keepdim=True) * ang.unsqueeze(-1)


def bench_geodesics(args) -> None:
    torch.set_num_threads(2)
    n = args.points
    rows = ["| mesh | log-map rows (s) | exp (pts/s) | log (pts/s) | dist (pts/s) "
            "| exp error | log error | dist error |",
            "|---|---|---|---|---|---|---|---|"]
    meshes = [(f"icosphere, {trimesh.creation.icosphere(subdivisions=s).vertices.shape[0]:,} vertices",
               Mesh(trimesh.creation.icosphere(subdivisions=s), name="icosphere"), True) for s in (4, 5)]
    meshes.append(("bunny, 2,502 vertices", Mesh(MESHES["bunny"], scale=1 / 250), False))
    for label, m, sphere in meshes:
        g = torch.Generator().manual_seed(0)
        x = m.random_base(n, dtype=torch.float64, generator=g)
        y = m.random_base(n, dtype=torch.float64, generator=g)
        t0 = time.perf_counter()
        m.geodesics.precompute()
        rows_s = time.perf_counter() - t0
        u = m.proju(x, torch.randn(n, 3, dtype=torch.float64, generator=g))
        theta = 2.5 * torch.rand(n, 1, dtype=torch.float64, generator=g)
        u = u / u.norm(dim=-1, keepdim=True) * (theta if sphere else 0.3 * theta)
        t_exp = median_seconds(partial(m.expmap, x, u), repeats=3, warmup=1)
        t_log = median_seconds(partial(m.logmap, x, y), repeats=3, warmup=1)
        t_dist = median_seconds(partial(m.dist, x, y), repeats=3, warmup=1)
        errs = ["-", "-", "-"]
        if sphere:  # against great circles, pairs closer than 2.5 rad (the cut locus is at pi)
            xs = x / x.norm(dim=-1, keepdim=True)
            e = m.expmap(x, u)
            exact = torch.cos(theta) * xs + torch.sin(theta) * u / theta
            ang, gc = _great_circle(x, y)
            keep = ang < 2.5
            q = lambda z: f"{z.median():.4f} / {z.max():.4f}"  # noqa: E731
            errs = [q((e / e.norm(dim=-1, keepdim=True) - exact).norm(dim=-1)),
                    q((m.logmap(x, y) - gc).norm(dim=-1)[keep]), q((m.dist(x, y) - ang).abs()[keep])]
        rows.append(f"| {label} | {rows_s:.1f} | {n / t_exp:,.0f} | {n / t_log:,.0f} | {n / t_dist:,.0f} | "
                    + " | ".join(errs) + " |")
        print(rows[-1], flush=True)
    body = "\n".join(rows) + (
        f"\n\n{n:,} random point pairs per mesh, float64, 2 threads; throughputs are medians of 3 runs after one "
        "warm-up, with every vertex's log-map row already computed (the 'log-map rows' column: one vector heat solve "
        "per vertex, done once per mesh and kept in memory). exp traces straightest geodesics (exact polyhedral "
        "tracing, potpourri3d); log interpolates the vector heat log maps of the corners of x's face; "
        "dist = (|log_x y| + |log_y x|) / 2. Errors are median / max against the great circle of the unit sphere "
        "for |u| < 2.5 and pairs closer than 2.5 rad (exp: distance between end points radially projected to the "
        "sphere; log: vector error; dist: absolute error). The icosphere is inscribed in the unit sphere, so part "
        "of each error is the mesh's own deviation from the sphere."
    )
    write_section("Mesh geodesics", body)


def bench_paths(args) -> None:
    torch.set_num_threads(2)
    out_root = Path(args.out)
    results = []
    for k in args.ks:
        for path in args.paths:
            cfg = _bunny_config(args, k, out_root / f"eig{k}-rfm-{path}", method="rfm", path=path,
                                batch_size=2000 if path != "geodesic" else 512)
            cfg = budgeted_config(cfg, args.minutes)
            rate = _step_rate(cfg, repeats=9)
            m = train(cfg)
            data = load_data(cfg)
            fine = _fine_test_nll(cfg, data)
            res = {"k": k, "path": path, "steps": cfg.steps, "rate": rate, "test_nll": m["test_nll"],
                   "test_nll_fine": fine, "entropy": data["target"].entropy()[0]}
            results.append(res)
            print(json.dumps(res), flush=True)
            with open(out_root / "paths.jsonl", "a") as f:
                f.write(json.dumps(res) + "\n")
    # rows of earlier runs in the same folder for (k, path) pairs not rerun now: one table for all
    merged = {}
    log = out_root / "paths.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        r = json.loads(line)
        merged[(r["k"], r["path"])] = r
    order = {p: i for i, p in enumerate(["geodesic", "biharmonic", "diffusion"])}
    results = [merged[key] for key in sorted(merged, key=lambda kp: (kp[0], order.get(kp[1], 9)))]
    rows = ["| target | path | it/s | steps | test NLL | same, 4x solver steps | exact entropy | gap |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| eig:{r['k']} | {r['path']} | {r['rate']:.1f} | {r['steps']} | {r['test_nll']:.3f} | "
                    f"{r['test_nll_fine']:.3f} | {r['entropy']:.3f} | {r['test_nll'] - r['entropy']:+.3f} |")
    body = "\n".join(rows) + (
        f"\n\nRFM on the bunny (scaled by 1/250) with each conditional path at the same budget: {args.minutes} "
        f"CPU-minutes of training per run (steps from the measured rate), MLP 4 x 256, {args.n} target samples "
        "(80/10/10 split, seed 0), best validation checkpoint (EMA), test NLL by RK4 with "
        f"{args.solver_steps} and {4 * args.solver_steps} steps. geodesic: x_t = exp_x0(t log_x0 x1) traced on the "
        "mesh, batch 512 pairs (each run computes the log-map rows in its first steps, about 2.5 s, inside its "
        "budget; warm-up steps keep them out of the it/s); biharmonic / diffusion: simulated "
        "premetric paths, 40 paths x 50 Euler steps (2000 targets) per iteration, 100 eigenpairs. Rows of "
        "(target, path) pairs not rerun by the command come from earlier runs in the same output folder."
    )
    write_section("Bunny: RFM conditional paths", body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    q = sub.add_parser("projection")
    q.add_argument("--points", type=int, default=20_000)
    q.set_defaults(func=bench_projection)
    q = sub.add_parser("speed")
    q.set_defaults(func=bench_speed)
    q = sub.add_parser("nll")
    q.add_argument("--minutes", type=float, default=1.5)
    q.add_argument("--ks", type=int, nargs="+", default=[10, 50, 100])
    q.add_argument("--methods", nargs="+", default=["rfm", "moser"])
    q.add_argument("--n", type=int, default=10_000)
    q.add_argument("--solver-steps", type=int, default=30)
    q.add_argument("--out", default="runs/bench/mesh")
    q.set_defaults(func=bench_nll)
    q = sub.add_parser("geodesics")
    q.add_argument("--points", type=int, default=4000)
    q.set_defaults(func=bench_geodesics)
    q = sub.add_parser("paths")
    q.add_argument("--minutes", type=float, default=2.0)
    q.add_argument("--ks", type=int, nargs="+", default=[10, 50, 100])
    q.add_argument("--paths", nargs="+", default=["geodesic", "biharmonic", "diffusion"])
    q.add_argument("--n", type=int, default=10_000)
    q.add_argument("--solver-steps", type=int, default=30)
    q.add_argument("--out", default="runs/bench/mesh")
    q.set_defaults(func=bench_paths)
    args = p.parse_args()
    Path(getattr(args, "out", "runs/bench/mesh")).mkdir(parents=True, exist_ok=True)
    args.func(args)


if __name__ == "__main__":
    main()
