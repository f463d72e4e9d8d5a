"""Data sets on manifolds (bundled earth events, synthetic targets), installed as ``manifold_flows.datasets``."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import torch

from manifolds import Sphere

from .earth import (
    EARTH_DATASETS,
    dedupe,
    latlon_to_xyz,
    load_earth,
    read_latlon_csv,
    split,
    xyz_to_latlon,
)
from .implicit import IMPLICIT_SURFACES, load_implicit_dataset
from .mesh import MESHES, MeshDensity, eigenfunction_density, geodesic_bumps, load_mesh, load_mesh_dataset
from .points import AMINO_CLASSES, parse_manifold, read_points_csv, read_torsion_tsv
from .synthetic import (
    SYNTHETIC,
    Checkerboard,
    SyntheticTarget,
    VonMisesFisherMixture,
    WrappedNormalMixture,
    sample_vmf,
    vmf_log_normalizer,
)
from .targets import (
    NEW_TARGETS,
    WrappedNormalHyperbolic,
    WrappedNormalSO3,
    WrappedNormalSPD,
    axis_angle_rotation,
    matrix_to_quaternion,
    quaternion_to_matrix,
    torus_mixture,
)

SYNTHETIC.update(NEW_TARGETS)  # one registry of named targets: spheres and T^2 (synthetic.py), the rest (targets.py)

__all__ = [
    "AMINO_CLASSES",
    "IMPLICIT_SURFACES",
    "MESHES",
    "MeshDensity",
    "eigenfunction_density",
    "geodesic_bumps",
    "load_implicit_dataset",
    "load_mesh",
    "load_mesh_dataset",
    "EARTH_DATASETS",
    "SYNTHETIC",
    "Checkerboard",
    "SyntheticTarget",
    "VonMisesFisherMixture",
    "WrappedNormalHyperbolic",
    "WrappedNormalMixture",
    "WrappedNormalSO3",
    "WrappedNormalSPD",
    "axis_angle_rotation",
    "dedupe",
    "latlon_to_xyz",
    "load_dataset",
    "load_earth",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "parse_manifold",
    "read_points_csv",
    "read_torsion_tsv",
    "read_latlon_csv",
    "sample_vmf",
    "split",
    "torus_mixture",
    "vmf_log_normalizer",
    "xyz_to_latlon",
]


def load_dataset(
    name_or_path: Union[str, Path],
    *,
    seed: int = 0,
    n_synthetic: int = 10_000,
    dedupe: bool = False,
    density: Optional[str] = None,
    samples: Optional[Union[str, Path]] = None,
    mesh_scale: Optional[str] = None,
    manifold: Optional[str] = None,
    amino: Optional[str] = None,
) -> Dict[str, object]:
    """Load a data set and its random 80/10/10 train/validation/test split.

    Args:
        name_or_path: an earth name (:data:`EARTH_DATASETS`), a synthetic name
            (:data:`SYNTHETIC`), the path of a CSV file (lat/lon degrees, read as earth data, or
            points in the coordinates of ``manifold``), or of a protein torsion TSV (``.tsv``, T^2).
        seed: seeds the split and, for synthetic targets, the sampling.
        n_synthetic: number of points drawn from a synthetic target before splitting.
        dedupe: drop repeated points before splitting (see :func:`split`).
        density: for ``mesh:`` data, the target (``"eig:K"``, ``"bumps:N"``; default ``"eig:10"``).
        samples: for ``mesh:`` / ``implicit:`` data, a CSV of x, y, z points to use instead.
        mesh_scale: for ``mesh:`` data, see :func:`~manifold_flows.datasets.mesh.load_mesh`.
        manifold: for a CSV file of your own points, the manifold whose coordinates its rows hold
            (:func:`~manifold_flows.datasets.points.parse_manifold`: ``so3``, ``spd:3``, ``poincare:2``,
            ``hyperboloid:2``, ``torus:10``, ``sphere:3``); None reads latitude/longitude on S^2.
        amino: for a protein torsion TSV (``.tsv``), keep only this Ramachandran class (:data:`AMINO_CLASSES`).

    Returns:
        A dict with ``manifold`` (the :class:`manifolds.Manifold` of the points), ``train``,
        ``val`` and ``test`` (float64 tensors of shape ``[N_split, ambient_dim]``) and ``target``:
        the :class:`SyntheticTarget` the points were drawn from (so exact NLLs and their gaps
        can be computed), or None for data files.

    Raises:
        ValueError: an unknown name that is not an existing file (the message lists the valid
            names), a malformed file (the message names the line and why), or options that do not
            fit the data.
    """
    if isinstance(name_or_path, str) and name_or_path.startswith("mesh:"):
        return load_mesh_dataset(name_or_path, density=density, samples=samples, scale=mesh_scale, seed=seed,
                                 n=n_synthetic, dedupe=dedupe)
    if isinstance(name_or_path, str) and name_or_path.startswith("implicit:"):
        return load_implicit_dataset(name_or_path, density=density, samples=samples, seed=seed, n=n_synthetic,
                                     dedupe=dedupe)
    if density is not None or samples is not None or mesh_scale is not None:
        raise ValueError("density, samples and mesh_scale apply to mesh: and implicit: data only")
    named = isinstance(name_or_path, str) and (name_or_path in SYNTHETIC or name_or_path in EARTH_DATASETS)
    torsion = not named and Path(name_or_path).suffix.lower() == ".tsv"
    if amino is not None and not torsion:
        raise ValueError(f"amino applies to protein torsion files (.tsv), not {str(name_or_path)!r}")
    if manifold is not None and named:
        raise ValueError(f"manifold applies to files of your own points, not to the named data set {name_or_path!r} "
                         "(it has its own manifold)")
    if torsion:
        if manifold is not None and repr(parse_manifold(manifold)) != repr(parse_manifold("torus:2")):
            raise ValueError(f"a protein torsion file (.tsv) holds points on torus:2, not {manifold!r}")
        train, val, test = split(read_torsion_tsv(name_or_path, amino), seed, dedupe_first=dedupe)
        return dict(manifold=parse_manifold("torus:2"), train=train, val=val, test=test, target=None)
    if manifold is not None:
        m = parse_manifold(manifold)
        train, val, test = split(read_points_csv(name_or_path, m), seed, dedupe_first=dedupe)
        return dict(manifold=m, train=train, val=val, test=test, target=None)
    if isinstance(name_or_path, str) and name_or_path in SYNTHETIC:
        target = SYNTHETIC[name_or_path]()
        points = target.sample(n_synthetic, generator=torch.Generator().manual_seed(int(seed)))
        train, val, test = split(points, seed, dedupe_first=dedupe)
        return dict(manifold=target.manifold, train=train, val=val, test=test, target=target)
    known = isinstance(name_or_path, str) and name_or_path in EARTH_DATASETS
    if not known and not Path(name_or_path).is_file():
        raise ValueError(
            f"unknown data set {str(name_or_path)!r}: not a file, and not one of the valid names "
            f"{', '.join(EARTH_DATASETS + tuple(SYNTHETIC))}"
        )
    train, val, test = split(load_earth(name_or_path), seed, dedupe_first=dedupe)
    return dict(manifold=Sphere(2), train=train, val=val, test=test, target=None)
