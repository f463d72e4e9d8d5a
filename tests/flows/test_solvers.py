"""Manifold ODE solvers: known flows, convergence orders, backward integration, projection and input errors."""

import math

import pytest
import torch

import manifolds as mf
from manifold_flows.solvers import (
    ADAPTIVE_SOLVERS,
    SOLVERS,
    available_solvers,
    odeint,
    rk_step,
    time_grid,
)

F64 = torch.float64
EZ = torch.tensor([0.0, 0.0, 1.0], dtype=F64)


def rate(t):
    """Angular speed of the test rotation; time-dependent so that a solver ignoring t[0] is caught."""
    return 1.0 + 2.0 * t


def rotation_field(x, t):
    """``(1 + 2t) x cross e_z``: a rotation about the z axis by the angle ``-(t + t^2)``, tangent on S^2."""
    return rate(t) * torch.linalg.cross(x, EZ.to(x).expand_as(x))


def rotate_z(x, angle):
    c, s = math.cos(angle), math.sin(angle)
    return torch.stack([c * x[..., 0] - s * x[..., 1], s * x[..., 0] + c * x[..., 1], x[..., 2]], dim=-1)


def exact_rotation(x0, ta, tb):
    """Exact flow of :func:`rotation_field` from time ``ta`` to ``tb``."""
    return rotate_z(x0, -((tb - ta) + (tb**2 - ta**2)))


def sphere_points(n=16, seed=0, dtype=F64):
    return mf.Sphere(2).random_base(n, dtype=dtype, generator=torch.Generator().manual_seed(seed))


GRIDS = pytest.mark.parametrize(
    "ta, tb", [(0.0, 1.0), (0.3, 1.7), (1.7, 0.3), (-0.5, 0.25)], ids=["0to1", "fwd_t0", "backward", "neg"]
)


