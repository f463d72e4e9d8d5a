"""The base class every manifold in the package derives from: a geoopt.Manifold with validation."""

from __future__ import annotations

import abc
import functools
import inspect
import math
from typing import Callable, Optional, Sequence, Tuple, Union

import torch

from ._geoopt import geoopt

Shape = Union[int, Sequence[int]]


def default_atol(dtype: torch.dtype) -> float:
    """Tolerance used by the validity checks when none is given.

    Points computed in float32 and converted to float64 must still pass, so float64 is not
    stricter than float32; half precisions get a looser bound.
    """
    if dtype in (torch.float16, torch.bfloat16):
        return 1e-2
    return 1e-5


def batch_shape(shape: Tuple[Shape, ...]) -> Tuple[int, ...]:
    """Normalise ``random_base``-style shape arguments: ``(n,)``, ``(n, m)`` or ``((n, m),)``."""
    if len(shape) == 1 and not isinstance(shape[0], int):
        shape = tuple(shape[0])
    out = tuple(int(s) for s in shape)
    if any(s < 0 for s in out):
        raise ValueError(f"batch shape must be non-negative, got {out}")
    return out


CHECKED_METHODS = (
    "projx", "proju", "proju_orthogonal", "tangent_field", "geodesic", "expmap", "logmap", "transp", "inner", "norm",
    "dist", "dist2", "retr", "egrad2rgrad", "base_logprob", "divergence_correction", "normal_coordinates",
    "expmap_transp", "retr_transp", "transp_follow_expmap", "transp_follow_retr",
)
"""Public operations whose point and vector arguments are checked on entry (trailing dimension, floating dtype)."""
POINT_ARGUMENTS = ("x", "y", "u", "v")
"""Argument names that hold points or tangent vectors ``[..., ambient_dim]`` (times ``t`` are not checked)."""


def _with_input_checks(fn: Callable, name: str) -> Callable:
    """Wrap a geometry method so that a tensor argument of the wrong shape or dtype raises ``ValueError`` naming it.

    The checks read only shapes and dtypes: no host synchronisation, so they also run inside
    training and solver loops on a GPU. Values (NaN, points off the manifold) are checked by
    :meth:`Manifold.check_point` where data enters a program.
    """
    params = [p.name for p in inspect.signature(fn).parameters.values()][1:]

    @functools.wraps(fn)
    def checked(self, *args, **kwargs):
        for i, a in enumerate(args):
            if i < len(params) and params[i] not in POINT_ARGUMENTS:
                continue
            if isinstance(a, torch.Tensor) and (not a.is_floating_point() or a.dim() == 0
                                                or a.shape[-1] != self.ambient_dim):
                arg = params[i] if i < len(params) else f"argument {i + 1}"
                if not a.is_floating_point():
                    raise ValueError(f"{self}.{name}: '{arg}' has dtype {a.dtype}; points and tangent vectors need a "
                                     "floating dtype (float32 or float64)")
                raise ValueError(f"{self}.{name}: '{arg}' has shape {tuple(a.shape)} but {self} needs a trailing "
                                 f"dimension of {self.ambient_dim} coordinates")
        return fn(self, *args, **kwargs)

    checked.checks_inputs = True
    return checked


def _add_input_checks(cls: type) -> None:
    for name in CHECKED_METHODS:
        fn = getattr(cls, name, None)  # own methods, and those of mixins such as AmbientMetric
        if inspect.isfunction(fn) and not getattr(fn, "checks_inputs", False):
            setattr(cls, name, _with_input_checks(fn, name))


