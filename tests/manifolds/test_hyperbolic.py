"""Poincare ball and hyperboloid.

Closed forms, the isometry between them, float32 accuracy, densities, edges, bad input.
"""

import math

import mpmath
import pytest
import torch
from scipy.stats import ks_2samp

from manifolds import Hyperboloid, PoincareBall, _hyperbolic_math as hm

DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
CURVATURES = pytest.mark.parametrize("c", [1.0, 0.5, 2.0])
F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def ball_points(d, c, n, seed, edge=1e-6):
    """Base samples plus points at ``sqrt(c)|x| = 1 - edge`` and next to each other there."""
    m = PoincareBall(d, c=c)
    x = m.random_base(n, dtype=F64, generator=gen(seed))
    direction = torch.randn(4, d, dtype=F64, generator=gen(seed + 1))
    rim = direction / direction.norm(dim=-1, keepdim=True) * (1 - edge) / math.sqrt(c)
    return torch.cat([x, rim, 0.999 * rim])


@CURVATURES
def test_poincare_dist_matches_the_arcosh_formula(c):
    m = PoincareBall(3, c=c)
    x, y = ball_points(3, c, 200, 0), ball_points(3, c, 200, 5).flip(0)
    num = 2 * c * ((x - y) ** 2).sum(-1)
    want = torch.acosh(1 + num / ((1 - c * (x * x).sum(-1)) * (1 - c * (y * y).sum(-1)))) / math.sqrt(c)
    got = m.dist(x, y)
    assert ((got - want).abs() / want).max() < 1e-8  # arcosh is well conditioned at these distances (> 1e-3)
    assert want.min() > 1e-3 and want.max() > 10
    # float32 against the float64 formula on the same rounded inputs (base samples: at the rim float32
    # cannot even store 1 - c|x|^2 to more than a few digits)
    x32, y32 = x[:200].float(), ball_points(3, c, 200, 5)[:200].float()
    ref = m.dist(x32.double(), y32.double())
    assert ((m.dist(x32, y32).double() - ref).abs() / ref).max() < 1e-5


@DTYPES
@CURVATURES
def test_isometry_between_the_models(dtype, c):
    ball, hyp = PoincareBall(2, c=c), Hyperboloid(2, c=c)
    x = ball.random_base(300, dtype=dtype, generator=gen(1))
    y = ball.random_base(300, dtype=dtype, generator=gen(2))
    hx, hy = ball.to_hyperboloid(x), ball.to_hyperboloid(y)
    assert hyp.check_point(hx)[0] and hx.shape == (300, 3)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (hyp.to_poincare(hx) - x).abs().max() < tol
    assert ((hyp.dist(hx, hy) - ball.dist(x, y)).abs() / ball.dist(x, y)).max() < 10 * tol
    # the bases correspond: same density at corresponding points, same law of the distance to the origin
    assert (hyp.base_logprob(hx) - ball.base_logprob(x)).abs().max() < 100 * tol
    r_ball = ball.dist(torch.zeros(1, 2, dtype=dtype), ball.random_base(4000, dtype=dtype, generator=gen(3)))
    origin = hyp.projx(torch.zeros(1, 3, dtype=dtype))
    r_hyp = hyp.dist(origin, hyp.random_base(4000, dtype=dtype, generator=gen(4)))
    assert ks_2samp(r_ball.numpy(), r_hyp.numpy()).pvalue > 1e-3


@CURVATURES
def test_exp_log_transp_inner_commute_with_the_isometry(c):
    """Push tangent vectors through the differential of the ball -> hyperboloid map (by autograd)."""
    ball, hyp = PoincareBall(3, c=c), Hyperboloid(3, c=c)
    x, y = ball_points(3, c, 40, 6, edge=1e-3)[:44], ball_points(3, c, 40, 7, edge=1e-3)[:44]
    u = torch.randn(x.shape, dtype=F64, generator=gen(8)) * (1 - c * (x * x).sum(-1, keepdim=True))
    v = torch.randn(x.shape, dtype=F64, generator=gen(9))

    def push(p, w):
        return torch.autograd.functional.jvp(ball.to_hyperboloid, (p,), (w,))[1]

    hx, hy = ball.to_hyperboloid(x), ball.to_hyperboloid(y)
    hu, hv = push(x, u), push(x, v)
    assert hyp.check_vector(hx, hu)[0]
    assert torch.allclose(hyp.inner(hx, hu, hv), ball.inner(x, u, v), rtol=1e-9, atol=1e-9)
    assert torch.allclose(hyp.expmap(hx, hu), ball.to_hyperboloid(ball.expmap(x, u)), rtol=1e-9, atol=1e-9)
    assert torch.allclose(hyp.logmap(hx, hy), push(x, ball.logmap(x, y)), rtol=1e-8, atol=1e-8)
    assert torch.allclose(hyp.transp(hx, hy, hv), push(y, ball.transp(x, y, v)), rtol=1e-8, atol=1e-8)


