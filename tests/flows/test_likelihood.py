"""Divergences and ODE log-likelihoods against closed forms, plus a Monte Carlo normalisation check."""

import math

import pytest
import torch

import manifolds as mf
from manifold_flows.divergence import divergence, value_and_divergence
from manifold_flows.likelihood import log_likelihood, sample
from manifold_flows.solvers import odeint, time_grid

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def gradient_field(manifold, a):
    """``v(x) = P_x a``: the Riemannian gradient of ``<a, x>`` on a sphere; divergence ``-d <a, x>``."""
    return lambda x, t: manifold.proju(x, a.to(x).expand_as(x))


def torus_field(x, t):
    """``(sin x_1, cos x_2)`` on T^2; divergence ``cos x_1 - sin x_2``."""
    return torch.stack([torch.sin(x[..., 0]), torch.cos(x[..., 1])], dim=-1)


class MLPField(torch.nn.Module):
    """A small time-dependent network field, tangent by projection (a stand-in for a trained model)."""

    def __init__(self, manifold, width=32, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        D = manifold.ambient_dim
        self.manifold = manifold
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2 * D + 1, width), torch.nn.Tanh(), torch.nn.Linear(width, width), torch.nn.Tanh(),
            torch.nn.Linear(width, D),
        ).double()

    def forward(self, x, t):
        feats = torch.cat([torch.sin(x), torch.cos(x), t.expand(x.shape[:-1] + (1,))], dim=-1)
        return self.manifold.proju(x, self.net(feats))


# ----------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_exact_divergence_of_gradient_field_on_sphere(d):
    sphere = mf.Sphere(d)
    a = torch.randn(d + 1, dtype=F64, generator=gen(0))
    x = sphere.random_base(50, dtype=F64, generator=gen(1))
    div = divergence(gradient_field(sphere, a), x, 0.0, manifold=sphere)
    assert div.shape == (50,) and div.dtype == F64
    torch.testing.assert_close(div, -d * (x @ a), atol=1e-12, rtol=0)


def test_exact_divergence_on_flat_torus_and_product():
    torus = mf.FlatTorus(2)
    x = torus.random_base(7, 9, dtype=F64, generator=gen(0))
    div = divergence(torus_field, x, torch.tensor(0.5), manifold=torus)
    assert div.shape == (7, 9)
    torch.testing.assert_close(div, torch.cos(x[..., 0]) - torch.sin(x[..., 1]), atol=1e-12, rtol=0)

    prod = mf.ProductManifold(mf.Sphere(2), mf.FlatTorus(2))
    a = torch.randn(3, dtype=F64, generator=gen(1))
    s_field = gradient_field(mf.Sphere(2), a)
    field = lambda z, t: torch.cat([s_field(z[..., :3], t), torus_field(z[..., 3:], t)], dim=-1)  # noqa: E731
    z = prod.random_base(40, dtype=F64, generator=gen(2))
    ref = -2 * (z[:, :3] @ a) + torch.cos(z[:, 3]) - torch.sin(z[:, 4])
    torch.testing.assert_close(divergence(field, z, 0.0, manifold=prod), ref, atol=1e-12, rtol=0)


