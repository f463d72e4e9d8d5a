"""Flows on meshes and implicit surfaces: premetric paths, Moser mass, the command line end to end."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from manifold_flows.datasets import load_dataset
from manifold_flows.datasets.mesh import MeshDensity, eigenfunction_density, geodesic_bumps, read_points_csv
from manifold_flows.nets import VectorField
from manifold_flows.objectives import RFM, MoserFlow
from manifold_flows.paths import PremetricPath
from manifolds import ImplicitSurface, Mesh, SpectralDistance

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--hidden", "32", "--depth", "2", "--solver-steps", "6", "--max-val-points", "40", "--no-progress",
        "--warmup", "5", "--no-plot", "--n-synthetic", "2000"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MANIFOLD_FLOWS_CACHE", str(tmp_path_factory.getbasetemp() / "eigcache"))


@pytest.fixture(scope="module")
def bunny(bunny_path):
    return Mesh(bunny_path, scale=1 / 250)


def cli(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "manifold_flows.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=env)


@pytest.mark.parametrize("kind", ["biharmonic", "diffusion"])
def test_premetric_path_shrinks_distance_linearly(bunny, kind):
    d = SpectralDistance(bunny, kind, n_eigs=60)
    if kind == "diffusion":
        assert d.tau == pytest.approx(2 / bunny.eigenpairs(60)[0][9])
    path = PremetricPath(bunny, d, steps=40)
    g = torch.Generator().manual_seed(0)
    x0 = bunny.random_base(32, dtype=torch.float64, generator=g)
    x1 = bunny.random_base(32, dtype=torch.float64, generator=g)
    ps = path.sample(x0, x1, torch.zeros(32, dtype=torch.float64))  # offset 0: the grid j / steps
    assert ps.xt.shape == (40 * 32, 3) and ps.t.shape == (40 * 32,)
    bunny.assert_check_point(ps.xt)
    bunny.assert_check_vector(ps.xt, ps.ut, atol=1e-8)
    ratio = (d.dist(ps.xt, ps.x1) / d.dist(x0, x1).repeat(40)).reshape(40, 32)
    expected = 1 - torch.arange(40, dtype=torch.float64) / 40
    # d(x_t, x1) = (1 - t) d(x0, x1) up to the first-order error of the Euler steps
    assert (ratio.median(1).values - expected).abs().max() < 0.03
    # the target field is the time derivative of the simulated path (finite difference of the states)
    xs = ps.xt.reshape(40, 32, 3)
    fd = (xs[1:] - xs[:-1]) * 40
    us = ps.ut.reshape(40, 32, 3)[:-1]
    cos = torch.nn.functional.cosine_similarity(fd, us, dim=-1)
    assert cos.median() > 0.99
    # the paths reach their targets and seldom need the speed cap (a saturating distance fails both)
    assert (xs[-1] - x1).norm(dim=-1).quantile(0.9) < 0.25
    assert (ps.ut.norm(dim=-1) > 0.999 * path.max_speed).float().mean() < 0.02


def test_rfm_paths_on_meshes_and_implicit_surfaces(bunny):
    pytest.importorskip("potpourri3d")
    from manifold_flows.paths import GeodesicPath

    rfm = RFM(bunny, VectorField(bunny, 16, 1))  # geodesic paths, traced
    assert isinstance(rfm.path, GeodesicPath)
    surface = ImplicitSurface.sphere()
    with pytest.raises(ValueError, match="PremetricPath"):
        RFM(surface, VectorField(surface, 16, 1))
    with pytest.raises(ValueError, match="independent coupling"):
        RFM(bunny, VectorField(bunny, 16, 1), coupling="ot")


def test_cli_geodesic_paths_on_a_mesh(tmp_path):
    """--path geodesic on a user's mesh file: traced exp and vector-heat log maps in training, end to end."""
    pytest.importorskip("potpourri3d")
    import trimesh

    path = tmp_path / "ball.obj"
    trimesh.creation.icosphere(subdivisions=2).export(path)
    out = tmp_path / "geo"
    res = cli("train", "--data", f"mesh:{path}", "--density", "eig:3", "--method", "rfm", "--path", "geodesic",
              "--steps", 12, "--eval-every", 6, "--batch-size", 128, "--out", out, *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["path"] == "geodesic"
    assert math.isfinite(m["test_nll"]) and m["base_nll"] == pytest.approx(math.log(4 * math.pi), abs=0.05)


def test_moser_mass_is_one_on_the_mesh(bunny):
    """``mu = nu - div u`` integrates to 1 on the mesh for an untrained field with large divergence."""
    torch.manual_seed(0)
    net = VectorField(bunny, 32, 2, activation="tanh", time_dependent=False).double()
    with torch.no_grad():
        net.mlp[-1].weight.mul_(0.3)
    obj = MoserFlow(bunny, net)
    out = obj.negative_mass(60_000, generator=torch.Generator().manual_seed(1))
    assert out["negative_mass"] > 0.05  # a large field: the test is not trivial
    assert abs(out["total_mass"] - 1) < 4 * out["total_mass_se"] + 5e-3, out


def test_ode_likelihood_on_the_mesh_integrates_to_one(bunny):
    """The ODE log-density of a flow of projected fields integrates to 1 and converges with the step count.

    E_uniform[p(x) * area] = 1 only if the likelihood accounts for the flux across edges; with the
    orthogonal per-face projection, or a projection whose divergence blows up at vertices, it does not.
    The field goes through ``tangent_field`` as network outputs do (its divergence includes the
    derivative of the interpolated vertex normal); it is kept moderate so that the Monte Carlo mean
    of the density ratio is not dominated by rare points.
    """
    from manifold_flows.likelihood import log_likelihood

    g = torch.Generator().manual_seed(3)
    A = torch.randn(3, 3, dtype=torch.float64, generator=g) * 0.1
    B = torch.randn(3, 3, dtype=torch.float64, generator=g) * 3

    def field(x, t):
        return bunny.tangent_field(x, x @ A.T + 0.1 * torch.sin(x @ B.T + 3 * t))

    x = bunny.random_base(800, dtype=torch.float64, generator=g)
    coarse = log_likelihood(field, x, manifold=bunny, solver_steps=20)
    fine = log_likelihood(field, x, manifold=bunny, solver_steps=40)
    assert coarse.std() > 0.4  # the flow moves mass: the identity below is not trivial
    ratio = fine.exp() * bunny.area
    se = float(ratio.std() / math.sqrt(len(ratio)))
    assert abs(float(ratio.mean()) - 1) < 4 * se + 0.02, (float(ratio.mean()), se)
    assert float((fine - coarse).abs().median()) < 0.03


def test_moser_diagnostics_on_a_mesh_skip_the_ode_check(bunny):
    torch.manual_seed(0)
    net = VectorField(bunny, 16, 1, time_dependent=False).double()
    obj = MoserFlow(bunny, net)
    out = obj.diagnostics(bunny.random_base(10, dtype=torch.float64), solver_steps=4, n_mc=2000)
    assert "edges" in out["ode_check"] and "ode_nll" not in out
    assert abs(out["total_mass"] - 1) < 4 * out["total_mass_se"] + 1e-3, out


def test_moser_on_implicit_sphere_matches_round_sphere():
    from manifolds import Sphere

    torch.manual_seed(0)
    s2, imp = Sphere(2), ImplicitSurface.sphere(1.0)
    net = VectorField(s2, 32, 2, activation="tanh", time_dependent=False).double()
    g = torch.Generator().manual_seed(2)
    x = s2.random_base(50, dtype=torch.float64, generator=g)
    a = MoserFlow(s2, net).density(x)
    net.manifold = imp
    b = MoserFlow(imp, net).density(x)
    assert torch.allclose(a, b, atol=1e-10)


def test_mesh_densities_are_normalised_and_exact(bunny):
    for target in (eigenfunction_density(bunny, 10), geodesic_bumps(bunny, 3, seed=1)):
        p = torch.exp(target.log_density) * torch.tensor(bunny.arrays.areas)
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
        g = torch.Generator().manual_seed(3)
        x = target.sample(40_000, generator=g)
        lp = target.log_prob(x)
        assert torch.isfinite(lp).all()  # samples never land where the density is zero
        exact, _ = target.entropy()
        mc = float(-lp.mean())
        assert mc == pytest.approx(exact, abs=4 * float(lp.std()) / math.sqrt(40_000))
    with pytest.raises(ValueError, match="one value per face"):
        MeshDensity(bunny, np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        MeshDensity(bunny, -np.ones(bunny.n_faces))


def test_eigenfunction_targets_differ_with_k(bunny):
    h = [eigenfunction_density(bunny, k).entropy()[0] for k in (10, 50, 100)]
    assert len(set(round(v, 6) for v in h)) == 3
    assert all(v < math.log(bunny.area) for v in h)  # less spread than uniform


def test_load_mesh_dataset_and_user_samples(bunny, tmp_path):
    d = load_dataset("mesh:bunny", density="eig:10", n_synthetic=1000, seed=0)
    assert isinstance(d["manifold"], Mesh) and d["train"].shape == (800, 3) and d["target"] is not None
    raw = d["manifold"].to_raw(d["train"][:200])
    path = tmp_path / "pts.csv"
    np.savetxt(path, raw.numpy(), delimiter=",", header="x,y,z", comments="")
    u = load_dataset("mesh:bunny", samples=str(path), seed=0)
    assert u["target"] is None and u["train"].shape == (160, 3)
    assert torch.allclose(torch.cat([u["train"], u["val"], u["test"]]).sort(0).values, d["train"][:200].sort(0).values,
                          atol=1e-9)
    far = tmp_path / "far.csv"
    np.savetxt(far, raw.numpy() * 3, delimiter=",")
    with pytest.raises(ValueError, match="farther than"):
        load_dataset("mesh:bunny", samples=str(far))
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="expected 3 columns"):
        read_points_csv(bad)
    with pytest.raises(ValueError, match="unknown mesh density"):
        load_dataset("mesh:bunny", density="gauss:3")
    with pytest.raises(ValueError, match="unknown mesh"):
        load_dataset("mesh:no_such_mesh")
    with pytest.raises(ValueError, match="mesh: and implicit:"):
        load_dataset("volcano", density="eig:10")


def test_implicit_dataset():
    d = load_dataset("implicit:torus", n_synthetic=1000, seed=0)
    m = d["manifold"]
    m.assert_check_point(d["train"])
    assert torch.isfinite(d["target"].log_prob(d["test"])).all()
    with pytest.raises(ValueError, match="unknown implicit surface"):
        load_dataset("implicit:klein")


@pytest.mark.parametrize("method", ["rfm", "moser"])
def test_cli_mesh_end_to_end(method, tmp_path):
    out = tmp_path / method
    if method == "rfm":
        extra = ["--batch-size", "256", "--sim-steps", "16", "--n-eigs", "40"]
    else:
        extra = ["--batch-size", "64"]
    res = cli("train", "--data", "mesh:bunny", "--density", "eig:10", "--method", method, "--steps", 12,
              "--eval-every", 6, "--out", out, *TINY, *extra)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["base_nll"] == pytest.approx(math.log(591659.8685 / 250**2), abs=1e-4)
    assert math.isfinite(m["test_nll"]) and math.isfinite(m["gap"])
    assert m["target_nll"] == pytest.approx(m["target_nll"])
    res = cli("evaluate", out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["test_nll"] == pytest.approx(m["test_nll"], abs=1e-4)
    res = cli("sample", out, "-n", 30, "--out", tmp_path / "s.csv")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(csv.reader((tmp_path / "s.csv").open()))
    assert rows[0] == ["x", "y", "z"] and len(rows) == 31
    pts = np.array(rows[1:], dtype=float)
    assert np.abs(pts).max() < 300 and np.abs(pts).max() > 20  # raw bunny coordinates (about +-250)


def test_cli_mesh_bad_options(tmp_path):
    res = cli("train", "--data", "mesh:bunny", "--path", "diffusion", "--method", "rfm", "--steps", 1, "--n-eigs", 0,
              "--out", tmp_path / "x", *TINY)
    assert res.returncode == 2 and "--n-eigs" in res.stderr
    res = cli("train", "--data", "volcano", "--path", "biharmonic", "--steps", 1, "--out", tmp_path / "y", *TINY)
    assert res.returncode != 0 and "needs a mesh" in res.stderr
    res = cli("train", "--data", "mesh:/no/such.obj", "--steps", 1, "--out", tmp_path / "z", *TINY)
    assert res.returncode != 0 and "unknown mesh" in res.stderr


def test_likelihood_searches_each_state_once(bunny, monkeypatch):
    """One closest-point search per field evaluation of the likelihood ODE, not three.

    The solver projects each stage, the field extends its output with the face of that point and the
    exact divergence differentiates a detached copy: all three see the same state. The remembered face
    is the one the projection found; a fresh search may give a neighbouring face to a state that lies on
    an edge, so the two likelihoods agree at most points and converge to the same values with the steps.
    """
    from manifold_flows.likelihood import log_likelihood

    torch.manual_seed(0)
    net = VectorField(bunny, 16, 1).double()
    x = bunny.random_base(64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    calls = []
    search = bunny.index.closest
    monkeypatch.setattr(bunny.index, "closest", lambda *a, **k: calls.append(1) or search(*a, **k))
    memo = log_likelihood(net, x, manifold=bunny, solver_steps=3)
    assert len(calls) <= 4 * 3 + 1  # RK4: four evaluations per step, and the first projection
    calls.clear()
    monkeypatch.setattr(Mesh, "_recall", lambda self, y: None)
    fresh = log_likelihood(net, x, manifold=bunny, solver_steps=3)
    assert len(calls) >= 3 * 4 * 3
    assert ((memo - fresh).abs() < 1e-10).double().mean() > 0.7