def test_lorentz_dist_is_accurate_in_float32():
    """float32 distances to a few ulps in every configuration, against 40 digits on the same inputs."""
    mpmath.mp.dps = 40
    c = 2.0
    m = Hyperboloid(3, c=c)
    x = m.random_base(60, dtype=F64, generator=gen(10))
    xs = 2 * x[:, 1:]
    x = m.projx(torch.cat([x[:, :1], xs], -1))
    stretch = 1 + 3 * torch.rand(60, 1, dtype=F64, generator=gen(11))
    cases = {
        "random": m.random_base(60, dtype=F64, generator=gen(12)),
        "same ray": m.projx(torch.cat([x[:, :1], xs * stretch], -1)),
        "opposite": m.projx(torch.cat([x[:, :1], -xs * stretch], -1)),
        "near": m.expmap(x, m.proju(x, 1e-3 * torch.randn(x.shape, dtype=F64, generator=gen(13)))),
    }
    x32 = m.projx(x.float())
    for name, y in cases.items():
        y32 = m.projx(y.float())
        ref = []
        for a, b in zip(x32.tolist(), y32.tolist()):
            a0 = mpmath.sqrt(1 / mpmath.mpf(c) + sum(mpmath.mpf(t) ** 2 for t in a[1:]))
            b0 = mpmath.sqrt(1 / mpmath.mpf(c) + sum(mpmath.mpf(t) ** 2 for t in b[1:]))
            dot = sum(mpmath.mpf(s) * mpmath.mpf(t) for s, t in zip(a[1:], b[1:]))
            ref.append(float(mpmath.acosh(c * (a0 * b0 - dot)) / mpmath.sqrt(c)))
        ref = torch.tensor(ref, dtype=F64)
        assert ((m.dist(x32, y32).double() - ref).abs() / ref).max() < 1e-6, name
        if name == "near":  # the chord in the ball alone loses three digits here
            ball_only = hm.poincare_dist(m.to_poincare(x32), m.to_poincare(y32), c).double()
            assert ((ball_only - ref).abs() / ref).max() > 1e-4


@pytest.mark.parametrize("d, c, sigma", [(2, 1.0, 1.0), (3, 0.5, 1.3), (4, 2.0, 0.7)])
def test_wrapped_normal_density_matches_an_autograd_jacobian(d, c, sigma):
    """``log p = log N(v) - log|det dx/dv| - log(volume density of the chart)``, from the sampling maps."""
    ball, hyp = PoincareBall(d, c=c, sigma=sigma), Hyperboloid(d, c=c, sigma=sigma)
    sc = math.sqrt(c)
    v = 1.5 * sigma * torch.randn(12, d, dtype=F64, generator=gen(14))
    log_normal = -0.5 * (v * v).sum(-1) / sigma**2 - 0.5 * d * math.log(2 * math.pi * sigma**2)

    def to_ball(w):  # exp at the origin of the ball (metric 4 I there; w in orthonormal coordinates)
        r = w.norm()
        return torch.tanh(sc * r / 2) / (sc * r) * w

    def to_space(w):  # space coordinates of exp at the origin of the hyperboloid
        r = w.norm()
        return torch.sinh(sc * r) / (sc * r) * w

    for i in range(v.shape[0]):
        jb = torch.autograd.functional.jacobian(to_ball, v[i])
        x = to_ball(v[i])
        lam = 2 / (1 - c * x @ x)
        want = log_normal[i] - torch.linalg.slogdet(jb)[1] - d * torch.log(lam)
        assert abs(ball.base_logprob(x).item() - want.item()) < 1e-9
        js = torch.autograd.functional.jacobian(to_space, v[i])
        xs = to_space(v[i])
        x0 = torch.sqrt(1 / c + xs @ xs)  # the volume in space coordinates is dxs / (sqrt(c) x0)
        want = log_normal[i] - torch.linalg.slogdet(js)[1] + torch.log(sc * x0)
        assert abs(hyp.base_logprob(torch.cat([x0[None], xs])).item() - want.item()) < 1e-9


@DTYPES
def test_gradients_are_finite_at_the_edges(dtype):
    edge = 1e-3 if dtype == torch.float32 else 1e-9
    ball = PoincareBall(3)
    x = ball_points(3, 1.0, 16, 15, edge=edge).to(dtype)
    hyp = Hyperboloid(3)
    far = hyp.projx(torch.cat([torch.zeros(8, 1), 300 * torch.randn(8, 3, generator=gen(16))], -1)).to(dtype)
    for m, p in ((ball, x), (hyp, torch.cat([hyp.projx(torch.zeros(4, 4, dtype=dtype)), far]))):
        u = m.proju(p, torch.randn(p.shape, dtype=dtype, generator=gen(17)))
        for name, (uu, yy) in {"u = 0, y = x": (torch.zeros_like(p), p), "near edge": (u, p.flip(0))}.items():
            xg, ug, yg = (t.clone().requires_grad_(True) for t in (p, uu, yy))
            for out in (m.expmap(xg, ug), m.logmap(xg, yg), m.dist(xg, yg), m.norm(xg, ug), m.transp(xg, yg, ug)):
                assert torch.isfinite(out).all(), (m, name)
                grads = torch.autograd.grad(out.sum(), [xg, ug, yg], allow_unused=True)
                assert all(g is None or torch.isfinite(g).all() for g in grads), (m, name)
        assert m.logmap(p, p).abs().max() <= 16 * torch.finfo(dtype).eps * p.abs().max()


