"""Mesh.

Exact closest points, tangent projection, area-uniform sampling, repairs and errors, eigenpairs, spectral distances.
"""


import numpy as np
import pytest
import torch
import trimesh

from manifolds import Mesh, SpectralDistance
from manifolds.mesh_index import closest_on_faces
from manifolds.spectral import cotangent_stiffness, eigenpairs, laplace_beltrami, voronoi_mass
from manifolds.testing import PROPERTIES


@pytest.fixture(scope="module")
def bunny(bunny_path):
    return Mesh(bunny_path, scale=1 / 250)


@pytest.fixture(scope="module")
def icosphere():
    return Mesh(trimesh.creation.icosphere(subdivisions=3), name="icosphere")


def brute_force(mesh, y):
    """Closest squared distance over every face (no index)."""
    table = mesh.index.cast(y.dtype, y.device)["table"]
    return closest_on_faces((y[:, 0:1], y[:, 1:2], y[:, 2:3]), list(table.unbind(0)), full=False).min(1).values


def test_loads_and_reports(bunny):
    assert (bunny.n_vertices, bunny.n_faces) == (2502, 5000)
    assert not bunny.has_boundary
    assert bunny.area == pytest.approx(591659.8685 / 250**2, rel=1e-6)
    assert bunny.report["components"] == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_closest_point_matches_brute_force(bunny, dtype):
    g = torch.Generator().manual_seed(0)
    on = bunny.random_base(300, dtype=dtype, generator=g)
    near = on + 0.05 * torch.randn(300, 3, dtype=dtype, generator=g)
    far = 40.0 * torch.randn(50, 3, dtype=dtype, generator=g)
    v = bunny.vertices.to(dtype)
    f = bunny.faces
    verts = v[:200] + 1e-3 * torch.randn(200, 3, dtype=dtype, generator=g)
    mids = 0.5 * (v[f[:200, 0]] + v[f[:200, 1]])  # points on edges
    y = torch.cat([on, near, far, verts, v[200:300], mids])
    face, bary, p = bunny.closest(y)
    mine = ((y - p) ** 2).sum(-1)
    ref = brute_force(bunny, y)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert torch.allclose(mine, ref, rtol=1e-6 if dtype == torch.float64 else 1e-4, atol=tol)
    assert (bary >= -1e-6).all() and torch.allclose(bary.sum(-1), torch.ones_like(bary[:, 0]))
    assert torch.allclose(p[-100:], mids[-100:], atol=1e-5)  # edge points are their own projection
    assert torch.allclose(bunny.projx(p), p, atol=1e-6)  # idempotent


def test_projection_jacobian_is_face_projector(bunny):
    g = torch.Generator().manual_seed(1)
    x = bunny.random_base(5, dtype=torch.float64, generator=g).requires_grad_(True)
    p = bunny.projx(x)
    n = bunny.normal(x.detach())
    for i in range(3):
        (row,) = torch.autograd.grad(p[:, i].sum(), x, retain_graph=True)
        expected = torch.eye(3, dtype=torch.float64)[i] - n[:, i : i + 1] * n
        assert torch.allclose(row, expected, atol=1e-12)


def test_proju_is_tangent_and_idempotent(bunny):
    g = torch.Generator().manual_seed(2)
    x = bunny.random_base(400, dtype=torch.float64, generator=g)
    u = bunny.proju(x, torch.randn(400, 3, dtype=torch.float64, generator=g))
    n = bunny.normal(x)
    assert (u * n).sum(-1).abs().max() < 1e-12
    assert torch.allclose(bunny.proju(x, u), u)
    bunny.assert_check_vector(x, u)
    with pytest.raises(ValueError, match="not tangent"):
        bunny.assert_check_vector(x, u + n)


