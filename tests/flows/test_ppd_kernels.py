"""PPD's kernels on SO(3) (antipodally symmetric vMF on quaternions) and high-dimensional tori."""

import math

import pytest
import torch

import manifolds as mf
from manifold_flows import PPD, MoserFlow, VectorField
from manifold_flows.kde import MATMUL_ANGLES, KernelDensityPath, kernel_log_matrix, kernel_sample


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kappa", [0.0, 0.5, 5.0, 50.0])
def test_kernel_integrates_to_one_and_matches_its_sampler(kappa):
    m = mf.SO3()
    centres = m.random_base(2, dtype=torch.float64, generator=_gen(0))
    n = 200_000
    y = m.random_base(n, dtype=torch.float64, generator=_gen(1))
    w = kernel_log_matrix(m, y, centres, torch.full((n,), kappa, dtype=torch.float64)).exp() * m.volume  # [n, 2]
    se = w.std(0) / math.sqrt(n)
    assert ((w.mean(0) - 1).abs() < 4 * se + 1e-9).all(), (w.mean(0), se)
    s = kernel_sample(m, centres[:1].expand(20_000, 9), torch.full((20_000,), kappa, dtype=torch.float64), _gen(2))
    assert m.check_point(s)[0]
    f = lambda z: torch.cos(m.dist(z, centres[0]))  # noqa: E731
    fw = w[:, 0] * f(y)
    se = math.hypot(fw.std().item() / math.sqrt(n), f(s).std().item() / math.sqrt(20_000))
    assert abs(f(s).mean().item() - fw.mean().item()) < 4 * se


def test_kernel_is_uniform_at_zero_and_smooth_at_the_cut_locus():
    m = mf.SO3()
    c = m.random_base(1, dtype=torch.float64, generator=_gen(3))
    y = m.random_base(50, dtype=torch.float64, generator=_gen(4))
    zero = kernel_log_matrix(m, y, c, torch.zeros(50, dtype=torch.float64))
    assert torch.allclose(zero, torch.full_like(zero, -math.log(8 * math.pi**2)), atol=1e-12)
    # the rotation by pi about any axis from the centre, and the centre itself: finite values and gradients
    flip = (c.reshape(3, 3) @ mf.so3.rotation_exp(torch.tensor([0.0, math.pi, 0.0], dtype=torch.float64)))
    for point in (flip.reshape(1, 9), c):
        x = point.clone().requires_grad_(True)
        lk = kernel_log_matrix(m, x, c, torch.tensor([20.0], dtype=torch.float64))
        (g,) = torch.autograd.grad(lk.sum(), x)
        assert torch.isfinite(lk).all() and torch.isfinite(g).all()


def test_kernel_path_on_so3_starts_at_the_base():
    m = mf.SO3()
    train = m.random_base(300, dtype=torch.float64, generator=_gen(5))
    val = m.random_base(50, dtype=torch.float64, generator=_gen(6))
    path = KernelDensityPath.fit(m, train, val, kappas=[1.0, 10.0], uniforms=[0.01])
    x = m.random_base(20, dtype=torch.float64, generator=_gen(7))
    assert torch.allclose(path.log_prob(x, torch.zeros(20, dtype=torch.float64)), m.base_logprob(x), atol=1e-12)


@pytest.mark.parametrize("manifold", [mf.SPD(2), mf.PoincareBall(2), mf.Hyperboloid(2)], ids=repr)
def test_ppd_and_moser_name_why_they_do_not_apply(manifold):
    with pytest.raises(ValueError, match="PPD cannot run on .*base distribution is not uniform"):
        PPD(manifold, VectorField(manifold, hidden=8, depth=1))
    with pytest.raises(ValueError, match="compact manifold without boundary"):
        MoserFlow(manifold, VectorField(manifold, hidden=8, depth=1, time_dependent=False))


def test_high_dimensional_torus_kernels_through_matrix_products_agree():
    d = MATMUL_ANGLES + 12
    m = mf.FlatTorus(d)
    x = m.random_base(30, dtype=torch.float64, generator=_gen(8))
    c = torch.cat([x[:5] + 1e-3, m.random_base(40, dtype=torch.float64, generator=_gen(9))])  # close pairs too
    kappa = torch.linspace(0.0, 50.0, 30, dtype=torch.float64)
    got = kernel_log_matrix(m, x, m.projx(c), kappa)
    one_d = mf.FlatTorus(1)  # the product of d von Mises kernels, one angle at a time (elementwise path)
    ref = sum(kernel_log_matrix(one_d, x[:, j:j + 1], m.projx(c)[:, j:j + 1], kappa) for j in range(d))
    assert torch.allclose(got, ref, atol=1e-10)
