"""Times expmap / logmap / dist on 10^6 points per manifold against plain torch and geoopt.

"Plain torch" is the same formula as the package's written inline with no guards (no Taylor
branches, no safe square roots, no ``torch.where``), so the ratio is the cost of the safety and
of the class layer. geoopt's own classes are timed where geoopt has one. The script also
records the float32 accuracy that the guards buy.

    python benchmarks/bench_manifolds.py [--n 1000000] [--repeats 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import interleaved_medians, write_section  # noqa: E402

from manifolds import Euclidean, FlatTorus, ProductManifold, Sphere  # noqa: E402

import geoopt  # noqa: E402  (after manifolds: imported quietly there)

TWO_PI = 2 * math.pi


# ---------------------------------------------------------------- the same formulas, unguarded
def sphere_exp(x, u):
    n = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    return torch.cos(n) * x + torch.sin(n) / n * u


def sphere_dist(x, y, keepdim=False):
    return 2 * torch.atan2(
        torch.linalg.vector_norm(x - y, dim=-1, keepdim=keepdim), torch.linalg.vector_norm(x + y, dim=-1, keepdim=keepdim)
    )


def sphere_log(x, y):
    d = y - x
    w = d - (x * d).sum(-1, keepdim=True) * x
    return sphere_dist(x, y, keepdim=True) / torch.linalg.vector_norm(w, dim=-1, keepdim=True) * w


def torus_exp(x, u):
    return torch.remainder(x + u, TWO_PI)


def torus_log(x, y):
    d = y - x
    return d - TWO_PI * torch.round(d / TWO_PI)


def torus_dist(x, y):
    return torch.linalg.vector_norm(torus_log(x, y), dim=-1)


def euclid_exp(x, u):
    return x + u


def euclid_log(x, y):
    return y - x


def euclid_dist(x, y):
    return torch.linalg.vector_norm(y - x, dim=-1)


def product_exp(x, u):
    return torch.cat([sphere_exp(x[..., :3], u[..., :3]), torus_exp(x[..., 3:], u[..., 3:])], -1)


def product_log(x, y):
    return torch.cat([sphere_log(x[..., :3], y[..., :3]), torus_log(x[..., 3:], y[..., 3:])], -1)


def product_dist(x, y):
    return torch.sqrt(sphere_dist(x[..., :3], y[..., :3]) ** 2 + torus_dist(x[..., 3:], y[..., 3:]) ** 2)


PLAIN = {
    "Sphere(2)": (sphere_exp, sphere_log, sphere_dist),
    "FlatTorus(2)": (torus_exp, torus_log, torus_dist),
    "Euclidean(3)": (euclid_exp, euclid_log, euclid_dist),
    "Sphere(2) x FlatTorus(2)": (product_exp, product_log, product_dist),
}


def accuracy_table(device) -> str:
    """float32 errors near x = y against a float64 reference, for the package, geoopt and acos."""
    m, g = Sphere(2), geoopt.Sphere()
    x = m.random_base(100_000, device=device, generator=None)
    rows = ["| float32 sphere distance | manifolds.Sphere | geoopt.Sphere | acos(clamp(<x, y>)) |", "|---|---|---|---|"]
    acos = lambda a, b: torch.acos((a * b).sum(-1).clamp(-1, 1))  # noqa: E731
    same = [float(f(x, x).max()) for f in (m.dist, g.dist, acos)]
    rows.append("| max dist(x, x) | " + " | ".join(f"{v:.1e}" for v in same) + " |")
    for scale in (1e-3, 1e-5):
        u = m.proju(x, torch.randn_like(x))
        u = scale * u / u.norm(dim=-1, keepdim=True)
        y = m.projx(m.expmap(x, u))
        ref = m.dist(x.double(), y.double())
        errs = [float(((f(x, y).double() - ref).abs() / ref).median()) for f in (m.dist, g.dist, acos)]
        rows.append(f"| median relative error at distance {scale:g} | " + " | ".join(f"{v:.1e}" for v in errs) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cases = {
        "Sphere(2)": (Sphere(2), geoopt.Sphere()),
        "FlatTorus(2)": (FlatTorus(2), None),
        "Euclidean(3)": (Euclidean(3), geoopt.Euclidean(ndim=1)),
        "Sphere(2) x FlatTorus(2)": (ProductManifold(Sphere(2), FlatTorus(2)), None),
    }
    lines = [
        f"{args.n:,} points, float32, {device.type}; median of {args.repeats} interleaved runs (ms). "
        "Ratios below 1 mean the package is faster.",
        "",
        "| manifold | op | manifolds | plain torch | geoopt | manifolds / plain | manifolds / geoopt |",
        "|---|---|---|---|---|---|---|",
    ]
    slower = []
    for name, (m, g) in cases.items():
        x = m.random_base(args.n, device=device)
        y = m.random_base(args.n, device=device)
        u = 0.5 * m.logmap(x, y)
        plain_exp, plain_log, plain_dist = PLAIN[name]
        ops = {
            "expmap": (lambda: m.expmap(x, u), lambda: plain_exp(x, u), g and (lambda: g.expmap(x, u))),
            "logmap": (lambda: m.logmap(x, y), lambda: plain_log(x, y), g and (lambda: g.logmap(x, y))),
            "dist": (lambda: m.dist(x, y), lambda: plain_dist(x, y), g and (lambda: g.dist(x, y))),
        }
        for op, (ours, plain, geo) in ops.items():
            fns = {"ours": ours, "plain": plain, **({"geo": geo} if geo else {})}
            t = interleaved_medians(fns, repeats=args.repeats)
            t_ours, t_plain, t_geo = t["ours"], t["plain"], t.get("geo")
            geo_ms = f"{t_geo * 1e3:.2f}" if t_geo else "n/a"
            geo_ratio = f"{t_ours / t_geo:.2f}" if t_geo else "n/a"
            lines.append(
                f"| {name} | {op} | {t_ours * 1e3:.2f} | {t_plain * 1e3:.2f} | {geo_ms} | {t_ours / t_plain:.2f} | {geo_ratio} |"
            )
            print(lines[-1], flush=True)
            if t_geo and t_ours > 1.1 * t_geo:
                slower.append(f"{name} {op}")
    if slower:
        lines += ["", f"More than 10% slower than geoopt: {', '.join(slower)}. geoopt's sphere distance is a clamped `acos`, one "
                  "reduction cheaper than `2 atan2(|x - y|, |x + y|)` and wrong near x = y (table below)."]
    lines += ["", "Accuracy the guards buy (100,000 random points):", "", accuracy_table(device)]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Manifold operations: expmap / logmap / dist", body)


if __name__ == "__main__":
    main()