@DTYPES
def test_projx_keeps_points_inside_and_on_the_upper_sheet(dtype):
    ball = PoincareBall(2, c=2.0)
    z = torch.tensor([[0.0, 10.0], [1 / math.sqrt(2), 0.0], [1e30, -1e30], [0.1, 0.2]], dtype=dtype)
    p = ball.projx(z)
    assert (math.sqrt(2.0) * p.norm(dim=-1) < 1).all() and ball.check_point(p)[0]
    assert torch.equal(p[3], z[3]) and torch.equal(ball.projx(p), p)
    hyp = Hyperboloid(2)
    z = torch.tensor([[-5.0, 1.0, 2.0], [0.0, 0.0, 0.0], [3.0, -1.0, 0.5]], dtype=dtype)
    h = hyp.projx(z)
    assert (h[:, 0] > 0).all() and hyp.check_point(h)[0] and torch.equal(h[:, 1:], z[:, 1:])
    x = hyp.random_base(20, dtype=dtype, generator=gen(18))
    assert torch.equal(hyp.projx(x), x)


def test_gyration_transport_and_gradients_follow_their_definitions():
    c = 0.7
    ball = PoincareBall(3, c=c)
    a, b = ball.random_base(50, dtype=F64, generator=gen(19)), ball.random_base(50, dtype=F64, generator=gen(20))
    w = 0.3 * ball.random_base(50, dtype=F64, generator=gen(21))
    nested = hm.mobius_add(-hm.mobius_add(a, b, c), hm.mobius_add(a, hm.mobius_add(b, w, c), c), c)
    assert torch.allclose(hm.gyration(a, b, w, c), nested, atol=1e-12)
    for m in (ball, Hyperboloid(3, c=c)):
        x, y = m.random_base(50, dtype=F64, generator=gen(22)), m.random_base(50, dtype=F64, generator=gen(23))
        carried, want = m.transp(x, y, m.logmap(x, y)), -m.logmap(y, x)
        assert (m.norm(y, carried - want) / m.norm(y, want)).max() < 1e-10
        g = torch.randn(x.shape, dtype=F64, generator=gen(24))
        v = m.proju(x, torch.randn(x.shape, dtype=F64, generator=gen(25)))
        assert torch.allclose(m.inner(x, m.egrad2rgrad(x, g), v), (g * v).sum(-1), rtol=1e-9, atol=1e-9)


def test_hyperboloid_inner_equals_the_lorentz_form_on_tangent_vectors():
    m = Hyperboloid(3, c=0.5)
    x = m.random_base(100, dtype=F64, generator=gen(26))
    u = m.proju(x, torch.randn(x.shape, dtype=F64, generator=gen(27)))
    v = m.proju(x, torch.randn(x.shape, dtype=F64, generator=gen(28)))
    assert hm.minkowski(x, u).abs().max() < 1e-12
    assert torch.allclose(m.inner(x, u, v), hm.minkowski(u, v), atol=1e-10)
    assert torch.equal(m.proju(x, u), u)  # exactly idempotent
    origin = m.projx(torch.zeros(1, 4, dtype=F64))
    assert torch.equal(m.inner(origin, u[:1], v[:1]), (u[:1, 1:] * v[:1, 1:]).sum(-1))


def test_bad_input_is_named():
    ball, hyp = PoincareBall(2), Hyperboloid(2)
    x = ball.random_base(5, dtype=F64, generator=gen(29))
    with pytest.raises(ValueError, match=r"PoincareBall\(dim=2, c=1.0\).*outside the ball.*index \(2,\)"):
        ball.assert_check_point(torch.where(torch.arange(5)[:, None] == 2, x / x.norm(dim=-1, keepdim=True), x))
    h = hyp.random_base(5, dtype=F64, generator=gen(30))
    with pytest.raises(ValueError, match=r"off the hyperboloid.*upper sheet"):
        hyp.assert_check_point(-h)
    with pytest.raises(ValueError, match=r"off the hyperboloid.*relative error"):
        hyp.assert_check_point(h * 1.01)
    with pytest.raises(ValueError, match="not tangent"):
        hyp.assert_check_vector(h, h)
    with pytest.raises(ValueError, match="trailing dimension of 3"):
        hyp.assert_check_point(x)
    for bad in (dict(dim=0), dict(dim=2, c=0.0), dict(dim=2, c=-1.0), dict(dim=2, c=math.inf), dict(dim=2, sigma=0.0)):
        for cls in (PoincareBall, Hyperboloid):
            with pytest.raises(ValueError, match="must be"):
                cls(**bad)
    assert repr(Hyperboloid(3, c=0.5, sigma=2.0)) == "Hyperboloid(dim=3, c=0.5, sigma=2.0)"
