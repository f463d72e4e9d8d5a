"""Mesh geodesics: exp, log and distance against great circles on an icosphere, identities, an open mesh."""


import numpy as np
import pytest
import torch
import trimesh

from manifolds import Mesh
from manifolds.testing import PROPERTIES

pytest.importorskip("potpourri3d")


@pytest.fixture(scope="module")
def sphere():
    # 2,562 vertices: the unit sphere to within about 0.3% in radius
    m = Mesh(trimesh.creation.icosphere(subdivisions=4), name="icosphere")
    m.injectivity_radius = 2.5  # stay away from the cut locus (antipode at pi)
    m.geodesic_atol = 0.08
    return m


def great_circle(x, y):
    xs, ys = x / x.norm(dim=-1, keepdim=True), y / y.norm(dim=-1, keepdim=True)
    ang = torch.arccos((xs * ys).sum(-1).clamp(-1, 1))
    w = ys - (xs * ys).sum(-1, keepdim=True) * xs
    return ang, w / w.norm(dim=-1, keepdim=True) * ang.unsqueeze(-1)


def pairs(m, n, seed, max_angle=2.5):
    g = torch.Generator().manual_seed(seed)
    x = m.random_base(4 * n, dtype=torch.float64, generator=g)
    y = m.random_base(4 * n, dtype=torch.float64, generator=g)
    ang, _ = great_circle(x, y)
    keep = torch.nonzero(ang < max_angle).squeeze(-1)[:n]
    return x[keep], y[keep]


def test_log_and_dist_match_great_circles(sphere):
    x, y = pairs(sphere, 400, 0)
    ang, gc = great_circle(x, y)
    log = sphere.logmap(x, y)
    err = (log - gc).norm(dim=-1)
    assert err.median() < 0.02 and err.max() < 0.1, (err.median(), err.max())
    d = sphere.dist(x, y)
    assert (d - ang).abs().median() < 0.01 and (d - ang).abs().max() < 0.08
    # tangent to the face of x, and a different answer from the chord: the test is not trivial
    assert (log * sphere.normal(x)).sum(-1).abs().max() < 1e-10
    assert ((y - x).norm(dim=-1) - ang).abs().max() > 0.3


def test_nearest_corner_log_matches_great_circles_with_a_third_of_the_rows(sphere):
    from manifolds.geodesics import MeshGeodesics, locate

    x, y = pairs(sphere, 400, 3)
    _, gc = great_circle(x, y)
    a = sphere.arrays
    fx, bx = locate(sphere, x)
    fy, by = locate(sphere, y)
    rows = {}
    logs = {}
    for corners in ("all", "nearest"):
        geo = MeshGeodesics(a.vertices, a.faces, a.normals)
        logs[corners] = torch.from_numpy(geo.log(fx, bx, fy, by, corners=corners))
        rows[corners] = geo.rows_computed
    err = (logs["nearest"] - gc).norm(dim=-1)
    assert err.median() < 0.03 and err.max() < 0.15, (err.median(), err.max())
    # one row per face of x: the corner with the largest barycentric weight
    assert rows["nearest"] == len(np.unique(a.faces[fx, bx.argmax(1)]))
    assert rows["all"] == len(np.unique(a.faces[fx]))
    assert rows["nearest"] < 0.7 * rows["all"]
    # not the blend: the two estimates differ, by less than the error of either
    diff = (logs["nearest"] - logs["all"]).norm(dim=-1)
    assert 1e-6 < diff.median() < 0.03
    assert (logs["nearest"] * sphere.normal(x)).sum(-1).abs().max() < 1e-10
    with pytest.raises(ValueError, match="corners"):
        geo.log(fx, bx, fy, by, corners="two")


def test_large_meshes_read_their_log_maps_from_anchor_vertices(sphere):
    from manifolds.geodesics import ANCHORS_ABOVE, MeshGeodesics, locate

    a = sphere.arrays
    assert len(a.vertices) <= ANCHORS_ABOVE
    assert np.array_equal(MeshGeodesics(a.vertices, a.faces, a.normals).anchor_of, np.arange(len(a.vertices)))
    geo = MeshGeodesics(a.vertices, a.faces, a.normals, anchors=642)
    anchor = geo.anchor_of
    used = np.unique(anchor)
    assert 300 < len(used) < 1300 and np.array_equal(anchor[used], used)  # an anchor is its own anchor
    side = np.sqrt(sphere.area / 642)
    assert np.linalg.norm(a.vertices - a.vertices[anchor], axis=1).max() < 3 * side
    x, y = pairs(sphere, 400, 3)
    _, gc = great_circle(x, y)
    fx, bx = locate(sphere, x)
    fy, by = locate(sphere, y)
    err = (torch.from_numpy(geo.log(fx, bx, fy, by, corners="nearest")) - gc).norm(dim=-1)
    assert err.median() < 0.05 and err.max() < 0.6, (err.median(), err.max())
    assert geo.rows_computed == len(np.unique(anchor[a.faces[fx, bx.argmax(1)]]))
    # two parallel sheets a hair apart: anchors are nearest along the surface, never across the gap
    from manifold_flows.datasets.mesh_shapes import sheet

    v, f = sheet(12)
    v2 = np.concatenate([v, v + [0.0, 0.0, 1e-3]])
    f2 = np.concatenate([f, f + len(v)])
    n2 = np.tile([0.0, 0.0, 1.0], (len(f2), 1))
    two = MeshGeodesics(v2, f2, n2, anchors=20).anchor_of
    assert ((two < len(v)) == (np.arange(len(v2)) < len(v))).all()
    assert 10 <= len(np.unique(two[:len(v)])) <= 40 and 10 <= len(np.unique(two[len(v):])) <= 40
    with pytest.raises(ValueError, match="anchors"):
        MeshGeodesics(a.vertices, a.faces, a.normals, anchors=0)


