"""Geodesic conditional paths on meshes from a bank of paths traced on the host, away from the training steps."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from manifolds.geodesics import locate
from manifolds.mesh_boundary import boundary_edges, inward_normals
from manifolds.mesh_index import barycentric_in

from .paths import ConditionalPath, PathSample

Where = Optional[Tuple[np.ndarray, np.ndarray]]
"""Where points lie on the mesh, if known: faces ``[n]`` and barycentric coordinates ``[n, 3]`` (float64), as
:func:`manifolds.geodesics.locate` finds them; None: search for them."""


def _located(mesh, x: torch.Tensor, where: Where) -> Tuple[np.ndarray, np.ndarray]:
    return locate(mesh, x) if where is None else where


def trace_states(mesh, x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, where1: Where = None,
                 where0: Where = None):
    """States of the geodesics from ``x0`` to ``x1`` at times ``t``, traced backwards from ``x1`` on the host.

    The geodesic is the straightest path from ``x1`` along ``log_{x1}(x0)`` (the vector heat log map
    of the nearest corner of ``x1``'s face, so only its row is needed), for the length of that vector;
    it ends at ``x0' ~ x0`` and runs through ``x1`` exactly (states as in :func:`states_on_polylines`).
    Where the log map is poor (far points, boundaries, non-convex regions) ``x0'`` can be far from
    ``x0``, and the starts of a bank are then not distributed as the base: :func:`shortest_states`
    has exact ends.

    Args:
        mesh: the :class:`manifolds.Mesh`.
        x1: data points ``[n, 3]`` (float64, CPU).
        x0: base points ``[n, 3]``.
        t: times ``[n, K]`` in ``[0, 1)``.
        where1: the faces and barycentric coordinates of ``x1`` where the caller knows them
            (:data:`Where`); searched for otherwise.
        where0: the same for ``x0``.

    Returns:
        ``(x0' [n, 3], xt [n, K, 3], ut [n, K, 3])`` as float64 numpy arrays.
    """
    return states_on_polylines(trace_polylines(mesh, x1, x0, where1, where0), t)


def trace_polylines(mesh, x1: torch.Tensor, x0: torch.Tensor, where1: Where = None, where0: Where = None):
    """The traced geodesics of :func:`trace_states` as polylines from ``x1`` to ``x0'``."""
    f1, b1 = _located(mesh, x1, where1)
    f0, b0 = _located(mesh, x0, where0)
    geo = mesh.geodesics
    v = geo.log(f1, b1, f0, b0, corners="nearest")  # [n, 3], tangent at x1; one heat solve per source
    starts = np.einsum("nk,nkd->nd", b1, geo.V[geo.F[f1]])
    return [np.asarray(geo.tracer.trace_geodesic_from_face(int(f1[i]), b1[i], v[i]))
            if np.linalg.norm(v[i]) > 0 else starts[i:i + 1] for i in range(len(f1))]


def shortest_polylines(mesh, x1: torch.Tensor, x0: torch.Tensor, where1: Where = None, where0: Where = None):
    """Polylines from ``x1`` to ``x0`` through the mesh's shortest paths between vertices.

    Straight to the nearest corner of ``x1``'s face, the shortest path to the nearest corner of
    ``x0``'s face, straight to ``x0``; one segment where both lie in the same face.
    """
    f1, b1 = _located(mesh, x1, where1)
    f0, b0 = _located(mesh, x0, where0)
    geo = mesh.geodesics
    v1 = geo.F[f1, b1.argmax(1)]
    v0 = geo.F[f0, b0.argmax(1)]
    a, b = x1.numpy(), x0.numpy()
    return [np.concatenate([a[i:i + 1], b[i:i + 1]]) if f1[i] == f0[i]
            else np.concatenate([a[i:i + 1], geo.shortest_path(int(v1[i]), int(v0[i])), b[i:i + 1]])
            for i in range(len(v1))]


def patched_states(mesh, x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor,
                   clearance: Optional[Clearance] = None, rng: Optional[np.random.Generator] = None,
                   where1: Where = None, where0: Where = None):
    """States of traced geodesics from ``x1`` that end with a shortest path from their end ``x0'`` to ``x0``.

    The straightest geodesic of :func:`trace_states` where it lands, and an exact start: the
    bank's starts are the base points on any mesh. Arguments and results as in
    :func:`shortest_states`.
    """
    traced = trace_polylines(mesh, x1, x0, where1, where0)
    ends = torch.from_numpy(np.stack([p[-1] for p in traced]))
    patches = shortest_polylines(mesh, ends, x0, None, where0)
    polylines = [np.concatenate([p, q[1:]]) for p, q in zip(traced, patches)]
    if clearance is not None:
        polylines = clearance.apply(polylines, rng if rng is not None else np.random.default_rng())
    return states_on_polylines(polylines, t)


class Clearance:
    """How far shortest paths on an open mesh keep from the boundary where they bend around it.

    A shortest path bends around a reflex corner of the boundary (the inner corner of a maze's
    turn) at the corner vertex itself, so all the paths that turn there meet in one point and the
    marginal density of the path states is singular at every such corner: a network cannot learn
    the field that squeezes mass through it. Here each path has its own clearance ``c`` drawn
    uniformly from ``[0, c_max]`` and every vertex of its polyline that lies on the boundary moves
    by ``c`` into the surface along the corner's inward bisector (the sum of the inward normals of
    its two boundary edges, in the surface): paths turn at distances spread over ``[0, c_max]``
    from the corner, and their density stays bounded. Ends (``x0``, ``x1``) never move.
    ``c_max`` is the mean distance from the boundary of uniform points on the surface (a quarter
    of the width of a long corridor); where a corridor is narrower, a move that would bring the
    vertex closer to another wall than half its length is halved until it does not.

    Args:
        mesh: an open :class:`manifolds.Mesh` (``has_boundary``).
        fraction: ``c_max`` over the mean distance of a uniform point from the boundary (on the maze
            after 1,000 steps, seed 0: best validation NLL 5.63 with 1.0 and 6.30 with 0.2; test NLL
            7.50 with 1.0 and 9.39 without clearance; see BENCHMARKS.md).
        seed: seed of the uniform points that set ``c_max``.
    """

    def __init__(self, mesh, fraction: float = 1.0, seed: int = 0):
        from scipy.spatial import cKDTree

        if not mesh.has_boundary:
            raise ValueError(f"{mesh} has no boundary to keep clear of")
        V, F = mesh.arrays.vertices, mesh.arrays.faces
        edges = boundary_edges(F)
        a, b = edges[:, 0], edges[:, 1]
        n = inward_normals(V, edges)
        inward = np.zeros_like(V)
        np.add.at(inward, a, n)
        np.add.at(inward, b, n)
        on = np.unique(np.concatenate([a, b]))  # the boundary vertices
        self.bisector = inward[on] / np.linalg.norm(inward[on], axis=1, keepdims=True).clip(1e-300)
        self.tree = cKDTree(V[on])
        self.tol = 1e-9 * math.sqrt(mesh.area)
        gen = torch.Generator().manual_seed(seed)
        u = mesh.random_base(4096, dtype=torch.float64, generator=gen)
        self.collar = mesh.collar
        self.c_max = fraction * float(mesh.collar.distance(u).mean())

    def apply(self, polylines, rng: np.random.Generator):
        """The polylines (x1 first, x0 last) with their interior boundary vertices moved off the boundary."""
        out, where, moves = list(polylines), [], []
        for i, p in enumerate(out):
            if len(p) > 2:
                dist, idx = self.tree.query(p[1:-1])
                hit = np.nonzero(dist < self.tol)[0]
                if len(hit):
                    out[i] = np.array(p, dtype=np.float64)  # a copy: the caller's polyline stays as it was
                    where += [(i, 1 + j) for j in hit]
                    moves.append(rng.uniform(0.0, self.c_max) * self.bisector[idx[hit]])
        if not where:
            return out
        start = torch.from_numpy(np.stack([out[i][j] for i, j in where]))
        move = torch.from_numpy(np.concatenate(moves))
        # a move that brings the vertex near another wall (a corridor narrower than c_max) is halved until it does not
        for _ in range(6):
            short = self.collar.distance(start + move) < 0.5 * move.norm(dim=-1)
            if not short.any():
                break
            move[short] *= 0.5
        for (i, j), x in zip(where, (start + move).numpy()):
            out[i][j] = x
        return out


def shortest_states(mesh, x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor,
                    clearance: Optional[Clearance] = None, rng: Optional[np.random.Generator] = None,
                    where1: Where = None, where0: Where = None):
    """States of paths from ``x0`` to ``x1`` through shortest paths on the surface, with exact ends.

    Each path runs straight inside ``x1``'s face to its nearest corner, along the exact shortest
    path of the mesh to the nearest corner of ``x0``'s face, and straight inside that face to
    ``x0`` (states as in :func:`states_on_polylines`). Its starts are the base points themselves, so
    a bank of them is distributed as the base on any mesh, closed or open, convex or not. Arguments
    and results as in :func:`trace_states`, with ``x0`` itself in place of ``x0'``.
    """
    polylines = shortest_polylines(mesh, x1, x0, where1, where0)
    if clearance is not None:
        polylines = clearance.apply(polylines, rng if rng is not None else np.random.default_rng())
    return states_on_polylines(polylines, t)


def states_on_polylines(polylines, t: torch.Tensor, segments: bool = False):
    """States of paths given as polylines from ``x1`` (first point) to ``x0`` (last point) at times ``t [n, K]``.

    At time ``t`` the state is the point at arc length ``(1 - t) L`` from ``x1`` (``L`` the polyline's
    length) and the velocity ``L`` times the unit tangent there, pointing towards ``x1``.

    Returns:
        ``(x0 [n, 3], xt [n, K, 3], ut [n, K, 3])`` as float64 numpy arrays; with ``segments`` also
        the segment each state lies on, ``[n, K]``: the index of its first point among the
        concatenated points of the polylines.
    """
    n, k = t.shape
    sizes = np.array([len(p) for p in polylines])
    pts = np.concatenate(polylines)  # [P, 3], path i in rows offset[i] .. offset[i] + sizes[i]
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)  # [P - 1]; segments across two paths are masked below
    inside = np.ones(len(pts) - 1, dtype=bool)
    inside[(offset + sizes - 1)[:-1]] = False
    seg = np.where(inside, seg, 0.0)
    cum = np.concatenate([[0.0], np.cumsum(seg)])  # arc length from the first point of all paths
    length = cum[offset + sizes - 1] - cum[offset]  # traced length of each path
    s = (1.0 - t.numpy()) * length[:, None]  # [n, K] arc length from x1
    q = (cum[offset][:, None] + s).ravel()
    lo = np.repeat(offset, k)
    hi = np.repeat(offset + sizes - 1, k)
    j = np.clip(np.searchsorted(cum, q, side="right") - 1, lo, np.maximum(hi - 1, lo))  # segment start index
    a, b = pts[j], pts[np.minimum(j + 1, np.repeat(offset + sizes - 1, k))]
    span = cum[np.minimum(j + 1, len(cum) - 1)] - cum[j]
    w = np.where(span > 0, (q - cum[j]) / np.where(span > 0, span, 1.0), 0.0).clip(0.0, 1.0)
    xt = a + w[:, None] * (b - a)
    d = b - a
    dn = np.linalg.norm(d, axis=1, keepdims=True)
    tangent = np.where(dn > 0, d / np.where(dn > 0, dn, 1.0), 0.0)
    ut = -np.repeat(length, k)[:, None] * tangent
    ends = pts[offset + sizes - 1]
    if segments:
        return ends, xt.reshape(n, k, 3), ut.reshape(n, k, 3), j.reshape(n, k)
    return ends, xt.reshape(n, k, 3), ut.reshape(n, k, 3)


def segment_faces(mesh, polylines, start: np.ndarray, neighbours: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """The face each segment of traced polylines runs in, found by walking from face to neighbouring face.

    A straightest geodesic crosses one face per segment, from edge to edge, so the face of a
    segment is the face of the one before it or one of that face's three neighbours: the one
    whose closed triangle holds the segment's midpoint (barycentric coordinates ``>= -tol``, in its
    plane to ``tol`` of the face's size). No search of the mesh. A path that passes through a
    vertex (the next face is not a neighbour) is lost from there on: its remaining segments get
    -1, to be searched for.

    Args:
        mesh: the :class:`manifolds.Mesh`.
        polylines: ``n`` polylines ``[m_i, 3]``.
        start: the face of each polyline's first point ``[n]``.
        neighbours: :meth:`manifolds.mesh_loading.MeshArrays.neighbours`.
        tol: tolerance of the containment test, relative to the face's size.

    Returns:
        ``[sum m_i]`` int64 over the concatenated points: the face of the segment that starts at
        each point (a polyline's last point: -1, or its start face if it is also its first).
    """
    sizes = torch.from_numpy(np.array([len(p) for p in polylines]))
    pts = torch.from_numpy(np.concatenate(polylines))
    offset = torch.cumsum(sizes, 0) - sizes
    table = mesh.index.cast(torch.float64, torch.device("cpu"))["table"]  # packed face rows (mesh_index.face_table)
    normals = torch.tensor(mesh.arrays.normals)
    scale = torch.tensor(np.sqrt(2.0 * mesh.arrays.areas))
    nb = torch.tensor(neighbours)
    out = torch.full((pts.shape[0],), -1, dtype=torch.long)
    cur = torch.as_tensor(np.asarray(start), dtype=torch.long).clone()
    out[offset] = cur
    rows = torch.arange(len(polylines))
    for c in range(int(sizes.max()) - 1):
        rows = rows[sizes[rows] - 1 > c]  # the paths with a segment c, not lost
        if rows.numel() == 0:
            break
        g = offset[rows] + c
        cand = torch.cat([cur[rows, None], nb[cur[rows]]], 1)  # [r, 4]: the face so far and its neighbours
        f = cand.clamp_min(0)
        x = (0.5 * (pts[g] + pts[g + 1])).unsqueeze(1)  # [r, 1, 3] midpoints
        bary = barycentric_in(x, table[:, f])  # [r, 4, 3]
        a = torch.stack([table[0, f], table[1, f], table[2, f]], -1)
        off_plane = ((x - a) * normals[f]).sum(-1).abs() / scale[f]
        score = torch.where((cand >= 0) & (off_plane <= tol), bary.min(-1).values, -math.inf)
        best = score.argmax(1, keepdim=True)
        ok = score.gather(1, best).squeeze(1) >= -tol
        face = cand.gather(1, best).squeeze(1)
        out[g] = torch.where(ok, face, -1)
        cur[rows] = torch.where(ok, face, cur[rows])
        rows = rows[ok]
    return out.numpy()


PATH_KINDS = {"traced": trace_states, "shortest": shortest_states, "patched": patched_states}
"""How a bank makes its paths: straightest geodesics along the log map, exact shortest paths through vertices, or
the first closed by the second (exact starts)."""


class GeodesicBank(ConditionalPath):
    """RFM's geodesic paths on a mesh, traced on the host in banks between training steps.

    A bank holds ``pairs`` paths from base points to training points, each with ``states``
    targets at times ``(j + o) / states`` (``o`` uniform per path); a training step draws its
    targets from the bank on the device, so it reads nothing on the host and costs no tracing.
    Every ``refresh`` draws a new bank is traced: ``sources`` training points, each paired with
    ``pairs / sources`` base points, traced backwards from the training point (so the vector
    heat log-map rows needed per bank are those of at most ``sources`` vertices, computed in chunks of
    ``chunk`` sources and bounded in memory by the mesh's geodesics, see
    :class:`manifolds.geodesics.MeshGeodesics`). The ``x0, x1, t`` that :meth:`sample` receives
    set only how many targets are drawn; the returned sample holds the bank's own pairs.

    Nothing in a bank or a training step searches the mesh for the default traced paths: the
    training points are located once (:meth:`prepare`), base points are drawn with their faces
    (:meth:`manifolds.Mesh.random_located`), the states lie on the mesh and their velocities in
    their faces' planes to rounding (1e-13 relative on the bundled meshes), and each state's face
    is found by walking along its path (:func:`segment_faces`) and handed to the mesh with the
    drawn states (:meth:`manifolds.Mesh.remember_faces`), so the network's ``projx`` reads it.
    Shortest and patched paths search for their states' faces once per bank, and paths moved off an
    open mesh's boundary (:class:`Clearance`) are projected back. On the bunny a bank took 17 s
    when its 262,144 states were projected, and each training step searched for its batch.

    Args:
        mesh: the :class:`manifolds.Mesh`.
        pairs: paths per bank.
        states: targets per path.
        sources: distinct training points per bank.
        refresh: draws between banks (a new bank is traced on the host then).
        chunk: sources traced at once.
        seed: seed of the banks' base points and pairings.
    """

    def __init__(self, mesh, *, pairs: int = 16384, states: int = 16, sources: int = 1024, refresh: int = 500,
                 chunk: int = 128, seed: int = 0, kind: str = "traced"):
        super().__init__()
        if kind not in PATH_KINDS:
            raise ValueError(f"kind must be one of {sorted(PATH_KINDS)}, got {kind!r}")
        self.kind = kind
        for name, value in (("pairs", pairs), ("states", states), ("sources", sources), ("refresh", refresh),
                            ("chunk", chunk)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not mesh.has_geodesics:
            raise ValueError(f"{mesh} has no geodesics")
        object.__setattr__(self, "mesh", mesh)
        self.n_pairs, self.states, self.sources = pairs, states, min(sources, pairs)
        self.refresh, self.chunk = refresh, chunk
        self.targets_per_pair = 1
        self._gen = torch.Generator().manual_seed(seed)
        self._data: Optional[torch.Tensor] = None
        self._where: Where = None  # faces and barycentric coordinates of the training points, found once
        self._neighbours = mesh.arrays.neighbours() if kind == "traced" else None
        self._draws = 0
        self.banks_traced = 0
        self.clearance = Clearance(mesh) if kind in ("shortest", "patched") and mesh.has_boundary else None
        for name in ("xt", "ut", "t", "x0", "x1"):
            self.register_buffer(name, torch.zeros(0), persistent=False)
        self.register_buffer("face", None, persistent=False)  # the face of each state, where known

    def prepare(self, data: torch.Tensor) -> None:
        """Keep the training points ``[N, 3]`` the paths end at and trace the first bank."""
        if data.dim() != 2 or data.shape[0] == 0:
            raise ValueError(f"need training points [N, 3], got shape {tuple(data.shape)}")
        self._data = data.detach().to("cpu", torch.float64)
        self._where = locate(self.mesh, self._data)
        self._trace(data.device, data.dtype)

    def _trace(self, device: torch.device, dtype: torch.dtype) -> None:
        per = math.ceil(self.n_pairs / self.sources)
        idx = torch.randint(0, self._data.shape[0], (self.sources,), generator=self._gen)
        idx = idx.repeat_interleave(per, 0)[: self.n_pairs]
        x1 = self._data[idx]
        f0, b0, x0 = self.mesh.random_located(x1.shape[0], dtype=torch.float64, generator=self._gen)
        where1 = tuple(a[idx.numpy()] for a in self._where)
        where0 = (f0.numpy(), b0.numpy())
        t = (torch.arange(self.states, dtype=torch.float64) + torch.rand(x1.shape[0], 1, dtype=torch.float64,
                                                                          generator=self._gen)) / self.states
        extra = {}
        if self.clearance is not None:
            extra = dict(clearance=self.clearance,
                         rng=np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=self._gen))))
        step = self.chunk * per
        parts = [self._chunk(x1[i:i + step], x0[i:i + step], t[i:i + step], tuple(a[i:i + step] for a in where1),
                             tuple(a[i:i + step] for a in where0), extra)
                 for i in range(0, x1.shape[0], step)]
        ends, xt, ut, face = (torch.from_numpy(np.concatenate(p)) for p in zip(*parts))
        xt, ut, face = xt.reshape(-1, 3), ut.reshape(-1, 3), face.reshape(-1)
        if self.clearance is not None:
            # paths moved off the boundary can leave the surface: project them back, tangent to the face found
            face, _, xt = self.mesh.closest(xt)
            self.mesh.remember_faces(xt, face)
            ut = self.mesh.proju_orthogonal(xt, ut)
        elif (face < 0).any():  # traced paths lost by the walk, and the states of other kinds: search
            lost = torch.nonzero(face < 0).squeeze(1)
            face[lost] = self.mesh.closest(xt[lost])[0]
        k = self.states
        to = dict(device=device, dtype=dtype)
        self.xt, self.ut, self.t = xt.to(**to), ut.to(**to), t.reshape(-1).to(**to)
        self.face = face.to(device)
        self.x0, self.x1 = ends.repeat_interleave(k, 0).to(**to), x1.repeat_interleave(k, 0).to(**to)
        self.banks_traced += 1

    def _chunk(self, x1, x0, t, where1, where0, extra):
        """``(x0', xt, ut, face)`` of one chunk of paths (numpy): the face of each state, -1 where not known."""
        if self.kind != "traced":
            ends, xt, ut = PATH_KINDS[self.kind](self.mesh, x1, x0, t, **extra, where1=where1, where0=where0)
            return ends, xt, ut, np.full(t.shape, -1, dtype=np.int64)
        polylines = trace_polylines(self.mesh, x1, x0, where1, where0)
        ends, xt, ut, seg = states_on_polylines(polylines, t, segments=True)
        return ends, xt, ut, segment_faces(self.mesh, polylines, where1[0], self._neighbours)[seg]

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
               generator: Optional[torch.Generator] = None) -> PathSample:
        """``x0.shape[0]`` targets drawn from the bank (see the class notes), on ``x0``'s device and dtype."""
        if self._data is None:
            raise RuntimeError("GeodesicBank.prepare(training points) must run before sample")
        if self._draws and self._draws % self.refresh == 0:
            self._trace(x0.device, x0.dtype)
        self._draws += 1
        if self.xt.device != x0.device or self.xt.dtype != x0.dtype:
            for name in ("xt", "ut", "t", "x0", "x1"):
                setattr(self, name, getattr(self, name).to(device=x0.device, dtype=x0.dtype))
            self.face = self.face.to(x0.device)
        i = torch.randint(0, self.xt.shape[0], (x0.shape[0],), device=x0.device, generator=generator)
        xt = self.xt[i]
        self.mesh.remember_faces(xt, self.face[i])  # the network's projx reads them: no search per step
        return PathSample(x0=self.x0[i], x1=self.x1[i], t=self.t[i], xt=xt, ut=self.ut[i])

    def extra_repr(self) -> str:
        """The bank's sizes and refresh interval, for ``repr``."""
        return (f"kind={self.kind}, pairs={self.n_pairs}, states={self.states}, sources={self.sources}, "
                f"refresh={self.refresh}")
