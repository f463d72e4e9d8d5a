"""Compact surfaces in R^3 given as the zero set of a function, ``{x : f(x) = 0}``."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch

from ._numerics import dot, norm
from .base import AmbientMetric, Manifold, batch_shape
from .implicit_newton import NewtonFoot
from .implicit_sampling import shell_area, shell_sample
from .implicit_shapes import (
    EllipsoidLevel,
    SphereDistance,
    TorusDistance,
    fmt,
    parse_bounds,
    positive_float,
    positive_int,
)

ScalarField = Callable[[torch.Tensor], torch.Tensor]
Sampler = Callable[[int, torch.dtype, torch.device, Optional[torch.Generator]], torch.Tensor]

# ---------------------------------------------------------------------------------------- manifold
class ImplicitSurface(AmbientMetric, Manifold):
    """The zero set ``M = {x in R^3 : f(x) = 0}`` of a function with 0 as a regular value.

    ``f`` must be a torch callable ``[..., 3] -> [...]``, ``M`` compact and ``grad f != 0`` on
    ``M``. The metric is the one induced by R^3.

    * :meth:`projx` runs Newton steps along ``grad f`` (no autograd graph, a fixed amount of work
      and nothing read on the host: :meth:`~manifolds.implicit_newton.NewtonFoot.fixed`; entry
      points iterate until converged, :meth:`projx_checked`) to a foot point ``p`` and returns it
      "straight through": the value is ``p`` and the Jacobian with respect to the
      input is the tangent projector ``P(p) = I - n n^T``. At points of ``M`` this is the true
      Jacobian of the closest-point map, so the ambient divergence of the extension
      ``proju(projx(y), v(projx(y)))`` is the intrinsic divergence (see
      :mod:`manifold_flows.divergence`).
    * :meth:`normal` is ``grad f / |grad f|`` and is differentiable, so derivatives of
      :meth:`proju` contain the shape operator (the mean-curvature term of the divergence).
    * There is no closed-form exponential map (``exact_expmap = False``): :meth:`retr` is
      ``projx(x + u)`` and :meth:`transp` the projection onto the tangent plane at the new point
      (a vector transport, not parallel transport), which is what geoopt's Riemannian optimisers
      need. :meth:`expmap`, :meth:`logmap` and hence ``dist`` raise ``NotImplementedError``.
    * The base distribution is area-uniform, ``base_logprob = -log(area)``. Samples come from a thin
      shell around ``M`` (see :meth:`random_base`) unless an exact sampler is known (the named
      constructors :meth:`sphere` and :meth:`torus`).

    Args:
        f: the level-set function, a torch callable ``[..., 3] -> [...]`` (dtype-preserving,
            differentiable twice if ``grad`` is not given). A ``torch.nn.Module`` is registered as a
            submodule and moves with ``.to()``.
        grad: optional analytic gradient ``[..., 3] -> [..., 3]``, written in differentiable torch
            operations (the divergence differentiates it). Default: autograd of ``f`` with
            ``create_graph=True``.
        bounds: axis-aligned box ``((xmin, ymin, zmin), (xmax, ymax, zmax))`` containing ``M`` with
            some margin (more than ``1e-2`` times its diagonal on every side); used by the sampler, the
            area estimate and to limit Newton steps.
        area: the surface area if known. Otherwise it is estimated once, at construction, by Monte
            Carlo (see :attr:`area_std_error`).
        newton_steps: Newton iterations of :meth:`projx` before its convergence check.
        name: a label for ``repr``.
        n_area: number of uniform box points of the area estimate.
        seed: seed of the area estimate's random generator.

    Attributes:
        area: the surface area (given, or the Monte Carlo estimate).
        area_std_error: relative standard error of the estimated area (0.0 when ``area`` was given).
            It counts the sampling noise only; the estimator's bias is relative ``O(delta^2)`` in
            the shell half-width ``delta = area_shell * diagonal``. For a signed distance ``f``
            Steiner's formula gives it exactly, ``delta^2 / 3 * 2 pi chi / area`` (``chi`` the Euler
            characteristic; 1.1e-4 for the unit sphere in the box of :meth:`sphere`); other ``f``
            add terms of the same order, set by the curvatures and by how far ``|f|/|grad f|`` is
            from the distance.
        shell: class attribute, half-width of the sampling shell as a fraction of the box diagonal
            (1e-3).
        area_shell: class attribute, half-width of the area estimate's shell as a fraction of the
            box diagonal (5e-3).
    """

    name = "ImplicitSurface"
    dim = 2
    ambient_dim = 3
    compact = True
    ambient_metric = True
    exact_expmap = False
    has_geodesics = False

    shell = 1e-3
    area_shell = 5e-3
    n_rescue = 4

    def __init__(
        self,
        f: ScalarField,
        *,
        grad: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        bounds,
        area: Optional[float] = None,
        newton_steps: int = 8,
        name: Optional[str] = None,
        n_area: int = 1 << 22,
        seed: int = 0,
    ):
        super().__init__()
        if not callable(f):
            raise ValueError(f"f must be a callable mapping points [..., 3] to values [...], got {type(f).__name__}")
        if grad is not None and not callable(grad):
            raise ValueError(f"grad must be None or a callable [..., 3] -> [..., 3], got {type(grad).__name__}")
        self._lo, self._hi = parse_bounds(bounds)
        self.newton_steps = positive_int(newton_steps, "newton_steps")
        n_area = positive_int(n_area, "n_area", 1000)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if name is not None:
            if not isinstance(name, str):
                raise ValueError(f"name must be a string, got {type(name).__name__}")
            self.name = name
        self.f = f
        self._grad_fn = grad
        self._sampler: Optional[Sampler] = None
        widths = [b - a for a, b in zip(self._lo, self._hi)]
        self.diagonal = math.sqrt(sum(w * w for w in widths))
        self.box_volume = widths[0] * widths[1] * widths[2]
        self._work_dtype, self._work_device = torch.float64, torch.device("cpu")
        if isinstance(f, torch.nn.Module):  # e.g. a neural signed distance: evaluate it where it lives
            for t in list(f.parameters()) + list(f.buffers()):
                if t.is_floating_point():
                    self._work_dtype, self._work_device = t.dtype, t.device
                    break
        # shell draws that caught too few points (see shell_sample)
        self.short_draws = torch.zeros((), dtype=torch.long)
        self.foot = NewtonFoot(self._value_and_grad, (self._lo, self._hi), self.newton_steps, n_rescue=self.n_rescue)
        self._check_callables()
        if area is None:
            self.area, self.area_std_error = shell_area(self.foot, n_area, seed, self.area_shell, self._work_dtype,
                                                        self._work_device)
        else:
            self.area = positive_float(area, "area")
            self.area_std_error = 0.0
        self.foot.name = repr(self)

    # ------------------------------------------------------------------ named constructors
    @classmethod
    def sphere(cls, radius: float = 1.0, center: Sequence[float] = (0.0, 0.0, 0.0), **kwargs) -> "ImplicitSurface":
        """The sphere ``|x - center| = radius`` with ``f`` its signed distance; area ``4 pi r^2``.

        Samples are normalised Gaussians (exact). Extra keyword arguments go to the constructor.
        """
        radius = positive_float(radius, "radius")
        c = tuple(float(v) for v in center)
        if len(c) != 3 or not all(math.isfinite(v) for v in c):
            raise ValueError(f"center must be 3 finite numbers, got {center!r}")
        sd = SphereDistance(radius, c)
        m = 1.05 * radius
        bounds = (tuple(v - m for v in c), tuple(v + m for v in c))
        kwargs.setdefault("name", f"sphere(radius={fmt(radius)})")
        out = cls(sd, grad=sd.grad, bounds=bounds, area=4.0 * math.pi * radius**2, **kwargs)
        out._sampler = sd.sample
        return out

    @classmethod
    def ellipsoid(
        cls, a: float, b: float, c: float, *, center: Sequence[float] = (0.0, 0.0, 0.0), **kwargs
    ) -> "ImplicitSurface":
        """The axis-aligned ellipsoid ``(x/a)^2 + (y/b)^2 + (z/c)^2 = 1`` (shifted by ``center``).

        ``f = |(x/a, y/b, z/c)| - 1``; the area is exact, ``4 pi a b c R_G(a^-2, b^-2, c^-2)`` with
        Carlson's symmetric integral ``R_G`` (``scipy.special.elliprg``). Samples come from the
        generic shell sampler of :meth:`random_base`.
        """
        import scipy.special

        axes = tuple(positive_float(v, name) for v, name in zip((a, b, c), ("a", "b", "c")))
        ctr = tuple(float(v) for v in center)
        if len(ctr) != 3 or not all(math.isfinite(v) for v in ctr):
            raise ValueError(f"center must be 3 finite numbers, got {center!r}")
        level = EllipsoidLevel(axes, ctr)
        area = 4.0 * math.pi * axes[0] * axes[1] * axes[2] * float(
            scipy.special.elliprg(axes[0] ** -2, axes[1] ** -2, axes[2] ** -2)
        )
        margin = 0.05 * max(axes)
        bounds = (tuple(o - h - margin for o, h in zip(ctr, axes)), tuple(o + h + margin for o, h in zip(ctr, axes)))
        kwargs.setdefault("name", f"ellipsoid(a={fmt(axes[0])}, b={fmt(axes[1])}, c={fmt(axes[2])})")
        return cls(level, grad=level.grad, bounds=bounds, area=area, **kwargs)

    @classmethod
    def torus(cls, R: float = 1.0, r: float = 0.4, **kwargs) -> "ImplicitSurface":
        """The torus of revolution about the z axis with radii ``R > r > 0``; area ``4 pi^2 R r``.

        ``f = sqrt((sqrt(x^2 + y^2) - R)^2 + z^2) - r`` (its signed distance, safe on the axis and
        the core circle). Samples are exact: uniform ``phi`` and the tube angle ``theta`` with
        density proportional to ``R + r cos(theta)``, by inverse CDF.
        """
        R = positive_float(R, "R")
        r = positive_float(r, "r")
        if not r < R:
            raise ValueError(f"the torus needs R > r (a ring torus), got R={R}, r={r}")
        td = TorusDistance(R, r)
        m = 0.05 * (R + r)
        bounds = ((-R - r - m, -R - r - m, -r - m), (R + r + m, R + r + m, r + m))
        kwargs.setdefault("name", f"torus(R={fmt(R)}, r={fmt(r)})")
        out = cls(td, grad=td.grad, bounds=bounds, area=4.0 * math.pi**2 * R * r, **kwargs)
        out._sampler = td.sample
        return out

    # ------------------------------------------------------------------ level-set function
    def _check_callables(self) -> None:
        """Evaluate ``f`` (and ``grad``) once on the box corners and centre to catch shape errors early."""
        corners = [[(self._lo, self._hi)[(i >> k) & 1][k] for k in range(3)] for i in range(8)]
        centre = [0.5 * (a + b) for a, b in zip(self._lo, self._hi)]
        x = torch.tensor(corners + [centre], dtype=self._work_dtype, device=self._work_device)
        try:
            fx, gx = self._value_and_grad(x)
        except Exception as e:  # the user's callable failed: say which one and why
            raise ValueError(f"evaluating f (or grad) on points of shape [9, 3] failed: {e!r}") from e
        if not isinstance(fx, torch.Tensor) or fx.shape != (9,):
            got = tuple(fx.shape) if isinstance(fx, torch.Tensor) else type(fx).__name__
            raise ValueError(f"f must map points [..., 3] to values [...]; for input [9, 3] it returned {got}")
        if not isinstance(gx, torch.Tensor) or gx.shape != (9, 3):
            got = tuple(gx.shape) if isinstance(gx, torch.Tensor) else type(gx).__name__
            raise ValueError(f"grad must map points [..., 3] to vectors [..., 3]; for input [9, 3] it returned {got}")

    def _value_and_grad(self, x: torch.Tensor, graph: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """``f(x) [...]`` and ``grad f(x) [..., 3]``; with ``graph`` both stay differentiable in ``x``."""
        if self._grad_fn is not None:
            if graph:
                return self.f(x), self._grad_fn(x)
            with torch.no_grad():
                return self.f(x), self._grad_fn(x)
        with torch.enable_grad():
            xr = x if graph else x.detach().requires_grad_(True)
            fx = self.f(xr)
            if fx.requires_grad:
                (g,) = torch.autograd.grad(fx.sum(), xr, create_graph=graph, allow_unused=True)
            else:
                g = None
        if g is None:
            g = torch.zeros_like(x)
        if not graph:
            fx, g = fx.detach(), g.detach()
        return fx, g

    def _gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``grad f(x)``, differentiable in ``x`` when ``x`` requires grad and grad mode is on."""
        graph = torch.is_grad_enabled() and x.requires_grad
        if self._grad_fn is not None:
            return self._grad_fn(x)
        return self._value_and_grad(x, graph=graph)[1]

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normal ``grad f / |grad f|`` at ``x``, shape ``[..., 3]``.

        Differentiable in ``x`` (its derivative on ``M`` is the shape operator); zero, not NaN,
        where the gradient vanishes.
        """
        g = self._gradient(x)
        return g / norm(g, keepdim=True)

    # ------------------------------------------------------------------ projection
    @property
    def bounds(self) -> Tuple[Tuple[float, float, float], Tuple[float, float, float]]:
        """The box ``((xmin, ymin, zmin), (xmax, ymax, zmax))`` that holds the surface."""
        return self._lo, self._hi

    @property
    def work_dtype(self) -> torch.dtype:
        """The dtype ``f`` is evaluated in by construction-time work (float64, or that of ``f``'s parameters)."""
        return self._work_dtype

    @property
    def work_device(self) -> torch.device:
        """The device ``f`` is evaluated on by construction-time work (the CPU, or that of ``f``'s parameters)."""
        return self._work_device

    @property
    def unconverged_projections(self) -> int:
        """Points that :meth:`projx` left farther than its loose tolerance so far (reads the device)."""
        return int(self.foot.unconverged)

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Project ambient points ``[..., 3]`` onto the surface by Newton steps along ``grad f``.

        The foot point ``p`` is computed without autograd and without reading the device
        (:meth:`~manifolds.implicit_newton.NewtonFoot.fixed`: converged for points near the surface,
        as in training and solving; :meth:`projx_checked` iterates until converged). When ``x``
        requires grad the result is ``p + delta - <delta, n> n`` with ``delta = x - x.detach()``
        (zero) and ``n`` the detached unit normal at ``p``: its value is ``p`` and its Jacobian is
        ``P(p) = I - n n^T``, the Jacobian of the closest-point map on the surface. The ambient
        divergence of ``proju(projx(y), v(projx(y)))`` is then the intrinsic divergence of ``v``.
        Non-finite inputs give NaN rows.
        """
        return self._straight_through(x, self.foot.fixed)

    def projx_checked(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`projx` for points entering a program: Newton steps until every point has converged.

        Raises ``RuntimeError`` where one does not (reads the device); non-finite inputs are an error.
        """
        reason = self._check_tensor(x, "x")
        if reason is not None:
            raise ValueError(f"{self}: {reason}")
        return self._straight_through(x, self.foot.settle)

    def _straight_through(self, x: torch.Tensor, foot: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != 3:
            raise ValueError(f"{self}: projx needs points of shape [..., 3], got {tuple(x.shape)}")
        p = foot(x.detach().reshape(-1, 3)).reshape(x.shape)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return p
        with torch.no_grad():
            n = self.normal(p)
        delta = x - x.detach()
        return p + delta - dot(delta, n, keepdim=True) * n

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``u - <n(x), u> n(x)`` with the differentiable unit normal; shapes broadcast to ``[..., 3]``."""
        n = self.normal(x)
        return u - dot(n, u, keepdim=True) * n

    # ------------------------------------------------------------------ maps without closed form
    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Not available: an implicit surface has no closed-form exponential map (use :meth:`retr`).

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            f"{self}: an implicit surface has no closed-form exponential map; use retr(x, u) = projx(x + u)"
        )

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Not available: an implicit surface has no closed-form logarithm map (move with :meth:`retr`).

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            f"{self}: an implicit surface has no closed-form logarithm map (and hence no closed-form "
            "geodesic distance); move along the surface with retr(x, u) = projx(x + u)"
        )

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Retraction ``projx(x + u)``; shapes ``[..., 3]``."""
        return self.projx(x + u)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Vector transport ``proju(y, v)`` (projection onto the tangent plane at ``y``).

        Not parallel transport: it does not preserve inner products. It is what geoopt's
        optimisers use (through ``retr_transp``) to carry momentum to the new point.
        """
        return self.proju(y, v)

    # ------------------------------------------------------------------ base distribution
    @property
    def volume(self) -> float:
        """Surface area (given or estimated)."""
        return float(self.area)

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Area-uniform samples, shape ``[*shape, 3]``.

        The named constructors :meth:`sphere` and :meth:`torus` use exact samplers. Otherwise points
        are drawn uniformly in ``bounds`` (in chunks, until enough are kept), those in the shell
        ``|f(x)| / |grad f(x)| < delta`` with ``delta = shell * diagonal`` are kept, and they are
        projected with :meth:`projx`. By the coarea formula the foot points are uniform on the
        surface up to a relative error ``O(delta^2)``: the shell of the first-order distance
        ``|f|/|grad f|`` has thickness ``2 delta + O(delta^3)`` along each normal, and Newton's foot
        point differs from the normal foot point by ``O(delta^2)``. ``generator`` (on ``device``)
        makes the draw reproducible.
        """
        shape = batch_shape(shape)
        n = math.prod(shape)
        dtype = dtype or torch.get_default_dtype()
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        device = torch.device(device)
        if n == 0:
            return torch.empty(shape + (3,), dtype=dtype, device=device)
        if self._sampler is not None:
            x = self._sampler(n, dtype, device, generator)
        else:
            x, short = shell_sample(self.foot, n, self.shell, self.area, dtype, device, generator)
            self.short_draws = self.short_draws.to(device) + short
            x = self.projx(x)
        return x.reshape(shape + (3,))

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """``-log(area)`` for every point; shape ``[...]``."""
        return torch.full(x.shape[:-1], -math.log(self.area), dtype=x.dtype, device=x.device)

    # ------------------------------------------------------------------ validation
    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        err = self.foot.residual(x.detach())
        return self._tolerance_report(err, atol, "are off the surface (|f(x)| / |grad f(x)| too large)")

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        with torch.no_grad():
            n = self.normal(x.detach())
        err = dot(n, u.detach()).abs()
        limit = atol + rtol * norm(u.detach())
        return self._tolerance_report(err, limit, "are not tangent (|<n(x), u>| too large)")

    def extra_repr(self) -> str:
        """The surface's name and area (with the standard error of an estimated area), for ``repr``."""
        area = f"area={self.area:.6g}"
        if self.area_std_error:
            area += f" (estimated, rel. std. error {self.area_std_error:.1g})"
        return f"{self.name!r}, {area}"
