"""density.png on SO(3), hyperbolic space, SPD(2) and high-dimensional tori (offline matplotlib)."""

import pytest
import torch

import manifolds as mf
from manifold_flows import RFM, TrainConfig, VectorField
from manifold_flows.figures import plot_other_manifold, poincare_disk, so3_axis_angle
from manifold_flows.plots import plot_model

CASES = {
    "so3": mf.SO3,
    "poincare2": lambda: mf.PoincareBall(2),
    "hyperboloid2": lambda: mf.Hyperboloid(2),
    "poincare3": lambda: mf.PoincareBall(3),
    "spd2": lambda: mf.SPD(2),
    "torus7": lambda: mf.FlatTorus(7),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_plot_model_writes_a_png(tmp_path, name):
    m = CASES[name]()
    torch.manual_seed(0)
    model = RFM(m, VectorField(m, hidden=8, depth=1))
    points = m.random_base(40)
    cfg = TrainConfig(data="x", method="rfm", solver_steps=2)
    path = plot_model(model, model.net, points, tmp_path / "density.png", cfg=cfg, n_samples=60)
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"


def test_other_manifolds_get_no_figure(tmp_path):
    m = mf.SPD(3)
    model = RFM(m, VectorField(m, hidden=8, depth=1))
    assert plot_other_manifold(model, model.net, m.random_base(5), tmp_path / "d.png", n_samples=5) is None


def test_disk_density_is_drawn_from_the_model_coordinates(tmp_path):
    # the hyperboloid's log-density is evaluated on hyperboloid points (the grid lives in the disk)
    hyp = mf.Hyperboloid(2)
    seen = []

    def log_prob(x):
        seen.append(x)
        return hyp.base_logprob(x)

    poincare_disk(hyp, tmp_path / "d.png", log_prob=log_prob, points=hyp.random_base(10), resolution=12)
    assert hyp.check_point(torch.cat(seen).double())[0]


def test_axis_angle_view_handles_the_identity_and_half_turns(tmp_path):
    m = mf.SO3()
    half = mf.so3.rotation_exp(torch.tensor([[3.14159265, 0.0, 0.0], [0.0, 0.0, -3.14159265]])).reshape(-1, 9)
    pts = torch.cat([torch.eye(3).reshape(1, 9), half, m.random_base(20)])
    assert so3_axis_angle(tmp_path / "a.png", samples=pts, points=pts).exists()
