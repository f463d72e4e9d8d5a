"""Compact surfaces in R^3 given as the zero set of a function, ``{x : f(x) = 0}``."""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from ._numerics import dot, norm, safe_sqrt, tiny
from .base import AmbientMetric, Manifold, batch_shape

ScalarField = Callable[[torch.Tensor], torch.Tensor]
Sampler = Callable[[int, torch.dtype, torch.device, Optional[torch.Generator]], torch.Tensor]

# unit directions used to push points off critical points of f (e.g. the centre of a sphere or the
# axis of a torus of revolution); deliberately not aligned with any coordinate axis or plane
_NUDGES = (
    (3.0, 5.0, 7.0),
    (-7.0, 3.0, 5.0),
    (5.0, -7.0, 3.0),
    (-3.0, -5.0, 8.0),
)


def _unit(v: Sequence[float]) -> Tuple[float, ...]:
    s = math.sqrt(sum(c * c for c in v))
    return tuple(c / s for c in v)


def _parse_bounds(bounds) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
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


def _positive_int(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _positive_float(value, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be a positive finite number, got {value!r}") from e
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{what} must be a positive finite number, got {value!r}")
    return out


def _fmt(v: float) -> str:
    return f"{v:g}"


# ---------------------------------------------------------------------------------------- shapes
class _SphereDistance:
    """Signed distance ``|x - c| - r`` to a sphere, with gradient ``(x - c)/|x - c|`` (zero at ``c``)."""

    def __init__(self, radius: float, center: Tuple[float, float, float]):
        self.radius = radius
        self.center = center

    def _offset(self, x: torch.Tensor) -> torch.Tensor:
        if self.center == (0.0, 0.0, 0.0):
            return x
        return x - x.new_tensor(self.center)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return norm(self._offset(x)) - self.radius

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        d = self._offset(x)
        return d / norm(d, keepdim=True)

    def sample(self, n: int, dtype: torch.dtype, device, generator) -> torch.Tensor:
        """Normalised Gaussians: exactly uniform."""
        z = torch.randn(n, 3, dtype=dtype, device=device, generator=generator)
        out = self.radius * z / norm(z, keepdim=True)
        if self.center != (0.0, 0.0, 0.0):
            out = out + out.new_tensor(self.center)
        return out


class _EllipsoidLevel:
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
        return norm(self._scaled(x)) - 1.0

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        q = self._scaled(x)
        a, b, c = self.axes
        w = torch.stack([q[..., 0] / a, q[..., 1] / b, q[..., 2] / c], -1)
        return w / norm(q, keepdim=True)


class _TorusDistance:
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
        return self._parts(x)[2] - self.r

    def grad(self, x: torch.Tensor) -> torch.Tensor:
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


# ---------------------------------------------------------------------------------------- manifold
class ImplicitSurface(AmbientMetric, Manifold):
    """The zero set ``M = {x in R^3 : f(x) = 0}`` of a function with 0 as a regular value.

    ``f`` must be a torch callable ``[..., 3] -> [...]``, ``M`` compact and ``grad f != 0`` on
    ``M``. The metric is the one induced by R^3.

    * :meth:`projx` runs Newton steps along ``grad f`` (no autograd graph) to a foot point ``p``
      and returns it "straight through": the value is ``p`` and the Jacobian with respect to the
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
    _max_chunk = 1 << 20

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
        self._lo, self._hi = _parse_bounds(bounds)
        self.newton_steps = _positive_int(newton_steps, "newton_steps")
        n_area = _positive_int(n_area, "n_area", 1000)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if name is not None:
            if not isinstance(name, str):
                raise ValueError(f"name must be a string, got {type(name).__name__}")
            self.name = name
        self.f = f
        self._grad_fn = grad
        self._sampler: Optional[Sampler] = None
        self._cache: Dict[Tuple[torch.dtype, torch.device], Dict[str, torch.Tensor]] = {}
        widths = [b - a for a, b in zip(self._lo, self._hi)]
        self.diagonal = math.sqrt(sum(w * w for w in widths))
        self.box_volume = widths[0] * widths[1] * widths[2]
        self._work_dtype, self._work_device = torch.float64, torch.device("cpu")
        if isinstance(f, torch.nn.Module):  # e.g. a neural signed distance: evaluate it where it lives
            for t in list(f.parameters()) + list(f.buffers()):
                if t.is_floating_point():
                    self._work_dtype, self._work_device = t.dtype, t.device
                    break
        self._check_callables()
        if area is None:
            self.area, self.area_std_error = self._estimate_area(n_area, seed)
        else:
            self.area = _positive_float(area, "area")
            self.area_std_error = 0.0

    # ------------------------------------------------------------------ named constructors
    @classmethod
    def sphere(cls, radius: float = 1.0, center: Sequence[float] = (0.0, 0.0, 0.0), **kwargs) -> "ImplicitSurface":
        """The sphere ``|x - center| = radius`` with ``f`` its signed distance; area ``4 pi r^2``.

        Samples are normalised Gaussians (exact). Extra keyword arguments go to the constructor.
        """
        radius = _positive_float(radius, "radius")
        c = tuple(float(v) for v in center)
        if len(c) != 3 or not all(math.isfinite(v) for v in c):
            raise ValueError(f"center must be 3 finite numbers, got {center!r}")
        sd = _SphereDistance(radius, c)
        m = 1.05 * radius
        bounds = (tuple(v - m for v in c), tuple(v + m for v in c))
        kwargs.setdefault("name", f"sphere(radius={_fmt(radius)})")
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

        axes = tuple(_positive_float(v, name) for v, name in zip((a, b, c), ("a", "b", "c")))
        ctr = tuple(float(v) for v in center)
        if len(ctr) != 3 or not all(math.isfinite(v) for v in ctr):
            raise ValueError(f"center must be 3 finite numbers, got {center!r}")
        level = _EllipsoidLevel(axes, ctr)
        area = 4.0 * math.pi * axes[0] * axes[1] * axes[2] * float(
            scipy.special.elliprg(axes[0] ** -2, axes[1] ** -2, axes[2] ** -2)
        )
        margin = 0.05 * max(axes)
        bounds = (tuple(o - h - margin for o, h in zip(ctr, axes)), tuple(o + h + margin for o, h in zip(ctr, axes)))
        kwargs.setdefault("name", f"ellipsoid(a={_fmt(axes[0])}, b={_fmt(axes[1])}, c={_fmt(axes[2])})")
        return cls(level, grad=level.grad, bounds=bounds, area=area, **kwargs)

    @classmethod
    def torus(cls, R: float = 1.0, r: float = 0.4, **kwargs) -> "ImplicitSurface":
        """The torus of revolution about the z axis with radii ``R > r > 0``; area ``4 pi^2 R r``.

        ``f = sqrt((sqrt(x^2 + y^2) - R)^2 + z^2) - r`` (its signed distance, safe on the axis and
        the core circle). Samples are exact: uniform ``phi`` and the tube angle ``theta`` with
        density proportional to ``R + r cos(theta)``, by inverse CDF.
        """
        R = _positive_float(R, "R")
        r = _positive_float(r, "r")
        if not r < R:
            raise ValueError(f"the torus needs R > r (a ring torus), got R={R}, r={r}")
        td = _TorusDistance(R, r)
        m = 0.05 * (R + r)
        bounds = ((-R - r - m, -R - r - m, -r - m), (R + r + m, R + r + m, r + m))
        kwargs.setdefault("name", f"torus(R={_fmt(R)}, r={_fmt(r)})")
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

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        """First-order distance to the surface ``|f(x)| / |grad f(x)|``, ``[..., 3] -> [...]`` (no graph).

        ``inf`` where the gradient vanishes.
        """
        fx, g = self._value_and_grad(x)
        g2 = dot(g, g)
        return torch.where(g2 > 0, fx.abs() / safe_sqrt(g2), torch.full_like(fx, math.inf))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normal ``grad f / |grad f|`` at ``x``, shape ``[..., 3]``.

        Differentiable in ``x`` (its derivative on ``M`` is the shape operator); zero, not NaN,
        where the gradient vanishes.
        """
        g = self._gradient(x)
        return g / norm(g, keepdim=True)

    # ------------------------------------------------------------------ projection
    def _consts(self, dtype: torch.dtype, device: torch.device) -> Dict[str, torch.Tensor]:
        key = (dtype, device)
        c = self._cache.get(key)
        if c is None:
            c = {
                "lo": torch.tensor(self._lo, dtype=dtype, device=device),
                "hi": torch.tensor(self._hi, dtype=dtype, device=device),
                "nudge": torch.tensor([_unit(v) for v in _NUDGES], dtype=dtype, device=device) * (1e-2 * self.diagonal),
            }
            self._cache[key] = c
        return c

    def _newton(self, y: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` safeguarded Newton steps ``y - f grad f / |grad f|^2`` (no graph, no host syncs).

        A step is never longer than the box diagonal plus the distance from ``y`` to the box, which
        is enough to reach the surface from anywhere along a signed distance, while a nearly
        vanishing gradient cannot throw a point far away. Points where the gradient vanishes
        exactly (the centre of a sphere, the core circle of a torus) are moved by a fixed small
        offset instead.
        """
        c = self._consts(y.dtype, y.device)
        lo, hi, nudge = c["lo"], c["hi"], c["nudge"][0]
        floor = torch.finfo(y.dtype).tiny
        for _ in range(steps):
            fx, g = self._value_and_grad(y)
            g2 = dot(g, g)
            flat = ~(g2 > floor)
            gn = torch.sqrt(g2.clamp_min(floor))
            cap = self.diagonal + norm(y - torch.minimum(torch.maximum(y, lo), hi))
            length = torch.minimum(fx.abs() / gn, cap)  # an overflow to inf is capped too
            step = (torch.sign(fx) * length / gn).unsqueeze(-1) * g
            y = torch.where(flat.unsqueeze(-1), y + nudge, y - step)
        return y

    @torch.no_grad()
    def _foot(self, y: torch.Tensor) -> torch.Tensor:
        """Foot points of the Newton iteration, ``[..., 3]``; NaN rows for non-finite inputs.

        After ``newton_steps`` steps the residual ``|f|/|grad f|`` is checked (one host sync). Points
        not yet within ``16 eps`` times the box diagonal get more steps, first from where they are
        (slow convergence from far away: Newton's linear model is poor there unless ``f`` is a
        distance), then from small fixed offsets (points stuck on a set where Newton stalls, such as
        the axis of a torus). Points still further than ``sqrt(eps)`` times the diagonal raise
        ``RuntimeError``; those in between (an ``f`` whose rounding error exceeds the tight bound)
        are returned as they are.
        """
        shape = y.shape
        y = y.reshape(-1, 3)
        finite = torch.isfinite(y).all(-1)
        y = torch.where(finite.unsqueeze(-1), y, torch.zeros_like(y))
        p = self._newton(y, self.newton_steps)
        eps = torch.finfo(y.dtype).eps
        tight, loose = 16 * eps * self.diagonal, math.sqrt(eps) * self.diagonal
        res = self._residual(p)
        bad = finite & ~(res <= tight)
        if bool(bad.any()):
            nudges = self._consts(y.dtype, y.device)["nudge"]
            for attempt in range(self.n_rescue):
                z = p[bad]
                if attempt > 0:
                    z = z + nudges[attempt % nudges.shape[0]]
                z = self._newton(z, (4 if attempt == 0 else 2) * self.newton_steps)
                p = p.index_put((bad,), z)
                res = res.index_put((bad,), self._residual(z))
                bad = finite & ~(res <= tight)
                if not bool(bad.any()):
                    break
            failed = finite & ~(res <= loose)
            if bool(failed.any()):
                worst, idx = self._worst(torch.where(failed, res, torch.zeros_like(res)))
                raise RuntimeError(
                    f"{self}: projx did not converge for {int(failed.sum())} point(s); worst residual "
                    f"|f|/|grad f| = {worst:.3g} at index {idx}. Check that f has a regular zero set "
                    f"inside the bounds, or raise newton_steps."
                )
        return torch.where(finite.unsqueeze(-1), p, torch.full_like(p, math.nan)).reshape(shape)

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Project ambient points ``[..., 3]`` onto the surface by Newton steps along ``grad f``.

        The foot point ``p`` is computed without autograd (see :meth:`_newton` and :meth:`_foot`).
        When ``x`` requires grad the result is ``p + delta - <delta, n> n`` with
        ``delta = x - x.detach()`` (zero) and ``n`` the detached unit normal at ``p``: its value is
        ``p`` and its Jacobian is ``P(p) = I - n n^T``, the Jacobian of the closest-point map on the
        surface. The ambient divergence of ``proju(projx(y), v(projx(y)))`` is then the intrinsic
        divergence of ``v``. Non-finite inputs give NaN rows.
        """
        if x.dim() < 1 or x.shape[-1] != 3:
            raise ValueError(f"{self}: projx needs points of shape [..., 3], got {tuple(x.shape)}")
        p = self._foot(x.detach())
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
        raise NotImplementedError(
            f"{self}: an implicit surface has no closed-form exponential map; use retr(x, u) = projx(x + u)"
        )

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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

    def _box_points(self, n: int, dtype, device, generator) -> torch.Tensor:
        c = self._consts(dtype, device)
        u = torch.rand(n, 3, dtype=dtype, device=device, generator=generator)
        return c["lo"] + (c["hi"] - c["lo"]) * u

    @torch.no_grad()
    def _estimate_area(self, n: int, seed: int) -> Tuple[float, float]:
        """Monte Carlo area from the fraction of box points in the shell ``|f|/|grad f| < delta``.

        By the coarea formula the shell has volume ``2 delta area (1 + O(delta^2))``, so
        ``area ~ box_volume * fraction / (2 delta)`` with ``delta = area_shell * diagonal``, computed in
        float64 on the CPU unless ``f`` is a module whose parameters live elsewhere.
        """
        gen = torch.Generator(device=self._work_device).manual_seed(seed)
        delta = self.area_shell * self.diagonal
        hits, left = 0, n
        while left > 0:
            m = min(left, self._max_chunk)
            z = self._box_points(m, self._work_dtype, self._work_device, gen)
            hits += int((self._residual(z) < delta).sum())
            left -= m
        if hits < 100:
            raise ValueError(
                f"only {hits} of {n} points of the bounds lie within {delta:.3g} of the zero set of f: check "
                f"that the bounds contain the surface and that f vanishes on it (or pass area=)"
            )
        frac = hits / n
        return self.box_volume * frac / (2.0 * delta), math.sqrt((1.0 - frac) / hits)

    @torch.no_grad()
    def _shell_sample(self, n: int, dtype, device, generator) -> torch.Tensor:
        """``n`` area-uniform points ``[n, 3]`` from the thin shell around the surface (see :meth:`random_base`)."""
        delta = self.shell * self.diagonal
        rate = min(1.0, max(1e-6, 2.0 * delta * self.area / self.box_volume))
        kept, have, drawn = [], 0, 0
        while have < n:
            m = int(min(max(1.2 * (n - have) / rate + 256, 4096), self._max_chunk))
            z = self._box_points(m, dtype, device, generator)
            sel = z[self._residual(z) < delta]
            kept.append(sel)
            have += sel.shape[0]
            drawn += m
            if have == 0 and drawn > 100 / rate + 1e7:
                raise RuntimeError(f"{self}: no box point within {delta:.3g} of the surface after {drawn} draws")
        return self.projx(torch.cat(kept)[:n])

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
            x = self._shell_sample(n, dtype, device, generator)
        return x.reshape(shape + (3,))

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """``-log(area)`` for every point; shape ``[...]``."""
        return torch.full(x.shape[:-1], -math.log(self.area), dtype=x.dtype, device=x.device)

    # ------------------------------------------------------------------ validation
    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        err = self._residual(x.detach())
        return self._tolerance_report(err, atol, "are off the surface (|f(x)| / |grad f(x)| too large)")

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        with torch.no_grad():
            n = self.normal(x.detach())
        err = dot(n, u.detach()).abs()
        limit = atol + rtol * norm(u.detach())
        return self._tolerance_report(err, limit, "are not tangent (|<n(x), u>| too large)")

    def extra_repr(self) -> str:
        area = f"area={self.area:.6g}"
        if self.area_std_error:
            area += f" (estimated, rel. std. error {self.area_std_error:.1g})"
        return f"{self.name!r}, {area}"
