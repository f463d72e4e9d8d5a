"""SPD(n).

Closed forms against scipy, gradients at repeated eigenvalues, the log-normal density, projection, bad input.
"""

import math

import numpy as np
import pytest
import scipy.linalg as sl
import torch

from manifolds import SPD
from manifolds._matrix_functions import matrix_function

DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def spd_points(n, count, seed):
    """Base samples plus one badly conditioned matrix (eigenvalues 1e-3, 1, 1e2 rotated)."""
    m = SPD(n)
    x = m.random_base(count, dtype=F64, generator=gen(seed))
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=gen(seed + 1)))
    bad = q @ torch.diag(torch.logspace(-3, 2, n, dtype=F64)) @ q.T
    return torch.cat([x, bad.reshape(1, n * n)])


def sqrtm_pair(p):
    r = np.real(sl.sqrtm(p))
    return r, np.linalg.inv(r)


@DTYPES
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.filterwarnings("ignore:logm result may be inaccurate")  # scipy's own reference, at condition 1e5
def test_exp_log_dist_match_scipy(n, dtype):
    m = SPD(n)
    x = spd_points(n, 12, 0)
    y = spd_points(n, 12, 10)
    u = m.proju(x, torch.randn(x.shape, dtype=F64, generator=gen(3)))
    u = u * (1.5 / m.norm(x, u)).unsqueeze(-1)
    xs, ys, us = (t.to(dtype) for t in (x, y, u))
    got_e, got_l, got_d = m.expmap(xs, us).double(), m.logmap(xs, ys).double(), m.dist(xs, ys).double()
    for i in range(x.shape[0]):
        p, q, w = (t.to(dtype).double().reshape(n, n).numpy() for t in (x[i], y[i], u[i]))
        r, ri = sqrtm_pair(p)
        want_e = r @ sl.expm(ri @ w @ ri) @ r
        inner = np.real(sl.logm(ri @ q @ ri))
        want_l = r @ inner @ r
        # relative to the matrices' scale, times their conditioning (up to 1e5 here): the accuracy
        # any float computation (scipy's included) has on such inputs
        scale = np.abs(p).max()
        tol = (1e-13 if dtype == F64 else 5e-5) * np.linalg.cond(p) * np.linalg.cond(q)
        assert np.abs(got_e[i].reshape(n, n).numpy() - want_e).max() <= tol * np.abs(want_e).max()
        assert np.abs(got_l[i].reshape(n, n).numpy() - want_l).max() <= tol * max(scale, np.abs(want_l).max())
        want_d = np.linalg.norm(inner)
        assert abs(got_d[i].item() - want_d) <= tol * max(1.0, want_d)


def test_gradcheck_at_exactly_repeated_eigenvalues():
    m = SPD(3)
    eye = torch.eye(3, dtype=F64).reshape(9)
    two = 2.0 * eye
    diag = torch.diag(torch.tensor([2.0, 2.0, 5.0], dtype=F64)).reshape(9)
    u = torch.tensor([[0.3, 0.1, 0.0], [0.1, -0.2, 0.4], [0.0, 0.4, 0.1]], dtype=F64).reshape(9)
    cases = [
        ("expmap w.r.t. u at u = 0", lambda a: m.expmap(eye, a), torch.zeros(9, dtype=F64)),
        ("expmap w.r.t. u at u = 0.3 I", lambda a: m.expmap(two, a), 0.3 * eye),
        ("expmap w.r.t. x at I", lambda a: m.expmap(a, u), eye),
        ("logmap w.r.t. y at y = x", lambda a: m.logmap(two, a), two),
        ("logmap w.r.t. y at y = 2x", lambda a: m.logmap(eye, a), two),
        ("logmap w.r.t. x at repeated eigenvalues", lambda a: m.logmap(a, diag), eye),
        ("dist w.r.t. y at y = 2x", lambda a: m.dist(eye, a), two),
        ("transp w.r.t. y at y = x", lambda a: m.transp(eye, a, u), eye),
        ("transp w.r.t. y at y = diag(2, 2, 5)", lambda a: m.transp(eye, a, u), diag),
        ("base_logprob at I", m.base_logprob, eye),
        ("base_logprob at diag(2, 2, 5)", m.base_logprob, diag),
        ("projx at I", m.projx, eye),
    ]
    for name, fn, a in cases:
        a = a.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(fn, (a,), eps=1e-6, atol=1e-7), name
    # dist is not differentiable at y = x, but its gradient there is finite (zero)
    a = eye.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m.dist(eye, a), a)
    assert torch.isfinite(g).all() and g.abs().max() == 0
    # plain eigh gives NaN at the identity; the divided-difference backward does not
    w = torch.zeros(3, 3, dtype=F64, requires_grad=True)
    lam, vec = torch.linalg.eigh(w)
    (naive,) = torch.autograd.grad(((vec * torch.expm1(lam)) @ vec.T).sum() + (vec.sum() * 0), w)
    (ours,) = torch.autograd.grad(matrix_function(w, "expm1").sum(), w)
    assert not torch.isfinite(naive).all() and torch.allclose(ours, torch.ones(3, 3, dtype=F64))


