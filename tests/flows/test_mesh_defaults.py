"""RFM's default path on meshes, and training on open meshes: the path learns, samples stay inside."""

import math

import pytest
import torch

from manifold_flows import TrainConfig, load_run, train
from manifold_flows.builders import build_objective, build_path
from manifold_flows.datasets.mesh import load_mesh
from manifold_flows.geodesic_bank import GeodesicBank

pytest.importorskip("potpourri3d")

SMALL = dict(hidden=64, depth=3, batch_size=256, warmup=20, solver_steps=20, val_solver_steps=10,
             max_val_points=200, n_synthetic=4000, plot=False, progress=False)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MANIFOLD_FLOWS_CACHE", str(tmp_path_factory.getbasetemp() / "eigcache"))


@pytest.mark.parametrize("name", ["icosphere", "sheet"])
def test_default_rfm_path_on_meshes_is_the_geodesic_bank(name):
    mesh = load_mesh(name)
    assert isinstance(build_path(TrainConfig(data=f"mesh:{name}").resolved(), mesh), GeodesicBank)
    biharmonic = build_path(TrainConfig(data=f"mesh:{name}", path="biharmonic", n_eigs=20).resolved(), mesh)
    assert not isinstance(biharmonic, GeodesicBank)
    assert build_path(TrainConfig(data=f"mesh:{name}").resolved(), mesh).kind == "traced"
    assert build_path(TrainConfig(data=f"mesh:{name}", path="shortest").resolved(), mesh).kind == "shortest"


def test_shortest_paths_need_a_mesh():
    import manifolds as mf

    with pytest.raises(ValueError, match="needs a mesh"):
        build_path(TrainConfig(data="volcano", path="shortest").resolved(), mf.Sphere(2))


def test_default_path_learns_on_a_small_mesh(tmp_path):
    """Three hundred steps of the defaults get far below the uniform NLL, towards the exact entropy."""
    m = train(TrainConfig(data="mesh:capsule", density="eig:2", steps=300, eval_every=150, out=str(tmp_path / "r"),
                          **SMALL))
    assert isinstance(load_run(tmp_path / "r")[2].path, GeodesicBank)
    base, target = m["base_nll"], m["target_nll"]
    assert base - target > 0.3  # the target is far from uniform: learning shows
    assert m["test_nll"] < base - 0.5 * (base - target), (m["test_nll"], base, target)


def test_open_mesh_trains_and_stays_inside(tmp_path):
    """RFM on the open unit square: conditional paths and samples stay on the sheet and inside it."""
    m = train(TrainConfig(data="mesh:sheet", density="eig:2", steps=60, eval_every=30, out=str(tmp_path / "s"),
                          **SMALL))
    assert math.isfinite(m["test_nll"])
    cfg, _, model, _ = load_run(tmp_path / "s")
    mesh = model.manifold
    assert mesh.has_boundary
    g = torch.Generator().manual_seed(0)
    x1 = mesh.random_base(512, generator=g)
    model.path.prepare(x1)
    sample = model.path.sample(mesh.random_base(256, generator=g), x1[:256], torch.rand(256, generator=g))
    samples = model.sample(500, solver_steps=20, generator=g)
    for x in (sample.xt, samples):
        assert torch.isfinite(x).all()
        assert x[..., 2].abs().max() < 1e-5  # on the plane of the sheet
        assert x[..., :2].min() >= -1e-5 and x[..., :2].max() <= 1 + 1e-5  # inside the square


def test_moser_flow_refuses_an_open_mesh():
    mesh = load_mesh("sheet")
    with pytest.raises(ValueError, match="without boundary"):
        build_objective(TrainConfig(data="mesh:sheet", method="moser"), mesh)


