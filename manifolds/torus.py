"""The flat torus T^d = [0, 2 pi)^d in angle coordinates."""

from __future__ import annotations

import functools
import math

import torch

from .base import AmbientMetric, Manifold, batch_shape

TWO_PI = 2.0 * math.pi


@functools.lru_cache(maxsize=None)
def _below_two_pi(dtype: torch.dtype) -> float:
    """The largest number of ``dtype`` below 2 pi."""
    two_pi = torch.tensor(TWO_PI, dtype=dtype)
    return float(torch.nextafter(two_pi, torch.zeros((), dtype=dtype)))


def wrap_angle(d: torch.Tensor) -> torch.Tensor:
    """Map angle differences to ``[-pi, pi]`` (derivative 1 everywhere); shape ``[...]``."""
    return d - TWO_PI * torch.round(d / TWO_PI)


class FlatTorus(AmbientMetric, Manifold):
    """The flat torus ``T^d``: points are angles in ``[0, 2 pi)^d``, the metric is Euclidean.

    ``expmap(x, u) = (x + u) mod 2 pi``; ``logmap`` wraps each coordinate difference to
    ``[-pi, pi]``. The base distribution is uniform with density ``(2 pi)^-d``.

    Args:
        dim: number of angles ``d >= 1``.
    """

    name = "FlatTorus"
    compact = True
    injectivity_radius = math.pi
    symmetric_random_walk = True
    angle_coordinates = True

    def __init__(self, dim: int = 2):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"FlatTorus dimension must be an integer >= 1, got {dim!r}")
        self.dim = dim
        self.ambient_dim = dim

    @property
    def volume(self) -> float:
        """``(2 pi)^d``."""
        return TWO_PI**self.dim

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Reduce angles to ``[0, 2 pi)``; shape ``[..., d]``."""
        # a tiny negative angle rounds up to exactly 2 pi in floating point: clamp to the float below
        return torch.remainder(x, TWO_PI).clamp_max(_below_two_pi(x.dtype))

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Every vector is tangent: ``u`` broadcast against ``x``."""
        return u.expand(torch.broadcast_shapes(x.shape, u.shape))

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``(x + u) mod 2 pi``."""
        return self.projx(x + u)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`expmap` (it already lands on the torus)."""
        return self.expmap(x, u)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Coordinate-wise shortest angle difference in ``[-pi, pi]``."""
        return wrap_angle(y - x)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """``|logmap(x, y)|``; shape ``[...]``."""
        return torch.linalg.vector_norm(wrap_angle(y - x), dim=-1, keepdim=keepdim)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Flat metric: transport is the identity."""
        return v.expand(torch.broadcast_shapes(x.shape, y.shape, v.shape))

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Uniform angles, shape ``[*shape, d]``."""
        u = torch.rand(*batch_shape(shape), self.ambient_dim, dtype=dtype, device=device, generator=generator)
        return u * TWO_PI

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """``-d log(2 pi)``; shape ``[...]``."""
        return torch.full(x.shape[:-1], -self.dim * math.log(TWO_PI), dtype=x.dtype, device=x.device)

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        err = torch.maximum(-x, x - TWO_PI).clamp_min(0.0).amax(dim=-1)
        return self._tolerance_report(err, atol, "are off the torus (angles outside [0, 2 pi])")

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        return True, None
