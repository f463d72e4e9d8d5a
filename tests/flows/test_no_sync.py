"""Hot loops without host synchronisation: training steps, ODE solves, likelihoods and sampling.

On a GPU, reading a tensor's value on the host (``.item()``, ``bool(t)``, data-dependent shapes such
as ``nonzero``) stalls the device. The dispatch mode below records every operation that would do
so, on the CPU, so the property is tested on every machine; ``benchmarks/bench_gpu.py`` and the
CUDA test at the end check the same loops under ``torch.cuda.set_sync_debug_mode("error")``.
"""

import traceback
from pathlib import Path

import pytest
import torch
import trimesh
from torch.utils._python_dispatch import TorchDispatchMode

from manifold_flows.config import METHOD_DEFAULTS
from manifold_flows.likelihood import log_likelihood, sample
from manifold_flows.nets import EMA, VectorField
from manifold_flows.objectives import PPD, RFM, MoserFlow
from manifold_flows.paths import PremetricPath
from manifolds import FlatTorus, ImplicitSurface, Mesh, ProductManifold, SpectralDistance, Sphere

SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "is_nonzero", "equal", "item")
"""Operations whose result needs the tensor's values on the host."""


class SyncWatch(TorchDispatchMode):
    """Records syncing operations with the package line that called them.

    PyTorch's optimisers read their step counters, which are host tensors unless ``capturable``:
    no device stall, so calls from ``torch.optim`` are not counted.
    """

    def __init__(self):
        super().__init__()
        self.syncs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if any(name == s or name.startswith(s + "_") or name.startswith("_" + s) for s in SYNCING):
            stack = traceback.extract_stack()
            if not any("torch/optim" in f.filename for f in stack):
                ours = [f"{Path(f.filename).name}:{f.lineno}" for f in stack if "manifold" in f.filename
                        and "test_no_sync" not in f.filename]
                self.syncs.append(f"{func} from {' <- '.join(ours[-3:])}")
        return func(*args, **(kwargs or {}))


MANIFOLDS = {"S2": lambda: Sphere(2), "T2": lambda: FlatTorus(2),
             "S2xT1": lambda: ProductManifold(Sphere(2), FlatTorus(1))}


def _torus_mesh():
    return Mesh(trimesh.creation.torus(1.0, 0.4, major_sections=24, minor_sections=12), name="torus")


def _sheet():
    return Mesh(trimesh.creation.box((1.0, 1.0, 0.2)).slice_plane((0, 0, 0.05), (0, 0, -1)), name="tray")


SURFACES = {"mesh": _torus_mesh, "open_mesh": _sheet, "implicit_torus": lambda: ImplicitSurface.torus(1.0, 0.4),
            "implicit_ellipsoid": lambda: ImplicitSurface.ellipsoid(1.0, 0.7, 0.5, n_area=1 << 16)}
"""Surfaces whose projections branch on values: a closed and an open mesh, an implicit torus (exact sampler) and
an implicit ellipsoid (shell sampler)."""


