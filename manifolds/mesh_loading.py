"""Reading triangle meshes and repairing them: seams merged, degenerate faces dropped, what cannot be served refused."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

MeshSource = Union[str, os.PathLike, "trimesh.Trimesh", Tuple[Any, Any]]  # noqa: F821
"""What :class:`~manifolds.Mesh` reads: a file path, a ``trimesh.Trimesh`` or a ``(vertices, faces)`` pair."""

NORMALIZATIONS = (None, "area", "radius")
"""Values of ``Mesh(normalize=...)``."""


def load_trimesh(source: MeshSource):
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
    raise TypeError("a mesh is a file path, a trimesh.Trimesh or a (vertices, faces) pair, got "
                    f"{type(source).__name__}")


def repair_and_check(tm, *, components: str, degenerate_tol: float) -> Tuple[np.ndarray, np.ndarray, Dict[str, int]]:
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
                         f"vertices {int(bad[0, 0])} and {int(bad[0, 1])}; "
                         "a surface mesh needs at most two faces per edge")
    report["boundary_edges"] = int((counts == 1).sum())
    labels = trimesh.graph.connected_component_labels(tm.face_adjacency, node_count=len(tm.faces))
    sizes = np.bincount(labels)
    report["components"] = int(len(sizes))
    if len(sizes) > 1:
        if components == "error":
            raise ValueError(f"mesh has {len(sizes)} connected components with "
                             f"{sorted(sizes.tolist(), reverse=True)[:5]} faces; one surface is expected (pass "
                             "components='largest' to keep the largest)")
        tm.update_faces(labels == int(sizes.argmax()))
        tm.remove_unreferenced_vertices()
        report["dropped_component_faces"] = int(sizes.sum() - sizes.max())
    return np.asarray(tm.vertices, dtype=np.float64), np.asarray(tm.faces, dtype=np.int64), report


@dataclass(frozen=True)
class MeshArrays:
    """The repaired, scaled geometry of a mesh on the host, as read-only numpy arrays.

    Attributes:
        vertices: positions ``[n, 3]``, float64.
        faces: vertex indices of each triangle ``[m, 3]``, int64 (counter-clockwise seen from ``normals``).
        normals: unit face normals ``[m, 3]``, float64.
        areas: face areas ``[m]``, float64.
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    areas: np.ndarray

    @classmethod
    def build(cls, vertices: np.ndarray, faces: np.ndarray) -> "MeshArrays":
        """Normals and areas from ``vertices [n, 3]`` and ``faces [m, 3]``; every array is copied and made read-only."""
        v = np.array(vertices, dtype=np.float64)
        f = np.array(faces, dtype=np.int64)
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        cross = np.cross(b - a, c - a)
        twice = np.linalg.norm(cross, axis=1)
        out = cls(vertices=v, faces=f, normals=cross / twice[:, None], areas=0.5 * twice)
        for arr in (out.vertices, out.faces, out.normals, out.areas):
            arr.setflags(write=False)
        return out

    def _opposite_edges(self) -> np.ndarray:
        """Edges opposite each corner as sorted vertex pairs ``[3 m, 2]``: row ``k m + f`` for corner ``k`` of ``f``."""
        f = self.faces
        return np.sort(np.concatenate([f[:, [1, 2]], f[:, [2, 0]], f[:, [0, 1]]]), axis=1)

    def edges(self) -> Tuple[np.ndarray, np.ndarray]:
        """Unique undirected edges ``[E, 2]`` (sorted vertex pairs) and how many faces share each ``[E]``."""
        return np.unique(self._opposite_edges(), axis=0, return_counts=True)

    def neighbours(self) -> np.ndarray:
        """The face across the edge opposite each corner, ``[m, 3]``.

        -1 on the boundary; across an edge shared by more than two faces, one of the others.
        """
        m = len(self.faces)
        _, edge = np.unique(self._opposite_edges(), axis=0, return_inverse=True)
        order = np.argsort(edge.ravel(), kind="stable")
        pair = edge.ravel()[order[1:]] == edge.ravel()[order[:-1]]  # consecutive rows of one edge
        a, b = order[:-1][pair], order[1:][pair]
        out = np.full(3 * m, -1, dtype=np.int64)
        out[a], out[b] = b % m, a % m
        return out.reshape(3, m).T.copy()


def normalization(vertices: np.ndarray, faces: np.ndarray, normalize: Optional[str],
                  scale: Optional[float]) -> Tuple[np.ndarray, float]:
    """``(centre [3], factor)`` mapping file coordinates to the mesh's: ``x -> (x - centre) * factor``.

    ``normalize="area"`` centres at the area centroid and scales to total area 1, ``"radius"``
    centres there and scales the largest vertex distance to 1; ``scale`` multiplies the uncentred
    coordinates; neither keeps them.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if normalize is not None and scale is not None:
        raise ValueError("pass either normalize or scale, not both")
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    if normalize is None:
        return np.zeros(3), float(scale) if scale is not None else 1.0
    arrays = MeshArrays.build(vertices, faces)
    tri = vertices[faces]
    centre = (tri.mean(1) * arrays.areas[:, None]).sum(0) / arrays.areas.sum()
    if normalize == "area":
        return centre, 1.0 / math.sqrt(arrays.areas.sum())
    return centre, 1.0 / float(np.linalg.norm(vertices - centre, axis=1).max())
