"""Exact closest points on a triangle mesh: a packed face table, faces grouped in bounding boxes, a batched search."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ._numerics import dot

FIELDS = 16
"""Rows of the packed face table (see :func:`face_table`)."""

STAGES = ((1 / 16, 32, 4), (1 / 128, 8, 16))
"""The fixed-size refinements of the search without host synchronisation: ``(fraction of the rows, at
least this many rows, probe multiplier)``. Each re-searches the least certain rows with a wider probe."""


def kd_groups(points: np.ndarray, size: int) -> List[np.ndarray]:
    """Split the indices of ``points [n, 3]`` into groups of ``size`` (the last may be smaller).

    Recursive median cuts along the longest side of the bounding box give compact groups with tight boxes.
    """
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


def face_table(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Packed ``[16, faces]`` float64 table of the faces.

    Corner ``a``, edges ``e1 = b - a``, ``e2 = c - a``, their Gram entries ``d00, d01, d11`` and the inverses
    ``1 / det``, ``1 / d00``, ``1 / d11``, ``1 / |c - b|^2``.
    """
    a = vertices[faces[:, 0]]
    e1, e2 = vertices[faces[:, 1]] - a, vertices[faces[:, 2]] - a
    d00, d01, d11 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    e3 = e2 - e1
    rows = [a[:, 0], a[:, 1], a[:, 2], e1[:, 0], e1[:, 1], e1[:, 2], e2[:, 0], e2[:, 1], e2[:, 2],
            d00, d01, d11, 1.0 / (d00 * d11 - d01 * d01), 1.0 / d00, 1.0 / d11, 1.0 / (e3 * e3).sum(1)]
    return np.stack(rows)


def closest_on_faces(q: Tuple[torch.Tensor, torch.Tensor, torch.Tensor], fd: List[torch.Tensor], full: bool):
    """Squared distance from query points to triangles (and, with ``full``, barycentrics of the closest point).

    ``q`` are the query coordinates (each broadcastable against the face rows); ``fd`` the 16 rows
    of the packed face table (:func:`face_table`), each ``[...]``. The closest point is the
    orthogonal projection onto the plane when it falls inside the triangle, else the closest of
    the three edge points.

    Returns:
        ``d2 [...]``, and with ``full`` also the barycentric coordinates ``[..., 3]``.
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


def barycentric_in(x: torch.Tensor, fd: torch.Tensor) -> torch.Tensor:
    """Barycentric coordinates ``[..., 3]`` of points ``x [..., 3]`` in the planes of the given faces.

    The faces' table columns are ``fd [16, ...]``; differentiable in ``x``.
    """
    w0, w1, w2 = x[..., 0] - fd[0], x[..., 1] - fd[1], x[..., 2] - fd[2]
    d20 = w0 * fd[3] + w1 * fd[4] + w2 * fd[5]
    d21 = w0 * fd[6] + w1 * fd[7] + w2 * fd[8]
    b1 = (fd[11] * d20 - fd[10] * d21) * fd[12]
    b2 = (fd[9] * d21 - fd[10] * d20) * fd[12]
    return torch.stack([1.0 - b1 - b2, b1, b2], -1)


def _first_closest(d2: torch.Tensor, faces: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The closest of the candidate ``faces [B, K]`` at squared distances ``d2 [B, K]``, and its distance.

    Both are ``[B]``. Ties go to the lowest face index (a point on an edge gets the same face whatever the candidates).
    """
    d2min = d2.min(1).values
    return torch.where(d2 == d2min.unsqueeze(1), faces, torch.iinfo(faces.dtype).max).min(1).values, d2min


