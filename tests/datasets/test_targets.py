"""Targets on SO(3), SPD(n), hyperbolic space and T^d: exact densities that integrate to 1 and match their samplers."""

import math

import pytest
import torch

import manifolds as mf
from manifold_flows.datasets import (
    SYNTHETIC,
    WrappedNormalHyperbolic,
    WrappedNormalSO3,
    WrappedNormalSPD,
    axis_angle_rotation,
    load_dataset,
    matrix_to_quaternion,
    quaternion_to_matrix,
    torus_mixture,
)
from manifold_flows.datasets.targets import NEW_TARGETS, TORUS_MIXTURE_DIMS

LOW_DIM = ["wrapped_normal_so3", "wrapped_normal_spd2", "wrapped_normal_poincare2", "wrapped_normal_hyperboloid2",
           "torus_mixture_t2"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(NEW_TARGETS))
def test_registered_and_samples_are_valid_points(name):
    assert name in SYNTHETIC
    t = SYNTHETIC[name]()
    x = t.sample(500, _gen(0))
    ok, reason = t.manifold.check_point(x)
    assert ok, reason
    assert x.dtype == torch.float64 and torch.isfinite(t.log_prob(x)).all()
    assert t.sample(7, _gen(1), dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("name", LOW_DIM)
def test_density_integrates_to_one_and_matches_the_sampler(name):
    # importance sampling from the manifold's base: int p dV = E_base[p / base], and
    # E_samples[f] = E_base[f p / base] for a bounded test function f
    t = SYNTHETIC[name]()
    m = t.manifold
    n = 100_000
    y = m.random_base(n, dtype=torch.float64, generator=_gen(2))
    w = torch.exp(t.log_prob(y) - m.base_logprob(y))
    se = w.std().item() / math.sqrt(n)
    assert abs(w.mean().item() - 1.0) < 4 * se + 1e-3, (w.mean().item(), se)
    x = t.sample(40_000, _gen(3))
    f = lambda z: torch.exp(-m.dist(z, t.means[0].to(z)))  # noqa: E731
    fw = w * f(y)
    se = math.hypot(fw.std().item() / math.sqrt(n), f(x).std().item() / math.sqrt(x.shape[0]))
    assert abs(f(x).mean().item() - fw.mean().item()) < 4 * se, (f(x).mean().item(), fw.mean().item(), se)


def test_so3_density_against_the_gaussian_and_jacobian_of_one_image():
    # for a small sigma only the central preimage matters: p(M exp(v)) = N(v; 0, s^2 I) / (2 (1 - cos r) / r^2)
    s = 0.15
    m0 = axis_angle_rotation([1.0, 2.0, -0.5], 1.1)
    t = WrappedNormalSO3(m0[None], stds=[s], weights=[1.0])
    v = torch.randn(200, 3, dtype=torch.float64, generator=_gen(4)) * 2 * s
    r = v.norm(dim=-1)
    x = (m0 @ mf.so3.rotation_exp(v)).reshape(-1, 9)
    expected = -0.5 * (r / s) ** 2 - 1.5 * math.log(2 * math.pi * s * s) - torch.log(2 * (1 - torch.cos(r)) / r**2)
    assert torch.allclose(t.log_prob(x), expected, atol=1e-10)
    # the wrapped images matter for a wide component: still normalised (Haar measure, volume 8 pi^2)
    wide = WrappedNormalSO3(m0[None], stds=[1.5], weights=[1.0])
    y = mf.SO3().random_base(200_000, dtype=torch.float64, generator=_gen(5))
    integral = (wide.log_prob(y).exp() * 8 * math.pi**2)
    assert abs(integral.mean().item() - 1) < 4 * integral.std().item() / math.sqrt(y.shape[0])


def test_spd_density_is_the_base_moved_by_an_isometry():
    n = 3
    spd = mf.SPD(n)
    p = spd.random_base(50, dtype=torch.float64, generator=_gen(6))
    unit = WrappedNormalSPD(n, torch.eye(n, dtype=torch.float64)[None], stds=[1.0], weights=[1.0])
    assert torch.allclose(unit.log_prob(p), spd.base_logprob(p), atol=1e-10)
    a = torch.tensor([[1.5, 0.0, 0.0], [0.3, 0.8, 0.0], [-0.2, 0.4, 1.1]], dtype=torch.float64)
    moved = WrappedNormalSPD(n, (a @ a.T)[None], stds=[1.0], weights=[1.0])
    q = (a @ p.reshape(-1, n, n) @ a.T).reshape(-1, n * n)  # P -> A P A^T is an isometry
    assert torch.allclose(moved.log_prob(q), spd.base_logprob(p), atol=1e-9)
    # and its samples are those of the base, moved
    s = moved.sample(20_000, _gen(7)).reshape(-1, n, n)
    back = torch.linalg.solve(a, torch.linalg.solve(a, s).transpose(-1, -2))
    logdet = torch.logdet(back)
    assert abs(logdet.mean().item()) < 4 * logdet.std().item() / math.sqrt(20_000)  # E tr log P = 0 under the base
    with pytest.raises(ValueError, match="positive-definite"):
        WrappedNormalSPD(2, [[[1.0, 2.0], [2.0, 1.0]]], stds=[1.0], weights=[1.0])


def test_hyperbolic_targets_agree_through_the_isometry():
    ball, hyp = SYNTHETIC["wrapped_normal_poincare2"](), SYNTHETIC["wrapped_normal_hyperboloid2"]()
    p = ball.sample(300, _gen(8))
    assert torch.allclose(hyp.log_prob(ball.manifold.to_hyperboloid(p)), ball.log_prob(p), atol=1e-9)
    with pytest.raises(ValueError, match="PoincareBall or a Hyperboloid"):
        WrappedNormalHyperbolic(mf.Sphere(2), [[0.0, 0.0, 1.0]], stds=[1.0], weights=[1.0])


def test_torus_mixtures_are_fixed_and_registered_by_dimension():
    for d in TORUS_MIXTURE_DIMS:
        t = SYNTHETIC[f"torus_mixture_t{d}"]()
        assert t.manifold.dim == d and t.means.shape == (4, d)
    assert torch.equal(torus_mixture(10).means, torus_mixture(10).means)
    data = load_dataset("torus_mixture_t10", n_synthetic=100)
    assert data["train"].shape == (80, 10) and data["target"] is not None


def test_quaternions_round_trip_and_sign():
    r = mf.SO3().random_base(1000, dtype=torch.float64, generator=_gen(9)).reshape(-1, 3, 3)
    q = matrix_to_quaternion(r)
    assert torch.allclose(q.norm(dim=-1), torch.ones(1000, dtype=torch.float64))
    assert torch.allclose(quaternion_to_matrix(q), r, atol=1e-12)
    assert torch.allclose(quaternion_to_matrix(-q), r, atol=1e-12)
    near_pi = axis_angle_rotation([0.3, -1.0, 0.2], math.pi - 1e-9)
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(near_pi)), near_pi, atol=1e-12)
