"""Conditional probability paths for flow matching: geodesic interpolation and its velocity."""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
    transport of ``log_{x0}(x1)`` to ``x_t`` (closed form, no autograd). Any other manifold with
    exp and log maps gets the velocity by differentiating ``t -> x_t`` with autograd.

    Args:
        manifold: the manifold.
        velocity: ``"auto"``, ``"transport"`` (closed form) or ``"autograd"``.
    """

    def __init__(self, manifold: Manifold, velocity: str = "auto"):
        if velocity not in ("auto", "transport", "autograd"):
            raise ValueError(f"velocity must be 'auto', 'transport' or 'autograd', got {velocity!r}")
        if velocity == "auto":
            velocity = "transport" if _has_closed_form(manifold) else "autograd"
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
        else:
            # samples are independent, so one backward pass per coordinate gives every d x_t / d t
            with torch.enable_grad():
                tg = t.detach().requires_grad_(True)
                xt = m.expmap(x0, tg.unsqueeze(-1) * u)
                cols = [torch.autograd.grad(xt[..., k].sum(), tg, retain_graph=True)[0] for k in range(xt.shape[-1])]
            xt, ut = xt.detach(), torch.stack(cols, dim=-1)
        return PathSample(x0=x0, x1=x1, t=t, xt=xt, ut=ut)
