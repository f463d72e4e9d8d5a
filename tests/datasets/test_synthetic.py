"""Synthetic targets: log-densities are normalised and exact, samplers draw from them, the registry works."""

import math

import numpy as np
import pytest
import scipy.special
import torch

from manifold_flows.datasets import (
    SYNTHETIC,
    Checkerboard,
    VonMisesFisherMixture,
    WrappedNormalMixture,
    vmf_log_normalizer,
)
from manifolds import SO3, SPD, FlatTorus, Hyperboloid, PoincareBall, Sphere

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _single_vmf(dim, kappa, seed=0):
    mu = torch.randn(1, dim + 1, dtype=F64, generator=_gen(seed + 100))
    return VonMisesFisherMixture(dim, mu, kappas=[kappa], weights=[1.0])


def _log_sphere_volume(d):
    return math.log(2) + (d + 1) / 2 * math.log(math.pi) - math.lgamma((d + 1) / 2)


def _mean_and_se(values):
    values = values.to(F64)
    return values.mean().item(), values.std().item() / math.sqrt(values.numel())


# ---------------------------------------------------------------------------------------- normalisation
EXTRA_TARGETS = {
    "vmf_s1": lambda: VonMisesFisherMixture(1, [[1.0, 0.0], [-0.6, 0.8]], kappas=[4.0, 0.0], weights=[2.0, 1.0]),
    "vmf_s3": lambda: VonMisesFisherMixture(
        3, [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]], kappas=[8.0, 2.0], weights=[0.5, 0.5]
    ),
    "wrapped_t1_wide": lambda: WrappedNormalMixture(1, [[0.2], [3.0]], stds=[2.0, 0.5], weights=[1.0, 3.0]),
    "wrapped_t3_diag": lambda: WrappedNormalMixture(
        3, [[0.0, 6.0, 3.0], [3.0, 3.0, 3.0]], stds=[[0.3, 1.0, 0.5], [1.5, 0.4, 0.8]], weights=[1.0, 1.0]
    ),
}
# importance sampling from the base cannot integrate a concentrated density in many dimensions; the
# torus_mixture_t{d} targets above 6 dimensions are WrappedNormalMixture instances, whose formula the
# lower-dimensional cases here check
ALL_TARGETS = {**{k: v for k, v in SYNTHETIC.items() if v().manifold.dim <= 6}, **EXTRA_TARGETS}


@pytest.mark.parametrize("name", sorted(ALL_TARGETS))
def test_log_prob_integrates_to_one(name):
    """Mean of p / nu over uniform samples (nu the uniform density) is 1 within 3 %."""
    target = ALL_TARGETS[name]()
    m = target.manifold
    u = m.random_base(250_000, dtype=F64, generator=_gen(1))
    ratio = torch.exp(target.log_prob(u) - m.base_logprob(u))
    mean, se = _mean_and_se(ratio)
    assert abs(mean - 1.0) < 0.03, f"{name}: integral {mean:.4f} (std. error {se:.2g})"
    assert abs(mean - 1.0) < 5 * se + 1e-3, f"{name}: integral {mean:.4f} (std. error {se:.2g})"


def _sphere_grid(n=800):
    """Midpoint grid in (longitude, z) on S^2: points [n*n, 3] and the equal cell area."""
    lon = (torch.arange(n, dtype=F64) + 0.5) * (2 * math.pi / n) - math.pi
    z = (torch.arange(n, dtype=F64) + 0.5) * (2.0 / n) - 1.0
    lon, z = torch.meshgrid(lon, z, indexing="ij")
    r = torch.sqrt(1 - z * z)
    x = torch.stack([r * lon.cos(), r * lon.sin(), z], -1).reshape(-1, 3)
    return x, 4 * math.pi / (n * n)


def _torus_grid(n=400):
    """Uniform grid on T^2 (the trapezoid rule, spectrally accurate for smooth periodic integrands)."""
    t = torch.arange(n, dtype=F64) * (2 * math.pi / n)
    a, b = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([a, b], -1).reshape(-1, 2), (2 * math.pi / n) ** 2


