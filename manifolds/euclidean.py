"""Euclidean space R^d with a standard normal base distribution."""

from __future__ import annotations

import math

import torch

from .base import AmbientMetric, Manifold, batch_shape


class Euclidean(AmbientMetric, Manifold):
    """``R^d`` with the flat metric. Not compact: the base distribution is ``N(0, I)``.

    Args:
        dim: dimension ``d >= 1``.
    """

    name = "Euclidean"
    compact = False
    injectivity_radius = math.inf
    symmetric_random_walk = True

    def __init__(self, dim: int = 2):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Euclidean dimension must be an integer >= 1, got {dim!r}")
        self.dim = dim
        self.ambient_dim = dim

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Identity."""
        return x

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Identity (broadcast against ``x``)."""
        return u.expand(torch.broadcast_shapes(x.shape, u.shape))

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``x + u``."""
        return x + u

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``x + u``."""
        return x + u

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y - x``."""
        return y - x

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """``|y - x|``."""
        return torch.linalg.vector_norm(y - x, dim=-1, keepdim=keepdim)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Identity."""
        return v.expand(torch.broadcast_shapes(x.shape, y.shape, v.shape))

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Standard normal samples, shape ``[*shape, d]``."""
        return torch.randn(*batch_shape(shape), self.ambient_dim, dtype=dtype, device=device, generator=generator)

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal log-density; shape ``[...]``."""
        return -0.5 * (x * x).sum(-1) - 0.5 * self.dim * math.log(2.0 * math.pi)

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        return True, None

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        return True, None
