"""Metropolis-Hastings refinement of approximate samples towards an explicit (unnormalised) density on a manifold.

Used by Moser Flow, whose density ``max(eps, mu)`` is explicit but whose ODE sampler is only
approximately faithful (its field ``u / alpha_t`` is stiff where ``mu`` is small, and it transports
the clamped density only where ``mu >= eps``). Starting from the ODE's samples, which are already
close to the target, a few Metropolis-Hastings steps make them exact in the limit:

* a *local* move ``y = exp_x(sigma xi)`` with ``xi`` an isotropic Gaussian tangent vector, on
  manifolds where that kernel is symmetric (``manifold.symmetric_random_walk``: spheres, flat tori,
  Euclidean spaces, SO(3) and their products); ``sigma`` adapts towards an acceptance rate of about
  0.35 during the first half of the steps and is frozen after, so the second half is an exact
  Metropolis chain;
* a *global* move to an independent draw ``y`` of the uniform base distribution (a symmetric
  proposal on every compact manifold, meshes and implicit surfaces included), which moves mass
  between distant modes that local steps would take long to cross.

Both accept with probability ``min(1, p(y) / p(x))``. Everything stays on the device: no host
synchronisation inside the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from manifolds import Manifold

TARGET_ACCEPTANCE = 0.35


@dataclass
class ChainStats:
    """What a refinement did: steps of each kind, their acceptance rates, and the final local step size."""

    local_steps: int
    global_steps: int
    local_acceptance: float
    global_acceptance: float
    sigma: float


def random_walk(manifold: Manifold, x: torch.Tensor, sigma: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``exp_x(sigma xi)`` with ``xi`` a standard Gaussian in the tangent space at ``x``; shapes ``[N, D]``.

    The tangent Gaussian is the tangent projection of an ambient one, isotropic for the metric on
    the manifolds that declare ``symmetric_random_walk``, where the kernel depends only on the
    distance between ``x`` and ``y`` and is therefore symmetric.
    """
    xi = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    return manifold.projx(manifold.expmap(x, manifold.proju(x, sigma * xi)))


def metropolis_refine(log_density: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, manifold: Manifold, *,
                      steps: int = 40, sigma: float = 0.05, generator: Optional[torch.Generator] = None):
    """Run ``steps`` Metropolis-Hastings steps per sample from ``x [N, D]`` targeting ``exp(log_density)``.

    Args:
        log_density: unnormalised log-density, ``[N, D] -> [N]`` (``-inf`` allowed).
        x: starting points on the manifold (for instance approximate samples).
        manifold: a compact manifold (its base distribution must be uniform for the global moves).
        steps: total steps; local and global moves alternate where local moves exist.
        sigma: initial local step size (geodesic distance scale).
        generator: random generator.

    Returns:
        ``(samples [N, D], ChainStats)``.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not manifold.compact:
        raise ValueError(f"global moves draw from the uniform base, which {manifold} does not have")
    local_ok = manifold.symmetric_random_walk
    logp = log_density(x)
    s = torch.full((), float(sigma), dtype=x.dtype, device=x.device)
    acc = {True: [], False: []}
    for k in range(steps):
        local = local_ok and k % 2 == 0
        if local:
            y = random_walk(manifold, x, s, generator)
        else:
            y = manifold.random_base(x.shape[0], dtype=x.dtype, device=x.device, generator=generator)
        logp_y = log_density(y)
        u = torch.rand(logp.shape, dtype=x.dtype, device=x.device, generator=generator)
        accept = torch.log(u) < logp_y - logp
        x = torch.where(accept.unsqueeze(-1), y, x)
        logp = torch.where(accept, logp_y, logp)
        rate = accept.to(x.dtype).mean()
        acc[local].append(rate)
        if local and k < steps // 2:  # adapt in the first half only; the second half is a fixed kernel
            s = torch.clamp(s * torch.exp(rate - TARGET_ACCEPTANCE), max=math.pi)
    mean = lambda v: float(torch.stack(v).mean()) if v else float("nan")  # noqa: E731  (after the loop)
    stats = ChainStats(len(acc[True]), len(acc[False]), mean(acc[True]), mean(acc[False]), float(s))
    return x, stats
