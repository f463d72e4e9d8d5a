"""ImplicitSurface: Newton projection, straight-through Jacobian, divergence, samplers, area, errors."""

import math

import numpy as np
import pytest
import torch

from manifold_flows.divergence import divergence
from manifolds import Sphere
from manifolds._geoopt import geoopt
from manifolds.implicit import ImplicitSurface
from manifolds.testing import PROPERTIES

F64 = torch.float64
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
AXES = (1.0, 0.7, 0.5)
R_BIG, R_SMALL = 1.0, 0.4


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def shapes():
    return {
        "sphere": ImplicitSurface.sphere(1.0),
        "ellipsoid": ImplicitSurface.ellipsoid(*AXES),
        "torus": ImplicitSurface.torus(R_BIG, R_SMALL),
        # a plain callable: autograd gradients and the generic shell sampler
        "torus_autograd": ImplicitSurface(
            _torus_poly, bounds=((-1.5, -1.5, -0.5), (1.5, 1.5, 0.5)), area=4 * math.pi**2 * R_BIG * R_SMALL
        ),
    }


def _torus_poly(x):
    """Quartic level set of the same torus, without an analytic gradient (autograd path)."""
    s = (x * x).sum(-1)
    rho2 = x[..., 0] ** 2 + x[..., 1] ** 2
    return (s + R_BIG**2 - R_SMALL**2) ** 2 - 4 * R_BIG**2 * rho2


def _ellipsoid_poly(x):
    a, b, c = AXES
    return (x[..., 0] / a) ** 2 + (x[..., 1] / b) ** 2 + (x[..., 2] / c) ** 2 - 1.0


def _ellipsoid_reference():
    """Area and E[x^2], E[y^2], E[z^2] under the area measure, by quadrature over the unit sphere.

    The map u -> diag(a, b, c) u from the unit sphere has area Jacobian a b c |diag(a, b, c)^-1 u|.
    """
    a, b, c = AXES
    nodes, weights = np.polynomial.legendre.leggauss(120)
    n_phi = 240
    phi = np.linspace(0.0, 2 * np.pi, n_phi, endpoint=False)[None, :]
    ct = nodes[:, None]
    st = np.sqrt(1.0 - ct**2)
    u = np.stack([st * np.cos(phi), st * np.sin(phi), ct * np.ones_like(phi)])
    jac = a * b * c * np.sqrt((u[0] / a) ** 2 + (u[1] / b) ** 2 + (u[2] / c) ** 2)
    w = weights[:, None] * jac * (2 * np.pi / n_phi)
    area = w.sum()
    moments = [(w * (s * u[i]) ** 2).sum() / area for i, s in enumerate(AXES)]
    return area, np.array(moments)


# ---------------------------------------------------------------------------------------- projection
def test_sphere_projection_is_radial_from_far_and_near_the_centre():
    m = ImplicitSurface.sphere(1.0)
    d = torch.randn(600, 3, dtype=F64, generator=_gen(0))
    scales = torch.logspace(-8, 6, 600, dtype=F64).unsqueeze(-1)
    y = d / d.norm(dim=-1, keepdim=True) * scales
    p = m.projx(y)
    # a Newton step from far away subtracts two numbers of size |y|: rounding error ~ eps |y|
    err = (p - y / y.norm(dim=-1, keepdim=True)).norm(dim=-1)
    assert (err <= 1e-14 * scales.squeeze(-1).clamp_min(1.0)).all()
    assert (m.projx(p) - p).abs().max() < 1e-15
    # an offset centre and radius
    m2 = ImplicitSurface.sphere(2.5, center=(1.0, -2.0, 0.5))
    c = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    yc = c + y
    off = yc - c  # the offset that c + y actually represents
    err2 = (m2.projx(yc) - c - 2.5 * off / off.norm(dim=-1, keepdim=True)).norm(dim=-1)
    assert (err2 <= 1e-14 * yc.norm(dim=-1).clamp_min(2.5)).all()


@pytest.mark.parametrize("name", ["ellipsoid", "torus"])
def test_projection_lands_on_surface_and_is_idempotent(shapes, name):
    m = shapes[name]
    x = m.random_base(300, dtype=F64, generator=_gen(1))
    noise = torch.randn(3, 300, 3, dtype=F64, generator=_gen(2))
    y = torch.cat([x + 0.3 * noise[0], 100.0 * noise[1], 1e-3 * noise[2]])  # near, far, near the centre
    p = m.projx_checked(y)  # entry points iterate until every point has converged
    assert m.f(p).abs().max() < 1e-10
    # hot loops do a fixed amount of work: enough from near the surface, as after a solver step
    assert torch.allclose(m.projx(y[:300]), p[:300], atol=1e-12)
    assert (m.projx(p) - p).abs().max() < 1e-12
    assert (m.projx(x) - x).abs().max() < 1e-12
    # batched over leading dimensions, dtype kept
    y32 = y.float().reshape(3, 100, 3, 3)
    p32 = m.projx_checked(y32)
    assert p32.shape == y32.shape and p32.dtype == torch.float32
    assert m.check_point(p32)[0]