def test_the_watch_sees_syncs():
    w = SyncWatch()
    with w:
        x = torch.randn(5)
        float(x.sum())
        bool((x > 0).any())
        torch.nonzero(x > 0)
    assert len(w.syncs) >= 3


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
@pytest.mark.parametrize("method", ["rfm", "moser", "ppd"])
def test_training_steps_do_not_sync(name, method):
    manifold = MANIFOLDS[name]()
    torch.manual_seed(0)
    net = VectorField(manifold, hidden=16, depth=2, activation=METHOD_DEFAULTS[method]["activation"],
                      time_dependent=method != "moser")
    objective = {"rfm": RFM, "moser": MoserFlow, "ppd": PPD}[method](manifold, net)
    data = manifold.random_base(256, generator=torch.Generator().manual_seed(1))
    if method == "ppd":
        objective.prepare(data[:200], data[200:])
    ema = EMA(net, 0.99)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(2)
    loss_sum = torch.zeros(())

    def steps(n):
        for _ in range(n):
            idx = torch.randint(0, 256, (32,), generator=gen)
            loss = objective.loss(data[idx], generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(net)
            loss_sum.add_(loss.detach())

    steps(1)  # first calls fill caches (e.g. dtype constants), once per process
    w = SyncWatch()
    with w:
        steps(3)
    assert not w.syncs, sorted(set(w.syncs))


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_solves_likelihoods_and_sampling_do_not_sync(name, solver):
    manifold = MANIFOLDS[name]()
    torch.manual_seed(0)
    net = VectorField(manifold, hidden=16, depth=2)
    x = manifold.random_base(40, generator=torch.Generator().manual_seed(1))

    def run():
        sample(net, 40, manifold=manifold, solver_steps=4, solver=solver, generator=torch.Generator().manual_seed(3))
        log_likelihood(net, x, manifold=manifold, solver_steps=4, solver=solver)

    run()
    w = SyncWatch()
    with w:
        run()
    assert not w.syncs, sorted(set(w.syncs))


def test_moser_sampler_does_not_sync_in_its_loops():
    manifold = Sphere(2)
    torch.manual_seed(0)
    net = VectorField(manifold, hidden=16, depth=2, activation="softplus100", time_dependent=False)
    mf = MoserFlow(manifold, net, mcmc_steps=6)
    w = SyncWatch()
    with w:
        mf.sample(30, solver_steps=3, generator=torch.Generator().manual_seed(3))
    # the chain's summary (acceptance rates) is read once, after the loop: at most 3 reads
    assert len(w.syncs) <= 3, sorted(set(w.syncs))


def _steps(objective, net, data, n_steps):
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(2)
    for _ in range(n_steps):
        loss = objective.loss(data[torch.randint(0, data.shape[0], (32,), generator=gen)], generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("name", sorted(SURFACES))
def test_surface_training_solves_and_sampling_do_not_sync(name):
    """Meshes and implicit surfaces: training steps, likelihoods and sampling read nothing on the host.

    Moser Flow steps (closed surfaces) and RFM steps on a premetric path (meshes); the entry-point checks of
    likelihoods and sampling run before the watch.
    """
    manifold = SURFACES[name]()
    torch.manual_seed(0)
    data = manifold.random_base(128, generator=torch.Generator().manual_seed(1))
    runs = []
    if not manifold.has_boundary:
        net = VectorField(manifold, hidden=16, depth=2, activation="softplus100", time_dependent=False)
        runs.append((MoserFlow(manifold, net), net))
    if isinstance(manifold, Mesh):
        net = VectorField(manifold, hidden=16, depth=2)
        path = PremetricPath(manifold, SpectralDistance(manifold, "biharmonic", n_eigs=8), steps=4)
        runs.append((RFM(manifold, net, path=path), net))
    for objective, net in runs:
        _steps(objective, net, data, 1)  # first calls fill caches
        w = SyncWatch()
        with w:
            _steps(objective, net, data, 2)
        assert not w.syncs, (type(objective).__name__, sorted(set(w.syncs)))
    field = VectorField(manifold, hidden=16, depth=2)
    x = manifold.random_base(40, generator=torch.Generator().manual_seed(1))

    def run():
        sample(field, 40, manifold=manifold, solver_steps=3, generator=torch.Generator().manual_seed(3))
        log_likelihood(field, x, manifold=manifold, solver_steps=3)

    run()
    w = SyncWatch()
    with w:
        run()
    assert not w.syncs, sorted(set(w.syncs))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["rfm", "moser", "ppd"])
def test_cuda_training_and_solves_under_sync_debug_mode(method):
    manifold = Sphere(2).cuda()
    torch.manual_seed(0)
    net = VectorField(manifold, hidden=32, depth=2, activation=METHOD_DEFAULTS[method]["activation"],
                      time_dependent=method != "moser").cuda()
    objective = {"rfm": RFM, "moser": MoserFlow, "ppd": PPD}[method](manifold, net)
    data = manifold.random_base(256, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    if method == "ppd":
        objective.prepare(data[:200], data[200:])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    gen = torch.Generator("cuda").manual_seed(2)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            loss = objective.loss(data[torch.randint(0, 256, (32,), device="cuda", generator=gen)], generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sample(net if method != "moser" else objective.field(), 16, manifold=manifold, solver_steps=3, generator=gen,
               device="cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
