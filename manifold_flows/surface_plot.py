"""3-D figures of densities on surfaces in R^3: a small software renderer on matplotlib.

The surfaces are triangle meshes and implicit surfaces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from manifolds import ImplicitSurface, Manifold, Mesh, Sphere
from manifolds.implicit_shapes import TorusDistance

LogProb = Callable[[torch.Tensor], torch.Tensor]


_UP_AXIS = {"z": (0, 1, 2), "y": (2, 0, 1), "x": (1, 2, 0)}  # cyclic: the display keeps the handedness


def _torus_grid(R: float, r: float, n_tube: int = 32, n_ring: int = 80) -> Tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of the torus of revolution about z on a (tube angle, ring angle) grid."""
    theta = 2 * math.pi * np.arange(n_tube) / n_tube
    phi = 2 * math.pi * np.arange(n_ring) / n_ring
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    ring = R + r * np.cos(th)
    v = np.stack([ring * np.cos(ph), ring * np.sin(ph), r * np.sin(th)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_tube), np.arange(n_ring), indexing="ij")
    a = i * n_ring + j
    b = ((i + 1) % n_tube) * n_ring + j
    c = ((i + 1) % n_tube) * n_ring + (j + 1) % n_ring
    d = i * n_ring + (j + 1) % n_ring
    f = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return v, f


def _star_mesh(surface: ImplicitSurface, subdivisions: int = 4,
               n_ray: int = 64) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """An icosphere pushed radially onto a surface that is star-shaped about the centre of its box.

    Each vertex direction is a ray from the box centre; ``f`` is sampled at ``n_ray`` points up to
    the box wall and must go from negative to positive exactly once (otherwise None: the surface
    is not star-shaped about the centre, as far as the samples tell). The crossing is bisected and
    polished with :meth:`ImplicitSurface.projx`.
    """
    import trimesh

    ico = trimesh.creation.icosphere(subdivisions=subdivisions)
    d = np.asarray(ico.vertices, dtype=np.float64)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    lo, hi = (np.asarray(b) for b in surface.bounds)
    c = 0.5 * (lo + hi)
    reach = np.where(np.abs(d) > 1e-12, (hi - c) / np.maximum(np.abs(d), 1e-12), np.inf).min(1)
    dtype, device = surface.work_dtype, surface.work_device

    def f(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = surface.f(torch.as_tensor(x, dtype=dtype, device=device))
        return out.double().cpu().numpy()

    t = np.linspace(0.0, 1.0, n_ray + 1)[None, :] * reach[:, None]
    inside = f(c + t[..., None] * d[:, None, :]) < 0
    if not inside[:, 0].all() or inside[:, -1].any():
        return None
    if ((inside[:, 1:] != inside[:, :-1]).sum(1) != 1).any():
        return None
    k = np.argmax(~inside, axis=1)
    rows = np.arange(len(d))
    a, b = t[rows, k - 1], t[rows, k]
    for _ in range(50):
        m = 0.5 * (a + b)
        neg = f(c + m[:, None] * d) < 0
        a, b = np.where(neg, m, a), np.where(neg, b, m)
    v = c + (0.5 * (a + b))[:, None] * d
    with torch.no_grad():
        p = surface.projx(torch.as_tensor(v, dtype=dtype, device=device)).double().cpu().numpy()
    v = np.where(np.isfinite(p).all(1, keepdims=True), p, v)
    return v, np.asarray(ico.faces, dtype=np.int64)


def _display_mesh(manifold: Manifold) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """A triangle mesh ``(vertices [n, 3], faces [m, 3])`` to draw the surface with, or None."""
    if isinstance(manifold, Mesh):
        return manifold.vertices.detach().double().cpu().numpy(), manifold.faces.detach().long().cpu().numpy()
    if isinstance(manifold, ImplicitSurface):
        if isinstance(manifold.f, TorusDistance):
            return _torus_grid(manifold.f.R, manifold.f.r)
        return _star_mesh(manifold)
    if isinstance(manifold, Sphere) and manifold.dim == 2:
        import trimesh

        ico = trimesh.creation.icosphere(subdivisions=4)
        return np.asarray(ico.vertices, dtype=np.float64), np.asarray(ico.faces, dtype=np.int64)
    return None


def _density_at(log_prob: LogProb, manifold: Manifold, x: torch.Tensor, max_evals: int,
                chunk: int = 1000) -> np.ndarray:
    """``exp(log_prob)`` at the projections of ``x [m, 3]``.

    It is evaluated at ``max_evals`` of them at most (a seeded random subset) and copied from the nearest evaluated
    point to the others.
    """
    with torch.no_grad():
        q = manifold.projx_checked(x.to(getattr(manifold, "work_device", x.device))).to(x.device)
        q = torch.where(torch.isfinite(q).all(-1, keepdim=True), q, x)
        idx = None
        if q.shape[0] > max_evals:
            idx = torch.randperm(q.shape[0], generator=torch.Generator().manual_seed(0))[:max_evals]
        ev = q if idx is None else q[idx]
        lp = torch.cat([log_prob(c).detach().reshape(-1).double().cpu() for c in torch.split(ev, chunk)])
        if lp.shape[0] != ev.shape[0]:
            raise ValueError(f"log_prob returned {lp.shape[0]} values for {ev.shape[0]} points")
        if idx is not None:
            near = torch.cat([torch.cdist(c, ev).argmin(1) for c in torch.split(q, 2048)])
            lp = lp[near]
    return torch.exp(lp).numpy()


def _subsample(x: Optional[torch.Tensor], n: int, seed: int) -> Optional[np.ndarray]:
    if x is None:
        return None
    x = x.detach().double().cpu().reshape(-1, 3)
    if x.shape[0] > n:
        x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]
    return x.numpy()


