"""A table of generic properties every manifold must satisfy; run it on your own manifold too.

Usage::

    from manifolds.testing import check_manifold
    check_manifold(MyManifold())          # raises AssertionError listing every failed property

Each entry of :data:`PROPERTIES` is a function ``prop(manifold, dtype, seed)`` that raises
``AssertionError`` with a message when the property fails. The package's own test suite runs
the whole table over every built-in manifold, several dimensions, both float dtypes and
several seeds.

Two properties work differently for metrics that are not that of the coordinates
(``manifold.ambient_metric`` false: SO(3), SPD, hyperbolic models):

* ``base_is_stationary`` checks Stein's identity w.r.t. the Riemannian volume, which it obtains
  from ``proju`` and ``inner`` alone (the volume factor ``sqrt(det g)`` on the tangent space
  relative to the Euclidean surface measure).
* ``base_logprob_integrates_to_one`` integrates ``exp(base_logprob)`` in the exponential chart at
  a central base sample, with the chart's volume factor taken from finite differences of
  ``expmap`` (independent of any closed-form density). For a compact manifold this needs the ball
  of radius ``injectivity_radius`` to cover it (every base sample within that distance of the
  centre; true for SO(3) and spheres); where it does not the property is skipped. For ambient
  metrics it integrates over a box around the manifold, which needs ``projx`` to be the
  closest-point map of a bounded (or Gaussian-based) embedding.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional

import torch

from ._geoopt import geoopt
from .base import Manifold
from .volume import coordinate_divergence, log_volume_factor, surface_divergence, tangent_basis

Property = Callable[[Manifold, torch.dtype, int], None]
PROPERTIES: Dict[str, Property] = {}


def _property(fn: Property) -> Property:
    PROPERTIES[fn.__name__] = fn
    return fn


def tolerance(dtype: torch.dtype) -> float:
    """Absolute tolerance for O(1) quantities computed in ``dtype`` by a few operations."""
    return 2e-4 if dtype == torch.float32 else 1e-9


def _close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str) -> None:
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.1g}"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _points(m: Manifold, n: int, dtype, seed: int) -> torch.Tensor:
    return m.random_base(n, dtype=dtype, generator=_gen(seed))


def _tangent(m: Manifold, x: torch.Tensor, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.randn(x.shape, dtype=x.dtype, generator=_gen(seed + 1000))
    return scale * m.proju(x, g)


def _tangent_with_norm(m: Manifold, x: torch.Tensor, r: torch.Tensor, seed: int) -> torch.Tensor:
    u = _tangent(m, x, seed)
    # project again after rescaling: a short projected vector blown up to length r would magnify
    # its rounding error off the tangent space
    return m.proju(x, u * (r / m.norm(x, u).clamp_min(1e-12)).unsqueeze(-1))


def _max_radius(m: Manifold) -> float:
    return 0.9 * min(m.injectivity_radius, 3.0)


def _geodesic_tol(m: Manifold, dtype: torch.dtype) -> float:
    """Tolerance of exp/log identities.

    The dtype's, or the manifold's ``geodesic_atol`` where its geodesics are approximate (meshes: heat-method log maps).
    """
    return max(10 * tolerance(dtype), float(getattr(m, "geodesic_atol", 0.0)))


@_property
def shapes_and_dtypes(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """Batched over leading dimensions, broadcasting, dtype preserved."""
    x = m.random_base(3, 4, dtype=dtype, generator=_gen(seed))
    assert x.shape == (3, 4, m.ambient_dim), f"random_base(3, 4) has shape {tuple(x.shape)}"
    assert x.dtype == dtype, f"random_base returned {x.dtype}, asked for {dtype}"
    y = m.random_base(3, 4, dtype=dtype, generator=_gen(seed + 1))
    u = m.logmap(x, y)
    for name, out, shape in [
        ("logmap", u, x.shape),
        ("expmap", m.expmap(x, u), x.shape),
        ("transp", m.transp(x, y, u), x.shape),
        ("proju", m.proju(x, u), x.shape),
        ("projx", m.projx(x), x.shape),
        ("dist", m.dist(x, y), x.shape[:-1]),
        ("dist keepdim", m.dist(x, y, keepdim=True), x.shape[:-1] + (1,)),
        ("inner", m.inner(x, u), x.shape[:-1]),
        ("inner(u, v)", m.inner(x, u, u), x.shape[:-1]),
        ("norm", m.norm(x, u), x.shape[:-1]),
        ("base_logprob", m.base_logprob(x), x.shape[:-1]),
        ("dist broadcast", m.dist(x[:1], y), x.shape[:-1]),
        ("logmap broadcast", m.logmap(x[:, :1], y), x.shape),
    ]:
        assert out.shape == shape, f"{name} returned shape {tuple(out.shape)}, expected {tuple(shape)}"
        assert out.dtype == dtype, f"{name} returned dtype {out.dtype}, expected {dtype}"


@_property
def base_samples_are_valid(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """Base samples pass check_point; projected vectors pass check_vector; base_logprob is finite."""
    x = _points(m, 512, dtype, seed)
    ok, reason = m.check_point(x)
    assert ok, f"base samples fail check_point: {reason}"
    ok, reason = m.check_vector(x, _tangent(m, x, seed))
    assert ok, f"proju output fails check_vector: {reason}"
    lp = m.base_logprob(x)
    assert torch.isfinite(lp).all(), "base_logprob is not finite on base samples"
    if m.compact:
        _close(lp, lp.mean().expand_as(lp), tolerance(dtype), "base_logprob of a compact manifold is not constant")
        _close(lp.mean(), torch.tensor(-math.log(m.volume), dtype=dtype), tolerance(dtype),
               "base_logprob != -log volume")


@_property
def projx_is_idempotent(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """``projx`` maps ambient points onto the manifold, fixes points already on it, and is idempotent."""
    x = _points(m, 256, dtype, seed)
    z = x + 0.3 * torch.randn(x.shape, dtype=dtype, generator=_gen(seed + 7))
    p = m.projx(z)
    ok, reason = m.check_point(p)
    assert ok, f"projx output is not on the manifold: {reason}"
    _close(m.projx(p), p, tolerance(dtype), "projx(projx(z)) != projx(z)")
    _close(m.projx(x), x, tolerance(dtype), "projx(x) != x on the manifold")


@_property
def proju_is_tangent_and_idempotent(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """``proju`` returns tangent vectors and leaves them unchanged."""
    x = _points(m, 256, dtype, seed)
    v = _tangent(m, x, seed)
    ok, reason = m.check_vector(x, v)
    assert ok, f"proju output is not tangent: {reason}"
    _close(m.proju(x, v), v, tolerance(dtype), "proju(x, proju(x, u)) != proju(x, u)")


@_property
def exp_log_are_inverse(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """log(x, exp(x, u)) = u and exp(x, log(x, y)) = y within the injectivity radius."""
    x = _points(m, 512, dtype, seed)
    r = _max_radius(m) * torch.rand(x.shape[:-1], dtype=dtype, generator=_gen(seed + 3))
    u = _tangent_with_norm(m, x, r, seed)
    y = m.expmap(x, u)
    ok, reason = m.check_point(y)
    assert ok, f"expmap leaves the manifold: {reason}"
    tol = _geodesic_tol(m, dtype)
    _close(m.logmap(x, y), u, tol, "logmap(x, expmap(x, u)) != u")
    _close(m.dist(m.expmap(x, m.logmap(x, y)), y), torch.zeros_like(r), tol, "expmap(x, logmap(x, y)) != y")
    _close(m.dist(x, y), r, tol, "dist(x, expmap(x, u)) != |u|")


@_property
def zero_at_identity(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """exp(x, 0) = x, log(x, x) = 0 and dist(x, x) = 0 to the precision of the dtype."""
    x = _points(m, 512, dtype, seed)
    eps = 16 * torch.finfo(dtype).eps
    _close(m.dist(m.expmap(x, torch.zeros_like(x)), x), torch.zeros(x.shape[:-1], dtype=dtype), eps,
           "expmap(x, 0) != x")
    _close(m.logmap(x, x), torch.zeros_like(x), eps, "logmap(x, x) != 0")
    _close(m.dist(x, x), torch.zeros(x.shape[:-1], dtype=dtype), eps, "dist(x, x) != 0")


@_property
def dist_is_symmetric_and_log_norm(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """dist(x, y) = dist(y, x) = |log(x, y)|_x >= 0 on random pairs."""
    x, y = _points(m, 512, dtype, seed), _points(m, 512, dtype, seed + 1)
    d = m.dist(x, y)
    assert (d >= 0).all(), "negative distance"
    tol = _geodesic_tol(m, dtype)
    _close(d, m.dist(y, x), tol, "dist is not symmetric")
    _close(d, m.norm(x, m.logmap(x, y)), tol, "dist(x, y) != norm(x, logmap(x, y))")


@_property
def transp_preserves_inner_products(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """Parallel transport maps tangent vectors to tangent vectors and is an isometry."""
    x = _points(m, 256, dtype, seed)
    r = _max_radius(m) * torch.rand(x.shape[:-1], dtype=dtype, generator=_gen(seed + 5))
    y = m.expmap(x, _tangent_with_norm(m, x, r, seed + 11))
    u, v = _tangent(m, x, seed + 1), _tangent(m, x, seed + 2)
    tu, tv = m.transp(x, y, u), m.transp(x, y, v)
    ok, reason = m.check_vector(y, tu, atol=10 * tolerance(dtype))
    assert ok, f"transported vector is not tangent at the target: {reason}"
    tol = 100 * tolerance(dtype)
    _close(m.inner(y, tu, tv), m.inner(x, u, v), tol, "transp does not preserve inner products")


@_property
def finite_at_edge_cases(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """No NaN/inf in values or gradients at u = 0, y = x, and y just inside the injectivity radius."""
    x0 = _points(m, 64, dtype, seed)
    cases = {"u = 0 / y = x": torch.zeros_like(x0)}
    if math.isfinite(m.injectivity_radius):
        r = torch.full(x0.shape[:-1], m.injectivity_radius - 1e-4, dtype=dtype)
        cases["|u| = injectivity radius - 1e-4"] = _tangent_with_norm(m, x0, r, seed)
    for name, u0 in cases.items():
        x = x0.clone().requires_grad_(True)
        u = u0.clone().requires_grad_(True)
        y = m.expmap(x0, u0).detach().requires_grad_(True)
        outs = {
            "expmap": m.expmap(x, u),
            "logmap": m.logmap(x, y),
            "dist": m.dist(x, y),
            "norm": m.norm(x, u),
            "transp": m.transp(x, y, u),
        }
        for op, out in outs.items():
            assert torch.isfinite(out).all(), f"{op} is not finite at {name}"
            grads = torch.autograd.grad(out.sum(), [x, u, y], allow_unused=True)
            for g, wrt in zip(grads, "xuy"):
                assert g is None or torch.isfinite(g).all(), f"gradient of {op} w.r.t. {wrt} is not finite at {name}"


@_property
def gradcheck_exp_log(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """Autograd gradients of expmap, logmap and dist match finite differences (float64 only)."""
    if dtype != torch.float64:
        return
    x = _points(m, 4, dtype, seed)
    r = 0.5 * _max_radius(m) * (0.2 + torch.rand(x.shape[:-1], dtype=dtype, generator=_gen(seed + 9)))
    u = _tangent_with_norm(m, x, r, seed)
    y = m.expmap(x, u)
    for name, fn, inputs in [
        ("expmap w.r.t. u", lambda u_: m.expmap(x, u_), (u,)),
        ("expmap w.r.t. x", lambda x_: m.expmap(x_, u), (x,)),
        ("logmap w.r.t. y", lambda y_: m.logmap(x, y_), (y,)),
        ("dist w.r.t. y", lambda y_: m.dist(x, y_), (y,)),
    ]:
        inputs = tuple(t.detach().clone().requires_grad_(True) for t in inputs)
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=False), (
            f"gradcheck failed for {name}"
        )



@_property
def base_is_stationary(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """Stein's identity E_p[div V + <grad log p, V>] = 0 for the base density p and smooth fields V.

    For a compact manifold with a uniform base this says E[div V] = 0, which fails for samples
    that are not uniform. The fields are ``proju(x, A sin(B x + c))`` with integer ``B`` (periodic
    on the torus).

    For other metrics the Riemannian divergence is ``div_e V + V(log rho)`` with ``div_e`` the
    divergence w.r.t. the Euclidean surface measure (:func:`manifolds.volume.surface_divergence`) and
    ``rho = sqrt(det g)`` its density (:func:`manifolds.volume.log_volume_factor`), so the summand gains
    ``<grad_e log rho, V>``. The check always samples in float64, so that branch runs once per
    seed (the float32 call would repeat it exactly).
    """
    ambient = getattr(m, "ambient_metric", False)
    if not ambient and dtype != torch.float64:
        return
    g = _gen(seed + 17)
    n = 40_000
    x = m.random_base(n, dtype=torch.float64, generator=g)
    xg = x.detach().requires_grad_(True)
    logp = m.base_logprob(xg)
    egrad = torch.autograd.grad(logp.sum(), xg)[0] if logp.requires_grad else torch.zeros_like(x)  # uniform base
    score = m.egrad2rgrad(x, egrad)
    volume_term = torch.zeros_like(x)
    if not ambient:
        xg = x.detach().requires_grad_(True)
        log_rho = log_volume_factor(m, xg)
        if log_rho.requires_grad:  # constant for a constant multiple of the coordinates' metric
            volume_term = torch.autograd.grad(log_rho.sum(), xg)[0]
    for trial in range(3):
        a = torch.randn(m.ambient_dim, 4, dtype=torch.float64, generator=g)
        b = torch.randint(-2, 3, (4, m.ambient_dim), generator=g).to(torch.float64)
        c = 2 * math.pi * torch.rand(4, dtype=torch.float64, generator=g)

        def field(z, a=a, b=b, c=c):
            return m.proju(z, torch.sin(z @ b.T + c) @ a.T)

        v = field(x).detach()
        div = coordinate_divergence(m, field, x) if ambient else surface_divergence(m, field, x)
        terms = div + m.inner(x, score, v) + (volume_term * v).sum(-1)
        mean, se = terms.mean().item(), terms.std().item() / math.sqrt(n)
        assert abs(mean) <= 5 * se + 1e-9, (f"Stein identity fails for field {trial}: mean {mean:.3g} "
                                            f"(std. error {se:.2g})")


@_property
def base_logprob_integrates_to_one(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """Monte Carlo over a box around the manifold: the integral of exp(base_logprob) is 1.

    Points z of the box whose distance ``|z - projx(z)|`` is below eps form a tube of volume
    ``Vol(M) * vol(B_eps^codim)`` to leading order, which turns the box average into an integral
    over M that does not use ``random_base``'s own sampler for the integrand's support. Metrics
    other than the coordinates' one are integrated in the exponential chart instead
    (:func:`_integrate_in_exponential_chart`).
    """
    if dtype != torch.float64:
        return
    if not getattr(m, "ambient_metric", False):
        _integrate_in_exponential_chart(m, seed)
        return
    g = _gen(seed + 23)
    ref = m.random_base(100_000, dtype=torch.float64, generator=g)
    eps = 0.04
    lo, hi = ref.amin(0) - eps, ref.amax(0) + eps
    if not m.compact:
        lo, hi = lo - 0.5 * (hi - lo).abs(), hi + 0.5 * (hi - lo).abs()
    codim = m.ambient_dim - m.dim
    ball = math.pi ** (codim / 2) / math.gamma(codim / 2 + 1) * eps**codim
    box = torch.prod(hi - lo).item()
    total, count, n_chunks, chunk = 0.0, 0, 8, 250_000
    for _ in range(n_chunks):
        z = lo + (hi - lo) * torch.rand(chunk, m.ambient_dim, dtype=torch.float64, generator=g)
        p = m.projx(z)
        inside = torch.linalg.vector_norm(z - p, dim=-1) < eps
        total += torch.exp(m.base_logprob(p[inside])).sum().item()
        count += int(inside.sum())
    n = n_chunks * chunk
    integral = box * total / (n * ball)
    rel_se = 1.0 / math.sqrt(max(count, 1))
    assert count > 1000, f"only {count} box points landed within {eps} of the manifold"
    assert abs(integral - 1.0) <= 0.02 + 5 * rel_se, f"integral of exp(base_logprob) is {integral:.4f}, expected 1"


def _integrate_in_exponential_chart(m: Manifold, seed: int) -> None:
    """Importance sampling of ``int exp(base_logprob) dvol`` in normal coordinates at a central base sample.

    ``y = expmap(o, sum_i a_i e_i)`` with ``e_i`` orthonormal at ``o``; the volume factor
    ``sqrt(det inner(y, dy/da_i, dy/da_j))`` comes from central differences of ``expmap``. The
    proposal for ``a`` is uniform on the ball of radius ``injectivity_radius`` (compact ``M``,
    whose every point must lie within that distance of ``o``) or a normal 1.5 times wider than
    the base's spread around ``o``.
    """
    g = _gen(seed + 23)
    f64 = torch.float64
    ref = m.random_base(2048, dtype=f64, generator=g)
    cand = ref[:64]
    spread2 = (m.dist(cand[:, None, :], ref[None, :, :]) ** 2).mean(-1)
    o = cand[spread2.argmin()]
    n, d = 60_000, m.dim
    if math.isfinite(m.injectivity_radius):
        rad = m.injectivity_radius
        if m.dist(o, ref).max().item() > rad * (1 + 1e-9):
            return  # the exponential chart at o does not cover M
        a = torch.randn(n, d, dtype=f64, generator=g)
        a = a / a.norm(dim=-1, keepdim=True) * rad * torch.rand(n, 1, dtype=f64, generator=g) ** (1.0 / d)
        logq = torch.full((n,), math.lgamma(d / 2 + 1) - (d / 2) * math.log(math.pi) - d * math.log(rad), dtype=f64)
    else:
        s = 1.5 * math.sqrt(spread2.min().item() / d)
        a = s * torch.randn(n, d, dtype=f64, generator=g)
        logq = -0.5 * (a * a).sum(-1) / s**2 - 0.5 * d * math.log(2 * math.pi * s**2)
    basis = tangent_basis(m, o)
    u = a @ basis
    y = m.expmap(o, u)
    h = 1e-5
    cols = torch.stack([(m.expmap(o, u + h * e) - m.expmap(o, u - h * e)) / (2 * h) for e in basis], dim=-2)
    gram = m.inner(y[:, None, None, :], cols[:, :, None, :], cols[:, None, :, :])
    w = torch.exp(m.base_logprob(y) + 0.5 * torch.logdet(gram) - logq)
    assert torch.isfinite(w).all(), "non-finite importance weights in the exponential chart"
    integral, se = w.mean().item(), w.std().item() / math.sqrt(n)
    assert abs(integral - 1.0) <= 0.02 + 5 * se, (
        f"integral of exp(base_logprob) in the exponential chart is {integral:.4f} (std. error {se:.2g}), expected 1"
    )


@_property
def checks_reject_bad_input(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """Wrong trailing dimension, NaN and off-manifold points are named by check_point/assert_check_point."""
    x = _points(m, 16, dtype, seed)
    bad = {
        "trailing dimension": torch.cat([x, x[..., :1]], dim=-1),
        "NaN": x.clone().index_fill_(0, torch.tensor([3]), float("nan")),
    }
    z = 2.0 * x + 7.0
    if (z - m.projx(z)).abs().max() > 1e-3:
        bad["off"] = z
    for word, t in bad.items():
        ok, reason = m.check_point(t)
        assert not ok, f"check_point accepted a point with {word}"
        assert word.split()[0] in reason, f"check_point's reason does not name the problem ({word}): {reason}"
        try:
            m.assert_check_point(t)
        except ValueError as e:
            assert str(m) in str(e), f"error message does not name the manifold: {e}"
        else:
            raise AssertionError(f"assert_check_point did not raise for a point with {word}")
    ok, _ = m.check_point(x.to(torch.int64))
    assert not ok, "check_point accepted an integer tensor"
    g = torch.randn(x.shape, dtype=dtype, generator=_gen(seed + 31))
    if (m.proju(x, g) - g).abs().max() > 1e-3:
        ok, reason = m.check_vector(x, g)
        assert not ok, "check_vector accepted a vector that is not tangent"


@_property
def riemannian_adam_converges(m: Manifold, dtype: torch.dtype, seed: int) -> None:
    """The geoopt RiemannianAdam on a ManifoldParameter minimises dist^2 to a target and stays on M."""
    target = _points(m, 8, dtype, seed)
    r = torch.full(target.shape[:-1], min(1.0, 0.5 * m.injectivity_radius), dtype=dtype)
    start = m.expmap(target, _tangent_with_norm(m, target, r, seed))
    p = geoopt.ManifoldParameter(start.clone(), manifold=m)
    opt = geoopt.optim.RiemannianAdam([p], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        m.dist2(p, target).sum().backward()
        opt.step()
    ok, reason = m.check_point(p.detach())
    assert ok, f"RiemannianAdam left the manifold: {reason}"
    final = m.dist(p.detach(), target).max().item()
    assert final < 2e-2, f"RiemannianAdam did not converge: max distance {final:.3g}"


def check_manifold(
    manifold: Manifold,
    *,
    dtypes: Iterable[torch.dtype] = (torch.float32, torch.float64),
    seeds: Iterable[int] = (0, 1),
    properties: Optional[Iterable[str]] = None,
) -> None:
    """Run the property table on ``manifold``; raise one AssertionError listing every failure.

    Args:
        manifold: the manifold under test.
        dtypes: floating dtypes to run each property in.
        seeds: random seeds (each property draws its own points from them).
        properties: names from :data:`PROPERTIES` (default: all).
    """
    names = list(PROPERTIES) if properties is None else list(properties)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; choose from {list(PROPERTIES)}")
    failures: List[str] = []
    for name in names:
        for dtype in dtypes:
            for seed in seeds:
                try:
                    PROPERTIES[name](manifold, dtype, seed)
                except AssertionError as e:
                    failures.append(f"{name} [{dtype}, seed {seed}]: {e}")
    if failures:
        raise AssertionError(f"{manifold} fails {len(failures)} check(s):\n" + "\n".join(failures))
