"""Hyperbolic space of curvature -c: the Poincare ball and the hyperboloid (Lorentz) model.

Both have wrapped-normal base distributions.
"""

from __future__ import annotations

import math

import torch

from . import _hyperbolic_math as hm
from ._numerics import atanhc, dot, log_sinhc, norm, safe_sqrt, sinhc, tanhc, tiny, xcothx
from .base import Manifold, batch_shape


class _Hyperbolic(Manifold):
    """Shared parameters and the wrapped-normal base of the two models.

    Base distribution: ``v ~ N(0, sigma^2 I_d)`` in orthonormal coordinates of the tangent space
    at the origin, pushed through the exponential map there. The exponential map at a point of
    a space of constant curvature ``-c`` multiplies volumes by ``(sinh(sqrt(c) r)/(sqrt(c) r))^(d-1)``
    at radius ``r = |v|``, so, w.r.t. the Riemannian volume and with ``r`` the distance to the origin,

        log p = -r^2 / (2 sigma^2) - (d/2) log(2 pi sigma^2) - (d - 1) log sinhc(sqrt(c) r).

    The two models' bases correspond under the isometry between them.
    """

    compact = False
    ambient_metric = False
    exact_expmap = True
    injectivity_radius = math.inf

    def __init__(self, dim: int, c: float, sigma: float):
        super().__init__()
        kind = type(self).__name__
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{kind} dimension must be an integer >= 1, got {dim!r}")
        for label, value in (("curvature magnitude c", c), ("sigma", sigma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{kind} {label} must be a finite number > 0, got {value!r}")
        self.dim = dim
        self.c = float(c)
        self.sigma = float(sigma)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, c={self.c}" + ("" if self.sigma == 1.0 else f", sigma={self.sigma}")

    def _sample_radius_vectors(self, shape, dtype, device, generator):
        """Tangent coordinates ``v ~ N(0, sigma^2 I_d)`` ``[*shape, d]`` at the origin, and their norms.

        The norms have shape ``[*shape, 1]``.
        """
        v = self.sigma * torch.randn(*batch_shape(shape), self.dim, dtype=dtype, device=device, generator=generator)
        return v, norm(v, keepdim=True)

    def _wrapped_normal_logprob(self, r: torch.Tensor) -> torch.Tensor:
        """Base log-density at distance ``r`` ``[...]`` from the origin (see the class notes); ``[...]``."""
        var = self.sigma**2
        out = -0.5 * r * r / var - 0.5 * self.dim * math.log(2 * math.pi * var)
        return out - (self.dim - 1) * log_sinhc(math.sqrt(self.c) * r)


class PoincareBall(_Hyperbolic):
    """The Poincare ball ``{x in R^d : |x| < 1/sqrt(c)}`` with metric ``lambda_x^2 <u, v>``.

    ``lambda_x = 2/(1 - c|x|^2)``.

    Curvature ``-c``; tangent vectors are plain vectors of ``R^d``. ``projx`` keeps points a
    relative ``16 eps`` (of the dtype) inside the boundary. Not compact: the base is the wrapped
    normal at the origin described in the notes of the hyperbolic base class.

    Args:
        dim: dimension ``d >= 1``.
        c: curvature magnitude ``> 0`` (default 1).
        sigma: standard deviation of the base's wrapped normal, ``> 0`` (default 1).
    """

    name = "PoincareBall"

    def __init__(self, dim: int = 2, c: float = 1.0, *, sigma: float = 1.0):
        super().__init__(dim, c, sigma)
        self.ambient_dim = dim

    def _max_norm(self, dtype: torch.dtype) -> float:
        return (1.0 - 16 * torch.finfo(dtype).eps) / math.sqrt(self.c)

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Pull points at or beyond ``(1 - 16 eps)/sqrt(c)`` radially inside; ``[..., d]``."""
        r = norm(x, keepdim=True)
        big = r > self._max_norm(x.dtype)
        return torch.where(big, x * (self._max_norm(x.dtype) / torch.where(big, r, torch.ones_like(r))), x)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Every vector is tangent: ``u`` broadcast against ``x``."""
        return u.expand(torch.broadcast_shapes(x.shape, u.shape))

    def tangent_field(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``u / lambda_x``: a network output read in an orthonormal frame, Riemannian norm ``|u|``; ``[..., d]``."""
        return u * (0.5 * hm.conformal_gap(x, self.c, keepdim=True))

    def normal_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """``(2 / sqrt(c)) artanh(sqrt(c)|x|) x / |x|``: the exponential chart at the origin, ``[..., d]``."""
        return 2.0 * atanhc(math.sqrt(self.c) * norm(x, keepdim=True)) * x

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riemannian gradient ``u / lambda_x^2``; shapes ``[..., d]``."""
        return u * (0.5 * hm.conformal_gap(x, self.c, keepdim=True)) ** 2

    def inner(self, x, u, v=None, *, keepdim: bool = False) -> torch.Tensor:
        """``lambda_x^2 <u, v>``; shape ``[...]`` (``[..., 1]`` with ``keepdim``)."""
        lam = 2.0 / hm.conformal_gap(x, self.c, keepdim=keepdim)
        return lam * lam * dot(u, u if v is None else v, keepdim=keepdim)

    def norm(self, x, u, *, keepdim: bool = False) -> torch.Tensor:
        """``lambda_x |u|`` with a zero gradient at ``u = 0``; shape ``[...]``."""
        return 2.0 / hm.conformal_gap(x, self.c, keepdim=keepdim) * norm(u, keepdim=keepdim)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``x (+) tanh(sqrt(c) lambda_x |u| / 2) u / (sqrt(c) |u|)``, kept inside by ``projx``; ``[..., d]``."""
        lam = 2.0 / hm.conformal_gap(x, self.c, keepdim=True)
        s = (0.5 * math.sqrt(self.c)) * lam * norm(u, keepdim=True)
        return self.projx(hm.mobius_add(x, tanhc(s) * (0.5 * lam) * u, self.c))

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(2 / lambda_x) h coth(h) w`` with ``w = (-x) (+) y`` and ``h = sqrt(c) dist / 2``; ``[..., d]``.

        This is ``2/(sqrt(c) lambda_x) artanh(sqrt(c)|w|) w/|w|`` with ``artanh(sqrt(c)|w|) = h``
        taken from the well-conditioned distance, so neither ``artanh`` near 1 nor ``w/|w|`` at
        ``w = 0`` is evaluated.
        """
        w = hm.mobius_diff(x, y, self.c)
        h = (0.5 * math.sqrt(self.c)) * hm.poincare_dist(x, y, self.c, keepdim=True)
        return hm.conformal_gap(x, self.c, keepdim=True) * xcothx(h) * w

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """``(2/sqrt(c)) asinh(sqrt(c)|x - y| / sqrt((1 - c|x|^2)(1 - c|y|^2)))``; shape ``[...]``."""
        return hm.poincare_dist(x, y, self.c, keepdim=keepdim)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Parallel transport ``(lambda_x / lambda_y) gyr[y, -x] v``; shapes ``[..., d]``."""
        ratio = hm.conformal_gap(y, self.c, keepdim=True) / hm.conformal_gap(x, self.c, keepdim=True)
        return ratio * hm.gyration(y, -x, v, self.c)

    def divergence_correction(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``d <grad log lambda_x, v> = 2 c d <x, v> / (1 - c|x|^2)``.

        The volume is ``lambda_x^d`` times Lebesgue measure.

        Inside the ball ``projx`` is the identity, so divergence estimators differentiate in the
        ball's coordinates (see :meth:`manifolds.Manifold.divergence_correction`). Shapes ``[..., d] -> [...]``.
        """
        return (2.0 * self.c * self.dim) * dot(x, v) / hm.conformal_gap(x, self.c)

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Wrapped-normal samples ``tanh(sqrt(c) r / 2) v / (sqrt(c) r)``, shape ``[*shape, d]``."""
        v, r = self._sample_radius_vectors(shape, dtype, device, generator)
        s = 0.5 * math.sqrt(self.c) * r
        return self.projx(0.5 * tanhc(s) * v)

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact wrapped-normal log-density w.r.t. the Riemannian volume; ``[..., d] -> [...]``."""
        return self._wrapped_normal_logprob(hm.poincare_dist(torch.zeros_like(x), x, self.c))

    def to_hyperboloid(self, x: torch.Tensor) -> torch.Tensor:
        """The isometry onto :class:`Hyperboloid` of the same ``c``; ``[..., d] -> [..., d+1]``."""
        return hm.poincare_to_lorentz(x, self.c)

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        r = math.sqrt(self.c) * norm(x)
        bad = r >= 1.0
        if not bool(bad.any()):
            return True, None
        worst, idx = self._worst(r)
        return False, (
            f"{int(bad.sum())} point(s) are outside the ball (off the Poincare ball: sqrt(c)|x| >= 1); "
            f"worst sqrt(c)|x| = {worst:.3g} at index {idx}"
        )

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        return True, None


class Hyperboloid(_Hyperbolic):
    """The upper sheet ``{x in R^(d+1) : <x, x>_L = -1/c, x0 > 0}`` with the Lorentz metric (curvature ``-c``).

    ``<u, v>_L = -u0 v0 + sum_i ui vi``; tangent vectors at ``x`` satisfy ``<x, u>_L = 0``. Far
    from the origin the coordinates grow like ``e^(sqrt(c) r)`` and the textbook formulas lose
    precision: a Lorentz product of two such vectors cancels to a relative ``1 / (c x0^2)``. So
    every method reads a point through its space part ``xs`` (``x0 = sqrt(1/c + |xs|^2)`` is
    implied) and a tangent vector through its space part ``us`` (``u0 = <xs, us> / x0`` is
    implied), and evaluates products in forms without cancellation:

    * ``projx`` recomputes ``x0``; ``proju`` keeps ``us`` and recomputes ``u0``. This is the
      differential of ``projx`` (a projection along the time axis, exactly idempotent), not the
      Lorentz-orthogonal ``u + c <x, u>_L x``, which multiplies rounding errors by ``c x0^2``;
      ``egrad2rgrad`` is the metric's own (Lorentz-orthogonal) gradient.
    * ``inner(x, u, v) = <us_perp, vs_perp> + <e, us><e, vs> / (1 + c|xs|^2)`` with ``e = xs/|xs|``,
      equal to ``<u, v>_L`` for tangent vectors.

    Not compact: the base is the wrapped normal at the origin ``(1/sqrt(c), 0, ..., 0)``.

    Args:
        dim: dimension ``d >= 1`` (points have ``d + 1`` coordinates).
        c: curvature magnitude ``> 0`` (default 1).
        sigma: standard deviation of the base's wrapped normal, ``> 0`` (default 1).
    """

    name = "Hyperboloid"

    def __init__(self, dim: int = 2, c: float = 1.0, *, sigma: float = 1.0):
        super().__init__(dim, c, sigma)
        self.ambient_dim = dim + 1

    def _time(self, xs: torch.Tensor) -> torch.Tensor:
        """``sqrt(1/c + |xs|^2)``, ``[..., d] -> [..., 1]``."""
        return torch.sqrt(1.0 / self.c + dot(xs, xs, keepdim=True))

    def _lift(self, xs: torch.Tensor, us: torch.Tensor) -> torch.Tensor:
        """The tangent vector at the point with space part ``xs`` whose space part is ``us``; ``[..., d+1]``."""
        xs, us = torch.broadcast_tensors(xs, us)
        return torch.cat([dot(xs, us, keepdim=True) / self._time(xs), us], dim=-1)

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """``(sqrt(1/c + |xs|^2), xs)``: onto the upper sheet along the time axis; ``[..., d+1]``."""
        xs = x[..., 1:]
        return torch.cat([self._time(xs), xs], dim=-1)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``(<xs, us> / x0, us)``, the differential of :meth:`projx`; shapes ``[..., d+1]``."""
        return self._lift(x[..., 1:], u[..., 1:])

    def normal_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """``(log(sqrt(c) x0), r xs / |xs|)`` ``[..., d+1]``, with ``r`` the distance to the origin.

        ``r = asinh(sqrt(c)|xs|) / sqrt(c)``.

        The space part is the exponential chart at the origin; ``log(sqrt(c) x0) = log cosh(sqrt(c) r)``
        adds a smooth coordinate that grows like the distance, so the shape stays ``d + 1``.
        """
        sc = math.sqrt(self.c)
        xs = x[..., 1:]
        a = sc * norm(xs, keepdim=True)
        ratio = torch.where(a < 1e-4, 1.0 - a * a / 6.0, torch.asinh(a) / a.clamp_min(1e-4))  # asinh(a) / a
        return torch.cat([torch.log(sc * self._time(xs)), ratio * xs], dim=-1)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riemannian gradient (``proju_L(x, J u)``, ``J = diag(-1, 1, ..., 1)``) from space parts; ``[..., d+1]``.

        A tangent ``v`` pairs with ``u`` as ``<h, vs>``, ``h = us + (u0 / x0) xs``; the metric on
        space parts is ``I - xs xs^T / x0^2``, whose inverse is ``I + c xs xs^T``.
        """
        xs = x[..., 1:]
        h = u[..., 1:] + (u[..., :1] / self._time(xs)) * xs
        return self._lift(xs, h + self.c * dot(xs, h, keepdim=True) * xs)

    def _inner_space(self, xs: torch.Tensor, us: torch.Tensor, vs: torch.Tensor, keepdim: bool) -> torch.Tensor:
        r = norm(xs, keepdim=True)
        e = xs / r.clamp_min(tiny(xs.dtype))
        au, av = dot(e, us, keepdim=True), dot(e, vs, keepdim=True)
        perp = dot(us - au * e, vs - av * e, keepdim=True)
        out = perp + au * av / (1.0 + self.c * r * r)
        return out if keepdim else out.squeeze(-1)

    def inner(self, x, u, v=None, *, keepdim: bool = False) -> torch.Tensor:
        """``<u, v>_L`` of tangent vectors, from their space parts (class notes); shape ``[...]``."""
        vs = u[..., 1:] if v is None else v[..., 1:]
        return self._inner_space(x[..., 1:], u[..., 1:], vs, keepdim)

    def norm(self, x, u, *, keepdim: bool = False) -> torch.Tensor:
        """``sqrt(<u, u>_L)`` with a zero gradient at ``u = 0``; shape ``[...]``."""
        return safe_sqrt(self.inner(x, u, keepdim=keepdim))

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``cosh(t) x + sinhc(t) u`` with ``t = sqrt(c)|u|_L`` (space part), then ``projx``; ``[..., d+1]``."""
        t = math.sqrt(self.c) * self.norm(x, u, keepdim=True)
        ys = torch.cosh(t) * x[..., 1:] + sinhc(t) * u[..., 1:]
        return torch.cat([self._time(ys), ys], dim=-1)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(y - cosh(t) x) / sinhc(t)``, ``t = sqrt(c) dist``; exactly zero at ``y = x``; ``[..., d+1]``.

        The space part is ``(ys - xs - 2 sinh(t/2)^2 xs) / sinhc(t)``, free of cancellation for nearby points.
        """
        t = math.sqrt(self.c) * self.dist(x, y, keepdim=True)
        xs = x[..., 1:]
        us = (y[..., 1:] - xs - 2.0 * torch.sinh(0.5 * t) ** 2 * xs) / sinhc(t)
        return self._lift(xs, us)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """``arcosh(-c <x, y>_L)/sqrt(c)`` evaluated as an ``asinh`` through the ball; shape ``[...]``."""
        return hm.lorentz_dist(self.projx(x), self.projx(y), self.c, keepdim=keepdim)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Parallel transport ``v + c <y, v>_L / (1 - c <x, y>_L) (x + y)``; shapes ``[..., d+1]``.

        ``1 - c <x, y>_L = 1 + cosh(sqrt(c) d)`` is taken from the distance, and for tangent ``v``
        ``<y, v>_L = <ys - (y0/x0) xs, vs>`` with ``ys - (y0/x0) xs = delta - ((y0 - x0)/x0) xs``,
        ``delta = ys - xs``, ``y0 - x0 = <delta, ys + xs> / (y0 + x0)``: accurate for nearby points.
        """
        xs, ys = torch.broadcast_tensors(x[..., 1:], y[..., 1:])
        tx, ty = self._time(xs), self._time(ys)
        delta = ys - xs
        z = delta - (dot(delta, ys + xs, keepdim=True) / ((ty + tx) * tx)) * xs
        t = math.sqrt(self.c) * self.dist(x, y, keepdim=True)
        k = self.c * dot(z, v[..., 1:], keepdim=True) / (1.0 + torch.cosh(t))
        return self._lift(ys, v[..., 1:] + k * (xs + ys))

    def divergence_correction(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``-<xs, vs> / x0^2``: the volume is ``1 / (sqrt(c) x0)`` times Lebesgue measure of the space part.

        ``projx`` keeps the space part ``xs`` and recomputes ``x0``, so divergence estimators
        differentiate in the chart ``xs``, where the metric is ``I - xs xs^T / x0^2`` with
        determinant ``1 / (c x0^2)``; ``grad log rho = -grad log x0 = -xs / x0^2`` (see
        :meth:`manifolds.Manifold.divergence_correction`). Shapes ``[..., d+1] -> [...]``.
        """
        xs = x[..., 1:]
        return -dot(xs, v[..., 1:]) / (1.0 / self.c + dot(xs, xs))

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Wrapped-normal samples ``(cosh(sqrt(c) r)/sqrt(c), sinhc(sqrt(c) r) v)``, shape ``[*shape, d+1]``."""
        v, r = self._sample_radius_vectors(shape, dtype, device, generator)
        ys = sinhc(math.sqrt(self.c) * r) * v
        return torch.cat([self._time(ys), ys], dim=-1)

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact wrapped-normal log-density w.r.t. the Riemannian volume; ``[..., d+1] -> [...]``.

        The distance to the origin is ``asinh(sqrt(c)|xs|)/sqrt(c)``.
        """
        sc = math.sqrt(self.c)
        return self._wrapped_normal_logprob(torch.asinh(sc * norm(x[..., 1:])) / sc)

    def to_poincare(self, x: torch.Tensor) -> torch.Tensor:
        """The isometry onto :class:`PoincareBall` of the same ``c``; ``[..., d+1] -> [..., d]``."""
        return hm.lorentz_to_poincare(x, self.c)

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        lower = x[..., 0] <= 0
        if bool(lower.any()):
            worst, idx = self._worst(-x[..., 0])
            return False, (
                f"{int(lower.sum())} point(s) are off the hyperboloid (on or below x0 = 0, not the upper sheet); "
                f"worst x0 = {-worst:.3g} at index {idx}"
            )
        t = self._time(x[..., 1:]).squeeze(-1)
        err = (x[..., 0] - t).abs() / t
        what = "are off the hyperboloid (relative error of x0 = sqrt(1/c + |xs|^2) too large)"
        return self._tolerance_report(err, atol, what)

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        err = hm.minkowski(x, u).abs()
        limit = atol + rtol * torch.linalg.vector_norm(x, dim=-1) * torch.linalg.vector_norm(u, dim=-1)
        return self._tolerance_report(err, limit, "are not tangent (|<x, u>_L| too large)")
