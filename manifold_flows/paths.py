"""Conditional probability paths for flow matching.

Geodesic interpolation and its velocity, and simulated premetric paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from manifolds import Manifold


@dataclass
class PathSample:
    """A batch of points on conditional paths.

    Attributes:
        x0: noise endpoints ``[B, D]``.
        x1: data endpoints ``[B, D]``.
        t: times ``[B]``.
        xt: points on the paths at ``t``, ``[B, D]``.
        ut: path velocities at ``xt`` (tangent), ``[B, D]``.
    """

    x0: torch.Tensor
    x1: torch.Tensor
    t: torch.Tensor
    xt: torch.Tensor
    ut: torch.Tensor


class ConditionalPath(nn.Module):
    """The interface of RFM's conditional paths: pairs of endpoints in, points and target velocities out.

    ``sample(x0 [n, D], x1 [n, D], t [n])`` returns a :class:`PathSample` of ``n * targets_per_pair``
    rows; :meth:`pairs` says how many pairs make a batch of about ``batch_size`` targets. The RFM
    loss is the same for every path.
    """

    targets_per_pair = 1

    def pairs(self, batch_size: int) -> int:
        """Endpoint pairs per training batch of ``batch_size`` targets."""
        return max(1, batch_size // self.targets_per_pair)

    def prepare(self, data: torch.Tensor) -> None:
        """Take note of the training points ``[N, D]`` before training (paths that precompute use it)."""

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
               generator: Optional[torch.Generator] = None) -> PathSample:  # pragma: no cover
        """Points and velocities on the paths from ``x0 [n, D]`` to ``x1 [n, D]``, with times drawn as ``t [n]``."""
        raise NotImplementedError


class GeodesicPath(ConditionalPath):
    """``x_t = exp_{x0}(t log_{x0}(x1))`` with velocity ``u_t = d/dt x_t`` (``manifold.geodesic``).

    With closed-form geometry the velocity is the parallel transport of ``log_{x0}(x1)`` to
    ``x_t``; meshes trace the geodesic across faces; other manifolds differentiate ``t -> x_t``.

    Args:
        manifold: a manifold with geodesics (``has_geodesics``).
    """

    def __init__(self, manifold: Manifold):
        super().__init__()
        if not manifold.has_geodesics:
            raise ValueError(f"{manifold} has no exp/log maps, so no geodesic paths")
        self.manifold = manifold

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
               generator: Optional[torch.Generator] = None) -> PathSample:
        """Points and velocities on the geodesics from ``x0 [B, D]`` to ``x1 [B, D]`` at ``t [B]``."""
        xt, ut = self.manifold.geodesic(x0, self.manifold.logmap(x0, x1), t)
        return PathSample(x0=x0, x1=x1, t=t, xt=xt, ut=ut)


class PremetricPath(ConditionalPath):
    """Conditional paths of Riemannian Flow Matching from a premetric, simulated (Chen & Lipman, ICLR 2024, sec. 3.2).

    For a premetric ``d`` (here a spectral distance on a mesh) and the schedule ``kappa(t) = 1 - t``
    the conditional field is

        u_t(x | x1) = d log kappa / dt * d(x, x1) grad d / |grad d|^2 = -2 d^2 grad(d^2) / ((1 - t) |grad(d^2)|^2),

    which shrinks ``d(x_t, x1)`` as ``(1 - t) d(x0, x1)``. Paths have no closed form: they are
    simulated from ``x0`` with projected Euler steps and every state along each path is a
    regression target: path ``i`` visits the times ``(j + t_i) / steps``, ``j = 0 .. steps - 1``
    (a first step of length ``t_i / steps``, then steps of ``1 / steps``), so with ``t_i`` uniform
    the targets cover all of ``[0, 1)`` rather than a fixed grid. Where ``grad(d^2)`` nearly vanishes away from ``x1``
    the speed is capped at ``5 sqrt(area)`` so a step cannot jump across the surface.

    Args:
        manifold: the mesh.
        distance: a :class:`manifolds.SpectralDistance` on it.
        steps: Euler steps per path (also the number of targets per path).
    """

    def __init__(self, manifold: Manifold, distance: nn.Module, steps: int = 50):
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.manifold = manifold
        self.distance = distance
        self.steps = self.targets_per_pair = int(steps)
        self.max_speed = 5.0 * math.sqrt(manifold.volume)

    def velocity(self, x: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``u_t(x | x1)`` ``[N, 3]`` at points ``x [N, 3]`` and times ``t [N]``.

        ``target`` holds the spectral coordinates of ``x1``.
        """
        d2, grad = self.distance.dist2_and_grad(x, target)
        g2 = (grad * grad).sum(-1)
        tiny = torch.finfo(x.dtype).tiny ** 0.5
        u = -2.0 * (d2 / g2.clamp_min(tiny) / (1.0 - t)).unsqueeze(-1) * grad
        speed = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        return u * (self.max_speed / speed.clamp_min(self.max_speed))

    @torch.no_grad()
    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
               generator: Optional[torch.Generator] = None) -> PathSample:
        """Paths from ``x0 [n, 3]`` to ``x1 [n, 3]`` with time offsets ``t [n]`` in ``[0, 1)``: every Euler state.

        The states are flattened to ``steps * n`` targets (state ``j`` of every path first).
        """
        target, _ = self.distance.embed(x1)
        s = self.steps
        xs, ts, us = [], [], []
        x = x0
        # a first step of length t / steps brings each path onto its own grid
        x = self.manifold.projx(x + self.velocity(x, target, torch.zeros_like(t)) * (t / s).unsqueeze(-1))
        for j in range(s):
            tj = (j + t) / s
            u = self.velocity(x, target, tj)
            xs.append(x)
            ts.append(tj)
            us.append(u)
            x = self.manifold.projx(x + u / s)
        rep = lambda z: z.repeat(s, 1)  # noqa: E731
        return PathSample(x0=rep(x0), x1=rep(x1), t=torch.cat(ts), xt=torch.cat(xs), ut=torch.cat(us))