def test_exact_divergence_in_euclidean_space_and_of_rotation():
    euc = mf.Euclidean(3)
    A = torch.randn(3, 3, dtype=F64, generator=gen(0))
    x = euc.random_base(10, dtype=F64, generator=gen(1))
    torch.testing.assert_close(
        divergence(lambda x, t: x @ A.T, x, 0.0, manifold=euc), torch.trace(A).expand(10), atol=1e-12, rtol=0
    )
    # a constant field (no dependence on x, no parameters) has zero divergence
    assert (divergence(lambda x, t: torch.ones_like(x).detach(), x, 0.0, manifold=euc) == 0).all()
    sphere = mf.Sphere(2)
    y = sphere.random_base(10, dtype=F64, generator=gen(2))
    ez = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    rot = divergence(lambda x, t: torch.linalg.cross(x, ez.expand_as(x)), y, 0.0, manifold=sphere)
    assert rot.abs().max() < 1e-12


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
@pytest.mark.parametrize("name", ["sphere2", "torus2", "sphere2_x_torus2"])
def test_hutchinson_is_unbiased(name, probe):
    manifold = {
        "sphere2": lambda: mf.Sphere(2),
        "torus2": lambda: mf.FlatTorus(2),
        "sphere2_x_torus2": lambda: mf.ProductManifold(mf.Sphere(2), mf.FlatTorus(2)),
    }[name]()
    field = MLPField(manifold)
    x = manifold.random_base(6, dtype=F64, generator=gen(0))
    t = torch.tensor(0.3, dtype=F64)
    exact = divergence(field, x, t, manifold=manifold)
    n = 4000
    # n single-probe estimates per point (the batch replicated), their mean and spread
    singles = divergence(
        field, x.expand(n, 6, x.shape[-1]), t, manifold=manifold, estimator="hutchinson", probe=probe, generator=gen(1)
    )
    est, std = singles.mean(0), singles.std(0)
    assert (std > 1e-3).all()  # the estimator is noisy, so the test says something
    assert ((est - exact).abs() < 5 * std / math.sqrt(n)).all(), (est, exact)
    # n_probes averages probes inside one call: same mean within the same bound
    est2 = divergence(field, x, t, manifold=manifold, estimator="hutchinson", n_probes=n, probe=probe, generator=gen(2))
    assert ((est2 - exact).abs() < 5 * std / math.sqrt(n)).all(), (est2, exact)


def test_hutchinson_probes_are_tangent():
    """Projected probes never give an estimate of the wrong sign.

    For P_x a on S^2 (tangent block of the Jacobian -<a,x> P) every probe gives an estimate proportional to |P eps|^2,
    and with the normal part removed the estimate never has the wrong sign.
    """
    sphere = mf.Sphere(2)
    a = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    x = sphere.projx(torch.tensor([[0.3, 0.2, 0.9]], dtype=F64)).expand(200, 3)
    est = divergence(gradient_field(sphere, a), x, 0.0, manifold=sphere, estimator="hutchinson", generator=gen(0))
    assert (est * (x @ a) <= 1e-12).all()


def test_divergence_create_graph_for_training():
    sphere = mf.Sphere(2)
    a = torch.randn(3, dtype=F64, generator=gen(0))
    w = torch.tensor(0.7, dtype=F64, requires_grad=True)
    x = sphere.random_base(30, dtype=F64, generator=gen(1))
    field = lambda x, t: w * sphere.proju(x, a.expand_as(x))  # noqa: E731
    for method, kw in [("exact", {}), ("hutchinson", dict(n_probes=3, generator=gen(2)))]:
        div = divergence(field, x, 0.0, manifold=sphere, estimator=method, create_graph=True, **kw)
        assert div.requires_grad
        (g,) = torch.autograd.grad(div.sum(), w)
        if method == "exact":
            torch.testing.assert_close(g, -2 * (x @ a).sum(), atol=1e-12, rtol=0)
        else:
            assert torch.isfinite(g)
    # without create_graph nothing is attached to the graph
    assert not divergence(field, x, 0.0, manifold=sphere).requires_grad
    # create_graph with points that require grad: derivatives w.r.t. x work too; the tangent part
    # of the gradient is the Riemannian gradient of div = -2 w <a, x>, i.e. -2 w P_x a
    xg = x.clone().requires_grad_(True)
    div = divergence(field, xg, 0.0, manifold=sphere, create_graph=True)
    (gx,) = torch.autograd.grad(div.sum(), xg)
    ref = -2 * w.detach() * sphere.proju(x, a.expand_as(x))
    torch.testing.assert_close(sphere.proju(x, gx), ref, atol=1e-12, rtol=0)


