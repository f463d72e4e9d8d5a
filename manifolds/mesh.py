"""Triangle-mesh surfaces: exact batched closest-point projection, area-uniform sampling, face normals."""

from __future__ import annotations

import hashlib
import math
import os
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ._numerics import dot
from .base import Manifold, batch_shape

MeshSource = Union[str, os.PathLike, "trimesh.Trimesh", Tuple[Any, Any]]  # noqa: F821

NORMALIZATIONS = (None, "area", "radius")

_FIELDS = 16  # rows of the packed per-face table used by the closest-point kernel


def _load_trimesh(source: MeshSource):
    """A ``trimesh.Trimesh`` from a path, a Trimesh, or a ``(vertices, faces)`` pair (not yet repaired)."""
    import trimesh

    if isinstance(source, trimesh.Trimesh):
        return trimesh.Trimesh(vertices=np.asarray(source.vertices, dtype=np.float64),
                               faces=np.asarray(source.faces, dtype=np.int64), process=False)
    if isinstance(source, (tuple, list)) and len(source) == 2:
        v = np.asarray(torch.as_tensor(source[0]).detach().cpu().numpy() if isinstance(source[0], torch.Tensor)
                       else source[0], dtype=np.float64)
        f = np.asarray(source[1].detach().cpu().numpy() if isinstance(source[1], torch.Tensor) else source[1])
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"mesh vertices must have shape [n, 3], got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"mesh faces must be an integer array of shape [m, 3], got {f.dtype} {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"mesh faces index vertices 0..{len(v) - 1}, found indices {f.min()}..{f.max()}")
        return trimesh.Trimesh(vertices=v, faces=f.astype(np.int64), process=False)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"mesh file {path} does not exist")
        try:
            loaded = trimesh.load(str(path), force="mesh", process=False)
        except Exception as e:  # trimesh raises many types for unreadable files; report them as one
            raise ValueError(f"cannot read mesh file {path}: {type(e).__name__}: {e}") from e
        if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
            raise ValueError(f"mesh file {path} contains no triangles")
        return loaded
    raise TypeError(f"a mesh is a file path, a trimesh.Trimesh or a (vertices, faces) pair, got {type(source).__name__}")


