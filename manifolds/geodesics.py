"""Geodesics on triangle meshes: straightest-geodesic tracing (exp), vector-heat log maps (log) and distances.

The heavy lifting is done by potpourri3d (bindings to geometry-central); this module keeps numpy
and torch at its boundary and batches the queries.

* ``exp``: :class:`potpourri3d.GeodesicTracer` follows the straightest geodesic from a point inside
  a face, unfolding the neighbouring face at every edge it crosses (exact polyhedral tracing; it
  stops where it meets a boundary). The velocity at the end point is the direction of the last
  segment (which lies inside one face) times the length of the initial vector.
* ``log``: the vector heat method (Sharp, Soliman & Crane 2019) gives the log map from a *vertex*
  to every vertex, as 2-D coordinates in that vertex's tangent frame; one prefactored solve per
  source vertex (rows computed on demand and kept, see ``max_bytes``). Between vertices it is
  interpolated: for ``x`` in a face with barycentric coordinates ``b`` and corners ``v_i``,

      log_x(y) = sum_i b_i R_i (l_i(y) - l_i(x)),     l_i(z) = sum_j c_j(z) log_{v_i}(w_j),

  with ``w_j``, ``c_j(z)`` the corners and barycentric coordinates of ``z``'s face and ``R_i`` the
  rotation taking the tangent plane of ``v_i`` onto the plane of ``x``'s face. Where the surface
  between them is flat this is exact (a log map is then an isometric chart), ``log_x(x) = 0``
  exactly, and errors are first order in the edge length times the curvature. Near the cut locus of
  a corner (for ``y`` almost opposite ``x``) the interpolation is unreliable, as log maps are there.
* ``dist(x, y) = (|log_x y| + |log_y x|) / 2``: symmetric and zero on the diagonal exactly.

Errors against great circles on an icosphere are measured in BENCHMARKS.md ("Mesh geodesics").
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch


def _require_potpourri3d():
    try:
        import potpourri3d  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "exp/log maps and geodesic distances on meshes need potpourri3d (pip install potpourri3d)"
        ) from err
    if not hasattr(potpourri3d, "GeodesicTracer"):  # an ImportError: an AttributeError here would be masked
        raise ImportError("exp maps on meshes need potpourri3d >= 1.1 (GeodesicTracer); pip install -U potpourri3d")
    return potpourri3d


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotations ``[N, 3, 3]`` taking unit vectors ``a [N, 3]`` onto ``b [N, 3]`` about ``a x b`` (the minimal ones)."""
    v = np.cross(a, b)
    c = (a * b).sum(-1)
    k = np.zeros(a.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    k[..., 1, 0], k[..., 2, 0], k[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    # R = I + K + K^2 / (1 + c); a = -b (c = -1) does not occur between a vertex normal and an adjacent face normal
    scale = 1.0 / np.clip(1.0 + c, 1e-12, None)
    return np.eye(3) + k + (k @ k) * scale[..., None, None]


ANCHORS_ABOVE = 16384
"""Meshes with more vertices read the log maps of geodesic banks from :data:`ANCHORS` anchor vertices."""
ANCHORS = 2048
"""Anchor vertices of a large mesh (:attr:`MeshGeodesics.anchor_of`)."""


class MeshGeodesics:
    """Batched exp, log and distance queries on a triangle mesh ``(V [n, 3], F [m, 3])``.

    Args:
        vertices: float64 vertex positions.
        faces: int64 triangle indices.
        normals: unit face normals ``[m, 3]``.
        max_bytes: memory for log-map rows (``8 n`` bytes each, float32); beyond it the oldest rows
            are dropped and recomputed when needed (slow: size it to hold the rows a batch touches).
            The default (2 GB, allocated as rows are filled) keeps every row of meshes up to about
            16,000 vertices; the 2,502-vertex bunny takes 50 MB.
        anchors: most source vertices of ``log(..., corners="nearest")`` (see :attr:`anchor_of`); a
            mesh with more vertices reads its log maps from about this many anchor vertices, so
            their rows stay in memory (at most ``max_bytes``) and are computed once per run. The
            default keeps every vertex up to :data:`ANCHORS_ABOVE` vertices and uses
            :data:`ANCHORS` anchors above it.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, *, max_bytes: int = 2**31,
                 anchors: Optional[int] = None):
        pp3d = _require_potpourri3d()
        self.V = np.ascontiguousarray(vertices, dtype=np.float64)
        self.F = np.ascontiguousarray(faces, dtype=np.int64)
        self.normals = np.asarray(normals, dtype=np.float64)
        self.tracer = pp3d.GeodesicTracer(self.V, self.F)
        self.heat = pp3d.MeshVectorHeatSolver(self.V, self.F)
        bx, by, bn = (np.asarray(a, dtype=np.float64) for a in self.heat.get_tangent_frames())
        self.frame_x, self.frame_y, self.frame_n = bx, by, bn
        n = len(self.V)
        self.max_rows = int(min(n, max(16, max_bytes // (8 * n))))
        self._table = None  # [max_rows, n, 2] float32, allocated on first use
        self._slot = np.full(n, -1, dtype=np.int64)  # vertex -> row of the table holding its log map
        self._owner = np.full(self.max_rows, -1, dtype=np.int64)
        self._next = 0  # slots are reused first in, first out
        self.rows_computed = 0
        self._flip = None  # edge-flip shortest-path solver, built on first use
        if anchors is None:
            anchors = n if n <= ANCHORS_ABOVE else ANCHORS
        if anchors < 1:
            raise ValueError(f"anchors must be >= 1, got {anchors}")
        self.anchors = int(min(anchors, self.max_rows))
        self._anchor = None  # vertex -> its anchor vertex, built on first use

    # ------------------------------------------------------------------ anchors
    @property
    def anchor_of(self) -> np.ndarray:
        """The anchor vertex ``[n]`` of every vertex: itself on meshes of at most ``anchors`` vertices.

        On larger meshes the anchors are one vertex per occupied cell of a cubic grid whose cell
        side makes about ``anchors`` of them (cells of side ``sqrt(area / anchors)``), and every
        vertex belongs to the anchor nearest along the edges (multi-source Dijkstra), so an anchor
        never serves a vertex across a thin gap of the surface. Anchors lie a few edges apart on
        a fine mesh and about one coarse edge apart in area terms: as far as the nearest corner
        on a mesh of ``anchors`` vertices.
        """
        if self._anchor is None:
            n = len(self.V)
            if n <= self.anchors:
                self._anchor = np.arange(n)
            else:
                from scipy.sparse import coo_matrix
                from scipy.sparse.csgraph import connected_components, dijkstra

                from .mesh_loading import MeshArrays

                arrays = MeshArrays.build(self.V, self.F)
                side = np.sqrt(arrays.areas.sum() / self.anchors)
                e, _ = arrays.edges()  # each undirected edge once, whatever the faces' winding
                w = np.linalg.norm(self.V[e[:, 0]] - self.V[e[:, 1]], axis=1)
                graph = coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
                _, part = connected_components(graph, directed=False)
                cells = np.floor((self.V - self.V.min(0)) / side).astype(np.int64)
                # one anchor per cell and connected piece of the surface: every piece has its own
                _, first = np.unique(np.column_stack([part, cells]), axis=0, return_index=True)
                _, _, nearest = dijkstra(graph, directed=False, indices=first, min_only=True,
                                         return_predecessors=True)
                self._anchor = np.where(nearest >= 0, nearest, np.arange(n))  # an isolated vertex is its own
        return self._anchor

    # ------------------------------------------------------------------ shortest paths
    def shortest_path(self, a: int, b: int) -> np.ndarray:
        """The shortest path on the surface from vertex ``a`` to vertex ``b``: a polyline ``[m, 3]`` (m >= 1).

        Exact for the mesh (edge flips from the Dijkstra path until it is straight at every vertex),
        so it bends around boundary corners and holes where a straightest geodesic stops or misses.
        """
        if a == b:
            return self.V[a:a + 1].copy()
        if self._flip is None:
            self._flip = _require_potpourri3d().EdgeFlipGeodesicSolver(self.V, self.F)
        return np.asarray(self._flip.find_geodesic_path(int(a), int(b)), dtype=np.float64)

    # ------------------------------------------------------------------ exp
    def trace(self, face: np.ndarray, bary: np.ndarray, u: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """End points ``[N, 3]`` of the straightest geodesics from ``(face, bary)`` along ``u [N, 3]``.

        The geodesics have length ``|u|``; also returns the unit tangent there ``[N, 3]`` (zero where ``u`` is zero).
        """
        n = len(face)
        ends = np.einsum("nk,nkd->nd", bary, self.V[self.F[face]])
        tangent = np.zeros((n, 3))
        length = np.linalg.norm(u, axis=-1)
        for i in np.nonzero(length > 0)[0]:
            path = np.asarray(self.tracer.trace_geodesic_from_face(int(face[i]), bary[i], u[i]))
            ends[i] = path[-1]
            tangent[i] = u[i] / length[i]
            for j in range(len(path) - 1, 0, -1):  # the last segment of positive length
                seg = path[j] - path[j - 1]
                norm = np.linalg.norm(seg)
                if norm > 1e-12 * max(1.0, length[i]):
                    tangent[i] = seg / norm
                    break
        return ends, tangent

    # ------------------------------------------------------------------ log
    def _ensure(self, vertices: np.ndarray) -> np.ndarray:
        """Slots of the log-map rows of ``vertices`` (distinct, at most ``max_rows``), computing missing ones."""
        if self._table is None:
            self._table = np.zeros((self.max_rows, len(self.V), 2), dtype=np.float32)
        missing = vertices[self._slot[vertices] < 0]
        keep = set(vertices.tolist())
        for v in missing:
            while self._owner[self._next] in keep:  # never evict a row this query needs
                self._next = (self._next + 1) % self.max_rows
            old = self._owner[self._next]
            if old >= 0:
                self._slot[old] = -1
            self._table[self._next] = np.asarray(self.heat.compute_log_map(int(v)), dtype=np.float32)
            self._owner[self._next], self._slot[v] = v, self._next
            self._next = (self._next + 1) % self.max_rows
            self.rows_computed += 1
        return self._slot[vertices]

    def precompute(self, progress: bool = False) -> None:
        """Compute the log-map rows of every vertex, as many as fit in ``max_bytes``."""
        ids = np.arange(min(len(self.V), self.max_rows))
        if progress:
            from tqdm.auto import tqdm

            for chunk in tqdm(np.array_split(ids, max(1, len(ids) // 64)), desc="log maps", unit="64 vertices"):
                self._ensure(chunk)
        else:
            self._ensure(ids)

    def log(self, fx: np.ndarray, bx: np.ndarray, fy: np.ndarray, by: np.ndarray, *,
            corners: str = "all") -> np.ndarray:
        """``log_x(y) [N, 3]`` for points given by faces and barycentric coordinates.

        The faces are ``fx, fy [N]`` and the barycentric coordinates ``bx, by [N, 3]``. Each corner
        ``v`` of ``x``'s face gives an estimate, ``log_v(y) - log_v(x)`` carried from ``v``'s tangent
        plane to the face; ``corners="all"`` blends the three by ``bx`` (three log-map rows per
        face), ``"nearest"`` takes the anchor (:attr:`anchor_of`) of the corner with the largest
        weight alone: one row per face on meshes of up to ``anchors`` vertices, a third of the heat
        solves (on the icosphere the direction is off by 1.06 degrees in the median instead of
        0.68, the length is unchanged), and on larger meshes rows from a fixed set of anchors
        that stay in memory, so a long run computes each at most once.
        """
        if corners not in ("all", "nearest"):
            raise ValueError(f"corners must be 'all' or 'nearest', got {corners!r}")
        cx, cy = self.F[fx], self.F[fy]  # corners [N, 3]
        if corners == "nearest":
            sources = self.anchor_of[cx[np.arange(len(fx)), bx.argmax(1)]][:, None]  # [N, 1]
            weights = np.ones_like(sources, dtype=bx.dtype)
        else:
            weights, sources = bx, cx
        uniq = np.unique(sources)
        if len(uniq) > self.max_rows:  # more source rows than the memory allows at once: split the query
            h = len(fx) // 2
            return np.concatenate([self.log(fx[:h], bx[:h], fy[:h], by[:h], corners=corners),
                                   self.log(fx[h:], bx[h:], fy[h:], by[h:], corners=corners)])
        self._ensure(uniq)
        table = self._table
        slots = self._slot[sources]  # [N, 1 or 3]
        out = np.zeros((len(fx), 3))
        n_face = self.normals[fx]
        for i in range(sources.shape[1]):
            src = slots[:, i]
            ly = np.einsum("nj,njc->nc", by, table[src[:, None], cy])  # log_{v_i} at y's corners, interpolated
            lx = np.einsum("nj,njc->nc", bx, table[src[:, None], cx])
            d = ly - lx
            s = sources[:, i]
            vec = d[:, :1] * self.frame_x[s] + d[:, 1:] * self.frame_y[s]
            rot = _rotation_between(self.frame_n[s], n_face)
            out += weights[:, i : i + 1] * np.einsum("nab,nb->na", rot, vec)
        # exactly tangent to the face of x
        return out - (out * n_face).sum(-1, keepdims=True) * n_face


# ---------------------------------------------------------------------- torch glue for Mesh
def locate(mesh, x: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
    """Face index ``[N]`` and barycentric coordinates ``[N, 3]`` (numpy, float64) of points ``x [N, 3]`` on ``mesh``."""
    face, bary, _ = mesh.closest(x.detach())
    return face.cpu().numpy(), bary.detach().cpu().double().numpy()


def traced_geodesic(mesh, x: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``exp_x(t u)`` on ``mesh`` and its time derivative (``|u|`` times the unit tangent there), traced on the host.

    Shapes: ``x, u [..., 3]``, ``t [...]``; both outputs ``[..., 3]`` on ``x``'s device and dtype.
    """
    shape = x.shape
    uf = u.reshape(-1, 3)
    tf = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(shape[:-1]).reshape(-1, 1)
    face, bary = locate(mesh, x.reshape(-1, 3))
    ends, tangent = mesh.geodesics.trace(face, bary, (tf * uf).detach().cpu().double().numpy())
    out = lambda a: torch.as_tensor(a, dtype=x.dtype, device=x.device).reshape(shape)  # noqa: E731
    moved = torch.as_tensor(np.linalg.norm(tangent, axis=-1) > 0, device=x.device).reshape(-1, 1)
    speed = torch.linalg.vector_norm(uf, dim=-1, keepdim=True)
    velocity = torch.where(moved, out(tangent).reshape(-1, 3) * speed, uf).reshape(shape)  # u itself where t u = 0
    y = mesh.projx(out(ends))
    return y, mesh.proju_orthogonal(y, velocity.detach())


def heat_logmap(mesh, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log_x(y) [..., 3]`` on ``mesh`` from the vector heat log maps of the corners of ``x``'s face (host)."""
    x, y = torch.broadcast_tensors(x, y)
    fx, bx = locate(mesh, x.reshape(-1, 3))
    fy, by = locate(mesh, y.reshape(-1, 3))
    v = mesh.geodesics.log(fx, bx, fy, by)
    return torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(x.shape)
