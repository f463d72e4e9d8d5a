"""Riemannian divergence of tangent fields on embedded manifolds: exact Jacobian trace and Hutchinson.

The field is extended off the manifold as ``g(y) = proju(projx(y), field(projx(y), t))``. On the
manifolds that carry the metric of their coordinates (sphere, flat torus, Euclidean space and
their products) this extension is constant along normals and tangent-valued, so its ambient
Jacobian ``J`` satisfies ``J = J P`` (``P`` the tangent projector) and

    div_M field(x) = tr(P J P) = tr(J)   at points x on the manifold.

For other metrics (SO(3), SPD matrices, hyperbolic space) ``tr(J)`` is the divergence w.r.t. the
measure that ``projx``'s coordinates carry, and the Riemannian divergence adds
``manifold.divergence_correction(x, v) = <grad log rho, v>`` (``rho`` the Riemannian volume
relative to that measure; zero for SO(3), whose metric is half the Frobenius one). Both
estimators add it. Hutchinson's estimate uses ``E[z^T J Q z] = tr(J Q) = tr(J)`` with ``Q`` the
differential of ``projx`` (``proju_orthogonal`` at points of the manifold): for metrics of the
coordinates both sides of the probe are projected (``Q`` is orthogonal there, and ``tr(Q J Q)``
has less variance); elsewhere ``Q`` may be oblique (the hyperboloid's projection along the time
axis), where ``tr(Q^T J Q)`` would differ from ``tr(J)``, so the left probe stays unprojected.

Both estimators differentiate ``g`` with autograd, summing over the batch: they assume the
field treats every point independently (no batch normalisation or attention across points).

Choice of the exact method, measured on CPU (2 threads, torch 2.13) with an MLP of 3 x 512 SiLU
layers on (x, t); milliseconds per call without a graph / with ``create_graph`` plus a backward
pass of a loss on the divergence. ``loop`` is what :func:`divergence` uses.

    manifold (D)   batch   loop        replicate    jacrev      jacfwd      jvp
    T^2 (2)          256   5.0 / 17    5.8 / 21     6.1 / 18    8.9 / 22    7.8 / 21
    T^2 (2)         4096    76 / 346    93 / 1458   129 / 272   176 / 364   140 / 335
    S^2 (3)          256   7.2 / 26    9.1 / 31     8.2 / 23     11 / 29     11 / 28
    S^2 (3)         4096    96 / 359   141 / 697    138 / 386   192 / 462   184 / 505
    S^2 x T^2 (5)    256    12 / 41     16 / 52      12 / 34     16 / 40     20 / 42
    S^2 x T^2 (5)   4096   149 / 557   235 / 1613   249 / 785   295 / 923   343 / 985

``loop``: one forward pass and ``D`` vector-Jacobian products (``torch.autograd.grad`` of
``g[..., i].sum()``); ``replicate``: the batch copied ``D`` times, one forward and one backward;
``jacrev`` / ``jacfwd``: ``torch.func`` per-point Jacobians under ``vmap``; ``jvp``: forward-mode
products with the ``D`` basis vectors under ``vmap``. Without a graph (likelihoods) the loop is
the fastest in every case. With ``create_graph`` (training) ``jacrev`` beats it by up to 20% on
some sizes and loses by up to 40% on others; the loop was kept because it is never far behind and,
unlike the ``torch.func`` variants, accepts any autograd-compatible field (no ``vmap`` rules needed).

Where the manifold gives an orthonormal tangent frame ``f_1 .. f_d`` at ``projx(x)``
(:meth:`manifolds.Manifold.tangent_frame`: where ``projx``'s differential is the orthogonal
projector ``P``), ``J = J P`` gives ``tr(J) = sum_k f_k^T J f_k``: the loop runs over the ``d``
frame vectors instead of the ``D`` coordinates (S^2: 2 passes instead of 3; SO(3): 3 instead of
9; SPD(n): n(n+1)/2 instead of n^2; meshes: 2 instead of 3).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch

from manifolds import Manifold

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

ESTIMATORS = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")

HUTCHINSON_ABOVE = 12
"""Intrinsic dimension above which likelihoods and the training objectives default to Hutchinson's estimator.