@pytest.mark.parametrize("n, sigma", [(2, 1.0), (3, 1.0), (3, 0.6)])
def test_base_logprob_matches_a_finite_difference_jacobian(n, sigma):
    """``log p(expm(S)) = log N(S) - log J(S)``, with J from central differences of scipy's expm at I."""
    m = SPD(n, sigma=sigma)
    dim = n * (n + 1) // 2
    basis = []
    for i in range(n):
        for j in range(i, n):
            e = np.zeros((n, n))
            e[i, j] = e[j, i] = 1.0 if i == j else math.sqrt(0.5)
            basis.append(e)
    rng = np.random.default_rng(n)
    h = 1e-6
    for _ in range(6):
        coords = sigma * rng.standard_normal(dim) * 1.5
        s = sum(c * b for c, b in zip(coords, basis))
        p = sl.expm(s)
        pinv = np.linalg.inv(p)
        cols = [(sl.expm(s + h * b) - sl.expm(s - h * b)) / (2 * h) for b in basis]
        gram = np.array([[np.trace(pinv @ a @ pinv @ b) for b in cols] for a in cols])
        log_normal = -0.5 * coords @ coords / sigma**2 - 0.5 * dim * math.log(2 * math.pi * sigma**2)
        want = log_normal - 0.5 * np.linalg.slogdet(gram)[1]
        got = m.base_logprob(torch.as_tensor(p.reshape(-1))).item()
        assert abs(got - want) < 1e-6
    # the Jacobian matters: it is far from 1 at these spreads
    assert abs(0.5 * np.linalg.slogdet(gram)[1]) > 0.05


def test_base_samples_have_the_stated_log_normal_law():
    m = SPD(3, sigma=0.8)
    x = m.random_base(20000, dtype=F64, generator=gen(4))
    s = matrix_function(x.reshape(-1, 3, 3) - torch.eye(3, dtype=F64), "log1p")  # logm(P)
    diag, off = s[:, 0, 0], s[:, 0, 1]
    se = 0.64 * math.sqrt(2 / 20000)
    assert abs(diag.var().item() - 0.64) < 5 * se and abs(off.var().item() - 0.32) < 5 * se / 2
    assert abs(s.mean().item()) < 0.02
    assert torch.allclose(torch.matrix_exp(s), x.reshape(-1, 3, 3), atol=1e-9)


@DTYPES
def test_projx_symmetrises_clamps_and_fixes_valid_points(dtype):
    m = SPD(2)
    x = m.random_base(50, dtype=dtype, generator=gen(5))
    assert torch.equal(m.projx(x), x)
    z = torch.tensor([[1.0, 3.0, 1.0, 1.0], [-1.0, 0.0, 0.0, 2.0], [-1.0, 0.0, 0.0, -1.0]], dtype=dtype)
    p = m.projx(z)
    assert m.check_point(p)[0] and torch.equal(m.projx(p), p)
    # symmetric parts with eigenvalues (-1, 3), (-1, 2), (-1, -1): negative ones go to the floor,
    # 16 n eps times the largest magnitude; the others stay
    lam = torch.linalg.eigvalsh(p.reshape(-1, 2, 2))
    floor = 16 * 2 * torch.finfo(dtype).eps * torch.tensor([3.0, 2.0, 1.0], dtype=dtype)
    assert torch.allclose(lam[:, 0], floor, rtol=1e-3)
    expected = torch.stack([torch.tensor(3.0, dtype=dtype), torch.tensor(2.0, dtype=dtype), floor[2]])
    assert torch.allclose(lam[:, 1], expected, rtol=1e-3)
    g = torch.autograd.functional.jacobian(m.projx, torch.eye(2, dtype=dtype).reshape(4))
    assert torch.isfinite(g).all()


def test_transp_is_an_isometry_carrying_geodesic_velocities():
    m = SPD(3)
    x, y = spd_points(3, 30, 6), spd_points(3, 30, 7)
    u = m.proju(x, torch.randn(x.shape, dtype=F64, generator=gen(8)))
    v = m.proju(x, torch.randn(x.shape, dtype=F64, generator=gen(9)))
    tu, tv = m.transp(x, y, u), m.transp(x, y, v)
    tol = 1e-15 * torch.linalg.cond(x.reshape(-1, 3, 3)) * torch.linalg.cond(y.reshape(-1, 3, 3))
    scale = m.norm(x, u) * m.norm(x, v)
    assert ((m.inner(y, tu, tv) - m.inner(x, u, v)).abs() / scale <= tol).all()
    carried, want = m.transp(x, y, m.logmap(x, y)), -m.logmap(y, x)
    assert (m.norm(y, carried - want) / m.norm(y, want) <= tol).all()
    assert (m.norm(x, m.transp(x, x, u) - u) / m.norm(x, u)).max() < 1e-12


