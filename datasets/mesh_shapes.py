"""Meshes built on demand for experiments: closed primitives, the bunny refined, open sheets and a maze-shaped strip."""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import numpy as np


def _grid(nu: int, nv: int, wrap_u: bool, wrap_v: bool) -> np.ndarray:
    """Two triangles per cell of an ``nu x nv`` vertex grid (indices ``i * nv + j``), optionally wrapped."""
    cu, cv = (nu if wrap_u else nu - 1), (nv if wrap_v else nv - 1)
    i, j = np.meshgrid(np.arange(cu), np.arange(cv), indexing="ij")
    a, b = i * nv + j, ((i + 1) % nu) * nv + j
    c, d = ((i + 1) % nu) * nv + (j + 1) % nv, i * nv + (j + 1) % nv
    return np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])


def torus_grid(R: float = 1.0, r: float = 0.4, nu: int = 64, nv: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """A torus of revolution about z as an ``nu x nv`` angle grid: ``2 nu nv`` faces (e.g. 250 x 200: 100,000)."""
    u, v = np.meshgrid(np.arange(nu) * 2 * np.pi / nu, np.arange(nv) * 2 * np.pi / nv, indexing="ij")
    pts = np.stack([(R + r * np.cos(v)) * np.cos(u), (R + r * np.cos(v)) * np.sin(u), r * np.sin(v)], -1)
    return pts.reshape(-1, 3), _grid(nu, nv, True, True)


def sheet(n: int = 40) -> Tuple[np.ndarray, np.ndarray]:
    """The unit square ``[0, 1]^2`` in the plane ``z = 0`` as an ``n x n``-cell grid (an open mesh, ``2 n^2`` faces)."""
    u, v = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1), indexing="ij")
    return np.stack([u, v, np.zeros_like(u)], -1).reshape(-1, 3), _grid(n + 1, n + 1, False, False)


def hemisphere(subdivisions: int = 4) -> Tuple[np.ndarray, np.ndarray]:
    """The upper half (``z >= 0``) of an icosphere of radius 1, cut along the equator (an open mesh)."""
    import trimesh

    half = trimesh.creation.icosphere(subdivisions=subdivisions).slice_plane((0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    return np.asarray(half.vertices), np.asarray(half.faces)


def maze_cells(n: int = 6, seed: int = 3) -> List[Tuple[int, int]]:
    """Open blocks of a perfect maze on ``n x n`` rooms, carved by a seeded depth-first search.

    Blocks live on a ``(2n - 1) x (2n - 1)`` grid: rooms at even coordinates, and a passage block
    between two rooms the search connected; walls are the blocks left out.
    """
    rng = np.random.default_rng(seed)
    seen, stack, blocks = {(0, 0)}, [(0, 0)], {(0, 0)}
    while stack:
        i, j = stack[-1]
        nxt = [(i + di, j + dj) for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))
               if 0 <= i + di < n and 0 <= j + dj < n and (i + di, j + dj) not in seen]
        if not nxt:
            stack.pop()
            continue
        a, b = nxt[rng.integers(len(nxt))]
        seen.add((a, b))
        stack.append((a, b))
        blocks |= {(2 * a, 2 * b), (i + a, j + b)}  # the room and the passage to it
    return sorted(blocks)


def maze(n: int = 6, per_block: int = 4, seed: int = 3) -> Tuple[np.ndarray, np.ndarray]:
    """A flat maze-shaped strip: the open blocks of :func:`maze_cells` (unit squares) with ``per_block^2`` cells each.

    Corridors are one block wide and the walls between them are gaps, so the straight line
    between two points usually leaves the surface: distances and paths must go round the walls.
    """
    verts: Dict[Tuple[int, int], int] = {}
    faces = []
    k = per_block

    def vid(p: Tuple[int, int]) -> int:
        return verts.setdefault(p, len(verts))

    for bi, bj in maze_cells(n, seed):
        for a in range(k):
            for b in range(k):
                x, y = bi * k + a, bj * k + b
                q = [vid((x, y)), vid((x + 1, y)), vid((x + 1, y + 1)), vid((x, y + 1))]
                faces += [[q[0], q[1], q[2]], [q[0], q[2], q[3]]]
    pts = np.array(sorted(verts, key=verts.get), dtype=np.float64) / k
    return np.concatenate([pts, np.zeros((len(pts), 1))], 1), np.array(faces, dtype=np.int64)


def refined(vertices: np.ndarray, faces: np.ndarray, times: int) -> Tuple[np.ndarray, np.ndarray]:
    """The same surface with every triangle split into four (edge midpoints) ``times`` times."""
    import trimesh

    v, f = vertices, faces
    for _ in range(times):
        v, f = trimesh.remesh.subdivide(v, f)
    return np.asarray(v), np.asarray(f)


def _primitive(name: str) -> Callable[[], Tuple[np.ndarray, np.ndarray]]:
    def build():
        import trimesh

        m = {"icosphere": lambda: trimesh.creation.icosphere(subdivisions=4),
             "capsule": lambda: trimesh.creation.capsule(height=1.0, radius=0.5, count=[48, 48])}[name]()
        return np.asarray(m.vertices), np.asarray(m.faces)

    return build


BUILT: Dict[str, Callable[[], Tuple[np.ndarray, np.ndarray]]] = {
    "icosphere": _primitive("icosphere"),
    "capsule": _primitive("capsule"),
    "torus": lambda: torus_grid(1.0, 0.4, 64, 32),
    "torus-100k": lambda: torus_grid(1.0, 0.4, 250, 200),
    "sheet": sheet,
    "hemisphere": hemisphere,
    "maze": maze,
}
"""Meshes built on demand, by name: ``(vertices [n, 3], faces [m, 3])`` in their own coordinates. Closed:
``icosphere`` (5,120 faces, radius 1), ``capsule``, ``torus`` (4,096 faces, R = 1, r = 0.4), ``torus-100k``
(100,000 faces); open: ``sheet`` (unit square, 3,200 faces), ``hemisphere`` (2,592 faces), ``maze`` (the corridors of a
6 x 6 maze, unit-wide, 2,272 faces). The bunny refined (``bunny-20k``, ``bunny-80k``) is in
:data:`manifold_flows.datasets.mesh.REFINED`."""
