"""Figures render offline: the cartopy world map and the torus heatmap, with network access blocked."""

import math
import socket

import pytest
import torch

from manifolds import FlatTorus, Sphere
from manifold_flows.plots import sphere_map, torus_heatmap


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
