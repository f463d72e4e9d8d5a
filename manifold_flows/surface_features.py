"""Network inputs that see a mesh's intrinsic geometry: Laplace-Beltrami eigenfunctions of the point."""

from __future__ import annotations

import math

import torch
from torch import nn


class SpectralFeatures(nn.Module):
    """The first ``k`` non-constant Laplace-Beltrami eigenfunctions of a mesh at a point, ``[..., 3] -> [..., k]``.

    Vertex values ``phi_i`` (normalised to ``int phi_i^2 dA = area``, so each feature has mean
    square 1 over the surface) are interpolated linearly inside the face holding the point:
    continuous on the mesh and differentiable in ``x`` inside faces, so divergences of fields
    built on them are defined as for any other field on the mesh. The table is saved with the
    weights (eigenvectors of repeated eigenvalues are determined only up to a rotation, so a
    recomputation need not reproduce them).

    Args:
        mesh: a :class:`manifolds.Mesh`.
        k: number of eigenfunctions.
    """

    def __init__(self, mesh, k: int):
        super().__init__()
        if k < 1:
            raise ValueError(f"need at least one eigenfunction, got k={k}")
        _, vecs = mesh.eigenpairs(k)
        object.__setattr__(self, "mesh", mesh)  # a reference: the geometry is not the network's state
        self.out_dim = int(k)
        self.register_buffer("table", torch.as_tensor(vecs * math.sqrt(mesh.area), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., 3] -> [..., k]`` at points on the mesh."""
        face, bary = self.mesh.barycentric(x)
        corners = self.mesh.faces.to(x.device)[face]  # [..., 3]
        return (bary.unsqueeze(-1) * self.table.to(x.dtype)[corners]).sum(-2)

    def __deepcopy__(self, memo):
        memo[id(self.mesh)] = self.mesh
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        import copy

        for key, value in self.__dict__.items():
            new.__dict__[key] = copy.deepcopy(value, memo)
        return new

    def extra_repr(self) -> str:
        """The number of features, for ``repr``."""
        return f"k={self.out_dim}"
