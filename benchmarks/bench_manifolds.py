"""Times expmap / logmap / dist on 10^6 points per manifold against plain torch and geoopt.

"Plain torch" is the same formula as the package's written inline with no guards (no Taylor
branches, no safe square roots, no ``torch.where``), so the ratio is the cost of the safety and
of the class layer. geoopt's own classes are timed where geoopt has one. The script also
records the float32 accuracy that the guards buy.

    python benchmarks/bench_manifolds.py [--n 1000000] [--repeats 15] [--device cpu]
    python benchmarks/bench_manifolds.py --set matrix-hyperbolic [--n 200000]

``--set matrix-hyperbolic`` times SO(3), SPD(3), the Poincare ball and the hyperboloid (against
the textbook formulas and geoopt's ``SymmetricPositiveDefinite``, ``PoincareBall`` and ``Lorentz``)
and writes its own section.
"""

from __future__ import annotations

import argparse
import math
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import interleaved_medians, write_section  # noqa: E402

from manifolds import SO3, SPD, Euclidean, FlatTorus, Hyperboloid, PoincareBall, ProductManifold, Sphere  # noqa: E402

# isort: split
import geoopt  # noqa: E402  (after manifolds: imported quietly there)

TWO_PI = 2 * math.pi


# ---------------------------------------------------------------- the same formulas, unguarded
def sphere_exp(x, u):
    n = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    return torch.cos(n) * x + torch.sin(n) / n * u


def sphere_dist(x, y, keepdim=False):
    return 2 * torch.atan2(
        torch.linalg.vector_norm(x - y, dim=-1, keepdim=keepdim),
        torch.linalg.vector_norm(x + y, dim=-1, keepdim=keepdim),
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


# ---------------------------------------------------------------- textbook formulas of the matrix and hyperbolic spaces
def _vee(m):
    return 0.5 * torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]],
                             -1)


def _hat(w):
    z = torch.zeros_like(w[..., 0])
    return torch.stack([z, -w[..., 2], w[..., 1], w[..., 2], z, -w[..., 0], -w[..., 1], w[..., 0], z], -1).reshape(
        *w.shape[:-1], 3, 3)


def so3_exp(x, u):
    r = x.reshape(-1, 3, 3)
    w = _vee(r.transpose(-1, -2) @ u.reshape(-1, 3, 3))
    t = torch.linalg.vector_norm(w, dim=-1)[..., None, None]
    k = _hat(w)
    return (r @ (torch.eye(3) + torch.sin(t) / t * k + (1 - torch.cos(t)) / t**2 * (k @ k))).reshape(-1, 9)