def _repair_and_check(tm, *, components: str, degenerate_tol: float) -> Tuple[np.ndarray, np.ndarray, Dict[str, int]]:
    """Merge duplicate vertices, drop degenerate faces, and reject what cannot be served.

    Returns float64 vertices ``[n, 3]``, int64 faces ``[m, 3]`` and counts of what was repaired.
    """
    import trimesh

    v = np.asarray(tm.vertices, dtype=np.float64)
    f = np.asarray(tm.faces, dtype=np.int64)
    if not np.isfinite(v).all():
        raise ValueError(f"mesh has {int((~np.isfinite(v)).any(1).sum())} vertices with NaN or inf coordinates")
    report: Dict[str, int] = {"vertices_in": int(len(v)), "faces_in": int(len(f))}
    tm = trimesh.Trimesh(vertices=v, faces=f, process=False)
    tm.merge_vertices()
    merged = report["vertices_in"] - len(tm.vertices)
    # repeated vertex indices and (near) zero area are both degenerate; drop them
    ff = np.asarray(tm.faces)
    area = np.asarray(tm.area_faces)
    scale = max(float(np.median(area)), np.finfo(np.float64).tiny) if len(area) else 1.0
    repeated = (ff[:, 0] == ff[:, 1]) | (ff[:, 1] == ff[:, 2]) | (ff[:, 0] == ff[:, 2])
    good = ~repeated & (area > degenerate_tol * scale)
    dropped = int((~good).sum())
    if dropped:
        tm.update_faces(good)
        tm.remove_unreferenced_vertices()
    report.update(merged_vertices=int(merged), dropped_degenerate_faces=dropped)
    if len(tm.faces) == 0:
        raise ValueError("mesh has no faces of non-zero area")
    if dropped > 0.01 * report["faces_in"]:
        raise ValueError(f"mesh has {dropped} degenerate (zero-area or repeated-vertex) faces out of "
                         f"{report['faces_in']}: too many to drop silently; repair the mesh first")
    _, face_counts = np.unique(np.sort(np.asarray(tm.faces), axis=1), axis=0, return_counts=True)
    if (face_counts > 1).any():
        raise ValueError(f"mesh has {int((face_counts > 1).sum())} face(s) listed more than once with the same three "
                         "vertices (a double-sided sheet?); a surface needs each face once")
    edges = np.sort(np.asarray(tm.edges), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    if (counts > 2).any():
        bad = uniq[counts > 2]
        raise ValueError(f"mesh has {len(bad)} non-manifold edge(s) shared by more than two faces, first between "
                         f"vertices {int(bad[0, 0])} and {int(bad[0, 1])}; a surface mesh needs at most two faces per edge")
    report["boundary_edges"] = int((counts == 1).sum())
    labels = trimesh.graph.connected_component_labels(tm.face_adjacency, node_count=len(tm.faces))
    sizes = np.bincount(labels)
    report["components"] = int(len(sizes))
    if len(sizes) > 1:
        if components == "error":
            raise ValueError(f"mesh has {len(sizes)} connected components with {sorted(sizes.tolist(), reverse=True)[:5]} "
                             "faces; one surface is expected (pass components='largest' to keep the largest)")
        tm.update_faces(labels == int(sizes.argmax()))
        tm.remove_unreferenced_vertices()
        report["dropped_component_faces"] = int(sizes.sum() - sizes.max())
    return np.asarray(tm.vertices, dtype=np.float64), np.asarray(tm.faces, dtype=np.int64), report


def _kd_groups(points: np.ndarray, size: int) -> List[np.ndarray]:
    """Split point indices into groups of ``size`` (the last may be smaller) by recursive median cuts
    along the longest side of the bounding box: compact groups with tight boxes."""
    out: List[np.ndarray] = []
    stack = [np.arange(len(points))]
    while stack:
        idx = stack.pop()
        if len(idx) <= size:
            out.append(idx)
            continue
        pts = points[idx]
        axis = int(np.ptp(pts, axis=0).argmax())
        left = -(-len(idx) // (2 * size)) * size  # a multiple of size, about half
        part = np.argpartition(pts[:, axis], left - 1)
        stack += [idx[part[left:]], idx[part[:left]]]
    return out


def _closest_on_faces(q: Tuple[torch.Tensor, torch.Tensor, torch.Tensor], fd: List[torch.Tensor], full: bool):
    """Squared distance from query points to triangles (and, with ``full``, barycentrics of the closest point).

    ``q`` are the query coordinates (each broadcastable against the face rows); ``fd`` the 16
    rows of the packed face table (see :meth:`Mesh._face_table`), each ``[...]``. The closest
    point is the orthogonal projection onto the plane when it falls inside the triangle, else
    the closest of the three edge points.
    """
    qx, qy, qz = q
    ax, ay, az, e1x, e1y, e1z, e2x, e2y, e2z, d00, d01, d11, inv, i00, i11, i33 = fd
    wx, wy, wz = qx - ax, qy - ay, qz - az
    d20 = wx * e1x + wy * e1y + wz * e1z
    d21 = wx * e2x + wy * e2y + wz * e2z
    v = (d11 * d20 - d01 * d21) * inv
    s = (d00 * d21 - d01 * d20) * inv
    u = 1.0 - v - s
    rx, ry, rz = wx - v * e1x - s * e2x, wy - v * e1y - s * e2y, wz - v * e1z - s * e2z
    inf = torch.tensor(math.inf, dtype=wx.dtype, device=wx.device)
    d2p = torch.where((u >= 0) & (v >= 0) & (s >= 0), rx * rx + ry * ry + rz * rz, inf)
    tab = (d20 * i00).clamp(0.0, 1.0)
    d2ab = (wx - tab * e1x) ** 2 + (wy - tab * e1y) ** 2 + (wz - tab * e1z) ** 2
    tac = (d21 * i11).clamp(0.0, 1.0)
    d2ac = (wx - tac * e2x) ** 2 + (wy - tac * e2y) ** 2 + (wz - tac * e2z) ** 2
    e3x, e3y, e3z = e2x - e1x, e2y - e1y, e2z - e1z
    bx, by, bz = wx - e1x, wy - e1y, wz - e1z
    tbc = ((bx * e3x + by * e3y + bz * e3z) * i33).clamp(0.0, 1.0)
    d2bc = (bx - tbc * e3x) ** 2 + (by - tbc * e3y) ** 2 + (bz - tbc * e3z) ** 2
    d2 = torch.minimum(torch.minimum(d2p, d2ab), torch.minimum(d2ac, d2bc))
    if not full:
        return d2
    zero, one = torch.zeros_like(u), torch.ones_like(u)
    region = torch.stack([d2p, d2ab, d2ac, d2bc], -1).argmin(-1)
    b1 = torch.stack([v, tab, zero, one - tbc], -1).gather(-1, region.unsqueeze(-1)).squeeze(-1)
    b2 = torch.stack([s, zero, tac, tbc], -1).gather(-1, region.unsqueeze(-1)).squeeze(-1)
    return d2, torch.stack([one - b1 - b2, b1, b2], -1)


class Mesh(Manifold):
    """A closed (or bounded) triangle-mesh surface in R^3 with the metric induced from R^3.

    The mesh is read with trimesh (OBJ, PLY, OFF, STL, ...), duplicate (seam) vertices are
    merged and degenerate faces dropped; meshes with non-manifold edges, with many degenerate
    faces or with several connected components (unless ``components='largest'``) are rejected
    with an error naming the problem.

    Geometry:

    * :meth:`projx` is the exact closest point on the mesh, batched in torch on the points'
      device. Faces are split into small groups by recursive median cuts (the leaves of a kd-tree);
      each query tests the faces of the few groups whose bounding boxes come closest and widens the
      search until the next box is farther than the best face found, so the answer is the
      brute-force one (tested) at a fraction of its cost (see BENCHMARKS.md).
      Its value is the closest point and its Jacobian the projector ``I - n n^T`` of the closest
      face, which is the true Jacobian inside faces and makes the ambient divergence of extended
      fields the intrinsic one (see :mod:`manifold_flows.divergence`).
    * :meth:`proju` maps onto the plane of the face containing the point, tilting the normal
      component of the vector so that the normal flux of projected fields is continuous across
      edges (see :meth:`proju`); :meth:`proju_orthogonal` is the orthogonal projection.
    * The base distribution is area-uniform: ``base_logprob = -log(area)``.
    * :meth:`expmap` traces straightest geodesics across faces, :meth:`logmap` and :meth:`dist`
      come from vector heat log maps (potpourri3d; see :mod:`manifolds.geodesics`). They are
      not differentiable and run on the host, so the ODE solvers keep taking projected steps
      (``exact_expmap = False``): ``retr`` is ``projx(x + u)`` and ``transp`` the projection onto
      the new tangent plane (a vector transport).

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
                 degenerate_tol: float = 1e-10):
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        if normalize is not None and scale is not None:
            raise ValueError("pass either normalize or scale, not both")
        if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        if components not in ("error", "largest"):
            raise ValueError(f"components must be 'error' or 'largest', got {components!r}")
        tm = _load_trimesh(source)
        v, f, report = _repair_and_check(tm, components=components, degenerate_tol=degenerate_tol)
        centre, factor = np.zeros(3), 1.0
        if normalize is not None:
            a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
            fa = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
            centre = ((a + b + c) / 3 * fa[:, None]).sum(0) / fa.sum()
            v = v - centre
            factor = 1.0 / math.sqrt(fa.sum()) if normalize == "area" else 1.0 / np.linalg.norm(v, axis=1).max()
            v = v * factor
        elif scale is not None:
            factor = float(scale)
            v = v * factor
        report["scale"] = float(factor)
        self._centre, self._factor = centre, float(factor)
        self.report = report
        self.normalize = normalize
        self.label = name or (Path(source).stem if isinstance(source, (str, os.PathLike)) else "mesh")
        self._v = v
        self._f = f
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        cross = np.cross(b - a, c - a)
        twice = np.linalg.norm(cross, axis=1)
        self._normals = cross / twice[:, None]
        self._areas = 0.5 * twice
        self.area = float(self._areas.sum())
        self.n_vertices, self.n_faces = int(len(v)), int(len(f))
        self.has_boundary = report["boundary_edges"] > 0
        self.length_scale = max(1.0, float(np.linalg.norm(v - v.mean(0), axis=1).max()))
        self.register_buffer("vertices", torch.from_numpy(v.copy()), persistent=False)
        self.register_buffer("faces", torch.from_numpy(f.copy()), persistent=False)
        self._build_index(group_size)
        self._cache: Dict[Tuple[torch.dtype, torch.device], Dict[str, torch.Tensor]] = {}
        self._memo: List[Tuple[Any, int, torch.Tensor]] = []
        self._eig: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self._geodesics = None

    # ------------------------------------------------------------------ construction helpers
    def _build_index(self, group_size: Optional[int]) -> None:
        m = self.n_faces
        size = int(group_size) if group_size is not None else max(8, int(round(math.sqrt(m) / 4)))
        if size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        tri = self._v[self._f]  # [m, 3, 3]
        groups = np.stack([np.concatenate([g, np.repeat(g[-1:], size - len(g))]) for g in _kd_groups(tri.mean(1), size)])
        pts = tri[groups].reshape(len(groups), -1, 3)
        pad = 1e-9 * self.length_scale
        self._groups, self._group_lo, self._group_hi = groups, pts.min(1) - pad, pts.max(1) + pad
        self.group_size, self.n_groups = size, len(groups)
        self.probe = 4

    def _face_table(self) -> np.ndarray:
        """Packed ``[16, faces]`` float64 table: a, e1 = b - a, e2 = c - a, Gram entries, inverses."""
        v, f = self._v, self._f
        a = v[f[:, 0]]
        e1, e2 = v[f[:, 1]] - a, v[f[:, 2]] - a
        d00, d01, d11 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
        e3 = e2 - e1
        rows = [a[:, 0], a[:, 1], a[:, 2], e1[:, 0], e1[:, 1], e1[:, 2], e2[:, 0], e2[:, 1], e2[:, 2],
                d00, d01, d11, 1.0 / (d00 * d11 - d01 * d01), 1.0 / d00, 1.0 / d11, 1.0 / (e3 * e3).sum(1)]
        return np.stack(rows)

    def _edge_bisectors(self) -> np.ndarray:
        """``[faces, 3, 3]``: for the edge opposite each corner, the unit bisector of the two faces' normals
        (the face's own normal on a boundary edge)."""
        f, n = self._f, self._normals
        m = len(f)
        half = np.stack([f[:, [1, 2]], f[:, [2, 0]], f[:, [0, 1]]], 1).reshape(-1, 2)  # edge opposite corner k
        _, edge_id = np.unique(np.sort(half, 1), axis=0, return_inverse=True)
        edge_id = edge_id.ravel()
        owner = np.repeat(np.arange(m), 3)
        order = np.argsort(edge_id, kind="stable")
        other = owner.copy()
        sorted_ids = edge_id[order]
        pair = np.nonzero(sorted_ids[1:] == sorted_ids[:-1])[0]
        other[order[pair]] = owner[order[pair + 1]]
        other[order[pair + 1]] = owner[order[pair]]
        bis = n[owner] + n[other]
        bis /= np.linalg.norm(bis, axis=1, keepdims=True).clip(1e-300)
        return bis.reshape(m, 3, 3)

    def _vertex_normals(self) -> np.ndarray:
        """``[vertices, 3]`` unit vertex normals: the area-weighted mean of the normals of the faces around each vertex."""
        acc = np.zeros_like(self._v)
        weighted = self._normals * self._areas[:, None]
        for k in range(3):
            np.add.at(acc, self._f[:, k], weighted)
        return acc / np.linalg.norm(acc, axis=1, keepdims=True).clip(1e-300)

    def _tilt(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per-face ``(C [faces], q [faces, 3])`` of the tilt field ``tau(x) = C x - q`` used by :meth:`proju`.

        ``tau`` is the lowest-order Raviart-Thomas field of the face whose normal component on the
        edge opposite corner ``k`` is ``t_k = -<nu_k, m_k> / <n, m_k>`` (``nu_k`` the edge's outward
        normal in the face plane, ``m_k`` the bisector of the normals of the faces that share the
        edge): ``tau = sum_k t_k l_k / (2 A) (x - p_k)``, with ``l_k`` the edge length, ``A`` the
        face area and ``p_k`` the corner. See :meth:`proju` for why.
        """
        v, f, n = self._v, self._f, self._normals
        bis = self._edge_bisectors()
        P = v[f]  # [m, 3 corners, 3]
        C = np.zeros(len(f))
        q = np.zeros((len(f), 3))
        for k in range(3):
            pk, pi, pj = P[:, k], P[:, (k + 1) % 3], P[:, (k + 2) % 3]
            e = pj - pi
            length = np.linalg.norm(e, axis=1)
            nu = np.cross(e / length[:, None], n)
            nu *= np.sign((nu * (pi - pk)).sum(1))[:, None]  # outward: away from the opposite corner
            m = bis[:, k]
            t = -(nu * m).sum(1) / (n * m).sum(1).clip(1e-12)
            c = t * length / (2.0 * self._areas)
            C += c
            q += c[:, None] * pk
        return C, q

    def _data(self, dtype: torch.dtype, device: torch.device) -> Dict[str, torch.Tensor]:
        """Per-face and per-group tensors in ``dtype`` on ``device`` (built once per pair)."""
        key = (dtype, torch.device(device))
        d = self._cache.get(key)
        if d is None:
            t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
            tilt_c, tilt_q = self._tilt()
            d = {
                "table": t(self._face_table()),
                "normals": t(self._normals),
                "vertex_normals": t(self._vertex_normals()),
                "tilt_c": t(tilt_c),
                "tilt_q": t(tilt_q),
                "areas": t(self._areas),
                "vertices": t(self._v),
                "faces": torch.as_tensor(self._f, device=device),
                "groups": torch.as_tensor(self._groups, device=device),
                "glo": t(self._group_lo),
                "ghi": t(self._group_hi),
            }
            self._cache[key] = d
        return d

    def _apply(self, fn, *args, **kwargs):
        self._cache = {}
        self._memo = []
        return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------------ closest points
    def _search(self, q: torch.Tensor, d: Dict[str, torch.Tensor], probe: int) -> torch.Tensor:
        """Index of the closest face for each row of ``q [B, 3]`` (exact; see the class notes)."""
        n_groups, size = self.n_groups, self.group_size
        qc = (q[:, 0:1], q[:, 1:2], q[:, 2:3])
        table = d["table"]
        if probe >= n_groups:
            best = torch.empty(q.shape[0], dtype=torch.long, device=q.device)
            step = max(1, 2_000_000 // max(1, self.n_faces))
            for i in range(0, q.shape[0], step):
                sl = slice(i, i + step)
                d2 = _closest_on_faces((qc[0][sl], qc[1][sl], qc[2][sl]), list(table.unbind(0)), full=False)
                best[sl] = d2.argmin(1)
            return best
        qe = q.unsqueeze(1)
        gap = torch.maximum(d["glo"] - qe, qe - d["ghi"]).clamp_min(0)
        lower = dot(gap, gap)  # [B, G] squared distances to the groups' boxes: lower bounds for their faces
        vals, idx = torch.topk(lower, probe + 1, dim=1, largest=False)
        cand = d["groups"][idx[:, :probe]].reshape(q.shape[0], probe * size)
        fd = table[:, cand.reshape(-1)].view(_FIELDS, q.shape[0], probe * size)
        d2 = _closest_on_faces(qc, list(fd.unbind(0)), full=False)
        d2min, arg = d2.min(1)
        best = cand.gather(1, arg.unsqueeze(1)).squeeze(1)
        unsure = vals[:, probe] < d2min
        rows = unsure.nonzero().squeeze(1)
        if rows.numel():
            best[rows] = self._search(q[rows], d, min(n_groups, probe * 4))
        return best

    @torch.no_grad()
    def closest(self, x: torch.Tensor, *, chunk: int = 8192) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closest points on the mesh.

        Args:
            x: ambient points ``[..., 3]`` (any floating dtype and device).
            chunk: points per batch of the search.

        Returns:
            ``(face [...], bary [..., 3], point [..., 3])``: index of the closest face, barycentric
            coordinates of the closest point in it (vertices in the order of ``faces``), and the point.
        """
        reason = self._check_tensor(x, "x")
        if reason is not None:
            raise ValueError(f"{self}: {reason}")
        shape = x.shape[:-1]
        q = x.detach().reshape(-1, 3)
        d = self._data(q.dtype, q.device)
        face = torch.empty(q.shape[0], dtype=torch.long, device=q.device)
        for i in range(0, q.shape[0], chunk):
            face[i:i + chunk] = self._search(q[i:i + chunk], d, self.probe)
        fd = d["table"][:, face]
        _, bary = _closest_on_faces((q[:, 0], q[:, 1], q[:, 2]), list(fd.unbind(0)), full=True)
        tri = d["vertices"][d["faces"][face]]  # [N, 3, 3]
        point = (bary.unsqueeze(-1) * tri).sum(-2)
        return face.reshape(shape), bary.reshape(shape + (3,)), point.reshape(shape + (3,))

    def to_internal(self, raw: torch.Tensor) -> torch.Tensor:
        """Map points ``[..., 3]`` in the source file's coordinates to the mesh's (normalised) ones."""
        return (raw - torch.as_tensor(self._centre, dtype=raw.dtype, device=raw.device)) * self._factor

    def to_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_internal`."""
        return x / self._factor + torch.as_tensor(self._centre, dtype=x.dtype, device=x.device)

    def _remember(self, x: torch.Tensor, face: torch.Tensor) -> None:
        try:
            version = x._version
        except RuntimeError:  # inference tensors carry no version counter: nothing to remember them by
            return
        self._memo.append((weakref.ref(x), version, face))
        del self._memo[:-8]

    def face_of(self, x: torch.Tensor) -> torch.Tensor:
        """Index ``[...]`` of the face containing (closest to) each point ``x [..., 3]``.

        Outputs of :meth:`projx` are remembered (by identity and version counter), so the
        ``proju(projx(y), v)`` pattern of the fields and solvers searches once.
        """
        for ref, version, face in reversed(self._memo):
            if ref() is x:
                try:
                    if x._version == version:
                        return face
                except RuntimeError:
                    break
        return self.closest(x)[0]

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Closest point on the mesh, ``[..., 3]``; differentiable with the face projector as Jacobian."""
        face, _, p = self.closest(x)
        p = p.to(x.dtype)
        if x.requires_grad:
            n = self._data(x.dtype, x.device)["normals"][face]
            delta = x - x.detach()
            p = p + delta - n * dot(n, delta, keepdim=True)
        self._remember(p, face)
        return p

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normal ``[..., 3]`` of the face containing each point."""
        return self._data(x.dtype, x.device)["normals"][self.face_of(x)]

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Projection of ``u [..., 3]`` onto the plane of the face containing ``x [..., 3]``, flux-continuous across edges.

        ``u - <n, u> n + <n, u> tau(x)``: the orthogonal projection onto the face plane plus the
        normal component ``<n, u>`` times a tilt field ``tau`` (linear inside each face, see
        :meth:`_tilt`). On the edge opposite corner ``k`` the result's outward normal component
        is ``<u, nu_k + t_k n>``, and ``nu_k + t_k n`` is perpendicular to the bisector ``m_k`` of
        the two faces' normals: the same vector, with opposite sign, from either face. So the
        normal flux of every projected ambient field is continuous across edges, the divergence
        theorem holds for the piecewise field (Moser Flow densities integrate to 1) and the ODE
        likelihood needs no jump terms at edges. With the orthogonal projection alone the flux
        jumps by about ``<u, n>`` times the bending angle and both fail.

        ``tau`` is the lowest-order Raviart-Thomas interpolant of those edge values: its
        divergence inside a face is the constant ``2 C`` (bounded by the bending over the edge
        length), so divergences of projected fields stay bounded at vertices too. The projection is
        linear in ``u``, idempotent (tangent vectors are unchanged), the orthogonal projection in
        flat regions, and differentiable in ``x``, which the divergence needs.
        """
        face = self.face_of(x)
        d = self._data(u.dtype, u.device)
        n = d["normals"][face]
        tau = d["tilt_c"][face].unsqueeze(-1) * x.to(u.dtype) - d["tilt_q"][face]
        return u + dot(n, u, keepdim=True) * (tau - n)

    def _barycentric(self, x: torch.Tensor, fd: torch.Tensor) -> torch.Tensor:
        """Barycentric coordinates ``[..., 3]`` of points ``x`` in the faces whose table columns are ``fd``; differentiable."""
        w0, w1, w2 = x[..., 0] - fd[0], x[..., 1] - fd[1], x[..., 2] - fd[2]
        d20 = w0 * fd[3] + w1 * fd[4] + w2 * fd[5]
        d21 = w0 * fd[6] + w1 * fd[7] + w2 * fd[8]
        b1 = (fd[11] * d20 - fd[10] * d21) * fd[12]
        b2 = (fd[9] * d21 - fd[10] * d20) * fd[12]
        return torch.stack([1.0 - b1 - b2, b1, b2], -1)

    def barycentric(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Face ``[...]`` containing each point ``x [..., 3]`` and its barycentric coordinates ``[..., 3]`` there.

        The coordinates are differentiable in ``x`` (linear inside the face), so functions
        interpolated from vertex values (:meth:`interpolate_vertex_values`) can be differentiated.
        """
        face = self.face_of(x)
        d = self._data(x.dtype, x.device)
        return face, self._barycentric(x, d["table"][:, face])

    def smooth_normal(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normal ``[..., 3]`` interpolated from the vertex normals (continuous on the mesh; differentiable in ``x``)."""
        face = self.face_of(x)
        d = self._data(x.dtype, x.device)
        b = self._barycentric(x, d["table"][:, face])
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
        """
        nrm = self.smooth_normal(x).to(u.dtype)
        return self.proju(x, u - dot(nrm, u, keepdim=True) * nrm)

    def proju_orthogonal(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Orthogonal projection ``u - <n_f, u> n_f`` onto the face plane (the Riemannian gradient of an ambient one)."""
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

    # ------------------------------------------------------------------ geodesics (potpourri3d)
    @property
    def geodesics(self):
        """The :class:`manifolds.geodesics.MeshGeodesics` of this mesh (built on first use; needs potpourri3d)."""
        if self._geodesics is None:
            from .geodesics import MeshGeodesics

            self._geodesics = MeshGeodesics(self._v, self._f, self._normals)
        return self._geodesics

    def _locate(self, x: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
        """Face index and barycentric coordinates (numpy, float64) of points ``x [N, 3]`` on the mesh."""
        face, bary, _ = self.closest(x.detach())
        return face.cpu().numpy(), bary.detach().cpu().double().numpy()

    def geodesic(self, x: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``exp_x(t u)`` and its time derivative ``d/dt exp_x(t u)`` (``|u|`` times the unit tangent there).

        Shapes: ``x, u [..., 3]``, ``t [...]``; both outputs ``[..., 3]``. Not differentiable (the
        tracing runs in potpourri3d); RFM uses it for its conditional paths.
        """
        shape = x.shape
        uf = u.reshape(-1, 3)
        tf = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(shape[:-1]).reshape(-1, 1)
        face, bary = self._locate(x.reshape(-1, 3))
        ends, tangent = self.geodesics.trace(face, bary, (tf * uf).detach().cpu().double().numpy())
        out = lambda a: torch.as_tensor(a, dtype=x.dtype, device=x.device).reshape(shape)  # noqa: E731
        moved = torch.as_tensor(np.linalg.norm(tangent, axis=-1) > 0, device=x.device).reshape(-1, 1)
        speed = torch.linalg.vector_norm(uf, dim=-1, keepdim=True)
        velocity = torch.where(moved, out(tangent).reshape(-1, 3) * speed, uf).reshape(shape)  # u itself where t u = 0
        y = self.projx(out(ends))
        return y, self.proju_orthogonal(y, velocity.detach())

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The straightest geodesic from ``x`` along ``u`` for length ``|u|``, unfolding faces at edges.

        Exact polyhedral tracing (potpourri3d's ``GeodesicTracer``); on a mesh with boundary it
        stops where it meets the boundary. Batched over leading dimensions, not differentiable.
        """
        return self.geodesic(x, u, torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device))[0]

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Tangent vector at ``x`` along the shortest geodesic to ``y``, with its length: vector heat log maps
        from the corners of ``x``'s face, interpolated (see :mod:`manifolds.geodesics`). Not differentiable."""
        x, y = torch.broadcast_tensors(x, y)
        shape = x.shape
        fx, bx = self._locate(x.reshape(-1, 3))
        fy, by = self._locate(y.reshape(-1, 3))
        v = self.geodesics.log(fx, bx, fy, by)
        return torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(shape)

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

    @property
    def volume(self) -> float:
        """Total surface area."""
        return self.area

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Area-uniform samples ``[*shape, 3]``: a face with probability proportional to its area, then
        uniform barycentric coordinates ``(1 - sqrt(r1), sqrt(r1)(1 - r2), sqrt(r1) r2)``."""
        shape = batch_shape(shape)
        n = int(np.prod(shape)) if shape else 1
        dtype = dtype or torch.get_default_dtype()
        device = torch.device(device) if device is not None else (generator.device if generator is not None else torch.device("cpu"))
        d = self._data(dtype, device)
        if n == 0:
            return torch.empty(shape + (3,), dtype=dtype, device=device)
        face = torch.multinomial(d["areas"], n, replacement=True, generator=generator)
        r = torch.rand(2, n, dtype=dtype, device=device, generator=generator)
        s = r[0].sqrt()
        bary = torch.stack([1 - s, s * (1 - r[1]), s * r[1]], -1)
        x = (bary.unsqueeze(-1) * d["vertices"][d["faces"][face]]).sum(-2)
        return x.reshape(shape + (3,))

    def sample_faces(self, face: torch.Tensor, generator: Optional[torch.Generator] = None,
                     dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """A uniform point in each of the given faces ``[N] -> [N, 3]``."""
        dtype = dtype or torch.get_default_dtype()
        d = self._data(dtype, face.device)
        r = torch.rand(2, face.shape[0], dtype=dtype, device=face.device, generator=generator)
        s = r[0].sqrt()
        bary = torch.stack([1 - s, s * (1 - r[1]), s * r[1]], -1)
        return (bary.unsqueeze(-1) * d["vertices"][d["faces"][face]]).sum(-2)

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """``-log(area)`` for every point; shape ``[...]``."""
        return torch.full(x.shape[:-1], -math.log(self.area), dtype=x.dtype, device=x.device)

    def interpolate(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Barycentric interpolation of vertex values ``[n_vertices, ...]`` at points ``x [N, 3]`` -> ``[N, ...]``."""
        if values.shape[0] != self.n_vertices:
            raise ValueError(f"values need one row per vertex ({self.n_vertices}), got shape {tuple(values.shape)}")
        face, bary, _ = self.closest(x)
        fv = torch.as_tensor(self._f, device=x.device)[face]  # [N, 3]
        vals = values.to(x.device)[fv]  # [N, 3, ...]
        b = bary.to(vals.dtype).reshape(bary.shape + (1,) * (vals.dim() - bary.dim()))
        return (b * vals).sum(x.dim() - 1)

    def face_gradient_basis(self, dtype=torch.float64, device=None) -> torch.Tensor:
        """Gradients of the three barycentric (hat) functions on each face, ``[faces, 3, 3]`` (face, vertex, xyz)."""
        v, f, n = self._v, self._f, self._normals
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        twice = (2 * self._areas)[:, None]
        g = np.stack([np.cross(n, c - b) / twice, np.cross(n, a - c) / twice, np.cross(n, b - a) / twice], 1)
        return torch.as_tensor(g, dtype=dtype, device=device)

    def eigenpairs(self, k: int, *, cache: bool = True) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` smallest non-constant Laplace-Beltrami eigenpairs ``(values [k], vectors [n_vertices, k])``,
        cached on disk (see :func:`manifolds.spectral.eigenpairs`)."""
        from .spectral import eigenpairs

        return eigenpairs(self, k, cache=cache)

    # ------------------------------------------------------------------ identity and validation
    def content_hash(self) -> str:
        """SHA-256 of the (repaired, scaled) vertex and face arrays: the key of cached eigenpairs."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self._v, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(self._f, dtype="<i8").tobytes())
        return h.hexdigest()

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        _, _, p = self.closest(x)
        err = torch.linalg.vector_norm(x.detach() - p, dim=-1)
        return self._tolerance_report(err, atol * self.length_scale, "are off the mesh (distance to the closest face too large)")

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        n = self.normal(x).to(u.dtype)
        err = dot(n, u).abs()
        limit = atol + rtol * torch.linalg.vector_norm(u, dim=-1)
        return self._tolerance_report(err, limit, "are not tangent to their face (|<n, u>| too large)")

    def extra_repr(self) -> str:
        return f"{self.label!r}, vertices={self.n_vertices}, faces={self.n_faces}, area={self.area:.4g}"

    def __deepcopy__(self, memo):
        # the geometry is immutable: copies (EMA, DDP) share it instead of duplicating its arrays
        return self