def test_value_and_divergence_returns_the_projected_field():
    torus = mf.FlatTorus(2)
    x = torus.random_base(5, dtype=F64, generator=gen(0))
    v, div = value_and_divergence(torus_field, x, 0.0, manifold=torus)
    torch.testing.assert_close(v, torus_field(x, None))
    assert not v.requires_grad and div.shape == (5,)


def test_divergence_bad_input():
    sphere = mf.Sphere(2)
    x = sphere.random_base(3)
    f = gradient_field(sphere, torch.ones(3))
    with pytest.raises(ValueError, match="exact.*hutchinson"):
        divergence(f, x, 0.0, manifold=sphere, estimator="trace")
    with pytest.raises(ValueError, match="n_probes"):
        divergence(f, x, 0.0, manifold=sphere, estimator="hutchinson", n_probes=0)
    with pytest.raises(ValueError, match="trailing dimension"):
        divergence(f, torch.ones(3, 4), 0.0, manifold=sphere)
    with pytest.raises(ValueError, match="probe"):
        divergence(f, x, 0.0, manifold=sphere, estimator="hutchinson", probe="uniform")


# ----------------------------------------------------------------------------- likelihood


def torus1_logp(x1, T):
    """Closed form for v(x) = sin(x) on T^1 run for time T.

    tan(x_t/2) = tan(x_0/2) e^t, so dx_1/dx_0 = e^T cos^2(x_1/2) + e^-T sin^2(x_1/2) and
    log p_1 = -log(2 pi) - log(dx_1/dx_0).
    """
    c2, s2 = torch.cos(x1 / 2) ** 2, torch.sin(x1 / 2) ** 2
    return -math.log(2 * math.pi) - torch.log(math.exp(T) * c2 + math.exp(-T) * s2)


@pytest.mark.parametrize("t0, t1", [(0.0, 1.0), (0.5, 2.0), (1.0, 0.0)], ids=["0to1", "shifted", "reversed"])
def test_likelihood_on_circle_torus_matches_closed_form(t0, t1):
    torus = mf.FlatTorus(1)
    x1 = torus.random_base(200, dtype=F64, generator=gen(0))
    field = lambda x, t: torch.sin(x)  # noqa: E731
    logp, x0 = log_likelihood(field, x1, manifold=torus, solver_steps=100, t0=t0, t1=t1, return_x0=True)
    T = t1 - t0
    torch.testing.assert_close(logp, torus1_logp(x1[:, 0], T), atol=1e-8, rtol=0)
    # the base point: tan(x_0/2) = tan(x_1/2) e^-T
    ref_x0 = torus.projx(2 * torch.atan(torch.tan(x1 / 2) * math.exp(-T)))
    assert torus.dist(x0, ref_x0).max() < 1e-8


@pytest.mark.parametrize("method, steps, tol", [("euler", 2000, 2e-3), ("midpoint", 200, 1e-4), ("dopri5", 1, 1e-6)])
def test_likelihood_other_methods(method, steps, tol):
    torus = mf.FlatTorus(1)
    x1 = torus.random_base(50, dtype=F64, generator=gen(1))
    field = lambda x, t: torch.sin(x)  # noqa: E731
    logp = log_likelihood(field, x1, manifold=torus, solver_steps=steps, solver=method, atol=1e-9, rtol=1e-9)
    assert (logp - torus1_logp(x1[:, 0], 1.0)).abs().max() < tol


@pytest.mark.parametrize("d", [1, 2, 3])
def test_likelihood_of_gradient_flow_on_sphere_matches_closed_form(d):
    """v(x) = P_x a on S^d moves points along meridians towards a/|a|.

    With tan(theta_t/2) = tan(theta_0/2) e^(-|a| t), the Jacobian determinant is (cosh s - z sinh s)^d with
    s = |a| T and z = <a/|a|, x_1>.
    """
    sphere = mf.Sphere(d)
    a = 0.8 * torch.randn(d + 1, dtype=F64, generator=gen(d))
    x1 = sphere.random_base(300, dtype=F64, generator=gen(10 + d))
    T = 1.3
    logp = log_likelihood(gradient_field(sphere, a), x1, manifold=sphere, solver_steps=100, t0=0.2, t1=0.2 + T)
    s, z = float(a.norm()) * T, x1 @ (a / a.norm())
    ref = -math.log(sphere.volume) - d * torch.log(math.cosh(s) - z * math.sinh(s))
    torch.testing.assert_close(logp, ref, atol=1e-7, rtol=0)


