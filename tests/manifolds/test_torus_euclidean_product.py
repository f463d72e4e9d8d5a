"""FlatTorus wrap-around, Euclidean base density and ProductManifold composition."""

import math

import pytest
import torch

from manifolds import Euclidean, FlatTorus, ProductManifold, Sphere

TWO_PI = 2 * math.pi


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_torus_angles_at_zero_and_two_pi(dtype):
    m = FlatTorus(2)
    x = torch.zeros(4, 2, dtype=dtype)
    y = torch.tensor([[TWO_PI - 1e-3, 0.0], [1e-3, TWO_PI - 1e-3], [TWO_PI, TWO_PI], [math.pi, 0.0]], dtype=dtype)
    d = m.dist(x, y)
    assert torch.allclose(d, torch.tensor([1e-3, math.sqrt(2) * 1e-3, 0.0, math.pi], dtype=dtype), atol=1e-5)
    for fn in (m.dist, m.logmap, lambda a, b: m.expmap(a, b)):
        xs, ys = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        out = fn(xs, ys)
        gx, gy = torch.autograd.grad(out.sum(), (xs, ys), allow_unused=True)
        assert torch.isfinite(out).all()
        assert all(g is None or torch.isfinite(g).all() for g in (gx, gy))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_torus_projx_lands_in_half_open_interval(dtype):
    m = FlatTorus(1)
    z = torch.tensor([[-1e-9], [-1e-30], [TWO_PI], [3 * TWO_PI + 0.5], [-TWO_PI - 0.25]], dtype=dtype)
    p = m.projx(z)
    assert ((p >= 0) & (p < TWO_PI)).all(), p
    assert torch.allclose(p[3:], torch.tensor([[0.5], [TWO_PI - 0.25]], dtype=dtype))
    assert m.logmap(p, p).abs().max() == 0


def test_torus_logmap_is_shortest_and_check_names_angles():
    m = FlatTorus(3)
    x = m.random_base(1000)
    y = m.random_base(1000)
    v = m.logmap(x, y)
    assert (v.abs() <= math.pi + 1e-6).all()
    ok, reason = m.check_point(x + 7.0)
    assert not ok and "off the torus" in reason


def test_euclidean_base_is_standard_normal():
    m = Euclidean(3)
    x = m.random_base(200_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert x.mean(0).abs().max() < 0.01 and (x.var(0) - 1).abs().max() < 0.01
    assert torch.allclose(m.base_logprob(torch.zeros(1, 3)), torch.tensor([-1.5 * math.log(2 * math.pi)]))
    assert not m.compact and math.isinf(m.volume)


def test_product_composes_factors():
    s, t = Sphere(2), FlatTorus(2)
    m = ProductManifold(s, t)
    assert (m.dim, m.ambient_dim, m.injectivity_radius) == (4, 5, math.pi)
    assert math.isclose(m.volume, 4 * math.pi * TWO_PI**2)
    x, y = m.random_base(50, dtype=torch.float64), m.random_base(50, dtype=torch.float64)
    (xs, xt), (ys, yt) = m.split(x), m.split(y)
    assert torch.allclose(m.dist(x, y) ** 2, s.dist(xs, ys) ** 2 + t.dist(xt, yt) ** 2)
    assert torch.allclose(m.logmap(x, y), torch.cat([s.logmap(xs, ys), t.logmap(xt, yt)], -1))
    assert torch.allclose(m.base_logprob(x), s.base_logprob(xs) + t.base_logprob(xt))
    # broadcasting one point against a batch
    assert m.dist(x[:1], y).shape == (50,)
    assert m.expmap(x[:1], m.logmap(x[:1], y)).shape == (50, 5)
    # x = y: zero distance, finite gradient (sqrt of a sum of squares would give NaN)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m.dist(xg, x).sum(), xg)
    assert torch.isfinite(g).all()
    ok, reason = m.check_point(torch.cat([xs * 2, xt], -1))
    assert not ok and reason.startswith("factor 0 (Sphere(dim=2))")
    ok, reason = m.check_point(torch.cat([xs, xt + 10], -1))
    assert not ok and reason.startswith("factor 1 (FlatTorus(dim=2))")


def test_nested_product_and_bad_factor():
    m = ProductManifold(ProductManifold(Sphere(1), Sphere(1)), Euclidean(1))
    x = m.random_base(3, 2)
    assert x.shape == (3, 2, 5) and m.check_point(x)[0]
    with pytest.raises(TypeError, match="factor 1"):
        ProductManifold(Sphere(2), object())
    with pytest.raises(ValueError, match="at least one"):
        ProductManifold()
