"""Figures of a trained model: density maps on S^2 and T^2, and 3-D renderings on surfaces.

A world map of the density on S^2 (offline cartopy), a heatmap on the flat torus T^2, and 3-D renderings on
surfaces (:mod:`manifold_flows.surface_plot`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from manifolds import FlatTorus, ImplicitSurface, Manifold, Mesh, Sphere

from .datasets import latlon_to_xyz, xyz_to_latlon
from .surface_plot import surface_density

LogProb = Callable[[torch.Tensor], torch.Tensor]


def sphere_map(
    log_prob: LogProb,
    path: Path,
    *,
    samples: Optional[torch.Tensor] = None,
    points: Optional[torch.Tensor] = None,
    title: str = "",
    resolution: int = 90,
) -> Path:
    """World map (Robinson projection) of ``exp(log_prob)`` on S^2 with samples and data on top.

    Uses cartopy's bundled background image (``stock_img``), which needs no network access;
    coastlines are not drawn because cartopy downloads them on first use.

    Args:
        log_prob: ``[N, 3] -> [N]`` log-density on the unit sphere.
        path: PNG file to write.
        samples: model samples ``[M, 3]`` (drawn as small dots).
        points: data points ``[K, 3]`` (drawn as circles).
        title: figure title.
        resolution: grid cells along latitude (twice as many along longitude).
    """
    import cartopy.crs as ccrs

    lat = np.linspace(-90, 90, resolution + 1)
    lon = np.linspace(-180, 180, 2 * resolution + 1)  # cell edges; the density is evaluated at centres
    lat_c, lon_c = 0.5 * (lat[1:] + lat[:-1]), 0.5 * (lon[1:] + lon[:-1])
    grid_lon, grid_lat = np.meshgrid(lon_c, lat_c)
    with torch.no_grad():
        grid = latlon_to_xyz(torch.from_numpy(np.stack([grid_lat.ravel(), grid_lon.ravel()], -1)))
        lp = log_prob(grid).double().cpu().numpy().reshape(grid_lat.shape)
    fig = Figure(figsize=(10, 5.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1, projection=ccrs.Robinson())
    ax.set_global()
    ax.stock_img()
    # filled contours rather than a translucent pcolormesh, whose overlapping cells show seams
    lon_wrap = np.concatenate([[-180.0], lon_c, [180.0]])
    lp_wrap = np.concatenate([lp[:, -1:], lp, lp[:, :1]], axis=1)
    mesh = ax.contourf(lon_wrap, lat_c, lp_wrap, levels=24, transform=ccrs.PlateCarree(), cmap="magma", alpha=0.7)
    fig.colorbar(mesh, ax=ax, shrink=0.7, label="log-density (nats)")
    if samples is not None:
        s = xyz_to_latlon(samples.detach().double().cpu()).numpy()
        ax.scatter(s[:, 1], s[:, 0], s=1.5, c="cyan", alpha=0.5, transform=ccrs.PlateCarree(), label="model samples")
    if points is not None:
        p = xyz_to_latlon(points.detach().double().cpu()).numpy()
        ax.scatter(p[:, 1], p[:, 0], s=9, facecolors="none", edgecolors="white", linewidths=0.6,
                   transform=ccrs.PlateCarree(), label="test data")
    if samples is not None or points is not None:
        legend = ax.legend(loc="lower left", fontsize=8, facecolor="0.3", labelcolor="white", framealpha=0.8)
        legend.get_frame().set_edgecolor("none")
    ax.set_title(title)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    return path


def torus_heatmap(
    log_prob: LogProb,
    path: Path,
    *,
    samples: Optional[torch.Tensor] = None,
    points: Optional[torch.Tensor] = None,
    title: str = "",
    resolution: int = 100,
) -> Path:
    """Heatmap of ``exp(log_prob)`` on the flat torus ``[0, 2 pi)^2`` with samples and data on top."""
    edges = np.linspace(0, 2 * math.pi, resolution + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    a, b = np.meshgrid(centres, centres)
    with torch.no_grad():
        lp = log_prob(torch.from_numpy(np.stack([a.ravel(), b.ravel()], -1))).double().cpu().numpy().reshape(a.shape)
    fig = Figure(figsize=(6.4, 5.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    mesh = ax.pcolormesh(edges, edges, np.exp(lp), cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax, label="density")
    for pts, style in ((samples, dict(s=1.5, c="white", alpha=0.4, label="model samples")),
                       (points, dict(s=6, facecolors="none", edgecolors="red", linewidths=0.5, label="test data"))):
        if pts is not None:
            q = pts.detach().double().cpu().numpy()
            ax.scatter(q[:, 0], q[:, 1], **style)
    ax.set_xlim(0, 2 * math.pi)
    ax.set_ylim(0, 2 * math.pi)
    ax.set_aspect("equal")
    ax.set_xlabel("angle 1")
    ax.set_ylabel("angle 2")
    ax.set_title(title)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    return path


# ---------------------------------------------------------------------------------------- surfaces
def plot_model(objective, net, points: torch.Tensor, path: Path, *, cfg=None, n_samples: int = 2000,
               max_faces: int = 6000) -> Optional[Path]:
    """The figure that suits the model's manifold, or None for manifolds without one.

    The S^2 map, the T^2 heatmap or 3-D views of a surface (:class:`~manifolds.Mesh`,
    :class:`~manifolds.ImplicitSurface`; at most ``max_faces`` likelihoods and 2000 samples); the views of
    :mod:`manifold_flows.figures` on SO(3), hyperbolic space, SPD(2) and T^d (d > 2); None for other manifolds.
    """
    m: Manifold = objective.manifold
    p = next(net.parameters())
    surface = isinstance(m, (Mesh, ImplicitSurface))
    if not (surface or (isinstance(m, (Sphere, FlatTorus)) and m.dim == 2)):
        from .figures import plot_other_manifold

        return plot_other_manifold(objective, net, points, path, cfg=cfg, n_samples=n_samples)
    # the figures need thousands of likelihoods: 50 RK4 steps are plenty at plotting precision, and on
    # surfaces (one likelihood per face, projections onto the surface at every step) 20
    cap = 20 if surface else 50
    steps = min(cfg.solver_steps, cap) if cfg is not None else cap
    solver = cfg.solver if cfg is not None else "rk4"
    if surface:
        n_samples = min(n_samples, 2000)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return objective.log_prob(x.to(device=p.device, dtype=p.dtype), net=net, solver=solver, solver_steps=steps)

    samples = objective.sample(n_samples, net=net, solver=solver, solver_steps=steps)
    title = f"{cfg.method.upper()} on {cfg.data}" if cfg is not None else ""
    if surface:
        return surface_density(log_prob, m, path, samples=samples, points=points, title=title, max_faces=max_faces)
    if isinstance(m, Sphere):
        return sphere_map(log_prob, path, samples=samples, points=points, title=title, resolution=45)
    return torus_heatmap(log_prob, path, samples=samples, points=points, title=title, resolution=50)