@DTYPES
def test_critical_points_of_f_are_projected_deterministically(shapes, dtype):
    # the centre of the sphere and ellipsoid; the axis and the core circle of the torus
    cases = {
        "sphere": [[0.0, 0.0, 0.0]],
        "ellipsoid": [[0.0, 0.0, 0.0]],
        "torus": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.3], [0.0, 0.0, -5.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]],
    }
    for name, pts in cases.items():
        m = shapes[name]
        y = torch.tensor(pts, dtype=dtype)
        p = m.projx(y)
        assert torch.isfinite(p).all(), name
        ok, reason = m.check_point(p)
        assert ok, f"{name}: {reason}"
        assert torch.equal(p, m.projx(y)), name


def test_non_finite_inputs_give_nan_rows_without_spoiling_the_others(shapes):
    m = shapes["torus"]
    y = torch.tensor([[1.5, 0.0, 0.0], [math.nan, 0.0, 0.0], [math.inf, 1.0, 1.0]], dtype=F64)
    p = m.projx(y)
    assert torch.allclose(p[0], torch.tensor([1.4, 0.0, 0.0], dtype=F64))
    assert torch.isnan(p[1:]).all()


@pytest.mark.parametrize("name", ["sphere", "ellipsoid", "torus"])
def test_projx_jacobian_is_the_tangent_projector(shapes, name):
    m = shapes[name]
    x = m.random_base(5, dtype=F64, generator=_gen(3))
    y = torch.cat([x, x + 0.05 * torch.randn(x.shape, dtype=F64, generator=_gen(4))])
    for yi in y:
        jac = torch.autograd.functional.jacobian(m.projx, yi)
        n = m.normal(m.projx(yi))
        assert torch.allclose(jac, torch.eye(3, dtype=F64) - torch.outer(n, n), atol=1e-13, rtol=0)
    # the straight-through value is the foot point itself
    yr = y.clone().requires_grad_(True)
    assert torch.equal(m.projx(yr).detach(), m.projx(y))


# ---------------------------------------------------------------------------------------- tangent spaces
@pytest.mark.parametrize("name", ["sphere", "ellipsoid", "torus"])
def test_proju_is_tangent_and_idempotent(shapes, name):
    m = shapes[name]
    x = m.random_base(500, dtype=F64, generator=_gen(5))
    u = torch.randn(x.shape, dtype=F64, generator=_gen(6))
    v = m.proju(x, u)
    assert (m.normal(x) * v).sum(-1).abs().max() < 1e-14
    assert (m.proju(x, v) - v).abs().max() < 1e-14
    assert m.check_vector(x, v)[0] and not m.check_vector(x, u)[0]
    # broadcasting: one point, many vectors
    assert m.proju(x[:1], u).shape == u.shape


def test_normal_agrees_with_closed_forms(shapes):
    x = shapes["sphere"].random_base(200, dtype=F64, generator=_gen(7))
    assert torch.allclose(shapes["sphere"].normal(x), x, atol=1e-15, rtol=0)
    t = shapes["torus"].random_base(200, dtype=F64, generator=_gen(8))
    ring = torch.nn.functional.pad(t[:, :2], (0, 1))
    ring = R_BIG * ring / ring.norm(dim=-1, keepdim=True)
    assert torch.allclose(shapes["torus"].normal(t), (t - ring) / R_SMALL, atol=1e-14, rtol=0)
    e = shapes["ellipsoid"].random_base(200, dtype=F64, generator=_gen(9))
    g = e / torch.tensor(AXES, dtype=F64) ** 2
    assert torch.allclose(shapes["ellipsoid"].normal(e), g / g.norm(dim=-1, keepdim=True), atol=1e-14, rtol=0)


def test_autograd_gradient_matches_the_analytic_one(shapes):
    """A plain callable (no grad=) gives the same normals and divergences via autograd."""
    poly, named = shapes["torus_autograd"], shapes["torus"]
    x = named.random_base(300, dtype=F64, generator=_gen(10))
    assert torch.allclose(poly.normal(x), named.normal(x), atol=1e-13, rtol=0)
    y = x + 0.2 * torch.randn(x.shape, dtype=F64, generator=_gen(11))
    assert named.f(poly.projx(y)).abs().max() < 1e-12
    field = _field(seed=12, m=named)
    d_poly = divergence(field, x, 0.0, manifold=poly)
    d_named = divergence(field, x, 0.0, manifold=named)
    assert (d_poly - d_named).abs().max() < 1e-10