def test_exp_matches_great_circles_and_inverts_log(sphere):
    g = torch.Generator().manual_seed(1)
    x = sphere.random_base(300, dtype=torch.float64, generator=g)
    u = sphere.proju(x, torch.randn(300, 3, dtype=torch.float64, generator=g))
    theta = 2.5 * torch.rand(300, 1, dtype=torch.float64, generator=g)
    u = u / u.norm(dim=-1, keepdim=True) * theta
    y = sphere.expmap(x, u)
    sphere.assert_check_point(y)
    xs = x / x.norm(dim=-1, keepdim=True)
    expected = torch.cos(theta) * xs + torch.sin(theta) * u / theta
    err = (y / y.norm(dim=-1, keepdim=True) - expected).norm(dim=-1)
    assert err.median() < 0.01 and err.max() < 0.05
    # exp(log) = identity away from the cut locus
    a, b = pairs(sphere, 300, 2)
    back = sphere.expmap(a, sphere.logmap(a, b))
    assert (back - b).norm(dim=-1).max() < 0.08


def test_geodesic_velocity_is_transported_log(sphere):
    x, y = pairs(sphere, 200, 3)
    u = sphere.logmap(x, y)
    t = torch.rand(200, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    xt, ut = sphere.geodesic(x, u, t)
    # on the round sphere the velocity is u parallel-transported along the great circle: same length,
    # tangent at x_t, and pointing along the great circle towards y
    assert torch.allclose(ut.norm(dim=-1), u.norm(dim=-1), rtol=1e-6)
    assert (ut * sphere.normal(xt)).sum(-1).abs().max() < 1e-10
    _, towards = great_circle(xt, y)
    cos = (ut * towards).sum(-1) / (ut.norm(dim=-1) * towards.norm(dim=-1))
    assert cos[(1 - t) * u.norm(dim=-1) > 0.1].min() > 0.97
    # at t = 0 the path starts at x with velocity u; at t = 1 it ends near y
    x0, u0 = sphere.geodesic(x, u, torch.zeros(200, dtype=torch.float64))
    assert torch.allclose(x0, x, atol=1e-9) and torch.allclose(u0, u, atol=1e-9)


def test_identities_exactly(sphere):
    x, y = pairs(sphere, 100, 5)
    assert sphere.logmap(x, x).abs().max() == 0
    assert sphere.dist(x, x).abs().max() == 0
    assert torch.equal(sphere.dist(x, y), sphere.dist(y, x))
    assert torch.allclose(sphere.expmap(x, torch.zeros_like(x)), x, atol=1e-12)
    # batched over leading dimensions
    assert sphere.logmap(x.reshape(10, 10, 3), y.reshape(10, 10, 3)).shape == (10, 10, 3)
    assert sphere.expmap(x.reshape(4, 25, 3), torch.zeros(4, 25, 3, dtype=torch.float64)).shape == (4, 25, 3)


@pytest.mark.parametrize("name", ["exp_log_are_inverse", "zero_at_identity", "dist_is_symmetric_and_log_norm"])
def test_property_table_rows_on_a_mesh(sphere, name):
    PROPERTIES[name](sphere, torch.float64, 0)


def flat_square(n=12):
    """The unit square [0, 1]^2 in the plane z = 0, as a grid of 2 n^2 triangles (a mesh with boundary)."""
    u, v = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1), indexing="ij")
    pts = np.stack([u.ravel(), v.ravel(), np.zeros(u.size)], -1)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a, b, c, d = i * (n + 1) + j, (i + 1) * (n + 1) + j, (i + 1) * (n + 1) + j + 1, i * (n + 1) + j + 1
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return Mesh(trimesh.Trimesh(pts, faces, process=False), name="square")


def test_open_mesh_is_flat_and_stops_at_the_boundary():
    m = flat_square()
    assert m.has_boundary
    g = torch.Generator().manual_seed(6)
    plane = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    x = 0.2 + 0.6 * torch.rand(50, 3, dtype=torch.float64, generator=g) * plane
    y = 0.2 + 0.6 * torch.rand(50, 3, dtype=torch.float64, generator=g) * plane
    x[:, 2] = y[:, 2] = 0
    # straight lines: exp is exact; the heat-method log map is exact up to its smoothing
    u = 0.1 * (y - x)
    assert torch.allclose(m.expmap(x, u), x + u, atol=1e-10)
    assert (m.logmap(x, y) - (y - x)).norm(dim=-1).max() < 0.05
    assert (m.dist(x, y) - (y - x).norm(dim=-1)).abs().max() < 0.05
    # a vector longer than the way to the boundary stops on it
    start = torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)
    end = m.expmap(start, torch.tensor([[3.0, 0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(end, torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64), atol=1e-9)


def test_log_map_rows_are_bounded_and_recomputed():
    from manifolds.geodesics import MeshGeodesics, locate

    m = Mesh(trimesh.creation.icosphere(subdivisions=2))
    full = MeshGeodesics(m.arrays.vertices, m.arrays.faces, m.arrays.normals)
    # 16 rows: the query is split and rows evicted
    small = MeshGeodesics(m.arrays.vertices, m.arrays.faces, m.arrays.normals, max_bytes=1)
    assert small.max_rows == 16
    g = torch.Generator().manual_seed(7)
    x, y = m.random_base(200, dtype=torch.float64, generator=g), m.random_base(200, dtype=torch.float64, generator=g)
    fx, bx = locate(m, x)
    fy, by = locate(m, y)
    np.testing.assert_allclose(small.log(fx, bx, fy, by), full.log(fx, bx, fy, by), atol=1e-12)
    assert small.rows_computed > small.max_rows
