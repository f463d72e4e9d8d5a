"""The unit sphere S^d embedded in R^(d+1), with closed-form geometry that is safe at x = y and u = 0."""

from __future__ import annotations

import math
from typing import Optional

import torch

from ._numerics import safe_ratio, sinc, tiny
from .base import AmbientMetric, Manifold, batch_shape


class Sphere(AmbientMetric, Manifold):
    """The unit sphere ``S^d = {x in R^(d+1) : |x| = 1}`` with the round metric.

    Distances use ``2 atan2(|x - y|, |x + y|)``, exact at ``y = x`` (zero, with finite
    gradients) and accurate up to the antipode; ``expmap`` uses a Taylor branch of
    ``sin(t)/t`` near zero. The base distribution is uniform.

    Args:
        dim: intrinsic dimension ``d >= 1`` (``Sphere(2)`` is the globe).
    """

    name = "Sphere"
    compact = True
    injectivity_radius = math.pi

    def __init__(self, dim: int = 2):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"Sphere dimension must be an integer >= 1, got {dim!r}")
        self.dim = dim
        self.ambient_dim = dim + 1

    @property
    def volume(self) -> float:
        """Surface area of S^d: ``2 pi^((d+1)/2) / Gamma((d+1)/2)``."""
        k = (self.dim + 1) / 2
        return math.exp(math.log(2.0) + k * math.log(math.pi) - math.lgamma(k))

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Radial projection ``x / |x|``; shape ``[..., d+1]``."""
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(tiny(x.dtype))

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``u - <x, u> x``; shapes ``[..., d+1]``."""
        return u - (x * u).sum(-1, keepdim=True) * x

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``cos(|u|) x + sin(|u|)/|u| u``; shapes ``[..., d+1]``."""
        n = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        return torch.cos(n) * x + sinc(n) * u

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """Great-circle distance ``2 atan2(|x - y|, |x + y|)`` in ``[0, pi]``; shape ``[...]``."""
        a = torch.linalg.vector_norm(x - y, dim=-1, keepdim=keepdim)
        b = torch.linalg.vector_norm(x + y, dim=-1, keepdim=keepdim)
        return 2.0 * torch.atan2(a, b)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Tangent vector at ``x`` of length ``dist(x, y)`` pointing to ``y``; zero at ``y = x``.

        At the exact antipode the direction is undefined and the zero vector is returned.
        """
        c = (x * y).sum(-1, keepdim=True)
        # y - s x is small when y is near s x; subtracting it first avoids cancellation in the projection
        s = torch.where(c >= 0, torch.ones_like(c), -torch.ones_like(c))
        w = self.proju(x, y - s * x)
        theta = self.dist(x, y, keepdim=True)
        return safe_ratio(theta, torch.linalg.vector_norm(w, dim=-1, keepdim=True), at_zero=1.0) * w

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Parallel transport ``v - <y, v> / (1 + <x, y>) (x + y)`` along the minimising geodesic."""
        xy = x + y
        half_sq = 0.5 * (xy * xy).sum(-1, keepdim=True)  # equals 1 + <x, y> on the sphere, without cancellation
        return v - (y * v).sum(-1, keepdim=True) / half_sq.clamp_min(tiny(half_sq.dtype)) * xy

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Uniform samples, shape ``[*shape, d+1]``."""
        z = torch.randn(*batch_shape(shape), self.ambient_dim, dtype=dtype, device=device, generator=generator)
        return self.projx(z)

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """``-log Vol(S^d)`` for every point; shape ``[...]``."""
        return torch.full(x.shape[:-1], -math.log(self.volume), dtype=x.dtype, device=x.device)

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        err = (torch.linalg.vector_norm(x, dim=-1) - 1.0).abs()
        return self._tolerance_report(err, atol, "are off the sphere (| |x| - 1 | too large)")

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        err = (x * u).sum(-1).abs()
        limit = atol + rtol * torch.linalg.vector_norm(u, dim=-1)
        return self._tolerance_report(err, limit, "are not tangent (|<x, u>| too large)")