# ---------------------------------------------------------------------------------------- divergence
def _field(seed, m):
    g = _gen(seed)
    a = torch.randn(3, 4, dtype=F64, generator=g)
    b = torch.randn(4, 3, dtype=F64, generator=g)
    c = 2 * math.pi * torch.rand(4, dtype=F64, generator=g)

    def raw(x):
        return torch.sin(x @ b.T + c) @ a.T

    def field(x, t):
        return m.proju(x, raw(x))

    field.raw = raw
    return field


def test_divergence_on_the_implicit_sphere_equals_the_round_sphere(shapes):
    implicit, round_ = shapes["sphere"], Sphere(2)
    x = round_.random_base(400, dtype=F64, generator=_gen(13))
    for seed in (14, 15):
        for m_field in (implicit, round_):
            field = _field(seed, m_field)
            d_imp = divergence(field, x, 0.0, manifold=implicit)
            d_ref = divergence(field, x, 0.0, manifold=round_)
            assert (d_imp - d_ref).abs().max() < 1e-10
    # the same holds for the graph kept for training
    field = _field(16, implicit)
    d = divergence(field, x, 0.0, manifold=implicit, create_graph=True)
    assert torch.allclose(d.detach(), divergence(field, x, 0.0, manifold=round_), atol=1e-10, rtol=0)


def test_divergence_on_the_torus_matches_angle_coordinates(shapes):
    """``div W = (1/sqrt g) d_i(sqrt g W^i)`` in (theta, phi).

    Here ``W^i = <V, X_i> / g_ii`` (the normal part drops out).
    """
    m = shapes["torus"]
    g = _gen(17)
    theta = (2 * math.pi * torch.rand(300, dtype=F64, generator=g)).requires_grad_(True)
    phi = (2 * math.pi * torch.rand(300, dtype=F64, generator=g)).requires_grad_(True)
    ring = R_BIG + R_SMALL * torch.cos(theta)
    X = torch.stack([ring * torch.cos(phi), ring * torch.sin(phi), R_SMALL * torch.sin(theta)], -1)
    X_theta = torch.stack([-R_SMALL * torch.sin(theta) * torch.cos(phi), -R_SMALL * torch.sin(theta) * torch.sin(phi),
                           R_SMALL * torch.cos(theta)], -1)
    X_phi = torch.stack([-ring * torch.sin(phi), ring * torch.cos(phi), torch.zeros_like(phi)], -1)
    sqrt_g = R_SMALL * ring
    field = _field(18, m)
    V = field.raw(X)
    flux_theta = sqrt_g * (V * X_theta).sum(-1) / R_SMALL**2
    flux_phi = sqrt_g * (V * X_phi).sum(-1) / ring**2
    d_theta = torch.autograd.grad(flux_theta.sum(), theta, retain_graph=True)[0]
    d_phi = torch.autograd.grad(flux_phi.sum(), phi)[0]
    expected = (d_theta + d_phi) / sqrt_g
    got = divergence(field, X.detach(), 0.0, manifold=m)
    assert (got - expected.detach()).abs().max() < 1e-10


# ---------------------------------------------------------------------------------------- sampling
def test_torus_samples_are_area_uniform(shapes):
    from scipy import stats

    n, bins = 200_000, 40
    x = shapes["torus"].random_base(n, dtype=F64, generator=_gen(19))
    rho = x[:, :2].norm(dim=-1)
    theta = torch.atan2(x[:, 2], rho - R_BIG).numpy()
    phi = torch.atan2(x[:, 1], x[:, 0]).numpy()
    edges = np.linspace(-np.pi, np.pi, bins + 1)
    cdf = (edges + np.pi + (R_SMALL / R_BIG) * np.sin(edges)) / (2 * np.pi)  # density ~ R + r cos(theta)
    for values, probs in ((theta, np.diff(cdf)), (phi, np.full(bins, 1.0 / bins))):
        counts, _ = np.histogram(values, edges)
        p = stats.chisquare(counts, n * probs).pvalue
        assert p > 1e-3, f"chi-square p-value {p:.2g}"


