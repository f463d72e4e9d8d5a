"""Products of manifolds over concatenated coordinates, e.g. S^2 x T^2."""

from __future__ import annotations

import math
from typing import List, Tuple

import torch

from ._numerics import safe_sqrt
from .base import Manifold, batch_shape

ALL_FACTORS = ("compact", "has_geodesics", "exact_expmap", "ambient_metric", "symmetric_random_walk", "reversible")
"""Capabilities a product has when every factor has them."""
ANY_FACTOR = ("has_boundary", "piecewise_flat")
"""Properties a product has when any factor has them."""


class ProductManifold(Manifold):
    """``M_1 x M_2 x ...`` with the product metric; a point concatenates the factors' coordinates.

    Distances combine as ``sqrt(sum_i dist_i^2)``, the base distribution is the product of the
    factors' base distributions, and the injectivity radius is the smallest of the factors'.

    Args:
        *manifolds: two or more factors (instances of :class:`manifolds.Manifold`).
    """

    name = "ProductManifold"

    def __init__(self, *manifolds: Manifold):
        super().__init__()
        if len(manifolds) < 1:
            raise ValueError("ProductManifold needs at least one factor")
        for i, m in enumerate(manifolds):
            if not isinstance(m, Manifold):
                raise TypeError(f"factor {i} must be a manifolds.Manifold, got {type(m).__name__}")
        self.parts = torch.nn.ModuleList(manifolds)
        self.sizes: List[int] = [m.ambient_dim for m in manifolds]
        self.dim = sum(m.dim for m in manifolds)
        self.ambient_dim = sum(self.sizes)
        # capabilities (see manifolds.Manifold): what every factor can do, or what any factor has
        for name in ALL_FACTORS:
            setattr(self, name, all(getattr(m, name) for m in manifolds))
        for name in ANY_FACTOR:
            setattr(self, name, any(getattr(m, name) for m in manifolds))
        self.injectivity_radius = min(m.injectivity_radius for m in manifolds)

    @property
    def factors(self) -> Tuple[Manifold, ...]:
        """The factor manifolds, in coordinate order (a product of products is not flattened)."""
        return tuple(self.parts)

    def extra_repr(self) -> str:
        """The factors, for ``repr``."""
        return ", ".join(repr(m) for m in self.factors)

    @property
    def volume(self) -> float:
        """Product of the factors' volumes."""
        return math.prod(m.volume for m in self.factors)

    def split(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The factors' coordinates of ``x``: a tuple of ``[..., ambient_dim_i]`` views."""
        return torch.split(x, self.sizes, dim=-1)

    def projx(self, x):
        """Project each factor; shape ``[..., ambient_dim]``."""
        return self._broadcast_map("projx", x)

    def proju(self, x, u):
        """Tangent projection factor by factor."""
        return self._broadcast_map("proju", x, u)

    def proju_orthogonal(self, x, u):
        """Orthogonal tangent projection factor by factor."""
        return self._broadcast_map("proju_orthogonal", x, u)

    def tangent_field(self, x, u):
        """Each factor's :meth:`~manifolds.Manifold.tangent_field` on its coordinates."""
        return self._broadcast_map("tangent_field", x, u)

    def normal_coordinates(self, x):
        """Each factor's :meth:`~manifolds.Manifold.normal_coordinates`, concatenated."""
        return self._broadcast_map("normal_coordinates", x)

    def geodesic(self, x, u, t):
        """Each factor's geodesic point and velocity, concatenated."""
        lead = torch.broadcast_shapes(x.shape[:-1], u.shape[:-1], t.shape)
        xs, us = (self.split(z.expand(lead + z.shape[-1:])) for z in (x, u))
        outs = [m.geodesic(a, b, t.expand(lead)) for m, a, b in zip(self.factors, xs, us)]
        return torch.cat([o[0] for o in outs], dim=-1), torch.cat([o[1] for o in outs], dim=-1)

    def egrad2rgrad(self, x, u):
        """Riemannian gradient factor by factor."""
        return self._broadcast_map("egrad2rgrad", x, u)

    def expmap(self, x, u):
        """Exponential maps of the factors."""
        return self._broadcast_map("expmap", x, u)

    def retr(self, x, u):
        """Retractions of the factors."""
        return self._broadcast_map("retr", x, u)

    def logmap(self, x, y):
        """Logarithmic maps of the factors."""
        return self._broadcast_map("logmap", x, y)

    def transp(self, x, y, v):
        """Parallel transport factor by factor."""
        return self._broadcast_map("transp", x, y, v)

    def _broadcast_map(self, fn: str, *tensors: torch.Tensor) -> torch.Tensor:
        lead = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
        tensors = tuple(t.expand(lead + t.shape[-1:]) for t in tensors)
        parts = zip(*(self.split(t) for t in tensors))
        return torch.cat([getattr(m, fn)(*p) for m, p in zip(self.factors, parts)], dim=-1)

    def inner(self, x, u, v=None, *, keepdim: bool = False):
        """Sum of the factors' inner products; shape ``[...]``."""
        if v is None:
            v = u
        lead = torch.broadcast_shapes(x.shape[:-1], u.shape[:-1], v.shape[:-1])
        xs, us, vs = (self.split(t.expand(lead + t.shape[-1:])) for t in (x, u, v))
        return sum(m.inner(a, b, c, keepdim=keepdim) for m, a, b, c in zip(self.factors, xs, us, vs))

    def component_inner(self, x, u, v=None):
        """Each factor's inner product, repeated over its coordinates (geoopt's adaptive optimisers)."""
        if v is None:
            v = u
        lead = torch.broadcast_shapes(x.shape[:-1], u.shape[:-1], v.shape[:-1])
        xs, us, vs = (self.split(t.expand(lead + t.shape[-1:])) for t in (x, u, v))
        return torch.cat(
            [m.component_inner(a, b, c).expand(lead + (n,))
             for m, n, a, b, c in zip(self.factors, self.sizes, xs, us, vs)],
            dim=-1,
        )

    def norm(self, x, u, *, keepdim: bool = False):
        """Riemannian norm; shape ``[...]``."""
        lead = torch.broadcast_shapes(x.shape[:-1], u.shape[:-1])
        xs, us = (self.split(t.expand(lead + t.shape[-1:])) for t in (x, u))
        return safe_sqrt(sum(m.norm(a, b, keepdim=keepdim) ** 2 for m, a, b in zip(self.factors, xs, us)))

    def dist(self, x, y, *, keepdim: bool = False):
        """``sqrt(sum_i dist_i^2)`` with a zero (not NaN) gradient at ``x = y``; shape ``[...]``."""
        lead = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        xs, ys = (self.split(t.expand(lead + t.shape[-1:])) for t in (x, y))
        return safe_sqrt(sum(m.dist(a, b, keepdim=keepdim) ** 2 for m, a, b in zip(self.factors, xs, ys)))

    def random_base(self, *shape, dtype=None, device=None, generator=None):
        """Independent samples of each factor's base distribution, concatenated."""
        shape = batch_shape(shape)
        return torch.cat(
            [m.random_base(*shape, dtype=dtype, device=device, generator=generator) for m in self.factors], dim=-1
        )

    def divergence_correction(self, x, v):
        """Sum of the factors' divergence corrections; shape ``[...]``."""
        lead = torch.broadcast_shapes(x.shape[:-1], v.shape[:-1])
        xs, vs = (self.split(t.expand(lead + t.shape[-1:])) for t in (x, v))
        return sum(m.divergence_correction(a, b) for m, a, b in zip(self.factors, xs, vs))

    def base_logprob(self, x):
        """Sum of the factors' base log-densities; shape ``[...]``."""
        return sum(m.base_logprob(p) for m, p in zip(self.factors, self.split(x)))

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        for i, (m, p) in enumerate(zip(self.factors, self.split(x))):
            ok, reason = m._check_point_on_manifold(p, atol=atol, rtol=rtol)
            if not ok:
                return False, f"factor {i} ({m}): {reason}"
        return True, None

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        for i, (m, p, w) in enumerate(zip(self.factors, self.split(x), self.split(u))):
            ok, reason = m._check_vector_on_tangent(p, w, atol=atol, rtol=rtol)
            if not ok:
                return False, f"factor {i} ({m}): {reason}"
        return True, None
