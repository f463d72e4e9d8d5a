"""Boundaries of open meshes: the boundary edges and the collar factor that keeps flows on the surface and inside it."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import nn

from ._numerics import dot, safe_sqrt
from .mesh_index import GeometryBuffers


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """Edges ``[E, 2]`` (vertex pairs) that belong to one face only: the boundary of an open mesh."""
    e = np.sort(np.concatenate([faces[:, [1, 2]], faces[:, [2, 0]], faces[:, [0, 1]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq[counts == 1]


BOUNDARY_MODES = ("tangent", "stop")


class BoundaryCollar(GeometryBuffers, nn.Module):
    """A collar along the boundary of an open mesh that keeps flows on the surface and inside it.

    ``rho(x) = s^2 (3 - 2 s)``, ``s = min(1, d(x) / width)``, is 0 on the boundary and 1 farther
    than ``width`` from it; ``d(x)`` is the distance in R^3 from ``x`` to the nearest boundary edge
    (a segment), which near the boundary is the distance along the surface. :meth:`apply` damps
    fields in the collar in one of two ways:

    * ``"tangent"`` (default): only the component across the boundary is damped,
      ``u - (1 - rho) <u, n> n`` with ``n`` the unit direction from the nearest boundary point to
      ``x`` in the plane of ``x``'s face. On the boundary fields are tangent to it, so mass moves
      along walls and around inner corners, as the paths of a flow on a surface with boundary do.
    * ``"stop"``: the whole field is multiplied by ``rho``, so it vanishes on the boundary. Mass
      that flows along a wall is slowed to a halt there, and piles up in the collar (on the maze
      a quarter of a trained model's samples lay within the collar, which holds 5% of the area).

    Either way no trajectory leaves through the boundary, the damped field is Lipschitz away from
    the bisectors of convex corners (a set of area of order ``width^2``) and its divergence is
    bounded, so likelihoods by the augmented ODE stay exact (tested: they integrate to 1 on open
    meshes). Away from the collar fields are unchanged.

    Args:
        vertices: float64 positions ``[n, 3]``.
        edges: boundary edges ``[E, 2]`` (:func:`boundary_edges`).
        width: collar width (a length).
        mode: ``"tangent"`` or ``"stop"``.
        chunk: boundary edges per block of the distance computation.
    """

    def __init__(self, vertices: np.ndarray, edges: np.ndarray, width: float, *, mode: str = "tangent",
                 chunk: int = 1024):
        super().__init__()
        if len(edges) == 0:
            raise ValueError("a boundary collar needs at least one boundary edge")
        if not width > 0:
            raise ValueError(f"the collar width must be positive, got {width}")
        if mode not in BOUNDARY_MODES:
            raise ValueError(f"the boundary mode must be one of {BOUNDARY_MODES}, got {mode!r}")
        a, b = vertices[edges[:, 0]], vertices[edges[:, 1]]
        self.width, self.mode, self.chunk, self.n_edges = float(width), mode, int(chunk), len(edges)
        self.register_buffer("start", torch.from_numpy(a), persistent=False)  # [E, 3]
        self.register_buffer("along", torch.from_numpy(b - a), persistent=False)  # [E, 3]
        self.register_buffer("inv_len2", torch.from_numpy(1.0 / ((b - a) ** 2).sum(1)), persistent=False)  # [E]

    def nearest(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The nearest boundary edge of each point: ``(squared distance [...], offset [..., 3], edge [..., 3])``.

        The offset runs from the edge's nearest point to ``x``; differentiable in ``x``.
        """
        t = self.cast(x.dtype, x.device)
        xe = x.unsqueeze(-2)  # [..., 1, 3]
        best = None
        for i in range(0, self.n_edges, self.chunk):
            a, d, inv = t["start"][i:i + self.chunk], t["along"][i:i + self.chunk], t["inv_len2"][i:i + self.chunk]
            w = xe - a  # [..., e, 3]
            s = (dot(w, d) * inv).clamp(0.0, 1.0)
            r = w - s.unsqueeze(-1) * d
            d2, idx = dot(r, r).min(-1)
            offset = torch.gather(r, -2, idx[..., None, None].expand(*idx.shape, 1, 3)).squeeze(-2)
            if best is None:
                best = (d2, offset, d[idx])
            else:
                closer = d2 < best[0]
                wider = closer.unsqueeze(-1)
                best = (torch.where(closer, d2, best[0]), torch.where(wider, offset, best[1]),
                        torch.where(wider, d[idx], best[2]))
        return best

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """Distance ``[...]`` from points ``x [..., 3]`` to the nearest boundary edge; differentiable in ``x``."""
        return safe_sqrt(self.nearest(x)[0])

    def _rho(self, distance: torch.Tensor) -> torch.Tensor:
        s = (distance / self.width).clamp(max=1.0)
        return s * s * (3.0 - 2.0 * s)

    def apply(self, x: torch.Tensor, u: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
        """The field ``u [..., 3]`` at ``x [..., 3]`` damped in the collar (``normal``: unit normal of x's face)."""
        d2, offset, edge = self.nearest(x.to(u.dtype))
        rho = self._rho(safe_sqrt(d2)).unsqueeze(-1)
        if self.mode == "stop":
            return rho * u
        normal = normal.to(u.dtype)
        offset = offset - dot(offset, normal, keepdim=True) * normal  # in the plane of x's face
        # on the boundary itself the offset vanishes: the direction across the edge takes its place
        # (only the line matters: the damped component is the same for n and -n)
        across = torch.where(dot(offset, offset, keepdim=True) > (1e-6 * self.width) ** 2, offset,
                             torch.linalg.cross(normal, edge, dim=-1))
        n = across / safe_sqrt(dot(across, across, keepdim=True))
        return u - (1.0 - rho) * dot(u, n, keepdim=True) * n

    def extra_repr(self) -> str:
        """The number of boundary edges, the collar width and the mode, for ``repr``."""
        return f"edges={self.n_edges}, width={self.width:.4g}, mode={self.mode}"
