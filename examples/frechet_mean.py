"""Fréchet mean on the sphere with geoopt's RiemannianAdam over a manifolds.Sphere.

The Fréchet (Karcher) mean of points y_i minimises sum_i dist(x, y_i)^2 over the sphere. This
script finds it by Riemannian optimisation and checks the answer two ways: against the closed
form for a symmetric configuration (points on a circle of latitude: the mean is the pole), and
against a brute-force search over a dense Fibonacci grid for a random cluster.

    python examples/frechet_mean.py [--n 500] [--steps 400] [--seed 0]
"""

import argparse
import math

import torch

from manifolds import Sphere

# isort: split
import geoopt  # noqa: E402  (after manifolds, which imports geoopt without its deprecation noise)


def frechet_mean(sphere: Sphere, points: torch.Tensor, steps: int, lr: float = 0.05) -> torch.Tensor:
    """Minimise the mean squared geodesic distance to ``points`` ``[n, 3]``; returns ``[3]``."""
    start = sphere.projx(points.mean(0))  # the extrinsic mean is a good starting point
    x = geoopt.ManifoldParameter(start.clone(), manifold=sphere)
    opt = geoopt.optim.RiemannianAdam([x], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        sphere.dist2(x, points).mean().backward()
        opt.step()
        sched.step()
    return x.detach()


def fibonacci_sphere(n: int, dtype=torch.float64) -> torch.Tensor:
    """``n`` nearly evenly spaced points on S^2, shape ``[n, 3]`` (spacing about sqrt(4 pi / n))."""
    i = torch.arange(n, dtype=dtype) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + math.sqrt(5)) * i
    r = torch.sqrt(1 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def brute_force_mean(sphere: Sphere, points: torch.Tensor, n_grid: int = 400_000) -> torch.Tensor:
    """Grid point with the smallest mean squared distance to ``points``."""
    grid = fibonacci_sphere(n_grid, points.dtype)
    best, best_val = None, math.inf
    for chunk in grid.split(4096):
        vals = sphere.dist2(chunk[:, None, :], points[None]).mean(-1)
        i = int(vals.argmin())
        if float(vals[i]) < best_val:
            best, best_val = chunk[i], float(vals[i])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="points in the random cluster")
    parser.add_argument("--steps", type=int, default=400, help="RiemannianAdam steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    sphere = Sphere(2)

    # 1) closed form: 12 points at colatitude 40 degrees around the north pole
    theta = torch.full((12,), math.radians(40), dtype=torch.float64)
    phi = torch.arange(12, dtype=torch.float64) * (2 * math.pi / 12)
    ring = torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], -1)
    pole = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    ring_mean = frechet_mean(sphere, ring, args.steps)
    err_closed = float(sphere.dist(ring_mean, pole))

    # 2) brute force: a skewed random cluster (a wide spread where the intrinsic and extrinsic means differ)
    centre = sphere.random_base(dtype=torch.float64)
    spread = torch.tensor([1.2, 0.3, 0.6], dtype=torch.float64)
    tangent = sphere.proju(centre, torch.randn(args.n, 3, dtype=torch.float64) * spread)
    cluster = sphere.expmap(centre.expand(args.n, 3), tangent)
    sphere.assert_check_point(cluster)
    ours = frechet_mean(sphere, cluster, args.steps)
    brute = brute_force_mean(sphere, cluster)
    extrinsic = sphere.projx(cluster.mean(0))
    grid_spacing = math.sqrt(4 * math.pi / 400_000)

    def cost(x):
        return float(sphere.dist2(x, cluster).mean())

    print(f"closed form (ring around the pole): distance to the pole {err_closed:.2e} rad")
    print(f"random cluster of {args.n} points:")
    print(f"  RiemannianAdam mean      cost {cost(ours):.6f}")
    print(f"  brute force (grid)       cost {cost(brute):.6f}  distance to ours {float(sphere.dist(ours, brute)):.2e} "
          f"rad (grid spacing {grid_spacing:.1e})")
    print(f"  extrinsic mean (|mean|)  cost {cost(extrinsic):.6f}  distance to ours "
          f"{float(sphere.dist(ours, extrinsic)):.2e} rad")
    ok = err_closed < 1e-6 and cost(ours) <= cost(brute) + 1e-9 and float(sphere.dist(ours, brute)) < 2 * grid_spacing
    print("agreement:", "OK" if ok else "FAILED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
