"""Exact log-likelihoods and samples of flows on manifolds through the augmented ODE [x, log-density].

A model transports the base distribution ``p_0 = manifold.base_logprob`` at time ``t0`` to
``p_1`` at ``t1`` along a tangent field ``v_t``. Along a trajectory ``x_t`` the continuity
equation ``d/dt p_t + div(p_t v_t) = 0`` gives

    d/dt log p_t(x_t) = -div v_t(x_t),   so   log p_1(x_1) = log p_0(x_0) - int_{t0}^{t1} div v_t(x_t) dt.

:func:`log_likelihood` integrates the augmented state ``[x, l]`` with ``dx/dt = v_t(x)``,
``dl/dt = div v_t(x)`` *backward* from ``(x_1, 0)`` at ``t1`` to ``t0``; then
``l(t0) = int_{t1}^{t0} div v dt = -int_{t0}^{t1} div v dt`` and

    log p_1(x_1) = base_logprob(x_0) + l(t0).

The stepping is that of :mod:`manifold_flows.solvers` (:func:`~manifold_flows.solvers.odeint_augmented`):
``x`` is projected after every step and ``l`` is combined with the same Runge-Kutta weights.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch

from manifolds import Manifold

from .divergence import ESTIMATORS, value_and_divergence
from .solvers import SOLVERS, _check_state, check_solver, odeint, odeint_augmented, time_grid

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def log_likelihood(
    field: Field,
    x1: torch.Tensor,
    *,
    manifold: Manifold,
    solver: str = "rk4",
    solver_steps: int = 100,
    divergence: str = "exact",
    n_probes: int = 1,
    generator: Optional[torch.Generator] = None,
    t0: float = 0.0,
    t1: float = 1.0,
    return_x0: bool = False,
    chunk_size: int = 4096,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Log-density at ``x1`` of the flow that carries the base distribution at ``t0`` to ``t1`` along ``field``.

    Integrates ``[x, l]`` backward from ``(x1, 0)`` at ``t1`` to ``t0`` with ``dx/dt = field``
    and ``dl/dt = div field``, and returns ``base_logprob(x0) + l(t0)`` (see the module notes for
    the sign). Runs without building a graph (the divergence uses autograd internally on detached
    copies), in chunks of ``chunk_size`` points to bound memory.

    Args:
        field: tangent field ``field(x [..., D], t []) -> [..., D]``, treating points independently.
        x1: points on the manifold, shape ``[..., D]`` (projected with ``manifold.projx`` first).
        manifold: the manifold (Sphere, FlatTorus, Euclidean or a product of them).
        solver: ODE solver: ``"euler"``, ``"midpoint"``, ``"rk4"`` or an adaptive one such as ``"dopri5"``.
        solver_steps: number of fixed steps from ``t1`` to ``t0`` (adaptive solvers choose their own).
        divergence: ``"exact"`` or ``"hutchinson"`` (see :func:`manifold_flows.divergence.divergence`).
        n_probes: Hutchinson probes per evaluation.
        generator: random generator for the Hutchinson probes.
        t0: time of the base distribution.
        t1: time of the model distribution (``t1 != t0``; ``t1 < t0`` is allowed).
        return_x0: also return the points ``x0`` reached at ``t0``.
        chunk_size: number of points integrated at once.
        atol: absolute tolerance of adaptive solvers.
        rtol: relative tolerance of adaptive solvers.

    Returns:
        ``log p_1(x1)`` of shape ``[...]`` in ``x1``'s dtype and device, and with ``return_x0`` the
        tuple ``(log_p, x0)`` with ``x0`` of shape ``[..., D]``.

    Raises:
        ValueError: unknown solver or divergence estimator, bad ``solver_steps``/``chunk_size``, or ``x1``
            with the wrong trailing dimension.
    """
    check_solver(solver)
    _check_state(x1, manifold, "x1")
    if divergence not in ESTIMATORS:
        raise ValueError(f"unknown divergence estimator {divergence!r}; choose from {list(ESTIMATORS)}")
    _check_positive_int(solver_steps, "solver_steps")
    _check_positive_int(chunk_size, "chunk_size")
    _check_positive_int(n_probes, "n_probes")
    D = manifold.ambient_dim
    grid = time_grid(solver_steps if solver in SOLVERS else 1, t0=t1, t1=t0, dtype=x1.dtype)  # on the host: no sync

    def func(y: torch.Tensor, s: torch.Tensor):
        v, div = value_and_divergence(
            field, y, s, manifold=manifold, estimator=divergence, n_probes=n_probes, generator=generator
        )
        return v, div.unsqueeze(-1)

    batch = x1.shape[:-1]
    with torch.no_grad():
        flat = manifold.projx(x1.detach()).reshape(-1, D)
        logps, x0s = [], []
        for chunk in torch.split(flat, chunk_size):
            if chunk.shape[0] == 0:
                continue
            l0 = torch.zeros(chunk.shape[0], 1, dtype=chunk.dtype, device=chunk.device)
            x0, a1 = odeint_augmented(func, chunk, grid, manifold=manifold, a0=l0, solver=solver, atol=atol,
                                     rtol=rtol)
            logps.append(manifold.base_logprob(x0) + a1[:, 0])
            x0s.append(x0)
        if logps:
            logp, x0 = torch.cat(logps), torch.cat(x0s)
        else:
            logp, x0 = flat.new_zeros(0), flat
        logp = logp.reshape(batch)
        x0 = x0.reshape(batch + (D,))
    return (logp, x0) if return_x0 else logp


def sample(
    field: Field,
    n: int,
    *,
    manifold: Manifold,
    solver: str = "rk4",
    solver_steps: int = 100,
    generator: Optional[torch.Generator] = None,
    dtype: Optional[torch.dtype] = None,
    device: Optional[Union[str, torch.device]] = None,
    t0: float = 0.0,
    t1: float = 1.0,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> torch.Tensor:
    """Draw samples of the flow: base samples at ``t0`` integrated along ``field`` to ``t1``.

    Runs under ``torch.no_grad()``.

    Args:
        field: tangent field ``field(x [..., D], t []) -> [..., D]``.
        n: number of samples.
        manifold: the manifold; ``manifold.random_base`` draws the starting points.
        solver: ODE solver (see :func:`manifold_flows.solvers.available_solvers`).
        solver_steps: number of fixed steps (adaptive solvers choose their own).
        generator: random generator for the base samples.
        dtype: dtype of the samples (default ``torch.get_default_dtype()``).
        device: device of the samples.
        t0: start time (base distribution).
        t1: end time (model distribution).
        atol: absolute tolerance of adaptive solvers.
        rtol: relative tolerance of adaptive solvers.

    Returns:
        Samples of shape ``[n, D]`` on the manifold.
    """
    check_solver(solver)
    _check_positive_int(solver_steps, "solver_steps")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    with torch.no_grad():
        x0 = manifold.random_base(n, dtype=dtype, device=device, generator=generator)
        grid = time_grid(solver_steps if solver in SOLVERS else 1, t0=t0, t1=t1, dtype=x0.dtype)  # on the host
        return odeint(field, x0, grid, manifold=manifold, solver=solver, atol=atol, rtol=rtol)
