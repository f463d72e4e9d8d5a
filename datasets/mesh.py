"""Densities on triangle meshes (eigenfunction and geodesic-bump targets, exact), the bundled bunny, user samples."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from manifolds import Mesh
from manifolds.spectral import mesh_eigenfunction

from .earth import read_text_lines, split
from .mesh_shapes import BUILT, refined
from .target_base import SyntheticTarget

DATA_DIR = Path(__file__).resolve().parent / "data" / "mesh"

MESHES: Dict[str, Path] = {"bunny": DATA_DIR / "bunny.obj"}
"""Bundled meshes by name (provenance in this package's README)."""

DEFAULT_SCALE: Dict[str, str] = {"bunny": str(1 / 250)}
"""Scale applied to a bundled mesh when none is asked for: the bunny is divided by 250 as in the
published mesh experiments (its area is then 9.467, log-area 2.248)."""

PathLike = Union[str, Path]


REFINED: Dict[str, Tuple[str, int]] = {"bunny-20k": ("bunny", 1), "bunny-80k": ("bunny", 2)}
"""The bundled bunny with every triangle split into 4 (once: 20,000 faces) or 16 (twice: 80,000 faces): the
same surface at finer resolutions, scaled like the bunny."""


def mesh_names() -> list:
    """Every mesh name ``load_mesh`` knows: bundled files, refined bunnies and built meshes."""
    return sorted(MESHES) + sorted(REFINED) + sorted(BUILT)


def load_mesh(name_or_path: PathLike, scale: Optional[str] = None) -> Mesh:
    """A mesh by name or from any file trimesh reads.

    Names are those of :func:`mesh_names`: the bundled bunny, :data:`REFINED` and :data:`mesh_shapes.BUILT`.

    Args:
        name_or_path: ``"bunny"``, another name, or a path (OBJ, PLY, OFF, STL, ...).
        scale: ``None`` (the mesh's default: 1/250 for the bunny and its refinements, none for others), ``"none"``,
            ``"area"`` (centre, unit area), ``"radius"`` (centre, unit bounding radius) or a number
            (multiply the coordinates). NLLs depend on it: lengths scaled by ``s`` shift them by ``-2 log s``.
    """
    key = str(name_or_path)
    if key in MESHES or key in REFINED or key in BUILT:
        name = key
        base = REFINED[key][0] if key in REFINED else key
        if scale is None:
            scale = DEFAULT_SCALE.get(base)
        if key in MESHES:
            source = MESHES[key]
        elif key in REFINED:
            import trimesh

            raw = trimesh.load(str(MESHES[base]), force="mesh", process=True)  # seams merged before splitting
            source = refined(np.asarray(raw.vertices), np.asarray(raw.faces), REFINED[key][1])
        else:
            source = BUILT[key]()
    else:
        source, name = Path(name_or_path), Path(name_or_path).stem
        if not source.is_file():
            raise ValueError(f"unknown mesh {key!r}: not a file, and not one of the known meshes {mesh_names()}")
    if scale in (None, "none"):
        return Mesh(source, name=name)
    if scale in ("area", "radius"):
        return Mesh(source, normalize=scale, name=name)
    try:
        factor = float(scale)
    except ValueError:
        raise ValueError(f"mesh scale must be 'none', 'area', 'radius' or a number, got {scale!r}") from None
    return Mesh(source, scale=factor, name=name)


class MeshDensity(SyntheticTarget):
    """A density that is constant on each face: ``p(x) = c_f / Z`` on face ``f``, ``Z = sum_f c_f area_f``.

    Sampling is face-wise (a face with probability ``c_f area_f / Z``, then a uniform point in it),
    and the entropy is exact: ``-sum_f P_f log(c_f / Z)``.

    Args:
        mesh: the mesh.
        face_values: non-negative unnormalised density per face ``[faces]``.
        name: a label.
    """

    def __init__(self, mesh: Mesh, face_values, name: str = "mesh density"):
        super().__init__()
        c = torch.as_tensor(np.asarray(face_values, dtype=np.float64))
        if c.shape != (mesh.n_faces,):
            raise ValueError(f"need one value per face ({mesh.n_faces}), got shape {tuple(c.shape)}")
        if not torch.isfinite(c).all() or (c < 0).any() or not (c > 0).any():
            raise ValueError("face values must be finite, non-negative and not all zero")
        areas = torch.tensor(mesh.arrays.areas)
        z = float((c * areas).sum())
        self.manifold = mesh
        self.name = name
        self.register_buffer("log_density", torch.log(c) - math.log(z))
        self.register_buffer("face_prob", c * areas / z)

    def extra_repr(self) -> str:
        """The density's name and its mesh, for ``repr``."""
        return f"{self.name!r} on {self.manifold.label}"

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density ``[...]`` at points ``x [..., 3]`` on the mesh (``-inf`` where the density is 0)."""
        face = self.manifold.closest(x)[0]
        return self.log_density.to(device=x.device)[face].to(x.dtype)

    def sample(self, n, generator=None, *, dtype=None, device=None) -> torch.Tensor:
        """``n`` exact samples ``[n, 3]``, face-wise."""
        dtype, device = self._dtype_device(dtype, device)
        if n == 0:
            return torch.zeros(0, 3, dtype=dtype, device=device)
        face = torch.multinomial(self.face_prob.to(device), n, replacement=True, generator=generator)
        return self.manifold.sample_faces(face, generator, dtype=dtype)

    def entropy(self, n: int = 0, generator: Optional[torch.Generator] = None) -> Tuple[float, float]:
        """Exact differential entropy in nats, ``(value, 0.0)`` (arguments kept for the common interface)."""
        p = self.face_prob
        keep = p > 0
        return float(-(p[keep] * self.log_density[keep]).sum()), 0.0


def eigenfunction_density(mesh: Mesh, k: int) -> MeshDensity:
    """The clamped ``k``-th Laplace-Beltrami eigenfunction as a density (``k >= 1`` counts non-constant modes).

    Face value: ``max(0, mean of phi_k over the face's three vertices)``, so the density is
    constant per face, exact and sampled face-wise (the published targets weight faces by the
    clamped eigenfunction times area in the same way). Signs follow
    :func:`manifolds.spectral._sign_convention`.
    """
    _, phi = mesh_eigenfunction(mesh, k)
    return MeshDensity(mesh, np.clip(phi[mesh.arrays.faces].mean(1), 0, None), name=f"eig:{k}")


def geodesic_bumps(mesh: Mesh, n_bumps: int = 3, sigma: Optional[float] = None, seed: int = 0) -> MeshDensity:
    """A mixture of ``n_bumps`` bumps ``exp(-d(x, c_j)^2 / (2 sigma^2))`` with random vertex centres.

    ``d`` is the shortest-path distance along mesh edges (Dijkstra), an upper bound of the geodesic
    distance that converges to it under refinement, averaged over each face's vertices; the
    density is constant per face and exact. ``sigma`` defaults to ``0.1 sqrt(area)``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    if n_bumps < 1:
        raise ValueError(f"need at least one bump, got {n_bumps}")
    sigma = float(sigma) if sigma is not None else 0.1 * math.sqrt(mesh.area)
    rng = np.random.default_rng(seed)
    centres = rng.choice(mesh.n_vertices, size=n_bumps, replace=False)
    e = np.concatenate([mesh.arrays.faces[:, [0, 1]], mesh.arrays.faces[:, [1, 2]], mesh.arrays.faces[:, [2, 0]]])
    w = np.linalg.norm(mesh.arrays.vertices[e[:, 0]] - mesh.arrays.vertices[e[:, 1]], axis=1)
    graph = coo_matrix((w, (e[:, 0], e[:, 1])), shape=(mesh.n_vertices,) * 2).tocsr()
    dist = dijkstra(graph, directed=False, indices=centres)  # [n_bumps, n_vertices]
    face_d = dist[:, mesh.arrays.faces].mean(-1)  # [n_bumps, faces]
    values = np.exp(-(face_d**2) / (2 * sigma**2)).mean(0)
    return MeshDensity(mesh, values, name=f"bumps:{n_bumps}")


def parse_density(mesh: Mesh, spec: str, seed: int = 0) -> MeshDensity:
    """A target from ``"eig:K"``, ``"bumps:N"`` or ``"bumps:N:SIGMA"``."""
    parts = str(spec).split(":")
    try:
        if parts[0] == "eig" and len(parts) == 2:
            return eigenfunction_density(mesh, int(parts[1]))
        if parts[0] == "bumps" and len(parts) in (2, 3):
            return geodesic_bumps(mesh, int(parts[1]), float(parts[2]) if len(parts) == 3 else None, seed=seed)
    except ValueError as e:
        raise ValueError(f"bad mesh density {spec!r}: {e}") from None
    raise ValueError(f"unknown mesh density {spec!r}: use eig:K (e.g. eig:10) or bumps:N[:SIGMA]")


def read_points_csv(path: PathLike, dim: int = 3) -> torch.Tensor:
    """Points ``[N, dim]`` (float64) from a CSV file: ``#`` comments and one header row are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"samples file {path} does not exist")
    rows = []
    for lineno, line in enumerate(read_text_lines(path), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        cells = [c.strip() for c in s.replace(";", ",").split(",")]
        try:
            values = [float(c) for c in cells]
        except ValueError:
            if not rows and lineno <= 50:  # a header row
                continue
            raise ValueError(f"{path}:{lineno}: cannot read numbers from {line!r}") from None
        if len(values) != dim:
            raise ValueError(f"{path}:{lineno}: expected {dim} columns (x, y, z), got {len(values)}")
        rows.append(values)
    if not rows:
        raise ValueError(f"{path} holds no data rows")
    x = torch.tensor(rows, dtype=torch.float64)
    bad = ~torch.isfinite(x).all(1)
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} rows with NaN or inf, first data row {int(bad.nonzero()[0])}")
    return x


def project_samples(manifold, raw: torch.Tensor, *, tol: float = 1e-2, source: str = "samples") -> torch.Tensor:
    """Project user points onto a surface, refusing points farther than ``tol`` (relative to its size)."""
    p = manifold.projx_checked(raw)
    err = torch.linalg.vector_norm(raw - p, dim=-1)
    limit = tol * getattr(manifold, "length_scale", 1.0)
    if (err > limit).any():
        i = int(err.argmax())
        raise ValueError(f"{source}: {int((err > limit).sum())} of {len(raw)} points are farther than {limit:.3g} from "
                         f"the surface (worst: row {i}, distance {float(err[i]):.3g}); are they in the mesh file's "
                         "coordinates?")
    return p


def load_mesh_dataset(spec: str, *, density: Optional[str] = None, samples: Optional[PathLike] = None,
                      scale: Optional[str] = None, seed: int = 0, n: int = 10_000,
                      dedupe: bool = False) -> Dict[str, object]:
    """A data set on a mesh: ``spec`` is ``"mesh:NAME_OR_PATH"``.

    With ``samples`` (a CSV of x, y, z in the mesh file's own coordinates) the points are mapped by
    the mesh's normalisation, projected onto the mesh (points farther than 1% of its size are
    refused) and split 80/10/10; otherwise ``n`` points are drawn (seeded) from ``density``
    (default ``"eig:10"``), whose exact log-density is returned as ``target``.
    """
    name = spec.split(":", 1)[1] if spec.startswith("mesh:") else spec
    if not name:
        raise ValueError("mesh data needs a name or path: mesh:bunny or mesh:PATH")
    mesh = load_mesh(name, scale)
    if samples is not None:
        if density is not None:
            raise ValueError("pass either --density or --samples for mesh data, not both")
        raw = read_points_csv(samples)
        points = project_samples(mesh, mesh.to_internal(raw), source=str(samples))
        train, val, test = split(points, seed, dedupe_first=dedupe)
        return dict(manifold=mesh, train=train, val=val, test=test, target=None)
    target = parse_density(mesh, density or "eig:10", seed=seed)
    points = target.sample(n, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    train, val, test = split(points, seed, dedupe_first=dedupe)
    return dict(manifold=mesh, train=train, val=val, test=test, target=target)
