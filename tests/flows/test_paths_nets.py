"""Conditional paths, the RFM loss, vector-field networks, EMA and the OT coupling."""

import math

import pytest
import torch

from manifold_flows.coupling import ot_pairing
from manifold_flows.nets import EMA, VectorField
from manifold_flows.objectives import RFM
from manifold_flows.paths import GeodesicPath
from manifolds import Euclidean, FlatTorus, Manifold, ProductManifold, Sphere

MANIFOLDS = [Sphere(2), Sphere(3), FlatTorus(2), Euclidean(2), ProductManifold(Sphere(2), FlatTorus(1))]


@pytest.mark.parametrize("m", MANIFOLDS, ids=repr)
def test_closed_form_velocity_matches_autograd(m):
    g = torch.Generator().manual_seed(0)
    x0 = m.random_base(64, dtype=torch.float64, generator=g)
    x1 = m.random_base(64, dtype=torch.float64, generator=g)
    t = torch.rand(64, dtype=torch.float64, generator=g)
    a = GeodesicPath(m).sample(x0, x1, t)
    u = m.logmap(x0, x1)
    xt, ut = Manifold.geodesic.__wrapped__(_Differentiated(m), x0, u, t)  # the generic autograd velocity
    assert torch.allclose(a.xt, xt) and torch.allclose(a.ut, ut, atol=1e-8)
    assert m.check_point(a.xt)[0] and m.check_vector(a.xt, a.ut)[0]
    # endpoints and constant speed
    ends = GeodesicPath(m).sample(x0, x1, torch.zeros(64, dtype=torch.float64))
    assert torch.allclose(m.dist(ends.xt, x0), torch.zeros(64, dtype=torch.float64), atol=1e-12)
    ends = GeodesicPath(m).sample(x0, x1, torch.ones(64, dtype=torch.float64))
    assert torch.allclose(m.dist(ends.xt, x1), torch.zeros(64, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(m.norm(a.xt, a.ut), m.dist(x0, x1), atol=1e-9)


class _Differentiated:
    """``m`` seen as a manifold without closed-form transport, so ``Manifold.geodesic`` differentiates ``expmap``."""

    exact_expmap = False

    def __init__(self, m):
        self.m = m

    def expmap(self, x, u):
        return self.m.expmap(x, u)


class _DiracField(torch.nn.Module):
    """The exact marginal field of a point-mass target p: log_x(p) / (1 - t)."""

    def __init__(self, m, p):
        super().__init__()
        self.m, self.p = m, p
        self.dummy = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x, t):
        return self.m.logmap(x, self.p.expand_as(x)) / (1 - t).unsqueeze(-1)


@pytest.mark.parametrize("m", [Sphere(2), FlatTorus(2), Euclidean(3)], ids=repr)
def test_rfm_loss_vanishes_for_the_exact_field(m):
    p = m.random_base(1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x1 = p.expand(256, -1)
    model = RFM(m, _DiracField(m, p))
    g = torch.Generator().manual_seed(2)
    assert model.loss(x1, generator=g).item() < 1e-16
    wrong = RFM(m, VectorField(m, hidden=16, depth=1).double())
    assert wrong.loss(x1, generator=g).item() > 1e-3


def test_vector_field_outputs_tangents_and_is_periodic_on_the_torus():
    torch.manual_seed(0)
    s = Sphere(2)
    net = VectorField(s, hidden=32, depth=2).double()
    x = s.random_base(100, dtype=torch.float64)
    v = net(x, torch.tensor(0.3, dtype=torch.float64))
    assert s.check_vector(x, v, atol=1e-12)[0]
    assert net(x, torch.rand(100, dtype=torch.float64)).shape == (100, 3)
    t2 = FlatTorus(2)
    tnet = VectorField(t2, hidden=32, depth=2).double()
    y = t2.random_base(50, dtype=torch.float64)
    tt = torch.tensor(0.5, dtype=torch.float64)
    assert torch.allclose(tnet(y, tt), tnet(y + 2 * math.pi, tt), atol=1e-10)
    with pytest.raises(ValueError, match="activation"):
        VectorField(s, activation="nope")
    with pytest.raises(ValueError, match="pass t"):
        net(x)


def test_ema_tracks_weights():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        net.weight.add_(2.0)
    before = ema.model.weight.clone()
    ema.update(net)  # warm-up decay of the first update: min(0.5, 1/10) = 0.1
    assert torch.allclose(ema.model.weight, before + 0.9 * 2.0)
    assert ema.current_decay() == pytest.approx(2 / 11)
    for _ in range(20):
        ema.update(net)
    assert ema.current_decay() == 0.5  # capped at the configured decay
    target = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(2.0)
    ema.update(net)
    assert torch.allclose(ema.model.weight, target + 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        EMA(net, decay=1.0)


def test_ot_pairing_is_a_permutation_that_lowers_cost():
    m = Sphere(2)
    g = torch.Generator().manual_seed(0)
    x0, x1 = m.random_base(128, generator=g), m.random_base(128, generator=g)
    y0 = ot_pairing(m, x0, x1)
    assert torch.equal(torch.sort(y0, 0).values, torch.sort(x0, 0).values)
    assert m.dist2(y0, x1).sum() < 0.6 * m.dist2(x0, x1).sum()
