"""Earth event data on S^2: CSV reading, latitude/longitude conversion, de-duplication and splits."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]

EARTH_DATASETS = ("volcano", "earthquake", "flood")
"""Names of the bundled earth data sets (files ``data/<name>.csv`` next to this module)."""

DATA_DIR = Path(__file__).resolve().parent / "data"

_LAT_NAMES = ("lat", "latitude")
_LON_NAMES = ("lon", "long", "longitude")


# ---------------------------------------------------------------------------------------- coordinates
def latlon_to_xyz(latlon_deg: torch.Tensor) -> torch.Tensor:
    """Unit vectors on S^2 from latitude and longitude in degrees.

    ``x = cos(lat) cos(lon)``, ``y = cos(lat) sin(lon)``, ``z = sin(lat)``, so the north pole is
    ``(0, 0, 1)`` and ``(lat, lon) = (0, 0)`` is ``(1, 0, 0)``.

    Args:
        latlon_deg: latitude and longitude in degrees, latitude first, shape ``[..., 2]``.
            Integer input is converted to float64; floating input keeps its dtype and device.

    Returns:
        Points on the unit sphere, shape ``[..., 3]``.
    """
    latlon_deg = torch.as_tensor(latlon_deg)
    if not latlon_deg.is_floating_point():
        latlon_deg = latlon_deg.to(torch.float64)
    if latlon_deg.dim() < 1 or latlon_deg.shape[-1] != 2:
        raise ValueError(f"latlon_to_xyz needs shape [..., 2] (lat, lon), got {tuple(latlon_deg.shape)}")
    rad = torch.deg2rad(latlon_deg)
    lat, lon = rad[..., 0], rad[..., 1]
    cos_lat = torch.cos(lat)
    return torch.stack([cos_lat * torch.cos(lon), cos_lat * torch.sin(lon), torch.sin(lat)], dim=-1)


def xyz_to_latlon(x: torch.Tensor) -> torch.Tensor:
    """Latitude and longitude in degrees of points in R^3 (the inverse of :func:`latlon_to_xyz`).

    The direction of ``x`` is used, so points need not be exactly unit length. Latitude is in
    ``[-90, 90]`` and longitude in ``[-180, 180]``; at the poles the longitude is 0.

    Args:
        x: points, shape ``[..., 3]``.

    Returns:
        ``(lat, lon)`` in degrees, shape ``[..., 2]``.
    """
    if x.dim() < 1 or x.shape[-1] != 3:
        raise ValueError(f"xyz_to_latlon needs shape [..., 3], got {tuple(x.shape)}")
    lat = torch.atan2(x[..., 2], torch.hypot(x[..., 0], x[..., 1]))
    lon = torch.atan2(x[..., 1], x[..., 0])
    return torch.rad2deg(torch.stack([lat, lon], dim=-1))


# ---------------------------------------------------------------------------------------- reading
def _as_float(cell: str) -> Optional[float]:
    """The number in ``cell``, or None if it is not one."""
    try:
        return float(cell)
    except ValueError:
        return None


def _header_columns(cells: List[str], where: str) -> Tuple[int, int]:
    """Indices of the latitude and longitude columns named by a header row."""
    names = [c.strip().lower() for c in cells]
    found = {}
    for kind, accepted in (("latitude", _LAT_NAMES), ("longitude", _LON_NAMES)):
        hits = [i for i, name in enumerate(names) if name in accepted]
        if len(hits) > 1:
            raise ValueError(f"{where}: header row {cells} has more than one {kind} column")
        found[kind] = hits[0] if hits else None
    missing = [kind for kind, idx in found.items() if idx is None]
    if missing:
        raise ValueError(
            f"{where}: header row {cells} has no {' and no '.join(missing)} column "
            f"(accepted names, any case: latitude {'/'.join(_LAT_NAMES)}, longitude {'/'.join(_LON_NAMES)})"
        )
    return found["latitude"], found["longitude"]


def read_text_lines(path: Path) -> List[str]:
    """The lines of a UTF-8 text file (a byte-order mark is dropped).

    Raises:
        ValueError: the file is not UTF-8 text (the message names the file and the byte offset).
    """
    try:
        return Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (undecodable byte at offset {e.start}); "
                         "save it as UTF-8 CSV") from None


def read_latlon_csv(path: PathLike, *, min_rows: int = 10) -> torch.Tensor:
    """Read latitude/longitude pairs (degrees) from a comma-separated file.

    Lines whose first non-blank character is ``#`` and blank lines are skipped. The first
    remaining row is a header if any of its cells is not a number; the header then names the
    latitude column (``lat`` or ``latitude``) and the longitude column (``lon``, ``long`` or
    ``longitude``), in any case and any order, and other columns are ignored. Without a header
    every row must hold exactly two numbers, latitude first.

    Args:
        path: the CSV file.
        min_rows: fewest data rows accepted.

    Returns:
        ``(lat, lon)`` in degrees, float64, shape ``[N, 2]`` with ``N >= min_rows``.

    Raises:
        FileNotFoundError: the file does not exist (the message holds the path).
        ValueError: naming the file and the 1-based line number, for a non-numeric cell (quoted
            in the message), a wrong number of columns, NaN, a latitude outside ``[-90, 90]``, a
            longitude outside ``[-180, 360]``, a header without latitude/longitude columns, or
            fewer than ``min_rows`` data rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    rows: List[Tuple[float, float]] = []
    lat_col, lon_col, n_cols = 0, 1, 2
    seen_first = False
    last_line = 0
    for lineno, line in enumerate(read_text_lines(path), start=1):
        last_line = lineno
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path}, line {lineno}"
        cells = [c.strip() for c in next(csv.reader([stripped]))]
        if not seen_first:
            seen_first = True
            if any(_as_float(c) is None for c in cells):
                lat_col, lon_col = _header_columns(cells, where)
                n_cols = len(cells)
                continue
        if len(cells) != n_cols:
            raise ValueError(f"{where}: expected {n_cols} columns, found {len(cells)} in {stripped!r}")
        values = []
        for col, kind in ((lat_col, "latitude"), (lon_col, "longitude")):
            value = _as_float(cells[col])
            if value is None:
                raise ValueError(f"{where}: non-numeric {kind} cell {cells[col]!r}")
            if math.isnan(value):
                raise ValueError(f"{where}: {kind} is NaN ({cells[col]!r})")
            values.append(value)
        lat, lon = values
        if not -90.0 <= lat <= 90.0:
            raise ValueError(f"{where}: latitude {cells[lat_col]!r} is outside [-90, 90]")
        if not -180.0 <= lon <= 360.0:
            raise ValueError(f"{where}: longitude {cells[lon_col]!r} is outside [-180, 360]")
        rows.append((lat, lon))
    if len(rows) < min_rows:
        raise ValueError(
            f"{path}, line {last_line}: the file ends with {len(rows)} data row(s), fewer than min_rows={min_rows}"
        )
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 2)