def test_shortest_paths_start_at_the_base_points_where_traced_ones_stop_at_walls():
    """Shortest paths start at their base points on the maze, where traced ones stop at the walls.

    Straightest geodesics along the log map end far from their base points there; shortest paths
    through the vertices start exactly at them, stay on the surface and move at constant speed.
    """
    from manifold_flows.geodesic_bank import shortest_states, trace_states

    mesh = load_mesh("maze")
    g = torch.Generator().manual_seed(4)
    x1 = mesh.random_base(60, dtype=torch.float64, generator=g)
    x0 = mesh.random_base(60, dtype=torch.float64, generator=g)
    t = torch.rand(60, 3, dtype=torch.float64, generator=g)
    traced_ends = torch.from_numpy(trace_states(mesh, x1, x0, t)[0])
    assert ((traced_ends - x0).norm(dim=-1) > 0.5).double().mean() > 0.5  # the reason for shortest paths
    ends, xt, ut = (torch.from_numpy(a) for a in shortest_states(mesh, x1, x0, t))
    assert torch.equal(ends, x0)
    flat = xt.reshape(-1, 3)
    assert (mesh.projx(flat) - flat).norm(dim=-1).max() < 1e-9
    speed = ut.norm(dim=-1)  # the path's length at every state
    assert torch.allclose(speed, speed[:, :1].expand_as(speed))
    assert (speed[:, 0] >= (x1 - x0).norm(dim=-1) - 1e-9).all()
    # the velocity is the time derivative of the state: a small step in t moves the state by ut dt
    dt = 1e-6
    later = torch.from_numpy(shortest_states(mesh, x1, x0, (t + dt).clamp(max=1 - 1e-9))[1])
    fd = (later - xt) / dt
    close = (fd - ut).norm(dim=-1) < 1e-3 * speed
    assert close.double().mean() > 0.9  # all but the states within dt of a corner of the polyline


@pytest.mark.parametrize("method", ["rfm", "moser"])
def test_mesh_fourier_features_follow_the_size_of_the_mesh(method):
    """The same mesh in units twice as large gets the same random features of the same points."""
    small, large = load_mesh("icosphere", scale="1"), load_mesh("icosphere", scale="2")
    cfg = TrainConfig(data="mesh:icosphere", method=method, hidden=8, depth=1).resolved()
    a, b = cfg.resolved_for(small), cfg.resolved_for(large)
    assert a.fourier_features == b.fourier_features > 0
    assert a.fourier_scale == pytest.approx(2 * b.fourier_scale, rel=1e-12)
    x = small.random_base(50, generator=torch.Generator().manual_seed(0))
    na, nb = build_objective(a, small).net, build_objective(b, large).net
    fa, fb = na.inputs(x), nb.inputs(2 * x)
    k = 2 * a.fourier_features  # sin and cos of the projections come after the coordinates
    torch.testing.assert_close(fa[..., -k:], fb[..., -k:], atol=1e-5, rtol=0)
    explicit = TrainConfig(data="mesh:icosphere", method=method, fourier_features=0).resolved().resolved_for(small)
    assert explicit.fourier_features == 0