class GeometryBuffers:
    """Mixin for modules whose buffers are geometry: ``.to(device)`` moves them, but no ``.to(dtype)`` casts them.

    Geometry is kept in float64 (float32 corners would move a mesh by ``1e-7`` of its size); each
    dtype used gets a cast copy, cached until the module moves (:meth:`cast`). List it before
    ``nn.Module`` (or a subclass of it) among the bases.
    """

    def _apply(self, fn, recurse: bool = True):
        device = fn(torch.zeros(1)).device  # where .to()/.cuda()/.cpu() sends tensors; their dtype is ignored
        if recurse:
            for child in self.children():
                child._apply(fn)
        for name, buf in self._buffers.items():
            if buf is not None:
                self._buffers[name] = buf.to(device)
        self.__dict__["_casts"] = {}
        self.moved()
        return self

    def moved(self) -> None:
        """Called after the buffers moved; subclasses drop or move what they derived from them."""

    def cast(self, dtype: torch.dtype, device: torch.device) -> Dict[str, torch.Tensor]:
        """The floating buffers in ``dtype`` on ``device`` (integer buffers as they are), built once per pair."""
        casts = self.__dict__.setdefault("_casts", {})
        key = (dtype, torch.device(device))
        out = casts.get(key)
        if out is None:
            out = {name: (b.to(device=device, dtype=dtype) if b.is_floating_point() else b.to(device))
                   for name, b in self._buffers.items() if b is not None}
            casts[key] = out
        return out


