"""The unit sphere S^d embedded in R^(d+1), with closed-form geometry that is safe at x = y and u = 0."""

from __future__ import annotations

import math

import torch

from ._numerics import dot, norm, orthonormal_complement, safe_sqrt, tiny
from .base import Manifold, batch_shape


class Sphere(Manifold):
    """The unit sphere ``S^d = {x in R^(d+1) : |x| = 1}`` with the round metric.

    Distances use ``2 atan2(|x - y|, |x + y|)``, exact at ``y = x`` (zero, with finite
    gradients) and accurate up to the antipode; ``expmap`` uses a Taylor branch of
    ``sin(t)/t`` near zero. The base distribution is uniform.

    Args:
        dim: intrinsic dimension ``d >= 1`` (``Sphere(2)`` is the globe).
    """

    name = "Sphere"
    compact = True
    ambient_metric = True
    injectivity_radius = math.pi
    symmetric_random_walk = True

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
        return x / norm(x, keepdim=True).clamp_min(tiny(x.dtype))

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``u - <x, u> x``; shapes ``[..., d+1]``."""
        return u - dot(x, u, keepdim=True) * x

    def tangent_frame(self, x: torch.Tensor) -> torch.Tensor:
        """An orthonormal basis ``[..., d, d+1]`` of ``x``'s orthogonal complement (the differential of ``x / |x|``)."""
        return orthonormal_complement(x)

    def inner(self, x, u, v=None, *, keepdim: bool = False) -> torch.Tensor:
        """Euclidean inner product of tangent vectors at ``x``; shape ``[...]``."""
        out = dot(u, u if v is None else v, keepdim=keepdim)
        return out.expand(torch.broadcast_shapes(out.shape, x.shape[:-1] + ((1,) if keepdim else ())))

    def norm(self, x, u, *, keepdim: bool = False) -> torch.Tensor:
        """``|u|`` with a zero gradient at ``u = 0``; shape ``[...]``."""
        return norm(u, keepdim=keepdim)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``cos(|u|) x + sin(|u|)/|u| u``; shapes ``[..., d+1]``.

        ``|u|`` is floored at about 1e-19 (see :func:`safe_sqrt`), where ``sin(n)/n`` is exactly 1
        and its gradient is multiplied by a zero one, so no Taylor branch is needed.
        """
        n = norm(u, keepdim=True)
        return torch.addcmul(torch.cos(n) * x, torch.sin(n) / n, u)

    @staticmethod
    def _fold(x: torch.Tensor, y: torch.Tensor):
        """Shared first half of ``dist`` and ``logmap`` for unit vectors ``[..., d+1]``.

        With ``s = sign(<x, y>)``, ``z = y - s x`` is the shorter of ``y - x`` and ``y + x``, so it
        is computed without cancellation, and ``|y -+ x|^2 = 4 - |z|^2`` gives the longer one.
        Returns ``s``, ``z``, ``|z|^2`` and ``<x, z>``, all keeping the last dimension.
        """
        c = dot(x, y, keepdim=True)
        s = torch.sign(c)
        z = torch.addcmul(y, s, x, value=-1.0)
        return s, z, dot(z, z, keepdim=True), c - s

    @staticmethod
    def _angle(s: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The angle from :meth:`_fold`: ``2 atan2(|z|, |y + s x|)`` mirrored to ``[pi/2, pi]`` when ``s < 0``."""
        h = torch.atan2(safe_sqrt(z2), torch.sqrt(4.0 - z2))
        # (1 - s) pi/2 + s 2h: exactly 2h when s = 1, so small angles keep full relative precision
        return torch.addcmul((1.0 - s) * (math.pi / 2), s, 2.0 * h)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """Great-circle distance in ``[0, pi]``: ``2 atan2(|x - y|, |x + y|)``; shape ``[...]``.

        Accurate to the dtype's precision near ``y = x`` and near the antipode, unlike ``acos``,
        with finite gradients at both.
        """
        s, _, z2, _ = self._fold(x, y)
        theta = self._angle(s, z2)
        return theta if keepdim else theta.squeeze(-1)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Tangent vector at ``x`` of length ``dist(x, y)`` pointing to ``y``; zero at ``y = x``.

        At the exact antipode the direction is undefined and the zero vector is returned.
        """
        s, z, z2, xz = self._fold(x, y)
        w = torch.addcmul(z, xz, x, value=-1.0)  # proju(x, z); its norm^2 is |z|^2 - <x, z>^2
        return self._angle(s, z2) / safe_sqrt(z2 - xz * xz) * w

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Parallel transport ``v - <y, v> / (1 + <x, y>) (x + y)`` along the minimising geodesic."""
        xy = x + y
        half_sq = 0.5 * dot(xy, xy, keepdim=True)  # equals 1 + <x, y> on the sphere, without cancellation
        return v - dot(y, v, keepdim=True) / half_sq.clamp_min(tiny(half_sq.dtype)) * xy

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Uniform samples, shape ``[*shape, d+1]``."""
        z = torch.randn(*batch_shape(shape), self.ambient_dim, dtype=dtype, device=device, generator=generator)
        return self.projx(z)

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """``-log Vol(S^d)`` for every point; shape ``[...]``."""
        return torch.full(x.shape[:-1], -math.log(self.volume), dtype=x.dtype, device=x.device)

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        err = (norm(x) - 1.0).abs()
        return self._tolerance_report(err, atol, "are off the sphere (| |x| - 1 | too large)")

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        err = dot(x, u).abs()
        limit = atol + rtol * norm(u)
        return self._tolerance_report(err, limit, "are not tangent (|<x, u>| too large)")
