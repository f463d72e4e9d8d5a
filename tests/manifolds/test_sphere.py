"""Sphere-specific numerics: the edge cases public code gets wrong, and closed forms."""

import math

import pytest
import torch

from manifolds import Sphere

DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])


def _grads_finite(fn, *tensors):
    ts = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*ts)
    assert torch.isfinite(out).all()
    grads = torch.autograd.grad(out.sum(), ts, allow_unused=True)
    return all(g is None or torch.isfinite(g).all() for g in grads)


@DTYPES
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_near_antipodal_points_are_finite(dtype, sign):
    m = Sphere(2)
    x = m.random_base(256, dtype=dtype, generator=torch.Generator().manual_seed(0))
    pert = m.proju(x, torch.randn(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(1)))
    y = m.projx(-x + sign * 1e-4 * pert / pert.norm(dim=-1, keepdim=True))
    for fn in (m.dist, m.logmap, lambda a, b: m.transp(a, b, pert)):
        assert _grads_finite(fn, x, y)
    # the distance stays accurate: pi minus the angle of the perturbation
    ref = Sphere(2).dist(x.double(), y.double())
    assert (m.dist(x, y).double() - ref).abs().max() < (1e-6 if dtype == torch.float32 else 1e-12)
    assert (m.dist(x, y) > math.pi - 2e-4).all()


@DTYPES
def test_exact_antipode_gives_finite_values(dtype):
    m = Sphere(2)
    x = torch.tensor([[0.0, 0.0, 1.0]], dtype=dtype)
    assert torch.allclose(m.dist(x, -x), torch.tensor([math.pi], dtype=dtype))
    assert torch.isfinite(m.logmap(x, -x)).all()
    assert torch.isfinite(m.transp(x, -x, torch.tensor([[1.0, 0.0, 0.0]], dtype=dtype))).all()


@DTYPES
def test_dist_is_exactly_tiny_at_identity_and_gradients_vanish(dtype):
    m = Sphere(3)
    x = m.random_base(100, dtype=dtype).requires_grad_(True)
    d = m.dist(x, x.detach())
    assert d.max() < 1e-15
    (g,) = torch.autograd.grad(d.sum(), x)
    assert torch.isfinite(g).all()
    # logmap at y = x has the tangent projector as its Jacobian in y
    y = x.detach()[:1].clone().requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda z: m.logmap(x.detach()[:1], z), y).reshape(4, 4)
    xx = x.detach()[0]
    assert torch.allclose(jac, torch.eye(4, dtype=dtype) - torch.outer(xx, xx), atol=1e-5)


def test_small_distances_have_no_floor_in_float32():
    """acos(<x, y>) has an error of about 1e-3 at this scale in float32; the formula used does not."""
    m = Sphere(2)
    x = m.random_base(1000, generator=torch.Generator().manual_seed(3))
    u = m.proju(x, torch.randn(x.shape, generator=torch.Generator().manual_seed(4)))
    u = 1e-5 * u / u.norm(dim=-1, keepdim=True)
    y = m.expmap(x, u)
    rel = (m.dist(x, y) - 1e-5).abs() / 1e-5
    assert rel.max() < 0.05
    assert ((m.logmap(x, y) - u).norm(dim=-1) / 1e-5).max() < 0.05


def test_expmap_follows_great_circle_and_transp_is_rotation():
    m = Sphere(2)
    x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    for t in [0.0, 0.3, math.pi / 2, 2.5, 3 * math.pi]:
        u = torch.tensor([0.0, t, 0.0], dtype=torch.float64)
        assert torch.allclose(m.expmap(x, u), torch.tensor([math.cos(t), math.sin(t), 0.0], dtype=torch.float64))
    # transport along the equator by pi/2 carries the equator's tangent to the new tangent, and keeps the pole
    y = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert torch.allclose(m.transp(x, y, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)), -x)
    e3 = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(m.transp(x, y, e3), e3)


def test_volumes_and_base_logprob():
    assert math.isclose(Sphere(1).volume, 2 * math.pi)
    assert math.isclose(Sphere(2).volume, 4 * math.pi)
    assert math.isclose(Sphere(3).volume, 2 * math.pi**2)
    x = Sphere(2).random_base(7)
    assert torch.allclose(Sphere(2).base_logprob(x), torch.full((7,), -math.log(4 * math.pi)))


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "2"])
def test_bad_dimension_is_rejected(bad):
    with pytest.raises(ValueError, match="integer >= 1"):
        Sphere(bad)


def test_error_messages_name_the_problem():
    m = Sphere(2)
    x = m.random_base(10)
    with pytest.raises(ValueError, match=r"shape \(10, 4\).*trailing dimension of 3"):
        m.assert_check_point(torch.cat([x, x[:, :1]], -1))
    with pytest.raises(ValueError, match="NaN"):
        m.assert_check_point(torch.where(torch.arange(10)[:, None] == 4, float("nan"), x))
    with pytest.raises(ValueError, match="off the sphere.*index \\(2,\\)"):
        m.assert_check_point(x * torch.where(torch.arange(10)[:, None] == 2, 1.5, 1.0))
    with pytest.raises(ValueError, match="not tangent"):
        m.assert_check_vector(x, x)
    with pytest.raises(ValueError, match="floating dtype"):
        m.assert_check_point(torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="does not broadcast"):
        m.assert_check_vector(x, torch.zeros(7, 3))
    assert m.check_point(x, atol=1e-3) == (True, None)
