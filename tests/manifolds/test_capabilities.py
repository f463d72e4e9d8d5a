"""Capabilities are declared once, compose through products, and are what the learning code reads."""

import abc

import numpy as np
import pytest
import torch
import trimesh

import manifolds as mf
from manifolds import Manifold


@pytest.fixture(scope="module")
def bunny(bunny_path):
    return mf.Mesh(bunny_path, scale=1 / 250)


@pytest.fixture(scope="module")
def sheet():
    """An open, slightly bent square: a mesh with a boundary."""
    n = 9
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    verts = np.stack([u.ravel(), v.ravel(), 0.1 * np.sin(np.pi * u.ravel())], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return mf.Mesh(trimesh.Trimesh(verts, faces, process=False))


def test_incomplete_manifolds_cannot_be_built():
    class NoProjection(mf.Sphere):
        pass

    NoProjection(2)  # complete: inherits everything

    class Bare(Manifold):
        dim, ambient_dim = 1, 1

    with pytest.raises(TypeError, match="abstract"):
        Bare()
    assert {"projx", "proju", "expmap", "logmap", "transp", "inner", "random_base", "base_logprob"} <= set(
        Bare.__abstractmethods__)
    assert isinstance(Manifold, abc.ABCMeta)


def test_products_combine_capabilities(bunny, sheet):
    surface = mf.ImplicitSurface.sphere()
    p = mf.ProductManifold(mf.Sphere(2), surface)
    assert not p.exact_expmap and not p.has_geodesics and p.compact and p.ambient_metric
    q = mf.ProductManifold(mf.FlatTorus(1), bunny)
    assert q.piecewise_flat and not q.has_boundary and not q.exact_expmap and q.has_geodesics
    assert not q.symmetric_random_walk and mf.ProductManifold(mf.Sphere(2), mf.FlatTorus(2)).symmetric_random_walk
    r = mf.ProductManifold(mf.Sphere(1), sheet)
    assert sheet.has_boundary and r.has_boundary
    e = mf.ProductManifold(mf.Euclidean(2), mf.Sphere(1))
    assert not e.compact and e.exact_expmap
    assert [m.angle_coordinates for m in mf.ProductManifold(mf.Sphere(2), mf.FlatTorus(2)).factors] == [False, True]
    s = mf.Sphere(2)
    assert s.factors == (s,)


def test_products_delegate_tangent_field_and_orthogonal_projection(bunny):
    p = mf.ProductManifold(bunny, mf.Sphere(2))
    g = torch.Generator().manual_seed(0)
    x = p.random_base(200, dtype=torch.float64, generator=g)
    xm, xs = p.split(x)
    n = bunny.smooth_normal(xm)
    u = torch.cat([3.0 * n, torch.zeros_like(xs)], -1)  # purely along the mesh's smooth normal
    assert p.tangent_field(x, u).abs().max() < 1e-12  # the mesh factor's tangent_field drops it
    w = torch.randn(200, 6, dtype=torch.float64, generator=g)
    po = p.proju_orthogonal(x, w)
    assert torch.allclose(po[:, :3], bunny.proju_orthogonal(xm, w[:, :3]))
    assert not torch.allclose(p.proju(x, w)[:, :3], po[:, :3])  # the mesh's proju is oblique


@pytest.mark.parametrize("m", [mf.Sphere(2), mf.FlatTorus(3), mf.SO3(), mf.PoincareBall(2), mf.SPD(2)], ids=repr)
def test_geodesic_velocity_is_the_derivative_of_expmap(m):
    g = torch.Generator().manual_seed(1)
    x = m.random_base(32, dtype=torch.float64, generator=g)
    y = m.random_base(32, dtype=torch.float64, generator=g)
    u = m.logmap(x, y)
    t = torch.rand(32, dtype=torch.float64, generator=g) * 0.8 + 0.1
    xt, vt = m.geodesic(x, u, t)
    h = 1e-6
    fd = (m.expmap(x, (t + h).unsqueeze(-1) * u) - m.expmap(x, (t - h).unsqueeze(-1) * u)) / (2 * h)
    assert torch.allclose(xt, m.expmap(x, t.unsqueeze(-1) * u), atol=1e-10)
    assert torch.allclose(vt, fd, atol=1e-5), (vt - fd).abs().max()