def _eye(elev: float, azim: float) -> np.ndarray:
    """Unit vector from the scene towards the camera of ``view_init(elev, azim)`` (z up)."""
    e, a = math.radians(elev), math.radians(azim)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def _visible(x: np.ndarray, surface: np.ndarray, eye: np.ndarray, grid: int, extent: Tuple[np.ndarray, np.ndarray],
             cos_view: Optional[np.ndarray] = None, oriented: bool = False) -> np.ndarray:
    """Which points ``x [k, 3]`` on the surface are not hidden behind it in an orthographic view along ``-eye``.

    ``surface [N, 3]`` are dense samples of the surface; their largest height along ``eye`` per cell
    of a ``grid``-square image is the depth buffer (empty cells take their neighbours' value). A
    point is visible if it is within ``tol`` of the front surface in its cell: ``tol`` is two cell
    widths plus the rise of the surface across 1.5 cells, ``tan(angle)`` for the angle between its
    normal and the view (``cos_view = <n, eye>`` per point, default 1/sqrt(2), at most tan = 6).
    With ``oriented`` (outward normals of a closed surface) points facing away, ``cos_view < -0.05``,
    are hidden whatever the depth buffer says.
    """
    from scipy.ndimage import maximum_filter

    u = np.cross(eye, [0.0, 0.0, 1.0] if abs(eye[2]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    w = np.cross(eye, u)
    basis = np.stack([u, w], 1)
    corners = np.stack(np.meshgrid(*zip(*extent), indexing="ij"), -1).reshape(-1, 3) @ basis
    lo, size = corners.min(0), (corners.max(0) - corners.min(0)).max() * (1 + 1e-9) + 1e-12
    h = size / grid

    def cells(p: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        ij = np.clip(np.floor((p @ basis - lo) / h).astype(np.int64), 0, grid - 1)
        return ij[:, 0], ij[:, 1]

    buf = np.full((grid, grid), -np.inf)
    np.maximum.at(buf, cells(surface), surface @ eye)
    empty = np.isneginf(buf)
    buf[empty] = maximum_filter(buf, size=3)[empty]
    c = np.full(len(x), math.sqrt(0.5)) if cos_view is None else np.clip(np.abs(cos_view), 1e-6, 1.0)
    tan = np.minimum(np.sqrt(1.0 - c * c) / c, 6.0)
    out = x @ eye >= buf[cells(x)] - h * (2.0 + 1.5 * tan)
    if oriented and cos_view is not None:
        out &= cos_view > -0.05
    return out


def _orientation(v: np.ndarray, f: np.ndarray) -> int:
    """+1 (-1) if the mesh is closed and consistently wound with outward (inward) normals, 0 otherwise.

    Closed and consistent: every directed edge occurs once and its reverse occurs too. Outward: the
    signed volume is positive.
    """
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).astype(np.int64)
    n = int(f.max()) + 1 if len(f) else 1
    key, rev = e[:, 0] * n + e[:, 1], e[:, 1] * n + e[:, 0]
    if len(np.unique(key)) != len(key) or not np.isin(rev, key).all():
        return 0
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    volume = np.einsum("ij,ij->", a, np.cross(b, c)) / 6.0
    return 1 if volume > 0 else -1 if volume < 0 else 0


def _surface_samples(v: np.ndarray, f: np.ndarray, n: int) -> np.ndarray:
    """``n`` area-uniform points on the triangle mesh ``(v, f)`` (seeded)."""
    rng = np.random.default_rng(0)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(f), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    t = tri[face]
    return (1 - r1)[:, None] * t[:, 0] + (r1 * (1 - r2))[:, None] * t[:, 1] + (r1 * r2)[:, None] * t[:, 2]


@dataclass
class _Scene:
    """What is drawn: a triangle mesh (``tri [m, 3, 3]`` in display axes, outward ``normals``) or a point cloud."""

    tri: Optional[np.ndarray]
    normals: Optional[np.ndarray]
    orientation: int
    cloud: Optional[np.ndarray]
    query: torch.Tensor
    centre: np.ndarray
    half: np.ndarray
    v: Optional[np.ndarray] = None
    f: Optional[np.ndarray] = None

    @property
    def extent(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.centre - self.half, self.centre + self.half


def _scene(manifold: Manifold, perm: List[int]) -> _Scene:
    """The surface as a display mesh (centroids queried), or 20000 base samples where there is none."""
    shape = _display_mesh(manifold)
    if shape is None:
        query = manifold.random_base(20000, dtype=torch.float64)
        cloud = query.numpy()[:, perm]
        lo, hi = cloud.min(0), cloud.max(0)
        tri = normals = None
        orientation = 0
    else:
        v, f = shape
        query = torch.from_numpy(v[f].mean(1))
        tri, cloud = v[f][..., perm], None
        lo, hi = v.min(0)[perm], v.max(0)[perm]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
        orientation = _orientation(v, f)
        if orientation < 0:
            normals = -normals
    centre, half = 0.5 * (lo + hi), np.maximum(0.5 * (hi - lo), 1e-9 * max(1.0, float(np.abs(hi - lo).max())))
    return _Scene(tri, normals, orientation, cloud, query, centre, half,
                  *(shape if shape is not None else (None, None)))


def _colour_scale(density: np.ndarray):
    """Colours ``[m, 4]`` of the densities, the norm, and whether values beyond it exist (the colorbar's arrow).

    The scale runs from 0 to the densities' 99.5th percentile.
    """
    import matplotlib
    from matplotlib.colors import Normalize

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.7")
    finite = np.isfinite(density)
    # the scale ends at the 99.5th percentile of the faces, so that a few spikes (e.g. of an untrained
    # Moser Flow at mesh edges) do not flatten the rest; the colorbar then shows an arrow
    peak = float(density[finite].max()) if finite.any() else 1.0
    vmax = float(np.percentile(density[finite], 99.5)) if finite.any() else 1.0
    vmax = vmax if vmax > 0 else peak if peak > 0 else 1.0
    norm = Normalize(0.0, vmax)
    return cmap, norm, cmap(norm(np.where(finite, density, np.nan))), peak > 1.01 * vmax


def _axes(fig, cell, scene: _Scene, elev: float, azim: float):
    """An orthographic 3-D axes in ``cell`` framing the scene, seen from ``(elev, azim)``."""
    ax = fig.add_subplot(cell, projection="3d")
    ax.set_proj_type("ortho")
    (lo, hi) = scene.extent
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(tuple(scene.half), zoom=1.25)
    ax.view_init(elev=elev, azim=azim)
    ax.set_axis_off()
    ax.set_facecolor("none")
    return ax


def _shaded(scene: _Scene, rgba: np.ndarray, eye: np.ndarray) -> np.ndarray:
    """Face colours lit by a light at the camera: ``0.6 + 0.4 |<n, eye>|`` times the colour."""
    out = np.array(rgba, dtype=np.float64, copy=True)
    out[:, :3] *= (0.6 + 0.4 * np.abs(scene.normals @ eye))[:, None]
    return out


def _density_panel(ax, scene: _Scene, colours: np.ndarray, elev: float, azim: float) -> None:
    """The surface coloured by the density, seen from ``(elev, azim)``."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    eye = _eye(elev, azim)
    if scene.tri is not None:
        fc = _shaded(scene, colours, eye)
        ax.add_collection3d(Poly3DCollection(scene.tri, facecolors=fc, edgecolors=fc, linewidths=0.3,
                                             antialiased=False))
    else:
        front = _visible(scene.cloud, scene.cloud, eye, 48, scene.extent)
        ax.scatter(*scene.cloud[front].T, c=colours[front], s=2.0, linewidths=0, depthshade=False)
    ax.set_title(f"elev {elev:g}°, azim {azim:g}°", fontsize=8)


def _overlay_panel(ax, scene: _Scene, perm: List[int], samples: Optional[torch.Tensor], points: Optional[torch.Tensor],
                   elev: float, azim: float) -> None:
    """Up to 3000 samples and data points each on a grey surface, those hidden behind it left out."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    ax.computed_zorder = False
    eye = _eye(elev, azim)
    if scene.tri is not None:
        fc = _shaded(scene, np.tile([0.86, 0.86, 0.86, 1.0], (len(scene.tri), 1)), eye)
        ax.add_collection3d(Poly3DCollection(scene.tri, facecolors=fc, edgecolors=fc, linewidths=0.3, antialiased=False,
                                             zorder=1))
        surf = _surface_samples(scene.v[:, perm], scene.f, 400_000)
        centroids = torch.from_numpy(scene.tri.mean(1))
        resolution = 256
    else:
        front = _visible(scene.cloud, scene.cloud, eye, 48, scene.extent)
        ax.scatter(*scene.cloud[front].T, c="0.8", s=2.0, linewidths=0, depthshade=False, zorder=1)
        surf, resolution = scene.cloud, 48
    for k, (pts, style) in enumerate(((samples, dict(s=1.2, c="0.12", alpha=0.7, label="model samples")),
                                      (points, dict(s=2.5, c="red", alpha=0.8, label="data")))):
        q = _subsample(pts, 3000, seed=k + 1)
        if q is None:
            continue
        q = q[:, perm]
        cos_view = None
        if scene.tri is not None:
            qt = torch.from_numpy(q)
            near = torch.cat([torch.cdist(c, centroids).argmin(1) for c in torch.split(qt, 1024)]).numpy()
            cos_view = scene.normals[near] @ eye
        oriented = scene.tri is not None and scene.orientation != 0
        q = q[_visible(q, surf, eye, resolution, scene.extent, cos_view, oriented=oriented)]
        ax.scatter(q[:, 0], q[:, 1], q[:, 2], linewidths=0, depthshade=False, zorder=2 + k, **style)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.04), ncol=2, fontsize=7, markerscale=4, frameon=False)
    ax.set_title("samples and data (front side)", fontsize=8)


def _display_axes(manifold: Manifold, views, max_faces, vertical_axis: Optional[str]):
    """Checked views and the permutation of coordinates that puts ``vertical_axis`` (default: ``y`` on meshes) up."""
    views = [(float(e), float(a)) for e, a in views]
    if not views:
        raise ValueError("views must hold at least one (elevation, azimuth) pair")
    if isinstance(max_faces, bool) or not isinstance(max_faces, int) or max_faces < 1:
        raise ValueError(f"max_faces must be a positive integer, got {max_faces!r}")
    if vertical_axis is None:
        vertical_axis = "y" if isinstance(manifold, Mesh) else "z"
    if vertical_axis not in _UP_AXIS:
        raise ValueError(f"vertical_axis must be 'x', 'y' or 'z', got {vertical_axis!r}")
    if getattr(manifold, "ambient_dim", None) != 3 or getattr(manifold, "dim", None) != 2:
        raise ValueError(f"surface_density draws surfaces in R^3; got {manifold}")
    return views, list(_UP_AXIS[vertical_axis])


def surface_density(
    log_prob: LogProb,
    manifold: Manifold,
    path: Path,
    *,
    samples: Optional[torch.Tensor] = None,
    points: Optional[torch.Tensor] = None,
    title: str = "",
    views: Sequence[Tuple[float, float]] = ((20, -60), (20, 120)),
    max_faces: int = 6000,
    vertical_axis: Optional[str] = None,
) -> Path:
    """3-D views of the density ``exp(log_prob)`` on a surface in R^3, plus a panel of samples and data.

    The surface is drawn as a triangle mesh: a :class:`~manifolds.Mesh` as it is; an
    :class:`~manifolds.ImplicitSurface` torus (named constructor) on an angle grid; other implicit
    surfaces as an icosphere pushed radially onto them when they are star-shaped about the centre
    of their bounding box. Otherwise 20000 base samples are drawn as coloured dots instead.

    The density is evaluated once per face, at the face centroid projected onto the manifold
    (``log_prob`` in chunks of 1000 points). With more than ``max_faces`` faces it is evaluated at a
    seeded random subset of ``max_faces`` of them and every other face takes the value at the nearest
    evaluated centroid. Faces are coloured by the density (not its logarithm) on one colour scale
    shared by all views, from 0 to the 99.5th percentile of the face values (higher ones saturate and
    the colorbar gets an arrow), lit by a light at the camera. The last panel (only when ``samples``
    or ``points`` are given) shows up to 3000 of each on a grey surface, in the first view; points
    hidden behind the surface in that view are left out.

    Args:
        log_prob: ``[N, 3] -> [N]`` log-density (w.r.t. area) on the manifold; called with float64
            points in mesh coordinates.
        manifold: a :class:`~manifolds.Mesh` or :class:`~manifolds.ImplicitSurface` (or ``Sphere(2)``).
        path: PNG file to write.
        samples: model samples ``[M, 3]`` (small dark dots).
        points: data points ``[K, 3]`` (small red dots).
        title: figure title.
        views: ``(elevation, azimuth)`` in degrees of each density panel.
        max_faces: most density evaluations.
        vertical_axis: the coordinate drawn upwards, ``"x"``, ``"y"`` or ``"z"``; default ``"y"``
            for meshes (the OBJ convention, e.g. the Stanford bunny) and ``"z"`` otherwise.

    Returns:
        ``Path(path)``.
    """
    from matplotlib.cm import ScalarMappable

    views, perm = _display_axes(manifold, views, max_faces, vertical_axis)
    scene = _scene(manifold, perm)
    cmap, norm, colours, beyond = _colour_scale(_density_at(log_prob, manifold, scene.query, max_faces))
    overlay = samples is not None or points is not None
    n_panels = len(views) + int(overlay)
    fig = Figure(figsize=(3.9 * n_panels + 0.6, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    slot = list(range(len(views))) + [len(views) + 1]  # grid column of each panel; the colorbar between
    grid = fig.add_gridspec(1, n_panels + 1, width_ratios=[1.0] * len(views) + [0.28] + [1.0] * int(overlay),
                            wspace=0.02)
    for k, (elev, azim) in enumerate(views):
        _density_panel(_axes(fig, grid[0, slot[k]], scene, elev, azim), scene, colours, elev, azim)
    box = grid[0, len(views)].get_position(fig)
    cax = fig.add_axes((box.x0, box.y0 + 0.2 * box.height, 0.22 * box.width, 0.6 * box.height))
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, label="density", extend="max" if beyond else "neither")
    if overlay:
        elev, azim = views[0]
        _overlay_panel(_axes(fig, grid[0, slot[len(views)]], scene, elev, azim), scene, perm, samples, points,
                       elev, azim)
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    fig.clf()
    return path