def test_divergence_free_rotation_keeps_uniform_density():
    sphere = mf.Sphere(2)
    ez = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    field = lambda x, t: (1 + 2 * t) * torch.linalg.cross(x, ez.expand_as(x))  # noqa: E731
    x1 = sphere.random_base(100, dtype=F64, generator=gen(0))
    for method in ("exact", "hutchinson"):
        logp = log_likelihood(field, x1, manifold=sphere, solver_steps=20, divergence=method, generator=gen(1))
        torch.testing.assert_close(logp, torch.full_like(logp, -math.log(4 * math.pi)), atol=1e-10, rtol=0)


def test_likelihood_of_network_integrates_to_one():
    """A generic time-dependent network flow: E_uniform[p_1 / p_uniform] = 1 (Monte Carlo), and x0 maps back to x1."""
    sphere = mf.Sphere(2)
    field = MLPField(sphere, seed=3)
    x1 = sphere.random_base(4000, dtype=F64, generator=gen(0))
    logp, x0 = log_likelihood(field, x1, manifold=sphere, solver_steps=10, return_x0=True, chunk_size=1500)
    ratio = torch.exp(logp + math.log(4 * math.pi))
    assert ratio.std() > 0.05  # the flow is not trivial
    assert abs(float(ratio.mean()) - 1.0) < 4 * float(ratio.std()) / math.sqrt(4000)
    assert not logp.requires_grad and not x0.requires_grad
    x1_again = odeint(field, x0[:50], time_grid(10, dtype=F64), manifold=sphere)
    with torch.no_grad():
        assert sphere.dist(x1_again, x1[:50]).max() < 1e-6


def test_likelihood_chunks_and_batch_shape():
    torus = mf.FlatTorus(2)
    x1 = torus.random_base(3, 7, dtype=F64, generator=gen(0))
    full = log_likelihood(torus_field, x1, manifold=torus, solver_steps=10)
    chunked, x0 = log_likelihood(torus_field, x1, manifold=torus, solver_steps=10, chunk_size=4, return_x0=True)
    assert full.shape == (3, 7) and x0.shape == (3, 7, 2)
    torch.testing.assert_close(full, chunked, atol=1e-13, rtol=0)
    empty = log_likelihood(torus_field, x1[:0], manifold=torus, solver_steps=10)
    assert empty.shape == (0, 7)
    f32 = log_likelihood(torus_field, x1.float(), manifold=torus, solver_steps=10)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), full, atol=1e-4, rtol=0)


def test_hutchinson_likelihood_is_close_to_exact():
    torus = mf.FlatTorus(2)
    x1 = torus.random_base(20, dtype=F64, generator=gen(0))
    exact = log_likelihood(torus_field, x1, manifold=torus, solver_steps=20)
    est = log_likelihood(
        torus_field, x1, manifold=torus, solver_steps=20, divergence="hutchinson", n_probes=2000, generator=gen(1)
    )
    assert (est - exact).abs().max() < 0.05


def test_sample_follows_the_closed_form_flow():
    torus = mf.FlatTorus(1)
    field = lambda x, t: torch.sin(x)  # noqa: E731
    x = sample(field, 500, manifold=torus, solver_steps=100, generator=gen(5), dtype=F64, t0=0.0, t1=1.0)
    assert x.shape == (500, 1) and x.dtype == F64 and not x.requires_grad
    x0 = torus.random_base(500, dtype=F64, generator=gen(5))
    ref = torus.projx(2 * torch.atan(torch.tan(x0 / 2) * math.e))
    assert torus.dist(x, ref).max() < 1e-8
    s = sample(MLPField(mf.Sphere(2)), 10, manifold=mf.Sphere(2), solver_steps=5, solver="dopri5", dtype=F64)
    assert s.shape == (10, 3) and mf.Sphere(2).check_point(s)[0]