def test_open_mesh_fields_are_tangent_to_the_boundary_and_likelihoods_integrate_to_one():
    """The collar damps only the component across the boundary; the ODE density still integrates to 1.

    On the boundary a damped field has no component across it but keeps the one along it (the
    earlier collar stopped both, and mass that flowed along walls piled up in the collar). Far from
    the boundary fields are unchanged. E_uniform[p(x) * area] = 1 needs the divergence of the
    damped field, collar included.
    """
    from manifold_flows.likelihood import log_likelihood

    mesh = load_mesh("sheet")  # the unit square in the plane z = 0
    x = torch.tensor([[0.0, 0.3, 0.0], [0.5, 1.0, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    u = torch.tensor([[1.0, 2.0, 0.0], [3.0, -1.0, 0.0], [1.0, 2.0, 0.0]], dtype=torch.float64)
    damped = mesh.tangent_field(x, u)
    torch.testing.assert_close(damped, torch.tensor([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0], [1.0, 2.0, 0.0]],
                                                    dtype=torch.float64), atol=1e-9, rtol=0)
    import trimesh

    from manifolds import Mesh

    older = Mesh(trimesh.Trimesh(mesh.arrays.vertices, mesh.arrays.faces, process=False), boundary="stop")
    stopped = older.tangent_field(x, u)
    assert stopped[:2].abs().max() < 1e-9  # the older collar stops everything on the boundary

    g = torch.Generator().manual_seed(3)
    A = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    B = torch.randn(3, 3, dtype=torch.float64, generator=g) * 2

    def field(p, t):  # a swirl that pushes mass along and across the walls
        return mesh.tangent_field(p, 0.12 * ((p - 0.5) @ A.T * 0.5 + torch.sin(p @ B.T + 3 * t)))

    pts = mesh.random_base(3000, dtype=torch.float64, generator=g)
    ll = log_likelihood(field, pts, manifold=mesh, solver_steps=40)
    assert ll.std() > 0.5  # the flow moves mass: the identity below is not trivial
    ratio = ll.exp() * mesh.area
    se = float(ratio.std() / math.sqrt(len(ratio)))
    assert abs(float(ratio.mean()) - 1) < 4 * se + 0.02, (float(ratio.mean()), se)



def test_shortest_paths_on_open_meshes_turn_clear_of_the_boundary():
    """Shortest paths turn at a distance from the maze's corners drawn per path, not at the corners.

    Without clearance every path that turns around an inner corner runs through the corner vertex
    itself; with it, the polyline's vertices on the boundary move into the surface by at most
    ``c_max``, the ends stay put, and the states stay on the surface and start at the base points.
    """
    import numpy as np

    from manifold_flows.geodesic_bank import Clearance, shortest_states
    from manifolds.geodesics import locate

    mesh = load_mesh("maze")
    clear = Clearance(mesh)
    assert 0.2 < clear.c_max < 0.3  # unit-wide corridors: a uniform point is 1/4 from a wall on average
    g = torch.Generator().manual_seed(5)
    x1 = mesh.random_base(40, dtype=torch.float64, generator=g)
    x0 = mesh.random_base(40, dtype=torch.float64, generator=g)
    geo = mesh.geodesics
    f1, b1 = locate(mesh, x1)
    f0, b0 = locate(mesh, x0)
    v1, v0 = geo.F[f1, b1.argmax(1)], geo.F[f0, b0.argmax(1)]
    raw = [np.concatenate([x1[i:i + 1].numpy(), geo.shortest_path(int(v1[i]), int(v0[i])), x0[i:i + 1].numpy()])
           for i in range(40)]
    moved = clear.apply(raw, np.random.default_rng(0))
    on_boundary = lambda p: clear.tree.query(p[1:-1])[0] < clear.tol  # noqa: E731
    assert sum(int(on_boundary(p).sum()) for p in raw) > 20  # the corners the paths turn at
    for p, q in zip(raw, moved):
        assert np.array_equal(p[[0, -1]], q[[0, -1]])
        assert not on_boundary(q).any()
        inner = torch.from_numpy(q[1:-1])
        assert (mesh.projx(inner) - inner).norm(dim=-1).max() < 1e-9  # moved into the surface, not off it
        assert (torch.from_numpy(q - p).norm(dim=-1) <= clear.c_max + 1e-12).all()
    t = torch.rand(40, 4, dtype=torch.float64, generator=g)
    ends, xt, ut = (torch.from_numpy(a) for a in shortest_states(mesh, x1, x0, t, clear, np.random.default_rng(1)))
    assert torch.equal(ends, x0)
    flat = xt.reshape(-1, 3)
    assert (mesh.projx(flat) - flat).norm(dim=-1).max() < 1e-9
    assert GeodesicBank(mesh, kind="shortest").clearance is not None
    assert GeodesicBank(load_mesh("icosphere"), kind="shortest").clearance is None  # closed: nothing to clear


@pytest.mark.parametrize("name", ["maze", "icosphere"])
def test_patched_paths_follow_the_trace_and_start_at_the_base_points(name):
    """A patched path is the traced geodesic from x1 to its end x0', then a shortest path to x0.

    Its start is the base point itself; a state at arc length s from x1 within the traced part lies
    on the traced geodesic. Paths stay on the surface, at constant speed (their length), at least
    the traced length. On the icosphere the traces land near x0 (short patches); on the maze they
    stop at walls and the patches carry the paths round them.
    """
    import numpy as np

    from manifold_flows.geodesic_bank import patched_states, states_on_polylines, trace_polylines

    mesh = load_mesh(name)
    g = torch.Generator().manual_seed(5)
    n = 40
    x1 = mesh.random_base(n, dtype=torch.float64, generator=g)
    x0 = mesh.random_base(n, dtype=torch.float64, generator=g)
    t = torch.rand(n, 3, dtype=torch.float64, generator=g)
    ends, xt, ut = (torch.from_numpy(a) for a in patched_states(mesh, x1, x0, t))
    assert torch.equal(ends, x0)
    flat = xt.reshape(-1, 3)
    assert (mesh.projx(flat) - flat).norm(dim=-1).max() < 1e-9
    length = ut.norm(dim=-1)
    assert torch.allclose(length, length[:, :1].expand_as(length))
    length = length[:, 0]
    traced = trace_polylines(mesh, x1, x0)
    traced_length = torch.tensor([np.linalg.norm(np.diff(p, axis=0), axis=1).sum() for p in traced])
    assert (length >= traced_length - 1e-9).all()
    # half way along the traced part
    half = (1 - 0.5 * traced_length / length)[:, None]
    on_patched = torch.from_numpy(patched_states(mesh, x1, x0, half)[1][:, 0])
    on_trace = torch.from_numpy(states_on_polylines(traced, torch.full((n, 1), 0.5, dtype=torch.float64))[1][:, 0])
    torch.testing.assert_close(on_patched, on_trace, atol=1e-7, rtol=0)
    miss = (torch.from_numpy(np.stack([p[-1] for p in traced])) - x0).norm(dim=-1)
    if name == "icosphere":
        assert (miss < 0.1).double().mean() > 0.8
    else:
        assert (miss > 0.5).double().mean() > 0.5


@pytest.mark.parametrize("name,kind", [("torus", "traced"), ("capsule", "patched"), ("maze", "shortest")])
def test_banks_search_no_point_and_their_states_lie_on_the_mesh(name, kind, monkeypatch):
    """After ``prepare`` located the training points, a traced bank and a training step search no point.

    Base points come with their faces, the paths run inside faces, so the states lie on the mesh
    and the velocities in the planes of their faces, and the faces of the states, found by walking
    along the paths, are those the search finds. Patched paths search for their traced ends (and
    their states' faces); paths moved clear of an open mesh's boundary are projected back (the
    maze searches). The base points are the draws of ``random_base``.
    """
    mesh = load_mesh(name)
    g = torch.Generator().manual_seed(3)
    bank = GeodesicBank(mesh, pairs=512, sources=32, chunk=8, seed=4, kind=kind)
    bank.prepare(mesh.random_base(2000, dtype=torch.float64, generator=g))
    searches = []
    closest = mesh.index.closest
    monkeypatch.setattr(mesh.index, "closest", lambda x, **kw: searches.append(x.shape) or closest(x, **kw))
    bank._trace(torch.device("cpu"), torch.float64)
    monkeypatch.undo()
    if kind == "traced":
        assert searches == []
        # nor does a training step: the network reads the faces the bank drew with its states
        objective = build_objective(TrainConfig(data=f"mesh:{name}", hidden=32, depth=2).resolved(), mesh)
        objective.prepare(bank._data[:1500].float(), bank._data[1500:].float())
        monkeypatch.setattr(mesh.index, "closest", lambda x, **kw: searches.append(x.shape) or closest(x, **kw))
        objective.loss(bank._data[:256].float()).backward()
        monkeypatch.undo()
        assert searches == []
    elif kind == "patched":
        assert sum(s[0] for s in searches) == 512 * (1 + bank.states)  # the traced ends, then the states' faces
    else:
        assert sum(s[0] for s in searches) >= 512 * bank.states  # moved clear of the walls, projected back
    face, _, p = mesh.closest(bank.xt)
    assert (p - bank.xt).norm(dim=-1).max() < 1e-12 * math.sqrt(mesh.area)
    if kind == "traced":
        assert torch.equal(bank.face, face)
    else:  # points on an edge after their projection may be given either face: each state lies in its own
        from manifolds.mesh_index import barycentric_in

        table = mesh.index.cast(torch.float64, torch.device("cpu"))["table"]
        assert barycentric_in(bank.xt, table[:, bank.face]).min() > -1e-9
    across = (bank.ut * mesh.normal(bank.xt)).sum(-1).abs()
    assert (across <= 1e-9 * bank.ut.norm(dim=-1).clamp_min(1e-12)).all()
    # the base points are random_base's draws: the same generator state gives the same points
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    f, b, x = mesh.random_located(100, dtype=torch.float64, generator=g1)
    torch.testing.assert_close(x, mesh.random_base(100, dtype=torch.float64, generator=g2), rtol=0, atol=0)
    torch.testing.assert_close(mesh.closest(x)[0], f)
    torch.testing.assert_close((b.unsqueeze(-1) * torch.tensor(mesh.arrays.vertices)[
        torch.tensor(mesh.arrays.faces)[f]]).sum(1), x)
