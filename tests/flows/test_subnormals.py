"""No subnormal floats anywhere in the default networks' forward, first and second derivatives, even far in the tails.

Subnormal operands make x86 matrix products 10-20x slower; a trained Softplus(beta=100) network
produced them and slowed Moser Flow down 16x over a run. The dispatch mode below inspects the
output of every tensor operation (forward, backward and double backward), so a single subnormal
value produced anywhere fails the test.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from manifold_flows.config import METHOD_DEFAULTS
from manifold_flows.nets import ACTIVATIONS, VectorField
from manifold_flows.objectives import PPD, RFM, MoserFlow
from manifolds import FlatTorus, Sphere


class SubnormalWatch(TorchDispatchMode):
    """Records the name of every operation whose floating output holds a subnormal value."""

    def __init__(self):
        super().__init__()
        self.offenders = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.__name__.startswith(("empty", "new_empty")):  # uninitialised memory: any bits at all
            return out
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel():
                tiny = torch.finfo(t.dtype).tiny
                if bool(((t != 0) & (t.abs() < tiny)).any()):
                    self.offenders.append(str(func))
        return out


def _tail_heavy(net: VectorField, scale: float) -> VectorField:
    """Blow the weights up so that pre-activations spread far into both tails (|z| up to ~scale)."""
    with torch.no_grad():
        for m in net.mlp:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(scale)
                m.bias.normal_(0.0, scale / 3, generator=torch.Generator().manual_seed(1))
    return net


def test_the_watch_sees_subnormals():
    watch = SubnormalWatch()
    with watch:
        torch.nn.functional.softplus(torch.tensor([-0.95]), beta=100.0)  # exp(-95) / 100: subnormal in float32
    assert watch.offenders


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("scale", [3.0, 30.0, 300.0])
def test_activations_make_no_subnormals(activation, scale):
    z = torch.linspace(-scale * 40, scale * 40, 20001).requires_grad_(True)
    act = ACTIVATIONS[activation]()
    watch = SubnormalWatch()
    with watch:
        y = act(z)
        (g,) = torch.autograd.grad(y.sum(), z, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), z, create_graph=True)
        h.sum().backward()
    assert not watch.offenders, f"{activation}: subnormals from {sorted(set(watch.offenders))}"


@pytest.mark.parametrize("method", ["rfm", "moser", "ppd"])
@pytest.mark.parametrize("manifold", [Sphere(2), FlatTorus(2)], ids=["S2", "T2"])
def test_default_networks_make_no_subnormals_in_training(method, manifold):
    torch.manual_seed(0)
    d = METHOD_DEFAULTS[method]
    net = _tail_heavy(VectorField(manifold, hidden=64, depth=3, activation=d["activation"],
                                  time_dependent=method != "moser"), scale=20.0)
    objective = {"rfm": RFM, "moser": MoserFlow, "ppd": PPD}[method](manifold, net)
    x1 = manifold.random_base(64, generator=torch.Generator().manual_seed(2))
    if method == "ppd":
        objective.prepare(x1, x1[:16])
    watch = SubnormalWatch()
    with watch:
        loss = objective.loss(x1, generator=torch.Generator().manual_seed(3))
        loss.backward()
    assert torch.isfinite(loss)
    assert not watch.offenders, f"{method}: subnormals from {sorted(set(watch.offenders))}"