def load_earth(name_or_path: PathLike, *, min_rows: int = 10) -> torch.Tensor:
    """Load a bundled earth data set by name, or any lat/lon CSV by path, as points on S^2.

    Args:
        name_or_path: one of :data:`EARTH_DATASETS` (``"volcano"``, ``"earthquake"``,
            ``"flood"``), or the path of a CSV readable by :func:`read_latlon_csv`.
        min_rows: fewest data rows accepted (see :func:`read_latlon_csv`).

    Returns:
        Unit vectors, float64, shape ``[N, 3]`` (rows in file order, duplicates kept).

    Raises:
        FileNotFoundError: not a bundled name and no such file.
        ValueError: the file is malformed (see :func:`read_latlon_csv`).
    """
    if isinstance(name_or_path, str) and name_or_path in EARTH_DATASETS:
        path = DATA_DIR / f"{name_or_path}.csv"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no such file: {path} (and {str(name_or_path)!r} is not a bundled earth data set: "
                f"{', '.join(EARTH_DATASETS)})"
            )
    return latlon_to_xyz(read_latlon_csv(path, min_rows=min_rows))


# ---------------------------------------------------------------------------------------- splitting
def dedupe(points: torch.Tensor, decimals: int = 6) -> torch.Tensor:
    """Drop repeated points, keeping the first occurrence of each and the original order.

    Two rows are duplicates when they are equal after rounding to ``decimals`` decimal places.

    Args:
        points: shape ``[N, D]``.
        decimals: rounding applied before comparing (the returned rows are not rounded).

    Returns:
        The distinct rows of ``points`` in order of first appearance, shape ``[M, D]``, ``M <= N``.
    """
    if points.dim() != 2:
        raise ValueError(f"dedupe needs points of shape [N, D], got {tuple(points.shape)}")
    n = points.shape[0]
    if n == 0:
        return points
    keys = torch.round(points, decimals=decimals) if points.is_floating_point() else points
    unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
    index = torch.arange(n, device=points.device)
    first = torch.full((unique.shape[0],), n, dtype=index.dtype, device=points.device)
    first = first.scatter_reduce(0, inverse, index, reduce="amin")
    return points[torch.sort(first).values]


def split(
    points: torch.Tensor,
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    dedupe_first: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random train/validation/test split of the rows of ``points``.

    The rows are shuffled by ``torch.randperm`` under a CPU ``torch.Generator`` seeded with
    ``seed``, so a seed gives the same split on every machine and device. With ``N`` rows the
    validation and test sets get ``floor(f_val N)`` and ``floor(f_test N)`` rows and training
    gets the rest; the three are disjoint and their union is ``points`` (after de-duplication
    when ``dedupe_first``).

    Args:
        points: shape ``[N, ...]``.
        seed: seed of the permutation.
        fractions: ``(train, val, test)`` fractions, non-negative, summing to 1.
        dedupe_first: apply :func:`dedupe` before splitting, so no test point has an exact
            twin in training (the volcano data has 827 rows but only 267 distinct points).

    Returns:
        ``(train, val, test)``, shapes ``[N_train, ...]``, ``[N_val, ...]``, ``[N_test, ...]``.

    Raises:
        ValueError: fractions are not three non-negative numbers summing to 1, or a split would
            be empty.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions):
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions} (sum {sum(fractions):.6g})")
    if points.dim() < 1:
        raise ValueError("split needs points of shape [N, ...], got a scalar")
    if dedupe_first:
        points = dedupe(points)
    n = points.shape[0]
    # the small slack keeps products such as 0.1 * 30 = 3.0000000000000004 or 2.9999999999999996 at 3
    n_val = math.floor(fractions[1] * n + 1e-9)
    n_test = math.floor(fractions[2] * n + 1e-9)
    n_train = n - n_val - n_test
    for name, size in (("train", n_train), ("val", n_val), ("test", n_test)):
        if size <= 0:
            raise ValueError(
                f"splitting {n} point(s) with fractions {fractions} leaves the {name} split empty"
            )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).to(points.device)
    return points[perm[:n_train]], points[perm[n_train : n_train + n_val]], points[perm[n_train + n_val :]]
