"""Conditional probability paths for flow matching: geodesic interpolation and its velocity, and simulated premetric paths."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from manifolds import Euclidean, FlatTorus, Manifold, ProductManifold, Sphere


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


def _has_closed_form(m: Manifold) -> bool:
    if isinstance(m, ProductManifold):
        return all(_has_closed_form(f) for f in m.factors)
    return isinstance(m, (Sphere, FlatTorus, Euclidean))


class GeodesicPath:
    """``x_t = exp_{x0}(t log_{x0}(x1))`` with velocity ``u_t = d/dt x_t``.

    On the sphere, flat torus, Euclidean space and their products the velocity is the parallel
    transport of ``log_{x0}(x1)`` to ``x_t`` (closed form, no autograd). Meshes trace the geodesic
    and return its velocity at ``x_t`` (``Mesh.geodesic``). Any other manifold with exp and log maps
    gets the velocity by differentiating ``t -> x_t`` with autograd.

    Args:
        manifold: the manifold.
        velocity: ``"auto"``, ``"transport"`` (closed form), ``"trace"`` (``manifold.geodesic``) or ``"autograd"``.
    """

    def __init__(self, manifold: Manifold, velocity: str = "auto"):
        if velocity not in ("auto", "transport", "autograd", "trace"):
            raise ValueError(f"velocity must be 'auto', 'transport', 'autograd' or 'trace', got {velocity!r}")
        if velocity == "auto":
            if _has_closed_form(manifold):
                velocity = "transport"
            else:
                velocity = "trace" if hasattr(manifold, "geodesic") else "autograd"
        self.manifold = manifold
        self.velocity = velocity

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
        """Points and velocities on the geodesics from ``x0 [B, D]`` to ``x1 [B, D]`` at ``t [B]``."""
        m = self.manifold
        u = m.logmap(x0, x1)
        tt = t.unsqueeze(-1)
        if self.velocity == "transport":
            xt = m.expmap(x0, tt * u)
            ut = m.transp(x0, xt, u)
        elif self.velocity == "trace":  # meshes: the traced geodesic's end point and velocity
            xt, ut = m.geodesic(x0, u, t)
        else:
            # samples are independent, so one backward pass per coordinate gives every d x_t / d t
            with torch.enable_grad():
                tg = t.detach().requires_grad_(True)
                xt = m.expmap(x0, tg.unsqueeze(-1) * u)
                cols = [torch.autograd.grad(xt[..., k].sum(), tg, retain_graph=True)[0] for k in range(xt.shape[-1])]
            xt, ut = xt.detach(), torch.stack(cols, dim=-1)
        return PathSample(x0=x0, x1=x1, t=t, xt=xt, ut=ut)


class PremetricPath(nn.Module):
    """Conditional paths of Riemannian Flow Matching from a premetric, simulated (Chen & Lipman, ICLR 2024, sec. 3.2).

    For a premetric ``d`` (here a spectral distance on a mesh) and the schedule ``kappa(t) = 1 - t``
    the conditional field is

        u_t(x | x1) = d log kappa / dt * d(x, x1) grad d / |grad d|^2 = -2 d^2 grad(d^2) / ((1 - t) |grad(d^2)|^2),

    which shrinks ``d(x_t, x1)`` as ``(1 - t) d(x0, x1)``. Paths have no closed form: they are
    simulated from ``x0`` with ``steps`` projected Euler steps on the uniform grid ``t_j = j / steps``
    (on which Euler reproduces the linear decay of ``d`` exactly to first order), and every point
    along each path is a regression target. Where ``grad(d^2)`` nearly vanishes away from ``x1``
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
        self.steps = int(steps)
        self.max_speed = 5.0 * math.sqrt(manifold.volume)

    def velocity(self, x: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``u_t(x | x1)`` ``[N, 3]`` at points ``x [N, 3]``, times ``t [N]``, with ``target`` the spectral coordinates of ``x1``."""
        d2, grad = self.distance.dist2_and_grad(x, target)
        g2 = (grad * grad).sum(-1)
        tiny = torch.finfo(x.dtype).tiny ** 0.5
        u = -2.0 * (d2 / g2.clamp_min(tiny) / (1.0 - t)).unsqueeze(-1) * grad
        speed = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        return u * (self.max_speed / speed.clamp_min(self.max_speed))

    @torch.no_grad()
    def simulate(self, x0: torch.Tensor, x1: torch.Tensor) -> PathSample:
        """Paths from ``x0 [B, 3]`` to ``x1 [B, 3]``: every Euler state, flattened to ``steps * B`` targets."""
        target, _ = self.distance.embed(x1)
        b, s = x0.shape[0], self.steps
        xs, ts, us = [], [], []
        x = x0
        for j in range(s):
            t = torch.full((b,), j / s, dtype=x0.dtype, device=x0.device)
            u = self.velocity(x, target, t)
            xs.append(x)
            ts.append(t)
            us.append(u)
            x = self.manifold.projx(x + u / s)
        rep = lambda z: z.repeat(s, 1)  # noqa: E731
        return PathSample(x0=rep(x0), x1=rep(x1), t=torch.cat(ts), xt=torch.cat(xs), ut=torch.cat(us))