def _shared_edge_points(mesh, n, g):
    """Points on ``n`` random interior edges, with the two faces that share each edge and its endpoints."""
    f = mesh.arrays.faces
    half = np.stack([f[:, [1, 2]], f[:, [2, 0]], f[:, [0, 1]]], 1).reshape(-1, 2)
    key = np.sort(half, 1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    same = np.all(key[order[1:]] == key[order[:-1]], 1)
    first = order[:-1][same][:n]
    second = order[1:][same][:n]
    ends = key[first]
    s = torch.rand(len(first), 1, dtype=torch.float64, generator=g)
    v = torch.tensor(mesh.arrays.vertices)
    x = s * v[ends[:, 0]] + (1 - s) * v[ends[:, 1]]
    return x, torch.as_tensor(first // 3), torch.as_tensor(second // 3), ends


def _proju_on_face(mesh, x, face, u):
    """``proju`` with the face given (on an edge both faces contain the point)."""
    n = mesh.face_normals[face]
    tau = mesh.tilt_c[face].unsqueeze(-1) * x - mesh.tilt_q[face]
    return u + (n * u).sum(-1, keepdim=True) * (tau - n), n


def test_proju_flux_is_continuous_across_edges(bunny):
    """The outward normal component of proju(u) on a shared edge is opposite from the two faces."""
    g = torch.Generator().manual_seed(11)
    x, fa, fb, ends = _shared_edge_points(bunny, 3000, g)
    u = torch.randn(x.shape, dtype=torch.float64, generator=g)
    v = torch.tensor(bunny.arrays.vertices)
    edge = v[ends[:, 1]] - v[ends[:, 0]]
    fluxes, orthogonal = [], []
    for face in (fa, fb):
        pu, n = _proju_on_face(bunny, x, face, u)
        nu = torch.linalg.cross(edge, n)
        centroid = v[torch.tensor(bunny.arrays.faces)[face]].mean(1)
        nu = nu * torch.sign(((x - centroid) * nu).sum(-1, keepdim=True))  # outward from the face
        fluxes.append((pu * nu).sum(-1))
        orthogonal.append(((u - (u * n).sum(-1, keepdim=True) * n) * nu).sum(-1))
        assert (pu * n).sum(-1).abs().max() < 1e-12
    assert (fluxes[0] + fluxes[1]).abs().max() < 1e-12
    # the orthogonal projection alone does not have this property
    assert (orthogonal[0] + orthogonal[1]).abs().max() > 1e-3


def test_divergence_of_projected_constant_field_is_bounded_at_vertices(bunny):
    """For constant u the divergence of proju(x, u) is <u, n> times the face constant 2 C, even next to corners."""
    from manifold_flows.divergence import divergence

    g = torch.Generator().manual_seed(12)
    faces = torch.randint(0, bunny.n_faces, (300,), generator=g)
    corner = torch.randint(0, 3, (300,), generator=g)
    bary = torch.full((300, 3), 1e-7, dtype=torch.float64)
    bary[torch.arange(300), corner] = 1 - 2e-7  # within 1e-7 edge lengths of a vertex
    tri = torch.tensor(bunny.arrays.vertices)[torch.tensor(bunny.arrays.faces)[faces]]
    x = (bary.unsqueeze(-1) * tri).sum(1)
    u = torch.randn(3, dtype=torch.float64, generator=g)
    div = divergence(lambda y, t: u.expand_as(y), x, 0.0, manifold=bunny)
    face = bunny.face_of(bunny.projx(x))
    expected = (bunny.face_normals[face] @ u) * 2 * bunny.tilt_c[face]
    assert torch.allclose(div, expected, atol=1e-9)
    # the same value as at the centroid of the face: no singularity at the corner
    at_centroid = divergence(lambda y, t: u.expand_as(y), tri.mean(1), 0.0, manifold=bunny)
    same = face == faces
    assert same.float().mean() > 0.5
    assert torch.allclose(div[same], at_centroid[same], atol=1e-9)


def test_tangent_field_ignores_the_smooth_normal_component(bunny):
    """Network outputs go through tangent_field: a purely normal output gives the zero field, divergence included."""
    from manifold_flows.divergence import divergence

    g = torch.Generator().manual_seed(13)
    x = bunny.random_base(200, dtype=torch.float64, generator=g)
    nrm = bunny.smooth_normal(x)
    assert torch.allclose(nrm.norm(dim=-1), torch.ones(200, dtype=torch.float64))
    # continuous: at a vertex, every face around it gives that vertex's normal
    v, f = bunny.vertices, bunny.faces
    corner = v[f[:, 0]] * (1 - 2e-9) + 1e-9 * (v[f[:, 1]] + v[f[:, 2]])
    assert torch.allclose(bunny.smooth_normal(bunny.projx(corner)), bunny.vertex_normals[f[:, 0]], atol=1e-6)
    # the face normal differs from it: the test below is not trivial
    assert (nrm - bunny.normal(x)).norm(dim=-1).median() > 0.02

    def normal_only(y, t):
        return bunny.tangent_field(y, (1 + y[..., :1] ** 2) * bunny.smooth_normal(y))

    assert normal_only(x, 0.0).abs().max() < 1e-12
    assert divergence(normal_only, x, 0.0, manifold=bunny).abs().max() < 1e-10
    # with proju alone the face-normal tilt would leave a large divergence
    div_proju = divergence(lambda y, t: bunny.proju(y, bunny.smooth_normal(y)), x, 0.0, manifold=bunny)
    assert div_proju.abs().median() > 0.1
    u = torch.randn(200, 3, dtype=torch.float64, generator=g)
    v = bunny.tangent_field(x, u)
    assert (v * bunny.normal(x)).sum(-1).abs().max() < 1e-12


def test_area_uniform_sampling(bunny):
    g = torch.Generator().manual_seed(3)
    n = 200_000
    x = bunny.random_base(n, dtype=torch.float64, generator=g)
    bunny.assert_check_point(x[:2000])
    face = bunny.closest(x)[0]
    # pool faces into 50 bins of about equal area and compare counts with a chi-square statistic
    areas = torch.tensor(bunny.arrays.areas)
    order = torch.randperm(bunny.n_faces, generator=g)
    bins = torch.zeros(bunny.n_faces, dtype=torch.long)
    bins[order] = torch.arange(bunny.n_faces) % 50
    expected = torch.zeros(50, dtype=torch.float64).index_add_(0, bins, areas) / bunny.area * n
    observed = torch.bincount(bins[face], minlength=50).double()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 90, chi2  # 49 degrees of freedom: p ~ 3e-4
    # uniform inside faces: the barycentric coordinates of the samples have mean 1/3 each
    _, bary, _ = bunny.closest(x[:20000])
    assert torch.allclose(bary.mean(0), torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.01)


def test_property_table_rows(bunny):
    # base_is_stationary (Stein's identity E[div V] = 0 for uniform samples) holds only because
    # proju keeps the normal flux continuous across edges; with the orthogonal per-face projection
    # its mean is 1.7 (standard error 0.007). base_logprob_integrates_to_one is left out: it
    # projects 2M box points, most far from the surface, where the exact search is slow; area
    # and uniformity are tested above instead. exp/log rows need geodesics, which a mesh lacks.
    for name in ("base_samples_are_valid", "projx_is_idempotent", "proju_is_tangent_and_idempotent",
                 "checks_reject_bad_input", "base_is_stationary"):
        PROPERTIES[name](bunny, torch.float64, 0)


def test_interpolation_is_exact_for_linear_functions(bunny):
    g = torch.Generator().manual_seed(4)
    x = bunny.random_base(1000, dtype=torch.float64, generator=g)
    a = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    values = bunny.vertices @ a
    assert torch.allclose(bunny.interpolate(x, values), x @ a, atol=1e-12)
    basis = bunny.face_gradient_basis()
    face = bunny.closest(x)[0]
    grads = (values[bunny.faces[face]].unsqueeze(-1) * basis[face]).sum(1)
    assert torch.allclose(grads, bunny.proju_orthogonal(x, a.expand(1000, 3)), atol=1e-10)


def test_normalisations():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=3.0)
    assert Mesh(sphere, normalize="area").area == pytest.approx(1.0)
    m = Mesh(sphere, normalize="radius")
    assert float(m.vertices.norm(dim=1).max()) == pytest.approx(1.0)
    assert Mesh(sphere, scale=0.5).area == pytest.approx(0.25 * sphere.area)
    with pytest.raises(ValueError, match="either normalize or scale"):
        Mesh(sphere, normalize="area", scale=2.0)
    with pytest.raises(ValueError, match="normalize must be"):
        Mesh(sphere, normalize="unit")


def test_seam_vertices_are_merged_and_degenerate_faces_dropped():
    box = trimesh.creation.box()
    v, f = np.asarray(box.vertices), np.asarray(box.faces)
    # split every face into its own vertices (a 'triangle soup' with seams everywhere)
    soup_v = v[f].reshape(-1, 3)
    soup_f = np.arange(len(soup_v)).reshape(-1, 3)
    m = Mesh((soup_v, soup_f))
    assert m.n_vertices == 8 and m.report["merged_vertices"] == len(soup_v) - 8
    assert not m.has_boundary
    big = trimesh.creation.icosphere(subdivisions=3)
    v, f = np.asarray(big.vertices), np.asarray(big.faces)
    f2 = np.vstack([f, [[0, 0, 1]]])  # one repeated-vertex face
    m = Mesh((v, f2))
    assert m.n_faces == len(f) and m.report["dropped_degenerate_faces"] == 1


def test_bad_meshes_get_clear_errors(tmp_path):
    # three triangles on one edge: non-manifold
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1.0]])
    f = np.array([[0, 1, 2], [0, 1, 3], [0, 1, 4]])
    with pytest.raises(ValueError, match="non-manifold edge"):
        Mesh((v, f))
    two = trimesh.util.concatenate([trimesh.creation.icosphere(1),
                                    trimesh.creation.icosphere(1).apply_translation([3, 0, 0])])
    with pytest.raises(ValueError, match="2 connected components"):
        Mesh(two)
    assert Mesh(two, components="largest").report["dropped_component_faces"] == 80
    flat = np.array([[0, 1, 2], [0, 1, 2]]), np.zeros((3, 3))
    with pytest.raises(ValueError):
        Mesh((flat[1], flat[0]))
    with pytest.raises(FileNotFoundError):
        Mesh(tmp_path / "missing.obj")
    bad = tmp_path / "bad.obj"
    bad.write_text("this is not a mesh\n")
    with pytest.raises(ValueError, match="bad.obj"):
        Mesh(bad)
    with pytest.raises(ValueError, match="shape"):
        Mesh((np.zeros((4, 2)), np.array([[0, 1, 2]])))
    with pytest.raises(ValueError, match="index vertices"):
        Mesh((np.zeros((3, 3)), np.array([[0, 1, 5]])))