@GRIDS
@pytest.mark.parametrize("method, steps, tol", [("euler", 4000, 5e-3), ("midpoint", 400, 5e-5), ("rk4", 200, 1e-8)])
def test_rotation_matches_exact_flow(method, steps, tol, ta, tb):
    sphere = mf.Sphere(2)
    x0 = sphere_points()
    xs = odeint(
        rotation_field, x0, time_grid(steps, t0=ta, t1=tb, dtype=F64), manifold=sphere, solver=method,
        return_intermediates=True,
    )
    grid = time_grid(steps, t0=ta, t1=tb, dtype=F64)
    # every intermediate state, not only the last, follows the exact flow
    for i in [0, 1, steps // 3, steps - 1, steps]:
        ref = exact_rotation(x0, ta, float(grid[i]))
        assert (xs[i] - ref).abs().max() < tol, (method, i)


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_convergence_order_on_sphere(method):
    """Halving the step divides the error by 2^order: the projection keeps the classical order."""
    sphere = mf.Sphere(2)
    x0 = sphere_points()
    order = SOLVERS[method].order
    errs = []
    for steps in (40, 80):
        x = odeint(rotation_field, x0, time_grid(steps, t0=0.3, t1=1.7, dtype=F64), manifold=sphere, solver=method)
        errs.append((x - exact_rotation(x0, 0.3, 1.7)).abs().max())
    assert errs[0] / errs[1] > 2 ** (order - 0.25)


def test_rk4_on_nonuniform_grid():
    sphere = mf.Sphere(2)
    x0 = sphere_points()
    u = torch.rand(300, dtype=F64, generator=torch.Generator().manual_seed(3))
    grid = torch.cat([torch.tensor([0.2], dtype=F64), 0.2 + 1.3 * torch.sort(u).values, torch.tensor([1.5], dtype=F64)])
    grid = torch.unique(grid)
    xs = odeint(rotation_field, x0, grid, manifold=sphere, solver="rk4", return_intermediates=True)
    assert xs.shape == (grid.shape[0],) + x0.shape
    for i in range(0, grid.shape[0], 37):
        assert (xs[i] - exact_rotation(x0, 0.2, float(grid[i]))).abs().max() < 1e-7


@pytest.mark.parametrize("method, tol", [("dopri5", 1e-7), ("bosh3", 1e-6)])
@pytest.mark.parametrize("ta, tb", [(0.3, 1.7), (1.7, 0.3)], ids=["fwd", "backward"])
def test_adaptive_matches_rotation(method, tol, ta, tb):
    sphere = mf.Sphere(2)
    x0 = sphere_points()
    grid = time_grid(5, t0=ta, t1=tb, dtype=F64)
    xs = odeint(
        rotation_field, x0, grid, manifold=sphere, solver=method, atol=1e-10, rtol=1e-10, return_intermediates=True
    )
    assert xs.shape == (6,) + x0.shape
    for i in range(6):
        assert (xs[i] - exact_rotation(x0, ta, float(grid[i]))).abs().max() < tol
    assert sphere.check_point(xs)[0]


def smooth_field(manifold, seed=0):
    """A generic nonlinear, time-dependent tangent field on any manifold of the package."""
    g = torch.Generator().manual_seed(seed)
    D = manifold.ambient_dim
    W = torch.randn(2 * D, D, generator=g, dtype=F64)
    b = torch.randn(D, generator=g, dtype=F64)

    def field(x, t):
        # features sin(x), cos(x) keep the field smooth (periodic) on the torus too
        feats = torch.cat([torch.sin(x), torch.cos(x)], dim=-1)
        return manifold.proju(x, torch.sin(feats @ W.to(x) + b.to(x) * (1.0 + t)) + 0.3 * torch.cos(3.0 * t))

    return field


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_states_stay_on_manifold_every_step(manifold, method):
    x0 = manifold.random_base(64, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    # large steps on purpose: a float32 state must still be on the manifold after each of them
    xs = odeint(smooth_field(manifold), x0, time_grid(12, t0=0.0, t1=3.0), manifold=manifold, solver=method,
                return_intermediates=True)
    assert xs.shape == (13, 64, manifold.ambient_dim)
    assert xs.dtype == torch.float32
    torch.testing.assert_close(xs[0], manifold.projx(x0))
    for i in range(13):
        ok, reason = manifold.check_point(xs[i])
        assert ok, f"step {i}: {reason}"


@pytest.mark.parametrize("method, tol", [("rk4", 1e-9), ("midpoint", 1e-5), ("dopri5", 1e-7)])
@pytest.mark.parametrize("name", ["sphere2", "torus2", "euclidean2", "sphere2_x_torus2"])
def test_forward_then_backward_returns_start(name, method, tol):
    manifold = {
        "sphere2": lambda: mf.Sphere(2),
        "torus2": lambda: mf.FlatTorus(2),
        "euclidean2": lambda: mf.Euclidean(2),
        "sphere2_x_torus2": lambda: mf.ProductManifold(mf.Sphere(2), mf.FlatTorus(2)),
    }[name]()
    x0 = manifold.random_base(32, dtype=F64, generator=torch.Generator().manual_seed(1))
    grid = time_grid(100, t0=0.2, t1=1.0, dtype=F64)
    field = smooth_field(manifold, seed=2)
    kw = dict(manifold=manifold, solver=method, atol=1e-11, rtol=1e-11)
    x1 = odeint(field, x0, grid, **kw)
    assert manifold.dist(x0, x1).min() > 1e-2  # it moved
    back = odeint(field, x1, grid.flip(0), **kw)
    assert manifold.dist(back, x0).max() < tol


def test_euler_is_exact_for_geodesic_flows():
    """The RFM conditional field log_x(x1) / (1 - t) moves along the geodesic: expmap-Euler is exact."""
    sphere = mf.Sphere(2)
    xa, xb = sphere_points(8, 0), sphere_points(8, 1)

    def cond_field(x, t):
        return sphere.logmap(x, xb) / (1.0 - t)

    x = odeint(cond_field, xa, time_grid(7, t0=0.0, t1=0.9, dtype=F64), manifold=sphere, solver="euler")
    torch.testing.assert_close(x, sphere.expmap(xa, 0.9 * sphere.logmap(xa, xb)), atol=1e-12, rtol=0)


def test_batch_shape_dtype_and_time_argument():
    sphere = mf.Sphere(2)
    x0 = sphere.random_base(3, 5, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    seen = []

    def field(x, t):
        seen.append((t.shape, t.dtype, x.shape))
        return rotation_field(x, t)

    grid = time_grid(4, t0=0.5, t1=0.0, dtype=F64)  # a float64 grid is cast to the state's dtype
    x = odeint(field, x0, grid, manifold=sphere, solver="midpoint")
    assert x.shape == (3, 5, 3) and x.dtype == torch.float32
    assert all(s == (torch.Size([]), torch.float32, torch.Size([3, 5, 3])) for s in seen)
    assert len(seen) == 4 * 2
    xs = odeint(field, x0, grid, manifold=sphere, solver="rk4", return_intermediates=True)
    assert xs.shape == (5, 3, 5, 3)
    torch.testing.assert_close(xs[-1], exact_rotation(x0.double(), 0.5, 0.0).float(), atol=1e-4, rtol=0)


def test_first_grid_time_is_used():
    """The field is first evaluated at t[0], and the last stage of the last step at t[-1]."""
    times = []

    def field(x, t):
        times.append(t.clone())
        return torch.zeros_like(x)

    torus = mf.FlatTorus(2)
    odeint(field, torus.random_base(4), torch.tensor([0.7, 0.9, 1.3]), manifold=torus, solver="rk4")
    got = torch.stack(times)
    torch.testing.assert_close(got, torch.tensor([0.7, 0.8, 0.8, 0.9, 0.9, 1.1, 1.1, 1.3]))


def test_gradients_flow_through_the_solver():
    sphere = mf.Sphere(2)
    w = torch.tensor(1.0, dtype=F64, requires_grad=True)
    x0 = sphere_points(4)
    x = odeint(lambda x, t: w * torch.linalg.cross(x, EZ.expand_as(x)), x0, time_grid(20, dtype=F64), manifold=sphere)
    # angle -w: d/dw of x_1 (first coordinate) = d/dw [cos(w) x1 + sin(w) x2] at w = 1
    (g,) = torch.autograd.grad(x[:, 0].sum(), w)
    ref = (-math.sin(1.0) * x0[:, 0] + math.cos(1.0) * x0[:, 1]).sum()
    torch.testing.assert_close(g, ref, atol=1e-6, rtol=0)


def test_rk_step_carries_auxiliary_state():
    """The Euclidean passenger is integrated with the same weights: da/dt = 2t gives t^2 exactly with RK4."""
    torus = mf.FlatTorus(1)
    x = torus.random_base(3, dtype=F64)
    h = torch.tensor(-0.5, dtype=F64)

    def func(y, s):
        return torch.zeros_like(y), (2 * s).expand(y.shape[:-1] + (1,))

    x1, da = rk_step(SOLVERS["rk4"], func, x, torch.tensor(1.0, dtype=F64), h, manifold=torus)
    torch.testing.assert_close(x1, x)
    torch.testing.assert_close(da, torch.full((3, 1), 0.25 - 1.0, dtype=F64))


def test_time_grid():
    g = time_grid(4)
    assert g.shape == (5,) and g.dtype == torch.get_default_dtype()
    torch.testing.assert_close(g, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    b = time_grid(2, t0=1.0, t1=0.0, dtype=F64)
    assert b.dtype == F64
    torch.testing.assert_close(b, torch.tensor([1.0, 0.5, 0.0], dtype=F64))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            time_grid(bad)
    with pytest.raises(ValueError, match="differ"):
        time_grid(3, t0=1.0, t1=1.0)


def test_registry():
    assert list(SOLVERS) == ["euler", "midpoint", "rk4"]
    assert "dopri5" in ADAPTIVE_SOLVERS and "rk4" not in ADAPTIVE_SOLVERS
    assert available_solvers()[:3] == ["euler", "midpoint", "rk4"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(solver="rk5"), r"unknown ODE solver 'rk5'.*euler.*midpoint.*rk4.*dopri5"),
        (dict(t=torch.tensor([0.0, 0.5, 0.4, 1.0])), "strictly monotone"),
        (dict(t=torch.tensor([0.0, 0.5, 0.5, 1.0])), "strictly monotone"),
        (dict(t=torch.tensor([0.0, float("nan")])), "strictly monotone"),
        (dict(t=torch.tensor([0.0])), "at least 2"),
        (dict(t=torch.tensor(1.0)), "1-D"),
        (dict(t=torch.zeros(2, 2)), "1-D"),
        (dict(x0=torch.ones(4, 2)), "trailing dimension of 3"),
        (dict(x0=torch.ones(4, 3, dtype=torch.long)), "floating"),
    ],
    ids=["solver", "nonmonotone", "repeated", "nan", "short", "scalar", "2d", "dim", "int"],
)
def test_bad_input_raises(kwargs, match):
    sphere = mf.Sphere(2)
    args = dict(x0=sphere.random_base(4), t=time_grid(3), solver="rk4")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        odeint(rotation_field, args["x0"], args["t"], manifold=sphere, solver=args["solver"])
