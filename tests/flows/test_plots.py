"""Figures render offline: the cartopy world map, the torus heatmap and 3-D views of densities on surfaces.

Network access is blocked; the surfaces are meshes and implicit surfaces.
"""

import math
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib import image as mpimg
from matplotlib.colors import rgb_to_hsv

from manifold_flows.datasets.mesh import MESHES
from manifold_flows.plots import plot_model, sphere_map, torus_heatmap
from manifold_flows.surface_plot import surface_density
from manifolds import FlatTorus, ImplicitSurface, Mesh, Sphere


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _png_ok(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_sphere_map_renders_without_network(tmp_path, no_network):
    s = Sphere(2)
    mu = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)

    def log_prob(x):  # a von Mises-Fisher density around the north pole, kappa = 5
        k = 5.0
        return k * (x.double() @ mu) + math.log(k / (4 * math.pi * math.sinh(k)))

    path = sphere_map(log_prob, tmp_path / "map.png", samples=s.random_base(300), points=s.random_base(50),
                      title="vMF", resolution=30)
    _png_ok(path)


def test_torus_heatmap_renders(tmp_path, no_network):
    t = FlatTorus(2)
    path = torus_heatmap(lambda x: torch.cos(x[:, 0]) - math.log(4 * math.pi**2) - 0.25, tmp_path / "torus.png",
                         samples=t.random_base(200), points=t.random_base(20), resolution=30)
    _png_ok(path)


# ---------------------------------------------------------------------------------------- surfaces
@pytest.fixture(scope="module")
def bunny():
    return Mesh(MESHES["bunny"], scale=1 / 250)


class Recorder:
    """An analytic log-density ``a . x - b`` that remembers the points it was called with."""

    def __init__(self, a=(2.0, 0.0, 0.0), b=3.0):
        self.a, self.b, self.calls = torch.tensor(a, dtype=torch.float64), b, []

    def __call__(self, x):
        self.calls.append(x.detach().clone())
        return x.double() @ self.a - self.b

    @property
    def points(self):
        return torch.cat(self.calls)


def _hue_spread(path, keep=0.6):
    """5-95 percentile range of the hue of coloured pixels in the left ``keep`` of the image."""
    img = mpimg.imread(path)[..., :3]
    img = img[:, : int(keep * img.shape[1])]
    hsv = rgb_to_hsv(img.reshape(-1, 3))
    hue = hsv[(hsv[:, 1] > 0.3) & (hsv[:, 2] > 0.15), 0]
    assert hue.size > 1000
    lo, hi = np.percentile(hue, [5, 95])
    return hi - lo


def test_surface_density_on_the_bunny(tmp_path, bunny, no_network):
    lp = Recorder()
    samples, data = bunny.random_base(1500, dtype=torch.float64), bunny.random_base(200, dtype=torch.float64)
    path = surface_density(lp, bunny, tmp_path / "bunny.png", samples=samples, points=data, title="bunny")
    assert path == tmp_path / "bunny.png"
    _png_ok(path)
    # one evaluation per face, in chunks of at most 1000, at points of the mesh
    assert sum(c.shape[0] for c in lp.calls) == bunny.n_faces and max(c.shape[0] for c in lp.calls) <= 1000
    x = lp.points
    assert torch.allclose(bunny.projx(x), x, atol=1e-9)
    img = mpimg.imread(path)
    assert len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


def test_surface_density_colours_follow_the_density(tmp_path, bunny):
    one = dict(views=((20, 120),), max_faces=1500)
    varying = surface_density(Recorder(), bunny, tmp_path / "varying.png", **one)
    flat = surface_density(Recorder(a=(0.0, 0.0, 0.0), b=math.log(bunny.area)), bunny, tmp_path / "flat.png", **one)
    assert _hue_spread(varying) > 0.1
    assert _hue_spread(flat) < 0.02


def test_surface_density_subsamples_faces(tmp_path, bunny):
    lp = Recorder()
    path = surface_density(lp, bunny, tmp_path / "few.png", max_faces=300, views=((30, 45),))
    _png_ok(path)
    x = lp.points
    assert x.shape[0] == 300 < bunny.n_faces
    assert torch.allclose(bunny.projx(x), x, atol=1e-9)
    assert len({tuple(r) for r in x.tolist()}) == 300  # distinct faces
    with pytest.raises(ValueError, match="max_faces"):
        surface_density(lp, bunny, tmp_path / "none.png", max_faces=0)
    with pytest.raises(ValueError, match="vertical_axis"):
        surface_density(lp, bunny, tmp_path / "none.png", vertical_axis="w")
    with pytest.raises(ValueError, match="surfaces in R"):
        surface_density(lp, FlatTorus(2), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize("name", ["torus", "sphere"])
def test_surface_density_on_implicit_surfaces(tmp_path, name):
    s = ImplicitSurface.torus(1.0, 0.4) if name == "torus" else ImplicitSurface.sphere(1.0)
    lp = Recorder(a=(1.0, 0.0, 3.0), b=2.0)
    samples = s.random_base(1000, dtype=torch.float64)
    path = surface_density(lp, s, tmp_path / f"{name}.png", samples=samples, points=samples[:100], title=name)
    _png_ok(path)
    x = lp.points
    assert 2000 < x.shape[0] <= 6000
    assert s.f(x).abs().max() < 1e-8
    assert _hue_spread(path, keep=0.3) > 0.1


def test_surface_density_falls_back_to_dots(tmp_path):
    """A torus given by a plain function is not star-shaped about its centre: drawn as coloured dots."""
    def f(x):
        return torch.sqrt((torch.sqrt(x[..., 0] ** 2 + x[..., 1] ** 2 + 1e-12) - 1.0) ** 2 + x[..., 2] ** 2) - 0.4

    s = ImplicitSurface(f, bounds=((-1.5, -1.5, -0.5), (1.5, 1.5, 0.5)), area=4 * math.pi**2 * 0.4)
    lp = Recorder(a=(1.0, 0.0, 3.0), b=2.0)
    path = surface_density(lp, s, tmp_path / "dots.png", points=s.random_base(50, dtype=torch.float64),
                           max_faces=2000)
    _png_ok(path)
    assert lp.points.shape[0] == 2000
    assert f(lp.points).abs().max() < 1e-6


def test_plot_model_on_a_mesh(tmp_path, bunny):
    from manifold_flows.nets import VectorField
    from manifold_flows.objectives import MoserFlow

    torch.manual_seed(0)
    net = VectorField(bunny, hidden=16, depth=1, time_dependent=False).double()
    objective = MoserFlow(bunny, net)
    seen = {}

    def sample(n, *, net=None, solver_steps=100, solver="rk4", **kwargs):
        seen.update(n=n, solver_steps=solver_steps, solver=solver)
        return bunny.random_base(n, dtype=torch.float64)

    objective.sample = sample
    cfg = SimpleNamespace(solver_steps=100, solver="rk4", method="moser", data="mesh:bunny")
    log_prob = objective.log_prob
    evaluated = []

    def recording_log_prob(x, **kwargs):
        evaluated.append((x.shape[0], kwargs.get("solver_steps")))
        return log_prob(x, **kwargs)

    objective.log_prob = recording_log_prob
    path = plot_model(objective, net, bunny.random_base(100, dtype=torch.float64), tmp_path / "density.png", cfg=cfg,
                      n_samples=5000, max_faces=800)
    assert path == tmp_path / "density.png"
    _png_ok(path)
    assert seen == dict(n=2000, solver_steps=20, solver="rk4")
    assert sum(n for n, _ in evaluated) == 800 and {s for _, s in evaluated} == {20}