def test_ellipsoid_shell_samples_match_quadrature(shapes):
    m = shapes["ellipsoid"]
    area, moments = _ellipsoid_reference()
    assert abs(area - m.area) < 1e-10 * area  # elliprg formula vs quadrature
    n = 100_000
    x = m.random_base(n, dtype=F64, generator=_gen(20))
    sq = (x**2).numpy()
    se = sq.std(0) / math.sqrt(n)
    z = (sq.mean(0) - moments) / se
    assert np.abs(z).max() < 4, f"moment z-scores {z}"
    # mapping a uniform sphere sample by diag(a, b, c) without the area weights is detectably different
    u = Sphere(2).random_base(n, dtype=F64, generator=_gen(21)) * torch.tensor(AXES, dtype=F64)
    z_naive = ((u**2).numpy().mean(0) - moments) / se
    assert np.abs(z_naive).max() > 10


def test_random_base_shapes_dtypes_and_reproducibility(shapes):
    for m in shapes.values():
        a = m.random_base(3, 4, generator=_gen(22))
        assert a.shape == (3, 4, 3) and a.dtype == torch.get_default_dtype()
        assert torch.equal(a, m.random_base((3, 4), generator=_gen(22)))
        assert m.random_base(0, 5, dtype=F64).shape == (0, 5, 3)
        assert m.base_logprob(a).shape == (3, 4)
        assert m.random(7, 3, dtype=F64).shape == (7, 3)


# ---------------------------------------------------------------------------------------- property table
# Properties not run: shapes_and_dtypes, exp_log_are_inverse, zero_at_identity,
# dist_is_symmetric_and_log_norm, finite_at_edge_cases, gradcheck_exp_log and
# transp_preserves_inner_products need expmap/logmap/dist, which have no closed form here (transp is
# only a vector transport, not an isometry); riemannian_adam_converges builds its start with expmap
# and its loss with dist (test_riemannian_adam_on_the_implicit_sphere covers the optimiser).
# base_is_stationary and base_logprob_integrates_to_one work in float64 whatever dtype is passed.
# The two Monte Carlo rows (a million box points, 40k divergences) run with one seed.
_ROWS = [
    (prop, dtype, seed)
    for prop in ("base_samples_are_valid", "projx_is_idempotent", "proju_is_tangent_and_idempotent",
                 "checks_reject_bad_input")
    for dtype in (torch.float32, torch.float64)
    for seed in (0, 1)
] + [("base_is_stationary", torch.float64, 0), ("base_logprob_integrates_to_one", torch.float64, 0)]


@pytest.mark.parametrize("prop,dtype,seed", _ROWS, ids=[f"{p}-{str(d)[6:]}-{s}" for p, d, s in _ROWS])
@pytest.mark.parametrize("name", ["sphere", "ellipsoid", "torus", "torus_autograd"])
def test_property(shapes, name, prop, dtype, seed):
    PROPERTIES[prop](shapes[name], dtype, seed)


# ---------------------------------------------------------------------------------------- area
def test_area_estimate_of_a_plain_callable():
    m = ImplicitSurface(_ellipsoid_poly, bounds=((-1.1, -0.8, -0.6), (1.1, 0.8, 0.6)), seed=3)
    exact = ImplicitSurface.ellipsoid(*AXES).area
    assert 0 < m.area_std_error < 0.01
    assert abs(m.area / exact - 1.0) < 4 * m.area_std_error
    assert m.volume == m.area
    assert "estimated" in repr(m)
    torus = ImplicitSurface(_torus_poly, bounds=((-1.5, -1.5, -0.5), (1.5, 1.5, 0.5)), n_area=1 << 20)
    assert abs(torus.area / (4 * math.pi**2 * R_BIG * R_SMALL) - 1.0) < 4 * torus.area_std_error


