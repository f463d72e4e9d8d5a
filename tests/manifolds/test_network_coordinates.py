"""What networks read and write on non-compact manifolds: normal coordinates in, an orthonormal frame out."""

import pytest
import torch

import manifolds as mf


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _origin(m):
    if isinstance(m, mf.SPD):
        return torch.eye(m.n, dtype=torch.float64).reshape(-1)
    o = torch.zeros(m.ambient_dim, dtype=torch.float64)
    if isinstance(m, mf.Hyperboloid):
        o[0] = 1 / m.c**0.5
    return o


@pytest.mark.parametrize("m", [mf.SPD(2), mf.SPD(3), mf.PoincareBall(3, c=0.5), mf.Hyperboloid(2),
                               mf.Hyperboloid(3, c=2.0)], ids=repr)
def test_normal_coordinates_measure_the_distance_to_the_base_centre(m):
    x = m.random_base(200, dtype=torch.float64, generator=_gen(0))
    z = m.normal_coordinates(x)
    assert z.shape == x.shape and torch.isfinite(z).all()
    chart = z[..., 1:] if isinstance(m, mf.Hyperboloid) else z
    # |log_o x| in orthonormal coordinates at the centre is the distance (SPD: |logm P|_F)
    assert torch.allclose(chart.norm(dim=-1), m.dist(_origin(m), x), atol=1e-9)
    # smooth at the centre: finite gradients
    o = _origin(m).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m.normal_coordinates(o).sum(), o)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("m", [mf.SPD(2), mf.SPD(3), mf.PoincareBall(2), mf.PoincareBall(3, c=0.5)], ids=repr)
def test_tangent_field_reads_outputs_in_an_orthonormal_frame(m):
    x = m.random_base(100, dtype=torch.float64, generator=_gen(1))
    u = torch.randn(x.shape, dtype=torch.float64, generator=_gen(2))
    v = m.tangent_field(x, u)
    assert m.check_vector(x, v)[0]
    sym_u = m.proju(x, u) if isinstance(m, mf.SPD) else u  # the symmetric part of a matrix output
    assert torch.allclose(m.norm(x, v), sym_u.norm(dim=-1), atol=1e-9)


def test_defaults_leave_points_and_outputs_as_they_are():
    for m in (mf.Sphere(2), mf.FlatTorus(3), mf.SO3()):
        x = m.random_base(5)
        assert torch.equal(m.normal_coordinates(x), x)
    p = mf.ProductManifold(mf.FlatTorus(2), mf.PoincareBall(2))
    x = p.random_base(4, dtype=torch.float64, generator=_gen(3))
    z = p.normal_coordinates(x)
    assert torch.equal(z[:, :2], x[:, :2]) and torch.allclose(z[:, 2:], mf.PoincareBall(2).normal_coordinates(x[:, 2:]))
