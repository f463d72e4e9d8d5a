"""The base class every manifold in the package derives from: a geoopt.Manifold with validation."""

from __future__ import annotations

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
    "projx", "proju", "tangent_field", "expmap", "logmap", "transp", "inner", "norm", "dist", "dist2", "retr",
    "egrad2rgrad", "base_logprob", "expmap_transp", "retr_transp", "transp_follow_expmap", "transp_follow_retr",
)
"""Public operations whose tensor arguments are checked on entry (trailing dimension, floating dtype)."""


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

    Class attributes set by subclasses:
        dim: intrinsic dimension.
        ambient_dim: number of coordinates of a point.
        compact: whether the manifold is compact (then the base distribution is uniform).
        injectivity_radius: ``expmap(x, .)`` is injective on tangent vectors shorter than this.
        ambient_metric: whether the metric is the Euclidean one of the coordinates.
        exact_expmap: whether ``expmap`` is available in closed form; solvers fall back to the
            projected update ``projx(x + u)`` where it is not (meshes, implicit surfaces).
        symmetric_random_walk: ``expmap(x, proju(x, sigma * N(0, I)))`` has a transition density
            that is symmetric in ``x`` and ``y`` (a function of their distance): true on homogeneous,
            isotropic manifolds with a constant metric scale (spheres, flat tori, Euclidean space,
            SO(3)); Metropolis samplers may then use it as a local proposal.
        piecewise_flat: a surface made of flat pieces (triangle meshes). Divergences of tangent
            fields are discontinuous across the pieces there, so densities defined from them
            (Moser Flow's ``nu - div u``) jump at edges.
    """

    name = "Manifold"
    ndim = 1
    reversible = True
    dim: int
    ambient_dim: int
    compact: bool = True
    injectivity_radius: float = math.inf
    ambient_metric: bool = False
    exact_expmap: bool = True
    piecewise_flat: bool = False
    symmetric_random_walk: bool = False

    # ------------------------------------------------------------------ geometry (subclasses)
    def projx(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Map ambient coordinates ``[..., ambient_dim]`` to the closest point on the manifold."""
        raise NotImplementedError

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Project an ambient vector ``u`` onto the tangent space at ``x``; shapes ``[..., ambient_dim]``."""
        raise NotImplementedError

    def tangent_field(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Turn an ambient vector field's values ``u`` at ``x`` into a tangent field (what a network's output goes through).

        ``proju`` by default; manifolds whose ``proju`` is not a smooth function of ``x`` may drop
        parts of ``u`` that the field should not depend on first (see ``Mesh.tangent_field``).
        """
        return self.proju(x, u)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Follow the geodesic from ``x`` with initial velocity ``u`` for unit time."""
        raise NotImplementedError

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Tangent vector at ``x`` whose exponential is ``y`` (the shortest one)."""
        raise NotImplementedError

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Parallel transport of ``v`` (tangent at ``x``) along the shortest geodesic to ``y``."""
        raise NotImplementedError

    def inner(
        self, x: torch.Tensor, u: torch.Tensor, v: Optional[torch.Tensor] = None, *, keepdim: bool = False
    ) -> torch.Tensor:  # pragma: no cover
        """Riemannian inner product of tangent vectors at ``x``; shape ``[...]`` (or ``[..., 1]``)."""
        raise NotImplementedError

    def random_base(
        self,
        *shape: Shape,
        dtype: Optional[torch.dtype] = None,
        device: Optional[torch.device] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:  # pragma: no cover
        """Samples of the base distribution, shape ``[*shape, ambient_dim]``."""
        raise NotImplementedError

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Log-density of the base distribution w.r.t. the Riemannian volume; ``[..., D] -> [...]``."""
        raise NotImplementedError

    def _check_point_on_manifold(self, x: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):  # pragma: no cover
        raise NotImplementedError

    def _check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ):  # pragma: no cover
        raise NotImplementedError

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
            return f"'{name}' contains {kind} values at {bad.shape[0]} point(s), first at index {tuple(bad[0].tolist())}"
        return None

    def _check_shape(self, shape: Tuple[int, ...], name: str):
        """geoopt's shape hook: trailing dimension must equal ``ambient_dim``."""
        if len(shape) < 1 or shape[-1] != self.ambient_dim:
            return False, f"'{name}' has shape {tuple(shape)} but {self} needs a trailing dimension of {self.ambient_dim}"
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
    def check_point_on_manifold(self, x: torch.Tensor, *, explain: bool = False, atol: float = 1e-5, rtol: float = 1e-5):
        ok, reason = self.check_point(x, atol=atol)
        return (ok, reason) if explain else ok

    def check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, explain: bool = False, ok_point: bool = False, atol=1e-5, rtol=1e-5
    ):
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
        return False, f"{n_bad} point(s) {what}; worst error {worst:.3g} at index {idx} (tolerance {float(torch.as_tensor(limit).max()):.1g})"

    def extra_repr(self) -> str:
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