The exact trace costs ``D`` backward passes, Hutchinson's one (per probe) plus noise. The
crossover was measured on flat tori (``benchmarks/bench_torus.py``, BENCHMARKS.md 'High-dimensional
flat tori'): see :func:`default_estimator`."""


def default_estimator(manifold: Manifold) -> str:
    """``"exact"`` up to :data:`HUTCHINSON_ABOVE` intrinsic dimensions, ``"hutchinson"`` above."""
    return "exact" if manifold.dim <= HUTCHINSON_ABOVE else "hutchinson"


def resolve_estimator(estimator: str, manifold: Manifold) -> str:
    """``estimator``, with ``"auto"`` replaced by :func:`default_estimator` of ``manifold``.

    Raises:
        ValueError: an unknown name.
    """
    if estimator == "auto":
        return default_estimator(manifold)
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown divergence estimator {estimator!r}; choose from {list(ESTIMATORS) + ['auto']}")
    return estimator


def _as_time(t: Union[float, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``t`` as a 0-dim tensor of ``x``'s dtype and device."""
    return torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(())


def value_and_divergence(
    field: Field,
    x: torch.Tensor,
    t: Union[float, torch.Tensor],
    *,
    manifold: Manifold,
    estimator: str = "exact",
    n_probes: int = 1,
    generator: Optional[torch.Generator] = None,
    create_graph: bool = False,
    probe: str = "rademacher",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The extended field ``g(x) = proju(projx(x), field(projx(x), t))`` and its divergence, from one forward pass.

    Args:
        field: tangent field ``field(x [..., D], t []) -> [..., D]``.
        x: points, shape ``[..., D]`` (on the manifold; off it, ``g`` is the normal extension).
        t: time, a float or 0-dim tensor (converted to ``x``'s dtype and device).
        manifold: the manifold (its ``divergence_correction`` is added for metrics other than the coordinates').
        estimator: ``"exact"`` (trace of the Jacobian, ``D`` backward passes, or ``dim`` along a
            tangent frame where the manifold has one) or ``"hutchinson"``
            (stochastic trace estimate, ``n_probes`` backward passes on a replicated batch).
        n_probes: number of Hutchinson probes averaged per point (``"hutchinson"`` only).
        generator: random generator for the probes (on ``x``'s device).
        create_graph: keep the graph of the divergence so that it can be differentiated (e.g. with
            respect to the field's parameters in Moser Flow training). When False both outputs are
            detached.
        probe: ``"rademacher"`` (entries +-1, the default: lowest variance among i.i.d. probes) or
            ``"gaussian"``; the probe is projected onto the tangent space at ``projx(x)``.

    Returns:
        ``(v, div)``: ``v`` of shape ``[..., D]`` and ``div`` of shape ``[...]``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown divergence estimator {estimator!r}; choose from {list(ESTIMATORS)}")
    if probe not in PROBES:
        raise ValueError(f"unknown probe distribution {probe!r}; valid: {list(PROBES)}")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be an integer >= 1, got {n_probes!r}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("x must be a floating-point tensor")
    if x.dim() < 1 or x.shape[-1] != manifold.ambient_dim:
        raise ValueError(
            f"x has shape {tuple(x.shape)} but {manifold} needs a trailing dimension of {manifold.ambient_dim}"
        )
    t = _as_time(t, x)
    D = x.shape[-1]

    projected = {}

    def g(y: torch.Tensor) -> torch.Tensor:
        p = projected["p"] = manifold.projx(y)
        return manifold.proju(p, field(p, t))

    with torch.enable_grad():
        if estimator == "exact":
            y = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
            v = g(y)
            div = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
            # [..., d, D] or None (module notes); fixed frames carry no derivative w.r.t. the points, so
            # a divergence to be differentiated w.r.t. x takes the ambient trace
            frame = None if y is x else manifold.tangent_frame(projected["p"].detach())
            passes = D if frame is None else frame.shape[-2]
            if v.requires_grad:  # otherwise the field is constant in x and has no parameters
                for i in range(passes):
                    probe_i = None if frame is None else frame[..., i, :]
                    (gi,) = torch.autograd.grad(
                        v[..., i].sum() if frame is None else (v * probe_i).sum(),
                        y,
                        create_graph=create_graph,
                        retain_graph=create_graph or i < passes - 1,
                        allow_unused=True,
                    )
                    if gi is not None:
                        div = div + (gi[..., i] if frame is None else (gi * probe_i).sum(-1))
        else:
            # replicate the batch once per probe: one forward and one backward pass
            base = x if (create_graph and x.requires_grad) else x.detach()
            xr = base.unsqueeze(0).expand((n_probes,) + tuple(x.shape))
            if not xr.requires_grad:
                xr = xr.clone().requires_grad_(True)
            if probe == "rademacher":
                eps = torch.randint(0, 2, xr.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
            else:
                eps = torch.randn(xr.shape, generator=generator, device=x.device, dtype=x.dtype)
            # E[eps eps^T] must be the orthogonal projector P, so that E[eps^T J eps] = tr(P J P): an
            # oblique projection Q (meshes) would give tr(Q^T J Q) and bias the estimate. Where the
            # metric is not the coordinates' one, the left probe stays raw: E[z^T J Q z] = tr(J Q) (module notes)
            right = manifold.proju_orthogonal(manifold.projx(xr.detach()), eps)
            left = right if manifold.ambient_metric else eps
            vr = g(xr)
            div = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
            if vr.requires_grad:
                (vjp,) = torch.autograd.grad(vr, xr, grad_outputs=left, create_graph=create_graph, allow_unused=True)
                if vjp is not None:
                    div = div + (vjp * right).sum(-1).mean(0)
            v = vr[0]
    if not manifold.ambient_metric:
        div = div + manifold.divergence_correction(manifold.projx(x.detach()), v)
    if not create_graph:
        v, div = v.detach(), div.detach()
    return v, div


def divergence(
    field: Field,
    x: torch.Tensor,
    t: Union[float, torch.Tensor],
    *,
    manifold: Manifold,
    estimator: str = "exact",
    n_probes: int = 1,
    generator: Optional[torch.Generator] = None,
    create_graph: bool = False,
    probe: str = "rademacher",
) -> torch.Tensor:
    """Riemannian divergence of a tangent field at points of the manifold.

    ``"exact"`` returns the trace of the ambient Jacobian of the normal extension
    ``g(y) = proju(projx(y), field(projx(y), t))``, which equals the Riemannian divergence on the
    sphere, flat torus, Euclidean space and their products; other metrics add
    ``manifold.divergence_correction`` (module notes). ``"hutchinson"`` returns the unbiased
    estimate ``mean_k eps_k^T J eps_k`` with probes ``eps_k = proju(x, z_k)``, ``z_k`` Rademacher
    (default) or standard Gaussian in ambient coordinates; since ``E[eps eps^T] = P`` and
    ``J = J P``, its mean is ``tr(P J P) = tr(J)``, and projecting removes the normal part of the
    probe, which only adds variance.

    Args:
        field: tangent field ``field(x [..., D], t []) -> [..., D]``, treating points independently.
        x: points on the manifold, shape ``[..., D]``.
        t: time, float or 0-dim tensor.
        manifold: the manifold.
        estimator: ``"exact"`` or ``"hutchinson"``.
        n_probes: Hutchinson probes averaged per point.
        generator: random generator for the probes.
        create_graph: keep the graph so the divergence can be backpropagated (Moser Flow training);
            when False the result is detached.
        probe: ``"rademacher"`` or ``"gaussian"`` (Hutchinson only).

    Returns:
        Divergence, shape ``[...]``, with ``x``'s dtype and device.
    """
    return value_and_divergence(
        field,
        x,
        t,
        manifold=manifold,
        estimator=estimator,
        n_probes=n_probes,
        generator=generator,
        create_graph=create_graph,
        probe=probe,
    )[1]