def test_likelihood_bad_input():
    sphere = mf.Sphere(2)
    x1 = sphere.random_base(4)
    f = gradient_field(sphere, torch.ones(3))
    with pytest.raises(ValueError, match="unknown ODE solver"):
        log_likelihood(f, x1, manifold=sphere, solver="leapfrog")
    with pytest.raises(ValueError, match="unknown divergence estimator"):
        log_likelihood(f, x1, manifold=sphere, divergence="trace")
    with pytest.raises(ValueError, match="trailing dimension"):
        log_likelihood(f, torch.ones(4, 2), manifold=sphere)
    with pytest.raises(ValueError, match="chunk_size"):
        log_likelihood(f, x1, manifold=sphere, chunk_size=0)
    with pytest.raises(ValueError, match="differ"):
        log_likelihood(f, x1, manifold=sphere, t0=1.0, t1=1.0)
    with pytest.raises(ValueError, match="unknown ODE solver"):
        sample(f, 3, manifold=sphere, solver="leapfrog")


class _ScaledGradient(torch.nn.Module):
    """``k P_x e_z`` on S^2: divergence ``-2 k z``, so a large ``k`` piles mass at the pole within one time unit."""

    def __init__(self, k: float):
        super().__init__()
        self.k = k
        self.anchor = torch.nn.Parameter(torch.zeros(1, dtype=F64))  # gives the objective a parameter and a dtype

    def forward(self, x, t):
        e = torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype)
        return self.k * (e.expand_as(x) - (x * e).sum(-1, keepdim=True) * x)


@pytest.mark.parametrize("k, settled", [(0.0, True), (6.0, False)])
def test_solver_check_says_whether_the_ode_likelihood_settled(k, settled):
    """Test metrics say whether the NLL still moves when the solver steps double, and label it where it does.

    A field that does nothing settles at once; a strong contraction towards a pole, solved with
    four Euler steps, does not (its NLL moves by nats), and the likelihood label says so.
    """
    from manifold_flows import TrainConfig
    from manifold_flows.evaluation import evaluate_split
    from manifold_flows.objectives import RFM

    sphere = mf.Sphere(2)
    x = sphere.random_base(300, dtype=F64, generator=gen(0))
    objective = RFM(sphere, _ScaledGradient(k))
    cfg = TrainConfig(data="volcano", solver="euler", solver_steps=4)
    m = evaluate_split(objective, objective.net, cfg, {}, x, sphere)
    assert m["solver_check_points"] == 200
    assert m["solver_check"] == ("settled" if settled else "not settled")
    assert math.isclose(m["solver_check_nll"], -objective.log_prob(x[:200], solver="euler", solver_steps=4).mean(),
                        rel_tol=1e-9, abs_tol=1e-12)
    assert ("NOT SETTLED" in m["likelihood"]) == (not settled)
    if not settled:
        assert abs(m["solver_check_change"]) > 1.0
        assert "solver_check_nll_8_steps" in m
    else:
        assert abs(m["solver_check_change"]) < 1e-9


def test_solver_check_is_skipped_where_the_likelihood_is_no_fixed_step_ode():
    from manifold_flows import TrainConfig
    from manifold_flows.evaluation import solver_check
    from manifold_flows.objectives import RFM, MoserFlow

    sphere = mf.Sphere(2)
    x = sphere.random_base(10, dtype=F64, generator=gen(1))
    lp = torch.zeros(10, dtype=F64)
    rfm = RFM(sphere, _ScaledGradient(1.0))
    assert "adaptive" in solver_check(rfm, x, lp, rfm.net, TrainConfig(data="volcano", solver="dopri5"))["solver_check"]
    moser = MoserFlow(sphere, _ScaledGradient(1.0))
    assert "explicit" in solver_check(moser, x, lp, moser.net, TrainConfig(data="volcano"))["solver_check"]
