"""Triangle-mesh surfaces: closest-point projection, the flux-continuous tangent projection, area-uniform sampling."""

from __future__ import annotations

import hashlib
import math
import os
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import geodesics as geo, spectral
from ._numerics import dot, orthonormal_complement
from .base import Manifold, batch_shape
from .mesh_boundary import BoundaryCollar, boundary_edges
from .mesh_index import ClosestPointIndex, GeometryBuffers, barycentric_in
from .mesh_loading import MeshArrays, MeshSource, load_trimesh, normalization, repair_and_check
from .mesh_tilt import face_gradient_basis, tilt_field, vertex_normals


class Mesh(GeometryBuffers, Manifold):
    """A closed or open triangle-mesh surface in R^3 with the metric induced from R^3.

    The mesh is read with trimesh (OBJ, PLY, OFF, STL, ...), duplicate (seam) vertices are
    merged and degenerate faces dropped; meshes with non-manifold edges, with many degenerate
    faces or with several connected components (unless ``components='largest'``) are rejected
    with an error naming the problem (:mod:`manifolds.mesh_loading`).

    Geometry:

    * :meth:`projx` is the closest point on the mesh, batched in torch on the points' device
      (:class:`~manifolds.mesh_index.ClosestPointIndex`): exact, and free of host
      synchronisation for hot loops; :meth:`closest` and :meth:`projx_checked` (entry points)
      certify every row on the host. Its value is the closest point and its Jacobian the
      projector ``I - n n^T`` of the closest face, which is the true Jacobian inside faces and
      makes the ambient divergence of extended fields the intrinsic one (see
      :mod:`manifold_flows.divergence`).
    * :meth:`proju` maps onto the plane of the face containing the point, tilting the normal
      component so that the normal flux of projected fields is continuous across edges
      (:mod:`manifolds.mesh_tilt`); :meth:`proju_orthogonal` is the orthogonal projection.
    * The base distribution is area-uniform: ``base_logprob = -log(area)``.
    * Open meshes (``has_boundary``): :meth:`tangent_field` damps the component of fields across
      the boundary in a thin collar along it (:class:`~manifolds.mesh_boundary.BoundaryCollar`),
      so flows stay on the surface and inside it, and likelihoods stay exact. Moser Flow needs a closed
      surface and refuses them.
    * :meth:`expmap` traces straightest geodesics across faces, :meth:`logmap` and :meth:`dist`
      come from vector heat log maps (potpourri3d; see :mod:`manifolds.geodesics`). They are
      not differentiable and run on the host, so the ODE solvers keep taking projected steps
      (``exact_expmap = False``): ``retr`` is ``projx(x + u)`` and ``transp`` the projection onto
      the new tangent plane (a vector transport).

    Tables (vertices, faces, normals, tilt field, the index) are float64 buffers: ``.to(device)``
    moves them and ``.to(dtype)`` leaves them in float64; each dtype in use gets a cached copy.

    Args:
        source: a file path, a ``trimesh.Trimesh`` or a ``(vertices [n, 3], faces [m, 3])`` pair.
        normalize: ``None`` (keep coordinates), ``"area"`` (centre at the area centroid and scale to
            total area 1) or ``"radius"`` (centre and scale the largest vertex distance to 1).
            Log-densities depend on the scale: an NLL shifts by ``-2 log(s)`` when lengths scale by ``s``.
        scale: multiply the (uncentred) coordinates by this factor instead (e.g. ``1/250`` for the
            raw Stanford bunny, as in published experiments).
        components: ``"error"`` (default) or ``"largest"`` for meshes with several components.
        group_size: faces per group of the projection index (default ``~sqrt(faces) / 4``, at least 8).
        name: a label for ``repr`` and figures.
        degenerate_tol: faces with area below this times the median area are dropped.
        boundary_width: width of the collar of open meshes (default ``0.05 * area / boundary length``,
            about 5% of the area).
        boundary: how fields are damped in the collar: ``"tangent"`` (default; the component
            across the boundary vanishes on it, so flows move along walls) or ``"stop"`` (the whole
            field vanishes on the boundary); see :class:`~manifolds.mesh_boundary.BoundaryCollar`.
    """

    name = "Mesh"
    dim = 2
    ambient_dim = 3
    compact = True
    ambient_metric = True
    exact_expmap = False
    piecewise_flat = True
    # Geodesics through vertices of positive curvature branch, so no positive radius is guaranteed;
    # set it per mesh (with geodesic_atol, the accuracy of the heat-method log maps) to run the
    # generic exp/log property checks of manifolds.testing, as the tests do on an icosphere.
    injectivity_radius = 0.0
    geodesic_atol = 0.0

    def __init__(self, source: MeshSource, *, normalize: Optional[str] = None, scale: Optional[float] = None,
                 components: str = "error", group_size: Optional[int] = None, name: Optional[str] = None,
                 degenerate_tol: float = 1e-10, boundary_width: Optional[float] = None, boundary: str = "tangent"):
        super().__init__()
        if components not in ("error", "largest"):
            raise ValueError(f"components must be 'error' or 'largest', got {components!r}")
        v, f, report = repair_and_check(load_trimesh(source), components=components, degenerate_tol=degenerate_tol)
        centre, factor = normalization(v, f, normalize, scale)
        report["scale"] = float(factor)
        self._centre, self._factor = centre, float(factor)
        self.report, self.normalize = report, normalize
        self.label = name or (Path(source).stem if isinstance(source, (str, os.PathLike)) else "mesh")
        self.arrays = a = MeshArrays.build((v - centre) * factor, f)
        self.area = float(a.areas.sum())
        self.n_vertices, self.n_faces = int(len(a.vertices)), int(len(a.faces))
        self.length_scale = max(1.0, float(np.linalg.norm(a.vertices - a.vertices.mean(0), axis=1).max()))
        tilt_c, tilt_q = tilt_field(a.vertices, a.faces, a.normals, a.areas)
        tables = {"vertices": a.vertices, "faces": a.faces, "face_normals": a.normals, "face_areas": a.areas,
                  "vertex_normals": vertex_normals(a.vertices, a.faces, a.normals, a.areas),
                  "tilt_c": tilt_c, "tilt_q": tilt_q, "area_cdf": np.cumsum(a.areas) / self.area}
        for key, value in tables.items():
            self.register_buffer(key, torch.from_numpy(np.array(value)), persistent=False)
        self.index = ClosestPointIndex(a.vertices, a.faces, group_size=group_size)
        edges = boundary_edges(a.faces)
        self.has_boundary = len(edges) > 0
        self.collar = None
        if self.has_boundary:
            length = float(np.linalg.norm(a.vertices[edges[:, 0]] - a.vertices[edges[:, 1]], axis=1).sum())
            width = 0.05 * self.area / length if boundary_width is None else float(boundary_width)
            self.collar = BoundaryCollar(a.vertices, edges, width, mode=boundary)
        self._memo: List[Tuple[Any, tuple, torch.Tensor, torch.Tensor]] = []
        self._geodesics = None

    # ------------------------------------------------------------------ tables
    def _data(self, dtype: torch.dtype, device: torch.device) -> Dict[str, torch.Tensor]:
        """The mesh's buffers and the index's face table in ``dtype`` on ``device`` (built once per pair)."""
        d = self.cast(dtype, device)
        if "table" not in d:
            d["table"] = self.index.cast(dtype, device)["table"]
        return d

    def moved(self) -> None:
        """Forget the remembered :meth:`projx` outputs: their faces were found on the old device."""
        self._memo = []

    @property
    def unresolved_projections(self) -> int:
        """Points whose closest face the synchronisation-free search could not certify so far (reads the device)."""
        return int(self.index.unresolved)

    # ------------------------------------------------------------------ closest points
    @torch.no_grad()
    def closest(self, x: torch.Tensor, *, exact: bool = True, chunk: int = 8192
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closest points on the mesh.

        Args:
            x: ambient points ``[..., 3]`` (any floating dtype and device).
            exact: check the input and certify every row on the host (default); ``False`` is the
                synchronisation-free search of hot loops (see :class:`~manifolds.mesh_index.ClosestPointIndex`).
            chunk: points per batch of the search.

        Returns:
            ``(face [...], bary [..., 3], point [..., 3])``: index of the closest face, barycentric
            coordinates of the closest point in it (vertices in the order of ``faces``), and the point.
        """
        if exact:
            reason = self._check_tensor(x, "x")
            if reason is not None:
                raise ValueError(f"{self}: {reason}")
        return self.index.closest(x, exact=exact, chunk=chunk)

    def to_internal(self, raw: torch.Tensor) -> torch.Tensor:
        """Map points ``[..., 3]`` in the source file's coordinates to the mesh's (normalised) ones."""
        return (raw - torch.as_tensor(self._centre, dtype=raw.dtype, device=raw.device)) * self._factor

    def to_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_internal`."""
        return x / self._factor + torch.as_tensor(self._centre, dtype=x.dtype, device=x.device)

    @staticmethod
    def _memo_key(x: torch.Tensor) -> Optional[tuple]:
        """What identifies ``x``'s values while its memory is alive: the memory, the layout and the version counter.

        Views made by ``detach()`` share all of them, so a detached copy of a remembered tensor is recognised.
        Inference tensors carry no version counter: None (nothing is remembered).
        """
        try:
            version = x._version
        except RuntimeError:
            return None
        return x.data_ptr(), tuple(x.shape), x.stride(), x.dtype, x.device, version

    def _remember(self, x: torch.Tensor, face: torch.Tensor, p: torch.Tensor) -> None:
        """Remember that the closest point of ``x`` is ``p`` (detached) on ``face``."""
        key = self._memo_key(x)
        if key is not None and all(k != key or ref() is None for ref, k, _, _ in self._memo):
            # the weak reference keeps the key honest: while x lives, no other tensor can own its memory
            self._memo.append((weakref.ref(x), key, face, p))
            del self._memo[:-8]

    def _recall(self, x: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """``(face, p)`` for a remembered ``x`` (or a ``detach()`` view of one) with unchanged values, else None."""
        key = self._memo_key(x)
        if key is None:
            return None
        for ref, k, face, p in reversed(self._memo):
            if k == key and ref() is not None:
                return face, p
        return None

    def face_of(self, x: torch.Tensor) -> torch.Tensor:
        """Index ``[...]`` of the face containing (closest to) each point ``x [..., 3]``.

        The inputs and outputs of :meth:`projx` are remembered (by memory, layout and version
        counter), so the ``proju(projx(y), v)`` pattern of the fields and solvers searches once.
        """
        hit = self._recall(x)
        return hit[0] if hit is not None else self.index.closest(x, exact=False)[0]

    def remember_faces(self, x: torch.Tensor, face: torch.Tensor) -> None:
        """Take ``face [...]`` as the faces of the points ``x [..., 3]``, which lie on the mesh.

        :meth:`projx`, :meth:`face_of` and the methods built on them then read the faces of ``x``
        (or of a ``detach()`` view of it, while its values are unchanged) instead of searching for
        them. For host code that knows where its points lie (geodesic banks); nothing is checked,
        so a wrong face gives wrong projections.
        """
        self._remember(x, face, x.detach())

    def _straight_through(self, x: torch.Tensor, face: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        p = p.to(x.dtype)
        self._remember(x, face, p)
        out = p
        if x.requires_grad:
            n = self._data(x.dtype, x.device)["face_normals"][face]
            delta = x - x.detach()
            out = p + delta - n * dot(n, delta, keepdim=True)
        self._remember(out, face, p)
        return out

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Closest point on the mesh, ``[..., 3]``; differentiable with the face projector as Jacobian.

        Reads nothing on the host (hot loops); see :meth:`projx_checked` for points entering a program.
        A point projected before (the input or output of an earlier call, or a ``detach()`` view of
        one, values unchanged) is not searched again: a solver stage, the field's extension and the
        network each project the same state.
        """
        hit = self._recall(x)
        face, p = hit if hit is not None else self.index.closest(x, exact=False)[::2]
        return self._straight_through(x, face, p)

    def projx_checked(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`projx` with the input checked and every row's closest face certified (entry points)."""
        face, _, p = self.closest(x, exact=True)
        return self._straight_through(x, face, p)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normal ``[..., 3]`` of the face containing each point."""
        return self._data(x.dtype, x.device)["face_normals"][self.face_of(x)]

    # ------------------------------------------------------------------ tangent vectors
    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Flux-continuous projection of ``u [..., 3]`` onto the plane of the face containing ``x [..., 3]``.

        ``u - <n, u> n + <n, u> tau(x)``: the orthogonal projection onto the face plane plus the
        normal component ``<n, u>`` times the tilt field ``tau`` of :mod:`manifolds.mesh_tilt`,
        which makes the normal flux of every projected ambient field continuous across edges: the
        divergence theorem holds for the piecewise field (Moser Flow densities integrate to 1) and
        the ODE likelihood needs no jump terms at edges. With the orthogonal projection alone the
        flux jumps by about ``<u, n>`` times the bending angle and both fail. ``tau``'s divergence
        inside a face is the constant ``2 C``, so divergences stay bounded at vertices too. The
        projection is linear in ``u``, idempotent, the orthogonal projection in flat regions, and
        differentiable in ``x``, which the divergence needs.
        """
        face = self.face_of(x)
        d = self._data(u.dtype, u.device)
        n = d["face_normals"][face]
        tau = d["tilt_c"][face].unsqueeze(-1) * x.to(u.dtype) - d["tilt_q"][face]
        return u + dot(n, u, keepdim=True) * (tau - n)

    def barycentric(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Face ``[...]`` containing each point ``x [..., 3]`` and its barycentric coordinates ``[..., 3]`` there.

        The coordinates are differentiable in ``x`` (linear inside the face), so functions
        interpolated from vertex values can be differentiated.
        """
        face = self.face_of(x)
        return face, barycentric_in(x, self._data(x.dtype, x.device)["table"][:, face])

    def smooth_normal(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normal ``[..., 3]`` interpolated from the vertex normals.

        Continuous on the mesh; differentiable in ``x``.
        """
        face, b = self.barycentric(x)
        d = self._data(x.dtype, x.device)
        nrm = (b.unsqueeze(-1) * d["vertex_normals"][d["faces"][face]]).sum(-2)
        return nrm / torch.linalg.vector_norm(nrm, dim=-1, keepdim=True)

    def tangent_field(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``proju(x, u - <u, N> N)``, ``N`` the :meth:`smooth_normal`: what network outputs go through.

        On a smooth surface a projected field ignores the normal component of ``u``, and so does
        its divergence. On a mesh :meth:`proju` keeps a trace of ``<u, n>`` (the tilt that makes the
        flux continuous) whose divergence, ``<u, n>`` times the face's discrete mean curvature, is
        large although the field barely moves: a network's free normal output would then turn
        every face into a source or sink. Removing the component along the continuous normal ``N``
        first makes the field, and its divergence, independent of it (a purely normal ``u`` gives
        zero); what remains of ``<u, n>`` is ``u``'s tangential part times the angle between ``N``
        and the face normal, a discretisation effect that vanishes as the mesh is refined.
        On open meshes the result is damped in the boundary collar (tangent to the boundary on it).
        """
        nrm = self.smooth_normal(x).to(u.dtype)
        out = self.proju(x, u - dot(nrm, u, keepdim=True) * nrm)
        if self.collar is not None:
            out = self.collar.apply(x, out, self.normal(x))
        return out

    def tangent_frame(self, x: torch.Tensor) -> torch.Tensor:
        """An orthonormal basis ``[..., 2, 3]`` of each point's face plane (where :meth:`projx`'s Jacobian projects)."""
        return orthonormal_complement(self.normal(x))

    def proju_orthogonal(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Orthogonal projection ``u - <n_f, u> n_f`` onto the face plane.

        This is the Riemannian gradient of an ambient gradient ``u``.
        """
        n = self.normal(x).to(u.dtype)
        return u - n * dot(n, u, keepdim=True)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riemannian gradient: the orthogonal projection onto the face plane."""
        return self.proju_orthogonal(x, u)

    def inner(self, x, u, v=None, *, keepdim: bool = False) -> torch.Tensor:
        """Euclidean inner product of tangent vectors; shape ``[...]``."""
        out = dot(u, u if v is None else v, keepdim=keepdim)
        return out.expand(torch.broadcast_shapes(out.shape, x.shape[:-1] + ((1,) if keepdim else ())))

    def norm(self, x, u, *, keepdim: bool = False) -> torch.Tensor:
        """``|u|``; shape ``[...]``."""
        return torch.linalg.vector_norm(u, dim=-1, keepdim=keepdim)

    # ------------------------------------------------------------------ geodesics (potpourri3d, on the host)
    @property
    def geodesics(self) -> "geo.MeshGeodesics":
        """The :class:`manifolds.geodesics.MeshGeodesics` of this mesh (built on first use; needs potpourri3d)."""
        if self._geodesics is None:
            self._geodesics = geo.MeshGeodesics(self.arrays.vertices, self.arrays.faces, self.arrays.normals)
        return self._geodesics

    def geodesic(self, x: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``exp_x(t u)`` and its time derivative ``d/dt exp_x(t u)`` (``|u|`` times the unit tangent there).

        Shapes: ``x, u [..., 3]``, ``t [...]``; both outputs ``[..., 3]``. Traced on the host, not
        differentiable (see :func:`manifolds.geodesics.traced_geodesic`).
        """
        return geo.traced_geodesic(self, x, u, t)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The straightest geodesic from ``x`` along ``u`` for length ``|u|``, unfolding faces at edges.

        Exact polyhedral tracing (potpourri3d's ``GeodesicTracer``); on a mesh with boundary it
        stops where it meets the boundary. Batched over leading dimensions, not differentiable.
        """
        return self.geodesic(x, u, torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device))[0]

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Tangent vector at ``x`` along the shortest geodesic to ``y``, with its length.

        Vector heat log maps from the corners of ``x``'s face, interpolated (see :mod:`manifolds.geodesics`).
        Not differentiable.
        """
        return geo.heat_logmap(self, x, y)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """Geodesic distance ``(|log_x y| + |log_y x|) / 2`` (heat-method log maps): symmetric, zero on the diagonal."""
        d = 0.5 * (self.norm(x, self.logmap(x, y)) + self.norm(y, self.logmap(y, x)))
        return d.unsqueeze(-1) if keepdim else d

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``projx(x + u)``."""
        return self.projx(x + u)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Vector transport by projection onto the tangent plane at ``y`` (not parallel transport)."""
        return self.proju(y, v)

    # ------------------------------------------------------------------ sampling and densities
    @property
    def volume(self) -> float:
        """Total surface area."""
        return self.area

    def sample_faces(self, face: torch.Tensor, generator: Optional[torch.Generator] = None,
                     dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """A uniform point in each of the given faces ``[N] -> [N, 3]``.

        Barycentric coordinates ``(1 - sqrt(r1), sqrt(r1)(1 - r2), sqrt(r1) r2)``.
        """
        return self._points_in(face, generator, dtype)[1]

    def _points_in(self, face: torch.Tensor, generator: Optional[torch.Generator],
                   dtype: Optional[torch.dtype]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Barycentric coordinates ``[N, 3]`` and positions ``[N, 3]`` of a uniform point in each face."""
        dtype = dtype or torch.get_default_dtype()
        d = self._data(dtype, face.device)
        r = torch.rand(2, face.shape[0], dtype=dtype, device=face.device, generator=generator)
        s = r[0].sqrt()
        bary = torch.stack([1 - s, s * (1 - r[1]), s * r[1]], -1)
        return bary, (bary.unsqueeze(-1) * d["vertices"][d["faces"][face]]).sum(-2)

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Area-uniform samples ``[*shape, 3]``.

        A face with probability proportional to its area (inverse CDF, no host synchronisation), then a uniform point
        in it (:meth:`sample_faces`).
        """
        shape = batch_shape(shape)
        return self.random_located(math.prod(shape), dtype=dtype, device=device, generator=generator)[2].reshape(
            shape + (3,))

    def random_located(self, n: int, *, dtype=None, device=None, generator=None
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` area-uniform samples with where they lie: ``(face [n], bary [n, 3], x [n, 3])``.

        The draws of :meth:`random_base` (the same points from the same generator state), with the
        face each was drawn in and its barycentric coordinates there, so that host code that needs
        them (geodesic banks) does not search for them.
        """
        dtype = dtype or torch.get_default_dtype()
        if device is not None:
            device = torch.device(device)
        else:
            device = generator.device if generator is not None else torch.device("cpu")
        cdf = self._data(torch.float64, device)["area_cdf"]
        u = torch.rand(n, dtype=torch.float64, device=device, generator=generator)
        face = torch.searchsorted(cdf, u, right=True).clamp_max(self.n_faces - 1)
        bary, x = self._points_in(face, generator, dtype)
        return face, bary, x

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """``-log(area)`` for every point; shape ``[...]``."""
        return torch.full(x.shape[:-1], -math.log(self.area), dtype=x.dtype, device=x.device)

    def interpolate(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Linear interpolation of vertex values ``[n_vertices, ...]`` at points ``x [..., 3]`` -> ``[..., ...]``.

        Differentiable in ``x`` inside faces.
        """
        if values.shape[0] != self.n_vertices:
            raise ValueError(f"values need one row per vertex ({self.n_vertices}), got shape {tuple(values.shape)}")
        face, bary = self.barycentric(x)
        vals = values.to(x.device)[self._data(x.dtype, x.device)["faces"][face]]  # [..., 3, ...]
        b = bary.to(vals.dtype).reshape(bary.shape + (1,) * (vals.dim() - bary.dim()))
        return (b * vals).sum(x.dim() - 1)

    def face_gradient_basis(self, dtype=torch.float64, device=None) -> torch.Tensor:
        """Gradients of the three barycentric (hat) functions on each face, ``[faces, 3, 3]`` (face, vertex, xyz)."""
        a = self.arrays
        return torch.as_tensor(face_gradient_basis(a.vertices, a.faces, a.normals, a.areas), dtype=dtype, device=device)

    def eigenpairs(self, k: int, *, cache: bool = True) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` smallest non-constant Laplace-Beltrami eigenpairs ``(values [k], vectors [n_vertices, k])``.

        Cached on disk (see :func:`manifolds.spectral.eigenpairs`).
        """
        return spectral.eigenpairs(self, k, cache=cache)

    # ------------------------------------------------------------------ identity and validation
    def content_hash(self) -> str:
        """SHA-256 of the (repaired, scaled) vertex and face arrays: the key of cached eigenpairs."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.arrays.vertices, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(self.arrays.faces, dtype="<i8").tobytes())
        return h.hexdigest()

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        _, _, p = self.closest(x)
        err = torch.linalg.vector_norm(x.detach() - p, dim=-1)
        what = "are off the mesh (distance to the closest face too large)"
        return self._tolerance_report(err, atol * self.length_scale, what)

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        n = self.normal(x).to(u.dtype)  # the face x was projected onto (on an edge, either face is closest)
        err = dot(n, u).abs()
        limit = atol + rtol * torch.linalg.vector_norm(u, dim=-1)
        return self._tolerance_report(err, limit, "are not tangent to their face (|<n, u>| too large)")

    def extra_repr(self) -> str:
        """The mesh's name, sizes and area, for ``repr``."""
        return f"{self.label!r}, vertices={self.n_vertices}, faces={self.n_faces}, area={self.area:.4g}"

    def __deepcopy__(self, memo):
        # the geometry is immutable: copies (EMA, DDP) share it instead of duplicating its arrays
        return self