def so3_dist(x, y):
    m = x.reshape(-1, 3, 3).transpose(-1, -2) @ y.reshape(-1, 3, 3)
    return torch.acos(((m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))


def so3_log(x, y):
    r = x.reshape(-1, 3, 3)
    m = r.transpose(-1, -2) @ y.reshape(-1, 3, 3)
    t = torch.acos(((m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    return (r @ _hat(_vee(m) * (t / torch.sin(t))[..., None])).reshape(-1, 9)


def _eig_fn(p, fn):
    lam, v = torch.linalg.eigh(p)
    return (v * fn(lam).unsqueeze(-2)) @ v.transpose(-1, -2)


def spd_exp(x, u):
    p, w = x.reshape(-1, 3, 3), u.reshape(-1, 3, 3)
    s, si = _eig_fn(p, torch.sqrt), _eig_fn(p, torch.rsqrt)
    return (s @ _eig_fn(si @ w @ si, torch.exp) @ s).reshape(-1, 9)


def spd_log(x, y):
    p, q = x.reshape(-1, 3, 3), y.reshape(-1, 3, 3)
    s, si = _eig_fn(p, torch.sqrt), _eig_fn(p, torch.rsqrt)
    return (s @ _eig_fn(si @ q @ si, torch.log) @ s).reshape(-1, 9)


def spd_dist(x, y):
    si = _eig_fn(x.reshape(-1, 3, 3), torch.rsqrt)
    return torch.linalg.vector_norm(torch.log(torch.linalg.eigvalsh(si @ y.reshape(-1, 3, 3) @ si)), dim=-1)


def _mobius(x, y):
    xy, x2, y2 = (x * y).sum(-1, keepdim=True), (x * x).sum(-1, keepdim=True), (y * y).sum(-1, keepdim=True)
    return ((1 + 2 * xy + y2) * x + (1 - x2) * y) / (1 + 2 * xy + x2 * y2)


def ball_exp(x, u):
    lam = 2 / (1 - (x * x).sum(-1, keepdim=True))
    n = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    return _mobius(x, torch.tanh(lam * n / 2) * u / n)


def ball_log(x, y):
    w = _mobius(-x, y)
    n = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
    return (1 - (x * x).sum(-1, keepdim=True)) * torch.atanh(n) * w / n


def ball_dist(x, y):
    num = 2 * ((x - y) ** 2).sum(-1)
    return torch.acosh(1 + num / ((1 - (x * x).sum(-1)) * (1 - (y * y).sum(-1))))


def _minkowski(x, y, keepdim=False):
    out = (x[..., 1:] * y[..., 1:]).sum(-1) - x[..., 0] * y[..., 0]
    return out.unsqueeze(-1) if keepdim else out


def lorentz_exp(x, u):
    n = torch.sqrt(_minkowski(u, u, keepdim=True).clamp_min(0))
    return torch.cosh(n) * x + torch.sinh(n) * u / n


def lorentz_dist(x, y):
    return torch.acosh((-_minkowski(x, y)).clamp_min(1))


def lorentz_log(x, y):
    xy = _minkowski(x, y, keepdim=True)
    v = y + xy * x
    return torch.acosh((-xy).clamp_min(1)) * v / torch.sqrt(_minkowski(v, v, keepdim=True).clamp_min(0))


PLAIN.update({
    "SO3": (so3_exp, so3_log, so3_dist),
    "SPD(3)": (spd_exp, spd_log, spd_dist),
    "PoincareBall(2)": (ball_exp, ball_log, ball_dist),
    "PoincareBall(16)": (ball_exp, ball_log, ball_dist),
    "Hyperboloid(2)": (lorentz_exp, lorentz_log, lorentz_dist),
    "Hyperboloid(16)": (lorentz_exp, lorentz_log, lorentz_dist),
})


class _Matrices:
    """geoopt's SPD manifold on our flattened points (its methods take ``[..., n, n]`` matrices)."""

    def __init__(self, n):
        self.n, self.g = n, geoopt.SymmetricPositiveDefinite()

    def _m(self, x):
        return x.reshape(*x.shape[:-1], self.n, self.n)

    def expmap(self, x, u):
        return self.g.expmap(self._m(x), self._m(u))

    def logmap(self, x, y):
        return self.g.logmap(self._m(x), self._m(y))

    def dist(self, x, y):
        return self.g.dist(self._m(x), self._m(y))


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
    parser.add_argument("--set", choices=["core", "matrix-hyperbolic"], default="core",
                        help="core: spheres, tori, Euclidean space, products; matrix-hyperbolic: SO(3), SPD(3), "
                             "Poincare ball, hyperboloid")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.set == "matrix-hyperbolic":
        cases = {
            "SO3": (SO3(), None),
            "SPD(3)": (SPD(3), _Matrices(3)),
            "PoincareBall(2)": (PoincareBall(2), geoopt.PoincareBall(c=1.0)),
            "PoincareBall(16)": (PoincareBall(16), geoopt.PoincareBall(c=1.0)),
            "Hyperboloid(2)": (Hyperboloid(2), geoopt.Lorentz(k=1.0)),
            "Hyperboloid(16)": (Hyperboloid(16), geoopt.Lorentz(k=1.0)),
        }
    else:
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
            "expmap": (partial(m.expmap, x, u), partial(plain_exp, x, u), g and partial(g.expmap, x, u)),
            "logmap": (partial(m.logmap, x, y), partial(plain_log, x, y), g and partial(g.logmap, x, y)),
            "dist": (partial(m.dist, x, y), partial(plain_dist, x, y), g and partial(g.dist, x, y)),
        }
        for op, (ours, plain, geo) in ops.items():
            fns = {"ours": ours, "plain": plain, **({"geo": geo} if geo else {})}
            t = interleaved_medians(fns, repeats=args.repeats)
            t_ours, t_plain, t_geo = t["ours"], t["plain"], t.get("geo")
            geo_ms = f"{t_geo * 1e3:.2f}" if t_geo else "n/a"
            geo_ratio = f"{t_ours / t_geo:.2f}" if t_geo else "n/a"
            lines.append(
                f"| {name} | {op} | {t_ours * 1e3:.2f} | {t_plain * 1e3:.2f} | {geo_ms} | {t_ours / t_plain:.2f} | "
                f"{geo_ratio} |"
            )
            print(lines[-1], flush=True)
            if t_geo and t_ours > 1.1 * t_geo:
                slower.append(f"{name} {op}")
    if args.set == "matrix-hyperbolic":
        lines += ["", "Points: base samples (Haar on SO(3); log-normal on SPD(3); wrapped normal with sigma 1 on the "
                  "hyperbolic models, curvature -1), tangent vectors half the log map between two such samples. "
                  "geoopt has no SO(3); its SPD manifold works on 3 x 3 matrices (our points are reshaped, which "
                  "copies nothing). More than 10% slower than geoopt: " + (", ".join(slower) or "none") + "."]
        body = "\n".join(lines)
        print(body)
        if not args.no_write:
            write_section("Manifold operations: SO(3), SPD, hyperbolic space", body)
        return
    if slower:
        lines += ["", f"More than 10% slower than geoopt: {', '.join(slower)}. geoopt's sphere distance is a clamped "
                  "`acos`, one reduction cheaper than `2 atan2(|x - y|, |x + y|)` and wrong near x = y (table below)."]
    lines += ["", "Accuracy the guards buy (100,000 random points):", "", accuracy_table(device)]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Manifold operations: expmap / logmap / dist", body)


if __name__ == "__main__":
    main()
