"""Tangent frames and the exact divergence along them: dim vector-Jacobian products instead of ambient_dim."""

import pytest
import torch
import trimesh

import manifolds as mf
from manifold_flows.divergence import divergence
from manifolds._numerics import orthonormal_complement

FRAMED = {
    "sphere2": lambda: mf.Sphere(2),
    "sphere4": lambda: mf.Sphere(4),
    "so3": mf.SO3,
    "spd2": lambda: mf.SPD(2),
    "spd3": lambda: mf.SPD(3),
    "mesh": lambda: mf.Mesh(trimesh.creation.icosphere(subdivisions=2), name="icosphere"),
}


def test_orthonormal_complement_is_exact_for_every_direction():
    g = torch.Generator().manual_seed(0)
    n = torch.randn(500, 4, dtype=torch.float64, generator=g)
    n = torch.cat([n, torch.eye(4, dtype=torch.float64), -torch.eye(4, dtype=torch.float64)])  # the branch points
    n = n / n.norm(dim=-1, keepdim=True)
    f = orthonormal_complement(n)
    assert f.shape == (len(n), 3, 4)
    eye = torch.eye(3, dtype=torch.float64)
    assert (f @ f.transpose(-1, -2) - eye).abs().max() < 1e-14
    assert (f @ n.unsqueeze(-1)).abs().max() < 1e-14


@pytest.mark.parametrize("name", sorted(FRAMED))
def test_frame_is_an_orthonormal_tangent_basis(name):
    m = FRAMED[name]()
    x = m.random_base(200, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = m.tangent_frame(x)
    assert f.shape == (200, m.dim, m.ambient_dim)
    assert (f @ f.transpose(-1, -2) - torch.eye(m.dim, dtype=torch.float64)).abs().max() < 1e-12
    assert (m.proju_orthogonal(x.unsqueeze(-2).expand_as(f), f) - f).abs().max() < 1e-12


@pytest.mark.parametrize("name", sorted(FRAMED))
def test_divergence_along_the_frame_equals_the_ambient_trace(name, monkeypatch):
    """Values and parameter gradients (Moser Flow trains through the divergence) agree with the D-pass trace."""
    m = FRAMED[name]()
    g = torch.Generator().manual_seed(2)
    x = m.random_base(64, dtype=torch.float64, generator=g)
    net = torch.nn.Sequential(torch.nn.Linear(m.ambient_dim + 1, 32), torch.nn.Tanh(),
                              torch.nn.Linear(32, m.ambient_dim)).double()

    def field(y, t):
        return m.tangent_field(y, net(torch.cat([y, t.expand(y.shape[:-1] + (1,))], -1)))

    def div_and_grads():
        net.zero_grad()
        d = divergence(field, x, 0.4, manifold=m, create_graph=True)
        (d ** 2).mean().backward()
        return d.detach(), [p.grad.clone() for p in net.parameters()]

    calls = []
    original = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or original(*a, **k))
    framed, framed_grads = div_and_grads()
    assert len(calls) == m.dim < m.ambient_dim
    calls.clear()
    monkeypatch.setattr(type(m), "tangent_frame", lambda self, y: None)
    ambient, ambient_grads = div_and_grads()
    assert len(calls) == m.ambient_dim
    assert framed.abs().max() > 0.1  # a field that is far from divergence-free: the comparison is not trivial
    assert torch.allclose(framed, ambient, rtol=0, atol=1e-10)
    for a, b in zip(framed_grads, ambient_grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)