class Manifold(geoopt.Manifold):
    """A Riemannian manifold embedded in (or charted by) ``ambient_dim`` coordinates.

    Points and tangent vectors are tensors of shape ``[..., ambient_dim]``; every method
    broadcasts over the leading dimensions and keeps the dtype and device of its inputs.
    Subclasses implement the geometry; this class adds the validity checks, the base
    distribution interface and the pieces geoopt's Riemannian optimisers call
    (``retr``, ``retr_transp``, ``egrad2rgrad``).

    Subclasses must supply the geometry marked abstract below (a class that misses one cannot be
    instantiated) and declare what they can do as class attributes, the *capabilities*. Paths,
    objectives, solvers and networks read these instead of testing types, and
    :class:`~manifolds.ProductManifold` derives its own from its factors (noted in brackets):

        dim: intrinsic dimension.
        ambient_dim: number of coordinates of a point.
        compact: closed and bounded, so the base distribution is uniform [all factors].
        has_boundary: the manifold has a boundary (an open mesh) [any factor].
        has_geodesics: ``expmap`` and ``logmap`` exist, in closed form or computed (meshes trace
            them); implicit surfaces have neither [all factors].
        exact_expmap: ``expmap``/``logmap`` in closed form, and ``transp`` carries the geodesic's
            initial velocity to its velocity at the end point; solvers take projected steps
            ``projx(x + u)`` where this is false [all factors].
        piecewise_flat: made of flat pieces (triangle meshes): divergences of tangent fields jump
            across the pieces, so densities defined from them (Moser Flow) jump at edges [any factor].
        ambient_metric: the metric is the Euclidean one of the coordinates [all factors].
        angle_coordinates: the coordinates are periodic angles (flat tori): networks see them
            through sines and cosines [per factor, see :attr:`factors`].
        symmetric_random_walk: ``expmap(x, proju(x, sigma * N(0, I)))`` has a transition density
            symmetric in ``x`` and ``y`` (homogeneous, isotropic, constant metric scale: spheres,
            flat tori, Euclidean space, SO(3)); Metropolis samplers use it as a local proposal [all factors].
        reversible: geoopt's flag, ``retr`` has an inverse [all factors].
        injectivity_radius: ``expmap(x, .)`` is injective on tangent vectors shorter than this [smallest].
    """

    name = "Manifold"
    ndim = 1
    reversible = True
    dim: int
    ambient_dim: int
    compact: bool = True
    has_boundary: bool = False
    has_geodesics: bool = True
    exact_expmap: bool = True
    piecewise_flat: bool = False
    ambient_metric: bool = False
    angle_coordinates: bool = False
    symmetric_random_walk: bool = False
    injectivity_radius: float = math.inf

    @property
    def factors(self) -> Tuple["Manifold", ...]:
        """The factors of a product; ``(self,)`` for any other manifold."""
        return (self,)

    # ------------------------------------------------------------------ geometry (subclasses)
    @abc.abstractmethod
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Map ambient coordinates ``[..., ambient_dim]`` to the closest point on the manifold."""

    def projx_checked(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`projx` for points entering a program (data files, user input).

        The input is checked, and manifolds whose projection branches on values (the closest-point search of meshes, the
        Newton iteration of implicit surfaces) settle every point, reading the device where they must, or raise.
        :meth:`projx` itself reads nothing on the host, for hot loops.
        """
        reason = self._check_tensor(x, "x")
        if reason is not None:
            raise ValueError(f"{self}: {reason}")
        return self.projx(x)

    @abc.abstractmethod
    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Project an ambient vector ``u`` onto the tangent space at ``x``; shapes ``[..., ambient_dim]``."""

    def proju_orthogonal(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The orthogonal projection onto the tangent space at ``x`` (for the metric); shapes ``[..., ambient_dim]``.

        Equal to :meth:`proju` except where ``proju`` is deliberately oblique (meshes, whose
        ``proju`` tilts normal components to keep fluxes continuous across edges). Estimators that
        need ``E[P eps (P eps)^T] = P`` (Hutchinson's trace) project with this one.
        """
        return self.proju(x, u)

    def tangent_frame(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """An orthonormal basis ``[..., dim, ambient_dim]`` of the tangent space at points ``x``, or None.

        Orthonormal for the Euclidean inner product of the coordinates, and given only where the
        differential of :meth:`projx` at the manifold is the orthogonal projector onto it: then a
        field extended through ``projx`` has an ambient Jacobian with ``J = J P``, and its trace is
        ``sum_k f_k^T J f_k``, ``dim`` vector-Jacobian products instead of ``ambient_dim`` (the
        exact divergence uses it). None (the default) where that does not hold or gains nothing.
        """
        return None

    def tangent_field(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Turn an ambient vector field's values ``u`` at ``x`` into a tangent field (applied to a network's output).

        ``proju`` by default; manifolds whose ``proju`` is not a smooth function of ``x`` may drop
        parts of ``u`` that the field should not depend on first (see ``Mesh.tangent_field``).
        """
        return self.proju(x, u)

    def normal_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates of points that networks read: ``[..., D] -> [..., D]``; the points themselves by default.

        Non-compact manifolds whose coordinates grow exponentially with the distance from the
        base's centre (SPD matrices, hyperbolic models) return coordinates of the exponential
        chart there instead, which grow linearly: a network of them grows at most linearly with
        the distance, so (with :meth:`tangent_field` bounding the Riemannian speed by the
        network's output) its flow cannot run off to infinity in finite time.
        """
        return x

    @abc.abstractmethod
    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Follow the geodesic from ``x`` with initial velocity ``u`` for unit time."""

    @abc.abstractmethod
    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Tangent vector at ``x`` whose exponential is ``y`` (the shortest one)."""

    @abc.abstractmethod
    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Parallel transport of ``v`` (tangent at ``x``) along the shortest geodesic to ``y``."""

    def geodesic(self, x: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Point ``exp_x(t u)`` and velocity ``d/dt exp_x(t u)`` of the geodesic from ``x`` along ``u``.

        With closed-form geometry (``exact_expmap``) the velocity is ``u`` parallel-transported to
        the point; otherwise it is differentiated with autograd (one backward pass per coordinate).
        Meshes override this with traced geodesics.

        Args:
            x: start points ``[..., D]``.
            u: initial velocities, tangent at ``x``, ``[..., D]``.
            t: times ``[...]``.

        Returns:
            ``(x_t [..., D], velocity [..., D])``.
        """
        tt = t.unsqueeze(-1)
        if self.exact_expmap:
            y = self.expmap(x, tt * u)
            return y, self.transp(x, y, u)
        with torch.enable_grad():
            tg = t.detach().requires_grad_(True)
            y = self.expmap(x, tg.unsqueeze(-1) * u)
            cols = [torch.autograd.grad(y[..., k].sum(), tg, retain_graph=True)[0] for k in range(y.shape[-1])]
        return y.detach(), torch.stack(cols, dim=-1)

    @abc.abstractmethod
    def inner(
        self, x: torch.Tensor, u: torch.Tensor, v: Optional[torch.Tensor] = None, *, keepdim: bool = False
    ) -> torch.Tensor:
        """Riemannian inner product of tangent vectors at ``x``; shape ``[...]`` (or ``[..., 1]``)."""

    @abc.abstractmethod
    def random_base(
        self,
        *shape: Shape,
        dtype: Optional[torch.dtype] = None,
        device: Optional[torch.device] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Samples of the base distribution, shape ``[*shape, ambient_dim]``."""

    @abc.abstractmethod
    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density of the base distribution w.r.t. the Riemannian volume; ``[..., D] -> [...]``."""

    @abc.abstractmethod
    def _check_point_on_manifold(self, x: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):
        """``(ok, reason)`` for points of the right shape and dtype (see :meth:`check_point`)."""

    @abc.abstractmethod
    def _check_vector_on_tangent(self, x: torch.Tensor, u: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):
        """``(ok, reason)`` for tangent vectors at valid points (see :meth:`check_vector`)."""

    def divergence_correction(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """What the Riemannian divergence of a tangent field adds to the trace of its extension's Jacobian.

        Divergence estimators differentiate the extension ``g(y) = proju(projx(y), V(projx(y)))``
        in ambient coordinates. The trace of its Jacobian is the divergence w.r.t. a reference
        measure ``mu`` on the manifold fixed by ``projx`` (the Euclidean surface measure where
        ``projx`` is the closest-point map; Lebesgue measure of the coordinates ``projx`` keeps
        where it projects along other directions). With ``rho = dvol / dmu`` the Riemannian
        divergence is

            div V = tr(Dg) + <grad log rho, V>,

        and this method returns the second term. It is zero where the metric is a constant
        multiple of the coordinates' one (spheres, tori, Euclidean space, meshes, SO(3)), the
        default here; manifolds with other metrics override it in closed form.

        Args:
            x: points ``[..., D]`` on the manifold.
            v: tangent vectors at ``x``, ``[..., D]``.

        Returns:
            ``<grad log rho(x), v>``, shape ``[...]`` (zeros here).
        """
        return torch.zeros(torch.broadcast_shapes(x.shape, v.shape)[:-1], dtype=v.dtype, device=v.device)

    # ------------------------------------------------------------------ derived geometry
    @property
    def volume(self) -> float:
        """Riemannian volume of the manifold (``inf`` if not compact)."""
        return math.inf

    def norm(self, x: torch.Tensor, u: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """Riemannian norm of ``u`` at ``x``; zero vectors get a zero (not NaN) gradient."""
        sq = self.inner(x, u, keepdim=keepdim)
        pos = sq > 0
        return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """Geodesic distance, shape ``[...]`` (``[..., 1]`` with ``keepdim``)."""
        return self.norm(x, self.logmap(x, y), keepdim=keepdim)

    def dist2(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """Squared geodesic distance."""
        return self.dist(x, y, keepdim=keepdim) ** 2

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Retraction used by geoopt's optimisers: the exponential map followed by ``projx``."""
        return self.projx(self.expmap(x, u))

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riemannian gradient from a Euclidean one (the tangent projection for embedded metrics)."""
        return self.proju(x, u)

    def expmap_transp(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``y = expmap(x, u)`` and ``v`` transported from ``x`` to ``y``."""
        y = self.expmap(x, u)
        return y, self.transp(x, y, v)

    def retr_transp(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``y = retr(x, u)`` and ``v`` transported from ``x`` to ``y``."""
        y = self.retr(x, u)
        return y, self.transp(x, y, v)

    def transp_follow_expmap(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``v`` transported along the geodesic ``t -> expmap(x, t u)``."""
        return self.expmap_transp(x, u, v)[1]

    def transp_follow_retr(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``v`` transported to ``retr(x, u)``."""
        return self.retr_transp(x, u, v)[1]

    def random(self, *size: Shape, dtype=None, device=None, **kwargs) -> torch.Tensor:
        """geoopt-style sampling: ``size`` includes the trailing ``ambient_dim``."""
        size = batch_shape(size)
        if not size or size[-1] != self.ambient_dim:
            raise ValueError(f"{self}: random(*size) needs a trailing dimension {self.ambient_dim}, got {size}")
        return self.random_base(*size[:-1], dtype=dtype, device=device, **kwargs)

    # ------------------------------------------------------------------ validation
    def _check_tensor(self, x: torch.Tensor, name: str) -> Optional[str]:
        """Reason why ``x`` cannot hold points or vectors of this manifold, or None."""
        if not isinstance(x, torch.Tensor):
            return f"'{name}' must be a torch.Tensor, got {type(x).__name__}"
        if not x.is_floating_point():
            return f"'{name}' must have a floating dtype, got {x.dtype}"
        if x.dim() < 1 or x.shape[-1] != self.ambient_dim:
            return (
                f"'{name}' has shape {tuple(x.shape)} but {self} needs a trailing dimension of "
                f"{self.ambient_dim} coordinates"
            )
        finite = torch.isfinite(x).all(dim=-1)
        if not bool(finite.all()):
            bad = (~finite).nonzero()
            kind = "NaN" if bool(torch.isnan(x).any()) else "inf"
            return (f"'{name}' contains {kind} values at {bad.shape[0]} point(s), "
                    f"first at index {tuple(bad[0].tolist())}")
        return None

    def _check_shape(self, shape: Tuple[int, ...], name: str):
        """The geoopt shape hook: trailing dimension must equal ``ambient_dim``."""
        if len(shape) < 1 or shape[-1] != self.ambient_dim:
            return False, (f"'{name}' has shape {tuple(shape)} but {self} needs a trailing dimension of "
                           f"{self.ambient_dim}")
        return True, None

    def check_point(self, x: torch.Tensor, *, atol: Optional[float] = None) -> Tuple[bool, Optional[str]]:
        """Whether ``x`` holds valid points: shape, dtype, finiteness and distance to the manifold.

        Args:
            x: candidate points, shape ``[..., ambient_dim]``.
            atol: tolerance of the on-manifold test (default :func:`default_atol` of the dtype).

        Returns:
            ``(ok, reason)`` with ``reason`` None when ``ok``.
        """
        reason = self._check_tensor(x, "x")
        if reason is not None:
            return False, reason
        tol = default_atol(x.dtype) if atol is None else atol
        return self._check_point_on_manifold(x, atol=tol, rtol=tol)

    def check_vector(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: Optional[float] = None
    ) -> Tuple[bool, Optional[str]]:
        """Whether ``u`` holds valid tangent vectors at the points ``x``.

        Args:
            x: base points, shape ``[..., ambient_dim]`` (assumed valid; see :meth:`check_point`).
            u: candidate tangent vectors, broadcastable against ``x``.
            atol: tolerance of the tangency test.

        Returns:
            ``(ok, reason)``.
        """
        for name, t in (("x", x), ("u", u)):
            reason = self._check_tensor(t, name)
            if reason is not None:
                return False, reason
        try:
            torch.broadcast_shapes(x.shape, u.shape)
        except RuntimeError:
            return False, f"'u' of shape {tuple(u.shape)} does not broadcast against 'x' of shape {tuple(x.shape)}"
        tol = default_atol(u.dtype) if atol is None else atol
        return self._check_vector_on_tangent(x, u, atol=tol, rtol=tol)

    def assert_check_point(self, x: torch.Tensor, *, atol: Optional[float] = None) -> None:
        """Raise ``ValueError`` naming the problem if :meth:`check_point` fails."""
        ok, reason = self.check_point(x, atol=atol)
        if not ok:
            raise ValueError(f"{self}: {reason}")

    def assert_check_vector(self, x: torch.Tensor, u: torch.Tensor, *, atol: Optional[float] = None) -> None:
        """Raise ``ValueError`` naming the problem if :meth:`check_vector` fails."""
        ok, reason = self.check_vector(x, u, atol=atol)
        if not ok:
            raise ValueError(f"{self}: {reason}")

    # geoopt's own entry points, routed through the checks above
    def check_point_on_manifold(self, x: torch.Tensor, *, explain: bool = False, atol: float = 1e-5,
                                rtol: float = 1e-5):
        """The geoopt point check, routed through :meth:`check_point` (``rtol`` is ignored).

        Returns ``ok``, or ``(ok, reason)`` with ``explain=True``.
        """
        ok, reason = self.check_point(x, atol=atol)
        return (ok, reason) if explain else ok

    def check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, explain: bool = False, ok_point: bool = False, atol=1e-5, rtol=1e-5
    ):
        """The geoopt tangent-vector check, routed through :meth:`check_point` and :meth:`check_vector`.

        ``ok_point=True`` skips the point check and ``rtol`` is ignored. Returns ``ok``, or ``(ok, reason)`` with
        ``explain=True``.
        """
        if not ok_point:
            ok, reason = self.check_point(x, atol=atol)
            if not ok:
                return (ok, reason) if explain else ok
        ok, reason = self.check_vector(x, u, atol=atol)
        return (ok, reason) if explain else ok

    # ------------------------------------------------------------------ helpers for subclasses
    @staticmethod
    def _worst(err: torch.Tensor) -> Tuple[float, Tuple[int, ...]]:
        """Largest entry of a per-point error tensor ``[...]`` and its index."""
        flat = err.reshape(-1)
        i = int(flat.argmax())
        idx = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), err.shape)) if err.dim() else ()
        return float(flat[i]), idx

    def _tolerance_report(self, err: torch.Tensor, limit, what: str) -> Tuple[bool, Optional[str]]:
        """Turn a per-point error and its allowed bound into ``(ok, reason)``."""
        bad = err > limit
        if not bool(bad.any()):
            return True, None
        worst, idx = self._worst(err)
        n_bad = int(bad.sum())
        tol = float(torch.as_tensor(limit).max())
        return False, f"{n_bad} point(s) {what}; worst error {worst:.3g} at index {idx} (tolerance {tol:.1g})"

    def extra_repr(self) -> str:
        """The intrinsic dimension, for ``repr``."""
        return f"dim={self.dim}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _add_input_checks(cls)


_add_input_checks(Manifold)


class AmbientMetric:
    """Mixin for manifolds whose metric is the Euclidean one of their coordinates.

    Supplies ``inner`` and ``norm``; list it before :class:`Manifold` among the bases.
    """

    ambient_metric = True

    def inner(self, x, u, v=None, *, keepdim: bool = False) -> torch.Tensor:
        """Dot product of tangent vectors at ``x``, broadcast over ``x``; shape ``[...]``."""
        if v is None:
            v = u
        out = (u * v).sum(-1, keepdim=keepdim)
        return out.expand(torch.broadcast_shapes(out.shape, x.shape[:-1] + ((1,) if keepdim else ())))

    def norm(self, x, u, *, keepdim: bool = False) -> torch.Tensor:
        """``|u|`` (zero vectors get a zero gradient); shape ``[...]``."""
        return torch.linalg.vector_norm(u, dim=-1, keepdim=keepdim)