class ClosestPointIndex(GeometryBuffers, nn.Module):
    """Closest points on a triangle mesh, exact, batched in torch on the points' device.

    Faces are split into groups of ``group_size`` by recursive median cuts (the leaves of a
    kd-tree). A query tests the faces of the ``probe`` groups whose bounding boxes come closest;
    the answer is certain when the next box is farther than the best face found (its lower bound
    exceeds the distance), and the search widens for the rows where it is not. Ties (points on an
    edge or a vertex) go to the lowest face index, so a point gets the same face in any batch.

    Two ways to widen it:

    * ``exact=True`` (entry points: data, user calls, validation): the uncertain rows are found on
      the host and searched again with four times the probe until every row is certain, ending in
      brute force. The answer is the brute-force one (tested).
    * ``exact=False`` (hot loops: solvers, networks, paths): fixed-size refinements (:data:`STAGES`)
      re-search the least certain rows with wider probes, with shapes that do not depend on the
      data, so nothing is read on the host. Points near the mesh, as in training and solving, are
      then certain (measured: 0.1-1.3% of the rows need the first refinement); rows still
      uncertain after the last one are projected onto the best face found, which is still on the
      mesh, and counted in :attr:`unresolved` (a device tensor).

    Args:
        vertices: float64 positions ``[n, 3]``.
        faces: int64 triangles ``[m, 3]``.
        group_size: faces per group (default ``~sqrt(m) / 4``, at least 8).
        probe: groups searched first.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, *, group_size: Optional[int] = None, probe: int = 4):
        super().__init__()
        m = len(faces)
        size = int(group_size) if group_size is not None else max(8, int(round(math.sqrt(m) / 4)))
        if size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        tri = vertices[faces]  # [m, 3, 3]
        groups = np.stack([np.concatenate([g, np.repeat(g[-1:], size - len(g))])
                           for g in kd_groups(tri.mean(1), size)])
        pts = tri[groups].reshape(len(groups), -1, 3)
        pad = 1e-9 * max(1.0, float(np.abs(vertices).max()))
        self.n_faces, self.group_size, self.n_groups, self.probe = m, size, len(groups), int(probe)
        self.register_buffer("table", torch.from_numpy(face_table(vertices, faces)), persistent=False)
        self.register_buffer("groups", torch.from_numpy(groups), persistent=False)
        self.register_buffer("box_lo", torch.from_numpy(pts.min(1) - pad), persistent=False)
        self.register_buffer("box_hi", torch.from_numpy(pts.max(1) + pad), persistent=False)
        self.unresolved = torch.zeros((), dtype=torch.long)

    def moved(self) -> None:
        """Move the :attr:`unresolved` counter to the device of the face table."""
        self.unresolved = self.unresolved.to(self.table.device)

    def _brute(self, q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Index ``[B]`` of the closest face of every row of ``q [B, 3]``, testing every face (in blocks)."""
        best = torch.empty(q.shape[0], dtype=torch.long, device=q.device)
        step = max(1, 2_000_000 // max(1, self.n_faces))
        for i in range(0, q.shape[0], step):
            c = q[i:i + step]
            d2 = closest_on_faces((c[:, 0:1], c[:, 1:2], c[:, 2:3]), list(table.unbind(0)), full=False)
            best[i:i + step] = _first_closest(d2, torch.arange(self.n_faces, device=q.device).expand_as(d2))[0]
        return best

    def _probe(self, q: torch.Tensor, t: Dict[str, torch.Tensor], probe: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Best face ``[B]`` among the ``probe`` nearest boxes and the certainty margin ``[B]`` (``> 0``: certain)."""
        if probe >= self.n_groups:
            return self._brute(q, t["table"]), torch.full(q.shape[:1], math.inf, dtype=q.dtype, device=q.device)
        qe = q.unsqueeze(1)
        gap = torch.maximum(t["box_lo"] - qe, qe - t["box_hi"]).clamp_min(0)
        lower = dot(gap, gap)  # [B, G] squared distances to the boxes: lower bounds for their faces
        vals, idx = torch.topk(lower, probe + 1, dim=1, largest=False)
        cand = t["groups"][idx[:, :probe]].reshape(q.shape[0], probe * self.group_size)
        fd = t["table"][:, cand.reshape(-1)].view(FIELDS, q.shape[0], probe * self.group_size)
        d2 = closest_on_faces((q[:, 0:1], q[:, 1:2], q[:, 2:3]), list(fd.unbind(0)), full=False)
        best, d2min = _first_closest(d2, cand)
        return best, vals[:, probe] - d2min

    def nearest_face(self, q: torch.Tensor, *, exact: bool) -> torch.Tensor:
        """Index ``[B]`` of the closest face of every row of ``q [B, 3]`` (see the class notes for ``exact``)."""
        t = self.cast(q.dtype, q.device)
        best, margin = self._probe(q, t, self.probe)
        if exact:
            probe = self.probe
            while True:
                rows = (margin <= 0).nonzero().squeeze(1)
                if rows.numel() == 0:
                    return best
                probe = min(self.n_groups, 4 * probe)
                b, m = self._probe(q[rows], t, probe)
                best, margin = best.index_put((rows,), b), margin.index_put((rows,), m)
        n = q.shape[0]
        for fraction, least, factor in STAGES:
            r = min(n, max(least, math.ceil(fraction * n)))
            rows = torch.topk(margin, r, largest=False).indices  # the least certain rows
            b, m = self._probe(q[rows], t, min(self.n_groups, factor * self.probe))
            best, margin = best.index_put((rows,), b), margin.index_put((rows,), m)
        self.unresolved.add_((margin <= 0).sum())
        return best

    @torch.no_grad()
    def closest(self, x: torch.Tensor, *, exact: bool,
                chunk: int = 8192) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(face [...], bary [..., 3], point [..., 3])`` of the closest points to ``x [..., 3]`` (no input checks)."""
        shape = x.shape[:-1]
        q = x.detach().reshape(-1, 3)
        face = torch.empty(q.shape[0], dtype=torch.long, device=q.device)
        for i in range(0, q.shape[0], chunk):
            face[i:i + chunk] = self.nearest_face(q[i:i + chunk], exact=exact)
        face.clamp_(0, self.n_faces - 1)  # a NaN row has no nearest face: keep the index valid, NaN stays in the row
        fd = self.cast(q.dtype, q.device)["table"][:, face]
        _, bary = closest_on_faces((q[:, 0], q[:, 1], q[:, 2]), list(fd.unbind(0)), full=True)
        point = torch.stack([fd[0], fd[1], fd[2]], -1) + bary[:, 1:2] * torch.stack([fd[3], fd[4], fd[5]], -1) \
            + bary[:, 2:3] * torch.stack([fd[6], fd[7], fd[8]], -1)
        return face.reshape(shape), bary.reshape(shape + (3,)), point.reshape(shape + (3,))

    def extra_repr(self) -> str:
        """The number of faces, the groups and the probe multiplier, for ``repr``."""
        return f"faces={self.n_faces}, groups={self.n_groups} x {self.group_size}, probe={self.probe}"
