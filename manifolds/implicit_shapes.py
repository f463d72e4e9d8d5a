"""Level-set functions of the named implicit surfaces (sphere, ellipsoid, torus).

With their gradients and exact samplers, and the checks of the numbers that define a surface.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

from ._numerics import norm, safe_sqrt


class SphereDistance:
    """Signed distance ``|x - c| - r`` to a sphere, with gradient ``(x - c)/|x - c|`` (zero at ``c``)."""

    def __init__(self, radius: float, center: Tuple[float, float, float]):
        self.radius = radius
        self.center = center

    def _offset(self, x: torch.Tensor) -> torch.Tensor:
        if self.center == (0.0, 0.0, 0.0):
            return x
        return x - x.new_tensor(self.center)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distance ``[...]`` of points ``x [..., 3]`` to the sphere."""
        return norm(self._offset(x)) - self.radius

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Gradient ``[..., 3]`` of the signed distance at ``x [..., 3]``."""
        d = self._offset(x)
        return d / norm(d, keepdim=True)

    def sample(self, n: int, dtype: torch.dtype, device, generator) -> torch.Tensor:
        """Normalised Gaussians: exactly uniform."""
        z = torch.randn(n, 3, dtype=dtype, device=device, generator=generator)
        out = self.radius * z / norm(z, keepdim=True)
        if self.center != (0.0, 0.0, 0.0):
            out = out + out.new_tensor(self.center)
        return out


class EllipsoidLevel:
    """``|(x/a, y/b, z/c)| - 1`` for an axis-aligned ellipsoid; gradient zero at the centre."""

    def __init__(self, axes: Tuple[float, float, float], center: Tuple[float, float, float]):
        self.axes = axes
        self.center = center

    def _scaled(self, x: torch.Tensor):
        if self.center != (0.0, 0.0, 0.0):
            x = x - x.new_tensor(self.center)
        a, b, c = self.axes
        return torch.stack([x[..., 0] / a, x[..., 1] / b, x[..., 2] / c], -1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Level-set value ``[...]`` at points ``x [..., 3]`` (zero on the ellipsoid)."""
        return norm(self._scaled(x)) - 1.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Gradient ``[..., 3]`` of the level-set function at ``x [..., 3]``."""
        q = self._scaled(x)
        a, b, c = self.axes
        w = torch.stack([q[..., 0] / a, q[..., 1] / b, q[..., 2] / c], -1)
        return w / norm(q, keepdim=True)


class TorusDistance:
    """Signed distance ``sqrt((rho - R)^2 + z^2) - r`` to a torus of revolution about the z axis.

    ``rho = sqrt(x^2 + y^2)``. Both square roots are floored (:func:`safe_sqrt`), so values and
    gradients are finite on the z axis (gradient along z only) and on the core circle (gradient zero).
    """

    def __init__(self, R: float, r: float):
        self.R = R
        self.r = r

    def _parts(self, x: torch.Tensor):
        rho = safe_sqrt(x[..., 0] * x[..., 0] + x[..., 1] * x[..., 1])
        a = rho - self.R
        d = safe_sqrt(a * a + x[..., 2] * x[..., 2])
        return rho, a, d

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distance ``[...]`` of points ``x [..., 3]`` to the torus."""
        return self._parts(x)[2] - self.r

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Gradient ``[..., 3]`` of the signed distance at ``x [..., 3]``."""
        rho, a, d = self._parts(x)
        radial = a / d / rho
        return torch.stack([radial * x[..., 0], radial * x[..., 1], x[..., 2] / d], -1)

    def sample(self, n: int, dtype: torch.dtype, device, generator) -> torch.Tensor:
        """Exactly area-uniform samples by inverting the CDF of the tube angle.

        The area element is ``r (R + r cos(theta)) dtheta dphi``: ``phi`` is uniform and ``theta``
        on ``[-pi, pi]`` has the CDF ``(theta + pi + k sin(theta)) / (2 pi)`` with ``k = r/R < 1``,
        inverted by a bracketed Newton iteration (bisection whenever Newton leaves the bracket).
        """
        u = torch.rand(2, n, dtype=dtype, device=device, generator=generator)
        k = self.r / self.R
        target = (2.0 * u[0] - 1.0) * math.pi
        lo = torch.full_like(target, -math.pi)
        hi = torch.full_like(target, math.pi)
        theta = target / (1.0 + k)
        for _ in range(60 if dtype == torch.float64 else 40):
            g = theta + k * torch.sin(theta) - target
            lo = torch.where(g < 0, theta, lo)
            hi = torch.where(g > 0, theta, hi)
            newton = theta - g / (1.0 + k * torch.cos(theta))
            inside = (newton > lo) & (newton < hi)
            theta = torch.where(inside, newton, 0.5 * (lo + hi))
        phi = 2.0 * math.pi * u[1]
        ring = self.R + self.r * torch.cos(theta)
        return torch.stack([ring * torch.cos(phi), ring * torch.sin(phi), self.r * torch.sin(theta)], -1)


def parse_bounds(bounds) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``((xmin, ymin, zmin), (xmax, ymax, zmax))`` as two tuples of floats, validated."""
    msg = "bounds must be ((xmin, ymin, zmin), (xmax, ymax, zmax)) with finite numbers and min < max"
    try:
        lo, hi = bounds
        lo = tuple(float(v) for v in lo)
        hi = tuple(float(v) for v in hi)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{msg}, got {bounds!r}") from e
    if len(lo) != 3 or len(hi) != 3:
        raise ValueError(f"{msg}; got corners with {len(lo)} and {len(hi)} coordinates")
    if not all(math.isfinite(v) for v in lo + hi):
        raise ValueError(f"{msg}; got non-finite values {bounds!r}")
    if not all(a < b for a, b in zip(lo, hi)):
        raise ValueError(f"{msg}; got min {lo} not below max {hi} in every coordinate")
    return lo, hi


def positive_int(value, what: str, minimum: int = 1) -> int:
    """``value`` if it is an integer ``>= minimum`` (not a bool), else ``ValueError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def positive_float(value, what: str) -> float:
    """``float(value)`` if it is positive and finite, else ``ValueError`` naming ``what``."""
    try:
        out = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be a positive finite number, got {value!r}") from e
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{what} must be a positive finite number, got {value!r}")
    return out


def fmt(v: float) -> str:
    """A number as it reads in a surface's name (``%g``)."""
    return f"{v:g}"


__all__ = ["SphereDistance", "EllipsoidLevel", "TorusDistance", "parse_bounds", "positive_int", "positive_float", "fmt"]
