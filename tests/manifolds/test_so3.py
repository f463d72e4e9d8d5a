"""SO(3): closed forms against scipy's Rotation, Haar uniformity, the log near pi, transport, projection, bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import kstest

from manifolds import SO3
from manifolds.so3 import _RotationProjection, hat, rotation_exp

DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def mat(x):
    return x.reshape(*x.shape[:-1], 3, 3)


def rot(x):
    """SciPy ``Rotation``s of flattened matrices (computed in float64)."""
    return Rotation.from_matrix(mat(x).double().numpy())


def rotvecs(n, angles, seed):
    """Rotation vectors with uniform random axes and the given angles ``[n]``."""
    axis = torch.randn(n, 3, dtype=torch.float64, generator=gen(seed))
    return axis / axis.norm(dim=-1, keepdim=True) * angles.unsqueeze(-1)


def some_angles(n, seed):
    """Angles from 0 to just below pi, with clusters at both ends."""
    u = torch.rand(n, dtype=torch.float64, generator=gen(seed))
    return torch.cat([1e-7 * u[: n // 4], math.pi * u[n // 4: n // 2], math.pi - 1e-3 * u[n // 2: 3 * n // 4] - 1e-9,
                      0.3 + 2.5 * u[3 * n // 4:]])


@DTYPES
def test_exp_log_dist_match_scipy(dtype):
    m = SO3()
    x = m.random_base(400, dtype=torch.float64, generator=gen(0))
    w = rotvecs(400, some_angles(400, 1), 2)
    u = (mat(x) @ hat(w)).reshape(400, 9)  # tangent vector at x with rotation vector w
    want_y = (rot(x) * Rotation.from_rotvec(w.numpy())).as_matrix().reshape(400, 9)
    y = m.expmap(x.to(dtype), u.to(dtype))
    assert y.dtype == dtype
    np.testing.assert_allclose(y.double().numpy(), want_y, atol=10 * TOL[dtype])
    # log and dist from scipy's relative rotation, on the float-rounded inputs
    xd, yd = x.to(dtype), torch.as_tensor(want_y).to(dtype)
    rel = rot(xd).inv() * rot(yd)
    np.testing.assert_allclose(m.dist(xd, yd).double().numpy(), rel.magnitude(), atol=20 * TOL[dtype])
    logv = mat(xd).transpose(-1, -2) @ mat(m.logmap(xd, yd))
    vee = torch.stack([logv[:, 2, 1], logv[:, 0, 2], logv[:, 1, 0]], -1).double().numpy()
    np.testing.assert_allclose(vee, rel.as_rotvec(), atol=100 * TOL[dtype])


def test_haar_angle_distribution():
    """The angle of a Haar rotation has density (1 - cos t)/pi on [0, pi]; axes are uniform."""
    m = SO3()
    x = m.random_base(20000, dtype=torch.float64, generator=gen(3))
    angles = m.dist(torch.eye(3, dtype=torch.float64).reshape(9), x).numpy()

    def cdf(t):
        return (t - np.sin(t)) / np.pi

    assert kstest(angles, cdf).pvalue > 1e-3
    axes = rot(x).as_rotvec() / angles[:, None]
    assert np.abs(axes.mean(0)).max() < 0.03  # uniform axes: mean 0 (std. error 0.004)
    # the test has power: rotation vectors uniform in the ball of radius pi are not Haar
    ball = rotvecs(20000, math.pi * torch.rand(20000, dtype=torch.float64, generator=gen(4)) ** (1 / 3), 5)
    assert kstest(ball.norm(dim=-1).numpy(), cdf).pvalue < 1e-6


@DTYPES
def test_log_near_pi_is_accurate_with_finite_gradients(dtype):
    m = SO3()
    x = m.random_base(64, dtype=torch.float64, generator=gen(6))
    deltas = [1e-2, 1e-4] + ([1e-7] if dtype == torch.float64 else [])
    for delta in deltas:
        w = rotvecs(64, torch.full((64,), math.pi - delta, dtype=torch.float64), 7)
        y = (mat(x) @ rotation_exp(w)).reshape(64, 9)
        xd, yd = x.to(dtype), y.to(dtype)
        lg = m.logmap(xd, yd)
        rel = rot(xd).inv() * rot(yd)
        got = mat(xd).transpose(-1, -2) @ mat(lg)
        vee = torch.stack([got[:, 2, 1], got[:, 0, 2], got[:, 1, 0]], -1).double().numpy()
        ref = rel.as_rotvec()
        # at the angle pi - delta the rotation vector is unique; float32 inputs fix it to about eps / delta
        tol = 1e-4 if dtype == torch.float32 else 1e-9
        assert np.abs(vee - ref).max() < tol + 10 * torch.finfo(dtype).eps / delta * (dtype == torch.float32)
        xg, yg = xd.clone().requires_grad_(True), yd.clone().requires_grad_(True)
        v = m.proju(xd, torch.randn(xd.shape, dtype=dtype, generator=gen(8)))
        for out in (m.logmap(xg, yg), m.dist(xg, yg), m.transp(xg, yg, v)):
            grads = torch.autograd.grad(out.sum(), [xg, yg])
            assert all(torch.isfinite(g).all() for g in grads)
    # exactly pi: finite, of length pi, and exp takes it back
    x = torch.eye(3, dtype=dtype).reshape(9)
    y = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=dtype)).reshape(9)
    lg = m.logmap(x, y)
    assert torch.isfinite(lg).all() and abs(m.norm(x, lg).item() - math.pi) < 1e-6
    assert (m.expmap(x, lg) - y).abs().max() < 1e-6


@DTYPES
def test_zero_and_identity_are_exact_with_finite_gradients(dtype):
    m = SO3()
    x = m.random_base(32, dtype=dtype, generator=gen(9))
    assert torch.equal(m.expmap(x, torch.zeros_like(x)), x)
    assert m.logmap(x, x).abs().max() == 0 and m.dist(x, x).max() < 1e-15
    xg = x.clone().requires_grad_(True)
    ug = torch.zeros_like(x).requires_grad_(True)
    for out in (m.expmap(xg, ug), m.logmap(xg, x), m.dist(xg, x), m.norm(xg, ug), m.transp(xg, x, ug)):
        grads = torch.autograd.grad(out.sum(), [xg, ug], allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)
    # d/dt logmap(x, exp(x, t v)) at t = 0 is v, and d/dt dist is |v| from the right
    v = m.proju(x, torch.randn(x.shape, dtype=dtype, generator=gen(10)))
    t = torch.zeros((), dtype=dtype, requires_grad=True)
    (dlog,) = torch.autograd.functional.jacobian(lambda s: m.logmap(x, m.expmap(x, s * v)), (t,))
    assert (dlog - v).abs().max() < 1e-5


def test_transp_matches_transport_by_small_projections():
    """The metric is half the Frobenius one, so its Levi-Civita transport is the embedded one.

    That is the limit of projecting onto the tangent space at many points along the geodesic (first order;
    extrapolated).
    """
    m = SO3()
    f64 = torch.float64
    x = m.random_base(8, dtype=f64, generator=gen(11))
    u = m.proju(x, torch.randn(x.shape, dtype=f64, generator=gen(12)))
    u = u * (2.5 / m.norm(x, u)).unsqueeze(-1)
    v = m.proju(x, torch.randn(x.shape, dtype=f64, generator=gen(13)))

    def ladder(steps):
        w = v
        for k in range(1, steps + 1):
            w = m.proju(m.expmap(x, (k / steps) * u), w)
        return w

    # Richardson extrapolation twice (the ladder's error is a series in 1/steps)
    l200, l400, l800 = ladder(200), ladder(400), ladder(800)
    ref = (4 * (2 * l800 - l400) - (2 * l400 - l200)) / 3
    y = m.expmap(x, u)
    got = m.transp(x, y, v)
    assert (got - ref).abs().max() < 1e-6
    assert (got - l800).abs().max() > 1e-3  # the plain ladder is far off: the extrapolation matters
    # the geodesic's velocity is transported to its velocity at the end
    assert (m.transp(x, y, m.logmap(x, y)) + m.logmap(y, x)).abs().max() < 1e-12


def test_projx_is_the_closest_rotation_with_gap_free_gradients():
    m = SO3()
    f64 = torch.float64
    z = torch.randn(50, 9, dtype=f64, generator=gen(14))
    z[:25] = m.random_base(25, dtype=f64, generator=gen(15)) + 0.3 * z[:25]
    p = m.projx(z)
    u, _, vh = np.linalg.svd(mat(z).numpy())
    d = np.sign(np.linalg.det(u @ vh))
    want = u @ (np.stack([np.ones_like(d), np.ones_like(d), d], -1)[..., None] * vh)
    np.testing.assert_allclose(mat(p).numpy(), want, atol=1e-12)
    assert (np.linalg.det(mat(p).numpy()) > 0).all() and (d < 0).any()  # reflections were fixed
    # gradcheck at a rotation (three equal singular values), a generic matrix and one with det < 0
    r = m.random_base(1, dtype=f64, generator=gen(16))
    flipped = z[-1:].clone()
    flipped = torch.where(torch.linalg.det(mat(flipped)) > 0, -flipped, flipped)
    for a in (r, z[30:31], flipped):
        a = mat(a).clone().requires_grad_(True)
        assert torch.autograd.gradcheck(_RotationProjection.apply, (a,))
    # at a rotation the differential of projx is proju
    jac = torch.autograd.functional.jacobian(m.projx, r[0])
    e = torch.eye(9, dtype=f64)
    assert (jac - m.proju(r[0].expand(9, 9), e).T).abs().max() < 1e-12


def test_egrad2rgrad_is_the_metric_gradient():
    m = SO3()
    x = m.random_base(16, dtype=torch.float64, generator=gen(17))
    g = torch.randn(x.shape, dtype=torch.float64, generator=gen(18))
    v = m.proju(x, torch.randn(x.shape, dtype=torch.float64, generator=gen(19)))
    assert (m.inner(x, m.egrad2rgrad(x, g), v) - (g * v).sum(-1)).abs().max() < 1e-12


def test_volume_logprob_and_norm():
    m = SO3()
    assert math.isclose(m.volume, 8 * math.pi**2) and m.compact and not m.ambient_metric
    x = m.random_base(5, dtype=torch.float64, generator=gen(20))
    assert torch.allclose(m.base_logprob(x), torch.full((5,), -math.log(8 * math.pi**2), dtype=torch.float64))
    w = torch.tensor([0.3, -1.2, 0.4], dtype=torch.float64)
    assert math.isclose(m.norm(x[0], (mat(x[0]) @ hat(w)).reshape(9)).item(), w.norm().item(), rel_tol=1e-12)
    assert repr(m) == "SO3()"


def test_bad_input_is_named():
    m = SO3()
    x = m.random_base(6, dtype=torch.float64, generator=gen(21))
    with pytest.raises(ValueError, match=r"SO3\(\).*not orthogonal.*index \(2,\)"):
        m.assert_check_point(torch.where(torch.arange(6)[:, None] == 2, 1.1 * x, x))
    with pytest.raises(ValueError, match="reflection"):
        m.assert_check_point(-x)
    with pytest.raises(ValueError, match="trailing dimension of 9"):
        m.assert_check_point(x[:, :4])
    with pytest.raises(ValueError, match="not tangent"):
        m.assert_check_vector(x, x)
    assert m.check_point(x) == (True, None)
    assert m.check_vector(x, m.proju(x, torch.ones_like(x))) == (True, None)