def test_bad_points_get_clear_errors(bunny):
    with pytest.raises(ValueError, match="trailing dimension"):
        bunny.projx(torch.zeros(4, 2))
    bad = torch.tensor([[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="NaN"):
        bunny.projx_checked(bad)  # entry points check values
    with pytest.raises(ValueError, match="NaN"):
        bunny.closest(bad)
    p = bunny.projx(bad)  # hot loops do not read values on the host: NaN stays in its row
    assert torch.isnan(p[0]).all() and torch.isfinite(p[1]).all()
    with pytest.raises(ValueError, match="off the mesh"):
        bunny.assert_check_point(torch.tensor([[10.0, 0.0, 0.0]]))


def test_solver_steps_stay_on_the_mesh(bunny):
    from manifold_flows.solvers import odeint

    g = torch.Generator().manual_seed(5)
    x0 = bunny.random_base(50, dtype=torch.float64, generator=g)
    a = torch.randn(3, dtype=torch.float64, generator=g)
    field = lambda x, t: bunny.proju(x, a.expand_as(x))  # noqa: E731
    for method in ("euler", "rk4"):
        xs = odeint(field, x0, torch.linspace(0, 1, 11, dtype=torch.float64), manifold=bunny, solver=method)
        bunny.assert_check_point(xs[-1])


def test_stiffness_and_mass_identities(icosphere):
    s = cotangent_stiffness(icosphere.arrays.vertices, icosphere.arrays.faces)
    assert abs(s - s.T).max() < 1e-12
    assert np.abs(np.asarray(s.sum(1))).max() < 1e-10
    mass = voronoi_mass(icosphere.arrays.vertices, icosphere.arrays.faces)
    assert mass.sum() == pytest.approx(icosphere.area, rel=1e-12)
    # Dirichlet energy of a linear function x -> <a, x> on a closed surface equals its gradient's integral
    a = np.array([0.2, -0.5, 0.7])
    u = icosphere.arrays.vertices @ a
    basis = icosphere.face_gradient_basis().numpy()
    grads = (u[icosphere.arrays.faces][..., None] * basis).sum(1)
    energy = ((grads**2).sum(1) * icosphere.arrays.areas).sum()
    assert u @ (s @ u) == pytest.approx(energy, rel=1e-10)


def test_sphere_eigenvalues_are_spherical_harmonics(tmp_path, monkeypatch):
    monkeypatch.setenv("MANIFOLD_FLOWS_CACHE", str(tmp_path))
    m = Mesh(trimesh.creation.icosphere(subdivisions=4))  # 2562 vertices, unit sphere
    vals, vecs = m.eigenpairs(35)
    expected = np.concatenate([[deg * (deg + 1)] * (2 * deg + 1) for deg in range(1, 6)])  # multiplicity 2l + 1
    assert np.allclose(vals, expected, rtol=0.02), np.c_[vals, expected]
    mass = voronoi_mass(m.arrays.vertices, m.arrays.faces)
    gram = vecs.T @ (mass[:, None] * vecs)
    assert np.allclose(gram, np.eye(35), atol=1e-8)
    # l = 1 eigenfunctions are linear in the coordinates
    coef, *_ = np.linalg.lstsq(m.arrays.vertices, vecs[:, :3], rcond=None)
    assert np.abs(m.arrays.vertices @ coef - vecs[:, :3]).max() < 1e-2
    # cached on disk by content, and reused (even by a mesh built again from the same data)
    files = list(tmp_path.glob("eig-*.npz"))
    assert len(files) == 1
    m2 = Mesh(trimesh.creation.icosphere(subdivisions=4))
    vals2, _ = m2.eigenpairs(10)
    assert np.array_equal(vals2, vals[:10])


def test_eigen_cache_survives_a_corrupt_file(tmp_path, monkeypatch, icosphere):
    monkeypatch.setenv("MANIFOLD_FLOWS_CACHE", str(tmp_path))
    m = Mesh(trimesh.creation.icosphere(subdivisions=2))
    path = tmp_path / f"eig-lb-v2-{m.content_hash()[:32]}.npz"
    path.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        vals, _ = eigenpairs(m, 5)
    assert np.allclose(vals[:3], 2.0, rtol=0.05)
    with np.load(path) as z:
        assert z["values"].shape == (5,)


def test_sign_convention_is_deterministic(bunny):
    _, vecs = laplace_beltrami(bunny.arrays.vertices, bunny.arrays.faces, 12)
    _, again = laplace_beltrami(bunny.arrays.vertices, bunny.arrays.faces, 12)
    assert np.allclose(vecs, again)
    mass = voronoi_mass(bunny.arrays.vertices, bunny.arrays.faces)
    assert ((mass[:, None] * vecs**3).sum(0) > 0).all()


@pytest.mark.parametrize("kind", ["biharmonic", "diffusion"])
def test_spectral_distance(bunny, kind):
    d = SpectralDistance(bunny, kind, n_eigs=50)
    g = torch.Generator().manual_seed(6)
    x = bunny.random_base(200, dtype=torch.float64, generator=g)
    y = bunny.random_base(200, dtype=torch.float64, generator=g)
    dxy, dyx = d.dist(x, y), d.dist(y, x)
    assert torch.allclose(dxy, dyx, atol=1e-12) and (dxy > 0).all()
    assert d.dist(x, x).abs().max() < 1e-12
    pair = d.pairwise(x[:20], x[:20])
    assert torch.allclose(pair, pair.T, atol=1e-10) and pair.diagonal().abs().max() < 1e-6
    # gradient against a finite difference along a tangent direction (inside the face)
    ey, _ = d.embed(y)
    d2, grad = d.dist2_and_grad(x, ey)
    assert torch.allclose(d2, dxy**2, atol=1e-12)
    u = bunny.proju(x, torch.randn(200, 3, dtype=torch.float64, generator=g))
    h = 1e-7
    xs = x + h * u
    same = bunny.closest(xs)[0] == bunny.closest(x)[0]
    fd = (d.dist2(xs, y) - d2) / h
    assert torch.allclose(fd[same], (grad * u).sum(-1)[same], rtol=1e-4, atol=1e-6)
    assert (grad * bunny.normal(x)).sum(-1).abs().max() < 1e-10


def test_tables_move_with_to_and_keep_float64(bunny):
    """Every table of the mesh, its index and an open mesh's collar moves with .to(device); .to(dtype) leaves them."""
    sheet = Mesh(trimesh.creation.box((1.0, 1.0, 0.2)).slice_plane((0, 0, 0.05), (0, 0, -1)))
    for m in (Mesh(trimesh.creation.icosphere(subdivisions=1)), sheet):
        m.to(torch.float32)
        assert m.vertices.dtype == torch.float64 and m.index.table.dtype == torch.float64
        x = m.random_base(20, dtype=torch.float32)
        assert x.dtype == torch.float32 and m.check_point(x)[0]
        m.to("meta")  # a device without data: everything must get there
        buffers = dict(m.named_buffers())
        assert {"vertices", "faces", "face_normals", "tilt_c", "index.table", "index.groups"} <= set(buffers)
        assert all(b.device.type == "meta" for b in buffers.values()), {k: b.device for k, b in buffers.items()}
        assert m.index.unresolved.device.type == "meta"
        if m.has_boundary:
            assert m.collar.start.device.type == "meta"


def test_search_without_host_reads_matches_the_certified_one(bunny):
    """``projx`` gives the certified closest face near the mesh and still puts far points on it.

    It uses fixed-size refinements and reads nothing on the host; far points it cannot certify are counted.
    """
    g = torch.Generator().manual_seed(31)
    x = bunny.random_base(3000, dtype=torch.float64, generator=g)
    near = x + 0.01 * torch.randn(x.shape, dtype=torch.float64, generator=g)
    before = bunny.unresolved_projections
    face, _, p = bunny.closest(near)
    assert torch.equal(bunny.projx(near), p) and torch.equal(bunny.face_of(near), face)
    assert bunny.unresolved_projections == before
    far = x[:500] + 0.3 * torch.randn(500, 3, dtype=torch.float64, generator=g)
    q = bunny.projx(far)
    bunny.assert_check_point(q)
    exact = bunny.closest(far)[2]
    wrong = int(((q - exact).norm(dim=-1) > 1e-9).sum())
    assert bunny.unresolved_projections - before >= wrong


def test_projection_memo_is_keyed_by_memory_layout_and_version(bunny, monkeypatch):
    """``projx`` skips the search for a tensor it has seen, and only then.

    Seen: the input or output of an earlier call, or a detached view of one. A copy with equal values,
    an in-place change or a new layout searches again.
    """
    g = torch.Generator().manual_seed(8)
    x = bunny.random_base(200, dtype=torch.float64, generator=g) + 0.01 * torch.randn(200, 3, dtype=torch.float64,
                                                                                      generator=g)
    calls = []
    search = bunny.index.closest
    monkeypatch.setattr(bunny.index, "closest", lambda *a, **k: calls.append(1) or search(*a, **k))
    p = bunny.projx(x)
    face = bunny.face_of(p)
    assert len(calls) == 1
    assert torch.equal(bunny.projx(x.detach()), p) and torch.equal(bunny.projx(p.detach()), p)
    assert torch.equal(bunny.face_of(x), face) and torch.equal(bunny.face_of(p.detach()), face)
    assert len(calls) == 1
    assert torch.equal(bunny.projx(x.clone()), p) and len(calls) == 2  # new memory: searched
    assert torch.equal(bunny.projx(x[:100]), p[:100]) and len(calls) == 3  # new shape: searched
    x.add_(0.02)  # the version counter moves: the remembered result no longer applies
    assert torch.equal(bunny.projx(x), search(x, exact=False)[2]) and len(calls) == 4


def test_boundary_edges_and_their_inward_normals():
    """An open mesh's boundary edges are those of one face; their normals lie in the face and point inside.

    A square of two by two cells (8 triangles, faces of either winding): 8 boundary edges, each
    row ends with the third vertex of its face, and the inward normals point to the centre.
    A closed mesh has none.
    """
    from manifolds.mesh_boundary import boundary_edges, inward_normals

    grid = np.array([[i, j, 0.0] for j in range(3) for i in range(3)])
    faces = []
    for j in range(2):
        for i in range(2):
            a, b, c, d = 3 * j + i, 3 * j + i + 1, 3 * (j + 1) + i, 3 * (j + 1) + i + 1
            faces += [[a, b, d], [a, c, d]]  # the second triangle winds the other way
    edges = boundary_edges(np.array(faces))
    assert edges.shape == (8, 3)
    on_rim = lambda k: grid[k, 0] in (0, 2) or grid[k, 1] in (0, 2)  # noqa: E731
    assert all(on_rim(a) and on_rim(b) for a, b, _ in edges)
    assert all({a, b, c} in [set(f) for f in faces] for a, b, c in edges)
    n = inward_normals(grid, edges)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    mid = 0.5 * (grid[edges[:, 0]] + grid[edges[:, 1]])
    towards_centre = np.array([1.0, 1.0, 0.0]) - mid
    np.testing.assert_allclose((n * towards_centre).sum(1), np.abs(towards_centre).max(1))  # across, inwards
    np.testing.assert_allclose((n * (grid[edges[:, 1]] - grid[edges[:, 0]])).sum(1), 0.0, atol=1e-12)
    closed = trimesh.creation.icosphere(subdivisions=1)
    assert boundary_edges(closed.faces).shape == (0, 3)