def test_module_level_set_is_evaluated_in_its_own_dtype():
    class Ball(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("radius", torch.tensor(0.8))

        def forward(self, x):
            return (x * x).sum(-1) - self.radius**2

    m = ImplicitSurface(Ball(), bounds=((-1, -1, -1), (1, 1, 1)), n_area=1 << 20)
    assert abs(m.area / (4 * math.pi * 0.64) - 1.0) < 4 * m.area_std_error
    x = m.random_base(1000, dtype=torch.float32, generator=_gen(29))
    assert x.dtype == torch.float32 and (x.norm(dim=-1) - 0.8).abs().max() < 1e-6
    assert torch.allclose(m.normal(x), x / 0.8, atol=1e-6)


def test_named_areas():
    assert ImplicitSurface.sphere(2.0).volume == pytest.approx(16 * math.pi)
    assert ImplicitSurface.torus(2.0, 0.5).volume == pytest.approx(4 * math.pi**2)
    assert ImplicitSurface.ellipsoid(1.5, 1.5, 1.5).volume == pytest.approx(4 * math.pi * 1.5**2, rel=1e-12)
    a = 2.0  # prolate spheroid, closed form 2 pi b^2 (1 + a/(b e) asin(e))
    b = 1.0
    e = math.sqrt(1 - b**2 / a**2)
    area = 2 * math.pi * b**2 * (1 + a / (b * e) * math.asin(e))
    assert ImplicitSurface.ellipsoid(b, b, a).volume == pytest.approx(area, rel=1e-12)


# ---------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(bounds=((0, 0, 0), (1, 1))), "bounds"),
        (dict(bounds=((1, 0, 0), (0, 1, 1))), "bounds"),
        (dict(bounds=((0, 0, 0), (1, 1, math.inf))), "bounds"),
        (dict(bounds="box"), "bounds"),
        (dict(bounds=None), "bounds"),
        (dict(newton_steps=0), "newton_steps"),
        (dict(area=-1.0), "area"),
        (dict(n_area=10), "n_area"),
        (dict(grad=3), "grad"),
        (dict(grad=lambda x: x[..., 0]), "grad"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    args = dict(bounds=((-2, -2, -2), (2, 2, 2)), area=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ImplicitSurface(lambda x: x.norm(dim=-1) - 1.0, **args)


def test_bad_functions_and_named_arguments():
    box = ((-2, -2, -2), (2, 2, 2))
    with pytest.raises(ValueError, match="callable"):
        ImplicitSurface("x^2 + y^2 + z^2 - 1", bounds=box)
    with pytest.raises(ValueError, match="values"):
        ImplicitSurface(lambda x: x.norm(dim=-1, keepdim=True) - 1.0, bounds=box, area=1.0)
    with pytest.raises(ValueError, match="failed"):
        ImplicitSurface(lambda x: x @ torch.ones(2), bounds=box, area=1.0)
    with pytest.raises(ValueError, match="bounds contain the surface"):
        ImplicitSurface(lambda x: x.norm(dim=-1) - 10.0, bounds=box, n_area=10_000)
    with pytest.raises(ValueError, match="R > r"):
        ImplicitSurface.torus(1.0, 1.0)
    with pytest.raises(ValueError, match="radius"):
        ImplicitSurface.sphere(-1.0)
    with pytest.raises(ValueError, match="b must"):
        ImplicitSurface.ellipsoid(1.0, 0.0, 1.0)


def test_bad_points_get_clear_errors(shapes):
    m = shapes["torus"]
    x = m.random_base(8, dtype=F64, generator=_gen(23))
    bad = x.clone()
    bad[2, 1] = math.nan
    with pytest.raises(ValueError, match="NaN") as e:
        m.assert_check_point(bad)
    assert "torus" in str(e.value)
    with pytest.raises(ValueError, match="trailing dimension"):
        m.assert_check_point(x[:, :2])
    with pytest.raises(ValueError, match="off the surface"):
        m.assert_check_point(1.1 * x)
    with pytest.raises(ValueError, match="not tangent"):
        m.assert_check_vector(x, x)
    with pytest.raises(ValueError, match="shape"):
        m.projx(x[:, :2])


def test_maps_without_closed_form_raise_and_name_retr(shapes):
    m = shapes["ellipsoid"]
    x = m.random_base(4, dtype=F64, generator=_gen(24))
    y = m.random_base(4, dtype=F64, generator=_gen(25))
    u = m.proju(x, torch.randn(x.shape, dtype=F64, generator=_gen(26)))
    for call in (lambda: m.expmap(x, u), lambda: m.logmap(x, y), lambda: m.dist(x, y)):
        with pytest.raises(NotImplementedError, match="retr"):
            call()
    assert not m.exact_expmap
    assert torch.equal(m.retr(x, u), m.projx(x + u))
    y2, v2 = m.retr_transp(x, u, u)
    assert torch.equal(v2, m.proju(y2, u)) and m.check_vector(y2, v2)[0]


def test_riemannian_adam_on_the_implicit_sphere():
    m = ImplicitSurface.sphere(2.0, center=(1.0, -0.5, 0.3))
    target = m.random_base(8, dtype=F64, generator=_gen(27))
    start = m.projx(target + 1.5 * torch.randn(target.shape, dtype=F64, generator=_gen(28)))
    p = geoopt.ManifoldParameter(start.clone(), manifold=m)
    opt = geoopt.optim.RiemannianAdam([p], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        ((p - target) ** 2).sum().backward()
        opt.step()
    ok, reason = m.check_point(p.detach(), atol=1e-12)
    assert ok, reason
    assert (p.detach() - target).norm(dim=-1).max() < 1e-2
