"""Your own points on any manifold: CSV files in its coordinates, checked row by row, and protein torsion TSVs.

``--data PATH.csv --manifold NAME`` reads one point per row in the coordinates of the manifold
named by :func:`parse_manifold` (``so3``, ``spd:3``, ``poincare:2``, ``hyperboloid:2``,
``torus:10``, ``sphere:3``); matrices are flattened row-major. Every row is checked, and the first
bad one is reported with its line number and the reason (not orthogonal, not symmetric
positive-definite, outside the ball, off the hyperboloid, ...). Rows within :data:`ROW_TOLERANCE`
of the manifold (rounding in the file) are projected onto it; torus angles are radians, any
finite value, read modulo 2 pi.

Protein backbone torsion files in the layout ``source <TAB> phi <TAB> psi <TAB> amino`` (degrees,
no header; the layout of the Top500 "aggregated_angles.tsv" files) load as points on T^2,
optionally filtered by the Ramachandran class in the ``amino`` column (:data:`AMINO_CLASSES`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch

from manifolds import SO3, SPD, FlatTorus, Hyperboloid, Manifold, PoincareBall, Sphere

from .earth import read_text_lines

ROW_TOLERANCE = 1e-4
"""How far (relative, in the coordinates' own scale) a row may be off its manifold and still be accepted
(and projected): files print a few digits, so rotations are orthogonal and hyperboloid points are on the
sheet only to that precision."""

MANIFOLD_KINDS = ("so3", "spd", "poincare", "hyperboloid", "torus", "sphere")
"""The manifold names of :func:`parse_manifold` (all but ``so3`` take ``:N``)."""

AMINO_CLASSES = ("General", "Glycine", "Proline", "Pre-Pro")
"""Ramachandran classes of the protein torsion TSV layout: glycine residues, proline residues, residues
followed by a proline (Pre-Pro, neither glycine nor proline themselves), and all others (General)."""


def parse_manifold(spec: str) -> Manifold:
    """The manifold named by ``spec``.

    ``spec`` is ``so3`` | ``spd:N`` | ``poincare:D`` | ``hyperboloid:D`` | ``torus:D`` | ``sphere:D``.

    Hyperbolic models have curvature -1; ``spd:N`` is N x N matrices; ``sphere:D`` is S^D with
    ``D + 1`` coordinates.

    Raises:
        ValueError: an unknown name or a bad size (the message lists the valid forms).
    """
    valid = "so3 | spd:N | poincare:D | hyperboloid:D | torus:D | sphere:D"
    kind, _, size = str(spec).strip().lower().partition(":")
    if kind not in MANIFOLD_KINDS:
        raise ValueError(f"unknown manifold {spec!r}; choose from {valid}")
    if kind == "so3":
        if size:
            raise ValueError(f"manifold 'so3' takes no size, got {spec!r} ({valid})")
        return SO3()
    if not size.isdigit() or int(size) < 1:
        raise ValueError(f"manifold {spec!r} needs a size >= 1 after the colon ({valid})")
    n = int(size)
    classes = {"spd": SPD, "poincare": PoincareBall, "hyperboloid": Hyperboloid, "torus": FlatTorus, "sphere": Sphere}
    return classes[kind](n)


def _row_problem(manifold: Manifold, x: torch.Tensor) -> Tuple[torch.Tensor, List[str]]:
    """Which rows of ``x [N, D]`` (float64) are not points of ``manifold``, and why: ``(bad [N] bool, reasons)``."""
    n = x.shape[0]
    reasons = [""] * n
    bad = torch.zeros(n, dtype=torch.bool)

    def flag(mask: torch.Tensor, text) -> None:
        for i in (mask & ~bad).nonzero().flatten().tolist():
            reasons[i] = text(i)
        bad.logical_or_(mask)

    if isinstance(manifold, SO3):
        r = x.reshape(n, 3, 3)
        err = (r.transpose(-1, -2) @ r - torch.eye(3, dtype=x.dtype)).abs().amax(dim=(-1, -2))
        flag(err > ROW_TOLERANCE, lambda i: f"not a rotation matrix: not orthogonal (max |R^T R - I| = {err[i]:.3g}, "
                                            f"tolerance {ROW_TOLERANCE:g})")
        det = torch.linalg.det(r)
        flag(det < 0, lambda i: f"not a rotation matrix: a reflection (det R = {det[i]:.3g}, not +1)")
    elif isinstance(manifold, SPD):
        p = x.reshape(n, manifold.n, manifold.n)
        scale = p.abs().amax(dim=(-1, -2)).clamp_min(1e-300)
        asym = (p - p.transpose(-1, -2)).abs().amax(dim=(-1, -2)) / scale
        flag(asym > ROW_TOLERANCE, lambda i: f"not symmetric positive-definite: not symmetric (max |P - P^T| = "
                                             f"{asym[i] * scale[i]:.3g})")
        low = torch.linalg.eigvalsh(0.5 * (p + p.transpose(-1, -2)))[:, 0]
        flag(low <= 0, lambda i: f"not symmetric positive-definite: smallest eigenvalue {low[i]:.3g} <= 0")
    elif isinstance(manifold, PoincareBall):
        r = torch.linalg.vector_norm(x, dim=-1) * math.sqrt(manifold.c)
        flag(r >= 1, lambda i: f"outside the ball: |x| = {r[i]:.6g} >= 1 (the Poincare ball is the open unit ball)")
    elif isinstance(manifold, Hyperboloid):
        x0, xs = x[:, 0], x[:, 1:]
        flag(x0 <= 0, lambda i: f"off the hyperboloid: x0 = {x0[i]:.6g} <= 0 (points have x0 = sqrt(1 + |xs|^2) > 0, "
                                "time coordinate first)")
        t = torch.sqrt(1.0 / manifold.c + (xs * xs).sum(-1))
        rel = (x0 - t).abs() / t
        flag(rel > ROW_TOLERANCE, lambda i: f"off the hyperboloid: x0 = {x0[i]:.6g} but sqrt(1 + |xs|^2) = {t[i]:.6g} "
                                            "(time coordinate first)")
    elif isinstance(manifold, Sphere):
        r = torch.linalg.vector_norm(x, dim=-1)
        flag((r - 1).abs() > ROW_TOLERANCE, lambda i: f"not on the unit sphere: |x| = {r[i]:.6g}")
    return bad, reasons


def read_points_csv(path: Union[str, Path], manifold: Manifold, *, min_rows: int = 10) -> torch.Tensor:
    """Points of ``manifold``, one per row of a comma-separated file, checked row by row.

    Lines starting with ``#`` and blank lines are skipped; the first remaining row is a header
    (ignored) if any of its cells is not a number. Every data row must hold exactly
    ``manifold.ambient_dim`` finite numbers.

    Args:
        path: the CSV file.
        manifold: the manifold (see :func:`parse_manifold`).
        min_rows: fewest data rows accepted.

    Returns:
        Points on the manifold, float64, ``[N, ambient_dim]`` (rows within :data:`ROW_TOLERANCE`
        projected onto it; torus angles reduced to ``[0, 2 pi)``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and the line: a wrong number of columns, a cell that is not a
            finite number, a point off the manifold (and why), or fewer than ``min_rows`` rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    d = manifold.ambient_dim
    rows: List[List[float]] = []
    lines: List[int] = []
    seen_first, last_line = False, 0
    for lineno, line in enumerate(read_text_lines(path), start=1):
        last_line = lineno
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        cells = [c.strip() for c in next(csv.reader([stripped]))]
        values = []
        for c in cells:
            try:
                values.append(float(c))
            except ValueError:
                values.append(None)
        if not seen_first:
            seen_first = True
            if any(v is None for v in values):
                continue  # a header row
        where = f"{path}, line {lineno}"
        if len(values) != d:
            how = ", matrices flattened row-major" if isinstance(manifold, (SO3, SPD)) else ""
            raise ValueError(f"{where}: expected {d} numbers per row for {manifold} (its coordinates{how}), "
                             f"found {len(values)}")
        for c, v in zip(cells, values):
            if v is None or not math.isfinite(v):
                raise ValueError(f"{where}: {c!r} is not a finite number")
        rows.append(values)
        lines.append(lineno)
    if len(rows) < min_rows:
        raise ValueError(f"{path}, line {last_line}: the file ends with {len(rows)} data row(s), fewer than "
                         f"min_rows={min_rows}")
    x = torch.tensor(rows, dtype=torch.float64)
    bad, reasons = _row_problem(manifold, x)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        more = int(bad.sum()) - 1
        raise ValueError(f"{path}, line {lines[i]}: row {i + 1} is {reasons[i]}"
                         + (f" ({more} more bad row(s) after it)" if more else ""))
    return manifold.projx(x)


def read_torsion_tsv(path: Union[str, Path], amino: Optional[str] = None, *, min_rows: int = 10) -> torch.Tensor:
    """Protein backbone torsion angles ``(phi, psi)`` from a ``source, phi, psi, amino`` TSV, as points on T^2.

    Each line holds four tab-separated fields: a residue label, phi and psi in degrees, and the
    Ramachandran class (:data:`AMINO_CLASSES`). A first line whose phi is not a number is taken
    as a header; lines starting with ``#`` are skipped.

    Args:
        path: the TSV file.
        amino: keep only rows of this class (None: all rows).
        min_rows: fewest rows accepted (after filtering).

    Returns:
        ``(phi, psi)`` in radians reduced to ``[0, 2 pi)``, float64 ``[N, 2]``.

    Raises:
        ValueError: naming the file and line: a wrong number of fields, a non-numeric or
            non-finite angle, an unknown class; or too few rows of the requested class.
    """
    if amino is not None and amino not in AMINO_CLASSES:
        raise ValueError(f"unknown amino class {amino!r}; choose from {', '.join(AMINO_CLASSES)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    rows: List[Tuple[float, float]] = []
    counts = {c: 0 for c in AMINO_CLASSES}
    first = True
    for lineno, line in enumerate(read_text_lines(path), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        where = f"{path}, line {lineno}"
        if len(fields) != 4:
            raise ValueError(f"{where}: expected 4 tab-separated fields (source, phi, psi, amino), found {len(fields)}")
        try:
            phi, psi = float(fields[1]), float(fields[2])
        except ValueError:
            if first:
                first = False
                continue  # a header line
            raise ValueError(f"{where}: phi/psi {fields[1]!r}, {fields[2]!r} are not numbers (degrees)") from None
        first = False
        if not (math.isfinite(phi) and math.isfinite(psi)):
            raise ValueError(f"{where}: phi/psi {fields[1]!r}, {fields[2]!r} are not finite")
        if fields[3] not in counts:
            raise ValueError(f"{where}: unknown amino class {fields[3]!r}; the layout uses {', '.join(AMINO_CLASSES)}")
        counts[fields[3]] += 1
        if amino is None or fields[3] == amino:
            rows.append((phi, psi))
    if len(rows) < min_rows:
        which = f" of class {amino!r}" if amino else ""
        raise ValueError(f"{path}: {len(rows)} row(s){which}, fewer than min_rows={min_rows} (rows per class: "
                         + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")
    angles = torch.deg2rad(torch.tensor(rows, dtype=torch.float64))
    return FlatTorus(2).projx(angles)