@pytest.mark.parametrize("name,grid", [("vmf_mixture_s2", _sphere_grid), ("wrapped_normal_t2", _torus_grid)])
def test_smooth_targets_by_quadrature(name, grid):
    """Quadrature gives integral 1 and an entropy that the sampler-based estimate reproduces."""
    target = SYNTHETIC[name]()
    x, area = grid()
    lp = target.log_prob(x)
    p = lp.exp()
    assert abs((p.sum() * area).item() - 1.0) < 1e-4
    h_grid = -(p * lp).sum().item() * area
    h_mc, se = target.entropy(n=200_000, generator=_gen(2))
    assert abs(h_mc - h_grid) < 5 * se + 1e-3, (h_mc, se, h_grid)


# ---------------------------------------------------------------------------------------- von Mises-Fisher
@pytest.mark.parametrize("kappa", [1e-6, 5e-4, 2e-3, 0.1, 1.0, 10.0, 100.0, 1000.0, 1e5])
def test_vmf_normalizer_closed_form_s2(kappa):
    # C = kappa / (4 pi sinh kappa), log sinh k = k + log1p(-exp(-2k)) - log 2
    expected = math.log(kappa) - math.log(4 * math.pi) - (kappa + math.log(-math.expm1(-2 * kappa)) - math.log(2))
    got = vmf_log_normalizer(2, kappa).item()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("kappa", [0.01, 0.7, 3.0, 40.0])
def test_vmf_normalizer_other_dimensions(kappa):
    # S^1: 1 / (2 pi I_0), S^3: kappa / (4 pi^2 I_1)
    s1 = -math.log(2 * math.pi * scipy.special.iv(0, kappa))
    assert vmf_log_normalizer(1, kappa).item() == pytest.approx(s1, rel=1e-12)
    s3 = math.log(kappa / (4 * math.pi**2 * scipy.special.iv(1, kappa)))
    assert vmf_log_normalizer(3, kappa).item() == pytest.approx(s3, rel=1e-12)
    assert vmf_log_normalizer(400, 0.0).item() == pytest.approx(-_log_sphere_volume(400), rel=1e-14)


