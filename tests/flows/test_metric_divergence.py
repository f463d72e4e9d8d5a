"""Divergences on manifolds whose metric is not that of their coordinates: SO(3), SPD, Poincare ball, hyperboloid."""

import math

import pytest
import torch

import manifolds as mf
from manifold_flows.divergence import HUTCHINSON_ABOVE, default_estimator, divergence, resolve_estimator
from manifolds.volume import log_volume_factor, surface_divergence

METRICS = {
    "so3": mf.SO3,
    "spd2": lambda: mf.SPD(2),
    "spd3": lambda: mf.SPD(3),
    "poincare3_c0.7": lambda: mf.PoincareBall(3, c=0.7),
    "hyperboloid2": lambda: mf.Hyperboloid(2),
    "hyperboloid3_c0.5": lambda: mf.Hyperboloid(3, c=0.5),
    "so3_x_poincare2": lambda: mf.ProductManifold(mf.SO3(), mf.PoincareBall(2)),
}


def _field(m, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m.ambient_dim, 4, dtype=torch.float64, generator=g)
    b = 0.5 * torch.randint(-2, 3, (4, m.ambient_dim), generator=g).to(torch.float64)
    c = 6 * torch.rand(4, dtype=torch.float64, generator=g)
    return lambda z, t=0.0: m.proju(z, torch.sin(z @ b.T + c) @ a.T)


def _reference_divergence(m, field, x):
    """Riemannian divergence from the property table's machinery: surface divergence plus the volume factor's drift."""
    xg = x.detach().requires_grad_(True)
    log_rho = log_volume_factor(m, xg)
    drift = torch.autograd.grad(log_rho.sum(), xg)[0] if log_rho.requires_grad else torch.zeros_like(x)
    return surface_divergence(m, field, x) + (drift * field(x)).sum(-1)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_exact_divergence_is_the_riemannian_one(name):
    m = METRICS[name]()
    x = m.random_base(16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    field = _field(m, 1)
    ref = _reference_divergence(m, field, x)
    got = divergence(field, x, 0.0, manifold=m)
    assert torch.allclose(got, ref, atol=1e-8, rtol=1e-8), (got - ref).abs().max()
    if name != "so3":  # the trace alone is wrong wherever the volume is not a constant multiple of mu
        plain = got - m.divergence_correction(x, field(x))
        assert (plain - ref).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["hyperboloid2", "spd2", "so3"])
def test_hutchinson_is_unbiased_for_the_riemannian_divergence(name):
    # the hyperboloid's projection is oblique: projecting both sides of the probe would be biased
    m = METRICS[name]()
    x = m.random_base(4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    field = _field(m, 3)
    exact = divergence(field, x, 0.0, manifold=m)
    est = divergence(field, x, 0.0, manifold=m, estimator="hutchinson", n_probes=20_000,
                     generator=torch.Generator().manual_seed(4))
    assert torch.allclose(est, exact, atol=0.05 * (1 + exact.abs().max())), (est, exact)


@pytest.mark.parametrize("name", ["hyperboloid3_c0.5", "poincare3_c0.7"])
def test_stein_identity_of_the_base_with_the_package_divergence(name):
    # E_base[div V + <grad log p, V>] = 0 for the base density p w.r.t. the Riemannian volume
    m = METRICS[name]()
    n = 20_000
    x = m.random_base(n, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    xg = x.clone().requires_grad_(True)
    score = torch.autograd.grad(m.base_logprob(xg).sum(), xg)[0]
    field = _field(m, 7)
    terms = divergence(field, x, 0.0, manifold=m) + (score * field(x)).sum(-1)
    se = terms.std().item() / math.sqrt(n)
    assert abs(terms.mean().item()) < 4 * se + 1e-9


def test_estimator_defaults_follow_the_dimension():
    assert default_estimator(mf.FlatTorus(HUTCHINSON_ABOVE)) == "exact"
    assert default_estimator(mf.FlatTorus(HUTCHINSON_ABOVE + 1)) == "hutchinson"
    assert resolve_estimator("auto", mf.SO3()) == "exact"
    assert resolve_estimator("hutchinson", mf.SO3()) == "hutchinson"
    with pytest.raises(ValueError, match="unknown divergence estimator"):
        resolve_estimator("trace", mf.SO3())


@pytest.mark.parametrize("name", ["so3", "spd3", "poincare3_c0.7", "hyperboloid3_c0.5"])
def test_rfm_target_velocity_is_the_derivative_of_the_geodesic(name):
    # RFM regresses on Manifold.geodesic's velocity: transported log maps, checked against central differences
    m = METRICS[name]()
    g = torch.Generator().manual_seed(8)
    x0, x1 = m.random_base(32, dtype=torch.float64, generator=g), m.random_base(32, dtype=torch.float64, generator=g)
    u = m.logmap(x0, x1)
    t = torch.rand(32, dtype=torch.float64, generator=g)
    xt, vt = m.geodesic(x0, u, t)
    h = 1e-6
    fd = (m.expmap(x0, (t + h)[:, None] * u) - m.expmap(x0, (t - h)[:, None] * u)) / (2 * h)
    assert torch.allclose(vt, fd, atol=1e-5 * (1 + fd.abs().max())), (vt - fd).abs().max()
    assert torch.allclose(m.geodesic(x0, u, torch.ones_like(t))[0], x1, atol=1e-8)