def test_small_distances_keep_relative_precision_in_float32():
    """Distances of 1e-4 between float32 points, against float64 on the same (rounded) inputs."""
    m = SPD(3)
    x = m.random_base(500, generator=gen(10))
    u = m.proju(x, torch.randn(x.shape, generator=gen(11)))
    u = 1e-4 * u / m.norm(x, u).unsqueeze(-1)
    y = m.expmap(x, u)
    ref = m.dist(x.double(), y.double())
    assert ((m.dist(x, y).double() - ref).abs() / ref).max() < 1e-3
    ref_log = m.logmap(x.double(), y.double())
    assert (m.norm(x.double(), m.logmap(x, y).double() - ref_log) / ref).max() < 1e-3
    # log-eigenvalues of the whitened Q (instead of log1p of the whitened Q - P) lose these digits
    a = torch.linalg.cholesky(x.reshape(-1, 3, 3))
    half = torch.linalg.solve_triangular(a, y.reshape(-1, 3, 3), upper=False)
    wq = torch.linalg.solve_triangular(a, half.mT, upper=False)
    naive = torch.linalg.eigvalsh(0.5 * (wq + wq.mT)).log().norm(dim=-1)
    assert ((naive.double() - ref).abs() / ref).max() > 1e-2
    assert m.dist(x, x).max() < 1e-18 and torch.equal(m.expmap(x, torch.zeros_like(x)), x)


@DTYPES
def test_long_steps_are_capped_and_finite(dtype):
    m = SPD(2)
    x = m.random_base(8, dtype=dtype, generator=gen(12))
    u = m.proju(x, torch.randn(x.shape, dtype=dtype, generator=gen(13)))
    y = m.expmap(x, 1e4 * u / m.norm(x, u).unsqueeze(-1))
    assert torch.isfinite(y).all() and m.check_point(m.projx(y))[0]
    # along P itself (W = t I) the exact result e^(t / sqrt(n)) P stays representable: the step is
    # shortened to the cap exactly
    cap = 0.25 * math.log(torch.finfo(dtype).max)
    y = m.expmap(x, 1e4 * x)
    d = m.dist(x.double(), y.double())
    assert ((d - cap).abs() / cap).max() < (1e-5 if dtype == torch.float32 else 1e-12)
    assert torch.allclose(y.double(), math.exp(cap / math.sqrt(2)) * x.double(),
                          rtol=1e-4 if dtype == torch.float32 else 1e-12)


def test_egrad2rgrad_and_inner():
    m = SPD(3)
    x = spd_points(3, 10, 14)
    g = torch.randn(x.shape, dtype=F64, generator=gen(15))
    v = m.proju(x, torch.randn(x.shape, dtype=F64, generator=gen(16)))
    err = (m.inner(x, m.egrad2rgrad(x, g), v) - (g * v).sum(-1)).abs()
    assert (err / (g.norm(dim=-1) * v.norm(dim=-1)) <= 1e-15 * torch.linalg.cond(x.reshape(-1, 3, 3)) ** 2).all()
    p, a = x.reshape(-1, 3, 3), v.reshape(-1, 3, 3)
    pi = torch.linalg.inv(p)
    assert torch.allclose(m.inner(x, v), torch.einsum("bij,bjk,bkl,bli->b", pi, a, pi, a), rtol=1e-9)


def test_bad_input_is_named():
    m = SPD(2)
    x = m.random_base(5, dtype=F64, generator=gen(17))
    asym = x.clone()
    asym[3, 1] += 0.5
    with pytest.raises(ValueError, match=r"SPD\(n=2\).*not symmetric positive-definite.*not symmetric.*index \(3,\)"):
        m.assert_check_point(asym)
    with pytest.raises(ValueError, match="not symmetric positive-definite.*smallest eigenvalue"):
        m.assert_check_point(torch.where(torch.arange(5)[:, None] == 1, -x, x))
    with pytest.raises(ValueError, match="not tangent"):
        m.assert_check_vector(x, asym - x + x.flip(0))
    with pytest.raises(ValueError, match="trailing dimension of 4"):
        m.assert_check_point(torch.ones(3, 9, dtype=F64))
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="integer >= 1"):
            SPD(bad)
    with pytest.raises(ValueError, match="sigma"):
        SPD(2, sigma=0.0)
    assert m.volume == math.inf and not m.compact and repr(SPD(3, sigma=0.5)) == "SPD(n=3, sigma=0.5)"