@pytest.mark.parametrize("dim", [400, 2000])
@pytest.mark.parametrize("kappa", [1e-4, 0.4, 4.0, 40.0, 4000.0])
def test_vmf_normalizer_high_dimension(dim, kappa):
    """Against mpmath's Bessel function; at dim 2000 scipy's ive underflows and the series is used."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    v = (dim + 1) / 2 - 1
    k = mpmath.mpf(kappa)
    expected = v * mpmath.log(k) - (v + 1) * mpmath.log(2 * mpmath.pi) - mpmath.log(mpmath.besseli(v, k))
    assert vmf_log_normalizer(dim, kappa).item() == pytest.approx(float(expected), rel=1e-12, abs=1e-9)


def test_vmf_log_prob_closed_form_and_large_kappa():
    g = _gen(3)
    x = Sphere(2).random_base(1000, dtype=F64, generator=g)
    for kappa in [0.0, 2.0, 30.0]:
        t = _single_vmf(2, kappa)
        mu = t.means[0]
        if kappa == 0:
            expected = torch.full((1000,), -math.log(4 * math.pi), dtype=F64)
        else:
            expected = math.log(kappa / (4 * math.pi * math.sinh(kappa))) + kappa * (x @ mu)
        assert torch.allclose(t.log_prob(x), expected, rtol=1e-10, atol=1e-10)
    t = _single_vmf(2, 1000.0)
    mu = t.means[0]
    pts = torch.stack([mu, -mu, x[0], x[1]])
    for dtype in (F64, torch.float32):
        lp = t.log_prob(pts.to(dtype))
        assert lp.dtype == dtype and torch.isfinite(lp).all()
        assert lp[0].item() == pytest.approx(math.log(1000 / (2 * math.pi)), abs=1e-3)
        assert lp[1].item() == pytest.approx(math.log(1000 / (2 * math.pi)) - 2000, rel=1e-5)


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
@pytest.mark.parametrize("kappa", [0.0, 0.5, 5.0, 50.0, 1000.0])
def test_vmf_mean_resultant_length(dim, kappa):
    """E<mu, x> = I_{p/2}(kappa) / I_{p/2-1}(kappa) (coth k - 1/k on S^2); the orthogonal part averages to 0."""
    t = _single_vmf(dim, kappa, seed=dim)
    n = 60_000
    x = t.sample(n, generator=_gen(4))
    ok, reason = t.manifold.check_point(x)
    assert ok, reason
    mu = t.means[0]
    w = x @ mu
    p = dim + 1
    expected = 0.0 if kappa == 0 else scipy.special.ive(p / 2, kappa) / scipy.special.ive(p / 2 - 1, kappa)
    if dim == 2 and kappa > 0:
        assert expected == pytest.approx(1 / math.tanh(kappa) - 1 / kappa, rel=1e-10)
    mean, se = _mean_and_se(w)
    assert abs(mean - expected) < 5 * se + 1e-12, (mean, expected, se)
    # second moment as well: E<mu,x>^2 = 1 - (p-1) A / kappa (and 1/p when kappa = 0)
    expected2 = 1.0 / p if kappa == 0 else 1 - (p - 1) * expected / kappa
    mean2, se2 = _mean_and_se(w * w)
    assert abs(mean2 - expected2) < 5 * se2 + 1e-12, (mean2, expected2, se2)
    orth = x - w.unsqueeze(-1) * mu
    assert orth.mean(0).abs().max().item() < 5 * math.sqrt(max(1 - expected2, 1e-12) / n) + 1e-12


def test_vmf_entropy_closed_form():
    kappa = 7.0
    t = _single_vmf(2, kappa)
    exact = -math.log(kappa / (4 * math.pi * math.sinh(kappa))) - kappa * (1 / math.tanh(kappa) - 1 / kappa)
    value, se = t.entropy(n=100_000, generator=_gen(5))
    assert abs(value - exact) < 5 * se


def test_vmf_mixture_weights_in_samples():
    t = SYNTHETIC["vmf_mixture_s2"]()
    x = t.sample(40_000, generator=_gen(6))
    nearest = (x @ t.means.T).argmax(-1)  # the means are far apart and kappa >= 10
    frac = torch.bincount(nearest, minlength=4).to(F64) / 40_000
    assert torch.allclose(frac, t.log_weights.exp(), atol=0.01)


# ---------------------------------------------------------------------------------------- wrapped normal
def test_wrapped_normal_matches_brute_force_sum():
    t = WrappedNormalMixture(1, [[0.5], [4.0]], stds=[3.0, 0.2], weights=[1.0, 1.0])
    assert t.n_images >= 3
    x = torch.linspace(0, 2 * math.pi, 101, dtype=F64).unsqueeze(-1)
    k = torch.arange(-40, 41, dtype=F64)
    brute = torch.zeros(101, dtype=F64)
    for mean, std in ((0.5, 3.0), (4.0, 0.2)):
        y = x + 2 * math.pi * k - mean
        brute += 0.5 * torch.exp(-0.5 * (y / std) ** 2).sum(-1) / (std * math.sqrt(2 * math.pi))
    assert torch.allclose(t.log_prob(x), brute.log(), rtol=1e-12, atol=1e-12)
    assert WrappedNormalMixture.images_needed(1.5) == 3
    assert WrappedNormalMixture.images_needed(5.0) > 3


@pytest.mark.parametrize("std", [0.3, 1.0, 2.5])
def test_wrapped_normal_circular_moments(std):
    """E[exp(i (x - mu))] = exp(-std^2 / 2) for a wrapped normal: checks sampling and wrapping."""
    t = WrappedNormalMixture(2, [[6.1, 0.1]], stds=[[std, 0.5]], weights=[1.0])
    x = t.sample(100_000, generator=_gen(7))
    ok, reason = t.manifold.check_point(x)
    assert ok, reason
    d = x[:, 0] - 6.1
    c_mean, c_se = _mean_and_se(torch.cos(d))
    s_mean, s_se = _mean_and_se(torch.sin(d))
    assert abs(c_mean - math.exp(-std * std / 2)) < 5 * c_se
    assert abs(s_mean) < 5 * s_se


# ---------------------------------------------------------------------------------------- checkerboard
@pytest.mark.parametrize("name", ["checkerboard_s2", "checkerboard_t2"])
def test_checkerboard_sampler_matches_density(name):
    t = SYNTHETIC[name]()
    eps = t.eps
    n = 200_000
    x = t.sample(n, generator=_gen(8))
    ok, reason = t.manifold.check_point(x)
    assert ok, reason
    # probability mass on the board is 1 - eps / 2
    on, se = _mean_and_se(t.on_board(x).to(F64))
    assert abs(on - (1 - eps / 2)) < 5 * math.sqrt(eps / 2 / n)
    # closed-form entropy from the two density levels
    vol = t.manifold.volume
    p_on, p_off = (2 - eps) / vol, eps / vol
    exact = -(1 - eps / 2) * math.log(p_on) - (eps / 2) * math.log(p_off)
    value, se = t.entropy(n=n, generator=_gen(9))
    assert abs(value - exact) < 5 * se + 1e-9
    # the board covers half of the area: uniform points land on it half of the time
    u = t.manifold.random_base(n, dtype=F64, generator=_gen(10))
    frac, se = _mean_and_se(t.on_board(u).to(F64))
    assert abs(frac - 0.5) < 5 * se
    # every board cell receives the same share of the samples
    k1, k2 = t.cells
    a, b = t._cell_coordinates(x[t.on_board(x)])
    cell = torch.floor(a * k1 / t.extent[0]).long() * k2 + torch.floor(b * k2 / t.extent[1]).long()
    counts = torch.bincount(cell, minlength=k1 * k2).to(F64)
    counts = counts[counts > 0]
    assert counts.numel() == k1 * k2 // 2
    expected = counts.sum() / counts.numel()
    assert (counts - expected).abs().max() < 5 * expected.sqrt()


def test_checkerboard_cells_on_sphere():
    t = Checkerboard("sphere", cells=(8, 4))
    # (lat, lon) = (15, 10): lon cell 4 (of [-180, 180) in 45-degree steps), z = 0.26 -> cell 2: on board
    lat, lon = math.radians(15), math.radians(10)
    x = torch.tensor([[math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)]], dtype=F64)
    assert t.on_board(x).item()
    assert t.log_prob(x).item() == pytest.approx(math.log((2 - 1e-3) / (4 * math.pi)))
    x_next = x.clone()
    x_next[0, :2] = -x_next[0, :2]  # lon + 180 degrees: cell 0, four cells away, same parity
    assert t.on_board(x_next).item()
    x_west = torch.tensor([[math.cos(lat) * math.cos(-lon), math.cos(lat) * math.sin(-lon), math.sin(lat)]], dtype=F64)
    assert not t.on_board(x_west).item()
    assert t.log_prob(x_west).item() == pytest.approx(math.log(1e-3 / (4 * math.pi)))


# ---------------------------------------------------------------------------------------- common behaviour
@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_dtype_shapes_and_determinism(name):
    t = SYNTHETIC[name]()
    a = t.sample(500, generator=_gen(11))
    b = t.sample(500, generator=_gen(11))
    assert a.dtype == F64 and a.shape == (500, t.manifold.ambient_dim)
    assert torch.equal(a, b)
    lp = t.log_prob(a.reshape(5, 100, -1))
    assert lp.shape == (5, 100) and lp.dtype == F64 and torch.isfinite(lp).all()
    lp32 = t.log_prob(a.float())
    assert lp32.dtype == torch.float32
    assert torch.allclose(lp32.double(), lp.reshape(-1), atol=1e-3)
    assert t.sample(10, generator=_gen(12), dtype=torch.float32).dtype == torch.float32
    assert t.sample(0).shape == (0, t.manifold.ambient_dim)
    assert t.float().sample(10).dtype == torch.float32
    assert isinstance(t.manifold, (Sphere, FlatTorus, SO3, SPD, PoincareBall, Hyperboloid))


def test_constructor_errors():
    with pytest.raises(ValueError, match="means"):
        VonMisesFisherMixture(2, [[1.0, 0.0]], kappas=[1.0], weights=[1.0])
    with pytest.raises(ValueError, match="kappas"):
        VonMisesFisherMixture(2, [[1.0, 0.0, 0.0]], kappas=[-1.0], weights=[1.0])
    with pytest.raises(ValueError, match="weights"):
        VonMisesFisherMixture(2, [[1.0, 0.0, 0.0]], kappas=[1.0], weights=[-1.0])
    with pytest.raises(ValueError, match="stds"):
        WrappedNormalMixture(2, [[1.0, 0.0]], stds=[0.0], weights=[1.0])
    with pytest.raises(ValueError, match="even"):
        Checkerboard("torus", cells=3)
    with pytest.raises(ValueError, match="eps"):
        Checkerboard("sphere", cells=(8, 4), eps=0.0)
    with pytest.raises(ValueError, match="space"):
        Checkerboard("cube")
    assert np.isfinite(vmf_log_normalizer(2, [0.0, 1.0, 1e6]).numpy()).all()
