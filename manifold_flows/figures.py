"""Figures on SO(3), hyperbolic space, SPD(2) and high-dimensional tori; matplotlib only, offline.

SO(3): rotation axis and angle; hyperbolic space: the Poincare disk; SPD(2): its three coordinates;
high-dimensional tori: pairwise marginals.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from manifolds import SO3, SPD, FlatTorus, Hyperboloid, Manifold, PoincareBall
from manifolds.so3 import rotation_log

LogProb = Callable[[torch.Tensor], torch.Tensor]
DATA_STYLE = dict(s=7, facecolors="none", edgecolors="crimson", linewidths=0.5, label="test data")
SAMPLE_STYLE = dict(s=2, c="royalblue", alpha=0.5, label="model samples")


def _numpy(x: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if x is None else x.detach().double().cpu().numpy()


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    return path


def _axis_angle(x: torch.Tensor):
    """Rotation axes as (longitude, latitude) in radians and rotation angles in ``[0, pi]`` of ``[N, 9]`` rotations."""
    w = rotation_log(x.detach().double().cpu().reshape(-1, 3, 3))
    angle = w.norm(dim=-1)
    axis = w / angle.clamp_min(1e-12).unsqueeze(-1)
    axis = torch.where((axis[:, 2:] < 0) & (angle.unsqueeze(-1) > math.pi - 1e-6), -axis, axis)  # +-axis at pi
    lon = torch.atan2(axis[:, 1], axis[:, 0])
    lat = torch.asin(axis[:, 2].clamp(-1, 1))
    return lon.numpy(), lat.numpy(), angle.numpy()


def so3_axis_angle(path: Path, *, samples: Optional[torch.Tensor] = None, points: Optional[torch.Tensor] = None,
                   title: str = "") -> Path:
    """SO(3) drawn as rotation axes (a Mollweide map of the axis directions, coloured by angle) and angles.

    Args:
        path: PNG file to write.
        samples: model samples ``[M, 9]`` (rotation matrices, row-major).
        points: data points ``[K, 9]``.
        title: figure title.
    """
    fig = Figure(figsize=(16, 5.0), dpi=110)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 3, width_ratios=[1.35, 1.35, 1.0], wspace=0.2)
    last, maps = None, []
    for i, (pts, name) in enumerate(((points, "test data"), (samples, "model samples"))):
        ax = fig.add_subplot(grid[0, i], projection="mollweide")
        ax.grid(True, alpha=0.3)
        ax.set_xticklabels([])
        ax.tick_params(labelsize=7)
        ax.set_title(f"{name}: rotation axes (Mollweide map of the unit axis)", fontsize=9)
        maps.append(ax)
        if pts is not None and pts.shape[0]:
            lon, lat, angle = _axis_angle(pts)
            last = ax.scatter(lon, lat, c=angle, s=3, cmap="viridis", vmin=0, vmax=math.pi)
    if last is not None:
        fig.colorbar(last, ax=maps, orientation="horizontal", shrink=0.5, pad=0.05,
                     label="rotation angle (rad); at pi the axes n and -n are the same rotation")
    ax = fig.add_subplot(grid[0, 2])
    bins = np.linspace(0, math.pi, 41)
    for pts, name, color in ((points, "test data", "crimson"), (samples, "model samples", "royalblue")):
        if pts is not None and pts.shape[0]:
            ax.hist(_axis_angle(pts)[2], bins=bins, density=True, histtype="step", color=color, label=name)
    grid = np.linspace(0, math.pi, 200)
    ax.plot(grid, (1 - np.cos(grid)) / math.pi, "k--", lw=0.8, label="uniform (Haar)")
    ax.set_xlabel("rotation angle (rad)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def poincare_disk(manifold: Manifold, path: Path, *, log_prob: Optional[LogProb] = None,
                  samples: Optional[torch.Tensor] = None, points: Optional[torch.Tensor] = None, title: str = "",
                  resolution: int = 80) -> Path:
    """Hyperbolic data on the Poincare disk: the model density on a grid (2-D only), samples and data.

    Points of a :class:`~manifolds.Hyperboloid` are drawn through the isometry onto the ball;
    ``log_prob`` takes points in the manifold's own coordinates. For ``d > 2`` the first two
    coordinates of the ball images are drawn (no density).

    Args:
        manifold: a :class:`~manifolds.PoincareBall` or :class:`~manifolds.Hyperboloid`.
        path: PNG file to write.
        log_prob: ``[N, ambient_dim] -> [N]``; omitted: no density.
        samples: model samples ``[M, ambient_dim]``.
        points: data points ``[K, ambient_dim]``.
        title: figure title.
        resolution: grid cells along each axis.
    """
    c = manifold.c
    radius = 1.0 / math.sqrt(c)
    to_ball = (lambda x: manifold.to_poincare(x)) if isinstance(manifold, Hyperboloid) else (lambda x: x)
    fig = Figure(figsize=(6.4, 5.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if log_prob is not None and manifold.dim == 2:
        edges = np.linspace(-radius, radius, resolution + 1)
        centres = 0.5 * (edges[1:] + edges[:-1])
        a, b = np.meshgrid(centres, centres)
        grid = torch.from_numpy(np.stack([a.ravel(), b.ravel()], -1))
        inside = grid.norm(dim=-1) < 0.985 * radius
        dens = np.full(a.size, np.nan)
        ball = PoincareBall(2, c=c)
        pts = grid[inside] if isinstance(manifold, PoincareBall) else ball.to_hyperboloid(grid[inside])
        with torch.no_grad():
            dens[inside.numpy()] = torch.exp(log_prob(pts)).double().cpu().numpy()
        mesh = ax.pcolormesh(edges, edges, np.ma.masked_invalid(dens.reshape(a.shape)), cmap="viridis", shading="flat")
        fig.colorbar(mesh, ax=ax, label="density (Riemannian volume)")
    for pts, style in ((samples, dict(SAMPLE_STYLE, c="white" if log_prob is not None else "royalblue")),
                       (points, DATA_STYLE)):
        if pts is not None and pts.shape[0]:
            q = _numpy(to_ball(pts))
            ax.scatter(q[:, 0], q[:, 1], **style)
    t = np.linspace(0, 2 * math.pi, 400)
    ax.plot(radius * np.cos(t), radius * np.sin(t), "k-", lw=1)
    ax.set_xlim(-1.02 * radius, 1.02 * radius)
    ax.set_ylim(-1.02 * radius, 1.02 * radius)
    ax.set_aspect("equal")
    ax.set_title(title + (f" (first 2 of {manifold.dim} coordinates)" if manifold.dim > 2 else ""))
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def spd2_coordinates(path: Path, *, samples: Optional[torch.Tensor] = None, points: Optional[torch.Tensor] = None,
                     title: str = "") -> Path:
    """SPD(2) by its three coordinates ``[[a, b], [b, c]]``: a 3-D view and the three pairwise projections.

    The matrices fill the open cone ``a > 0, c > 0, b^2 < a c``; the pairwise panels show how the
    model's samples cover the data.
    """
    fig = Figure(figsize=(18, 4.6), dpi=110)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 4, wspace=0.45, width_ratios=[1.3, 1, 1, 1])
    ax3 = fig.add_subplot(grid[0, 0], projection="3d")
    labels = ("a = P00", "b = P01", "c = P11")
    idx = (0, 1, 3)
    for pts, style in ((samples, SAMPLE_STYLE), (points, DATA_STYLE)):
        if pts is not None and pts.shape[0]:
            q = _numpy(pts)[:, idx]
            ax3.scatter(q[:, 0], q[:, 1], q[:, 2], s=2, c=style.get("c", "crimson"), alpha=0.5, label=style["label"])
    ax3.set_xlabel(labels[0], fontsize=8)
    ax3.set_ylabel(labels[1], fontsize=8)
    ax3.set_zlabel(labels[2], fontsize=8)
    ax3.tick_params(labelsize=7)
    ax3.legend(fontsize=8)
    for k, (i, j) in enumerate(((0, 1), (0, 2), (1, 2))):
        ax = fig.add_subplot(grid[0, k + 1])
        for pts, style in ((samples, SAMPLE_STYLE), (points, DATA_STYLE)):
            if pts is not None and pts.shape[0]:
                q = _numpy(pts)[:, idx]
                ax.scatter(q[:, i], q[:, j], **style)
        ax.set_xlabel(labels[i])
        ax.set_ylabel(labels[j])
    fig.suptitle(title)
    return _save(fig, path)


def torus_pairs(path: Path, *, samples: Optional[torch.Tensor] = None, points: Optional[torch.Tensor] = None,
                title: str = "", max_angles: int = 4, bins: int = 40) -> Path:
    """Pairwise marginals of the first ``max_angles`` angles of T^d: data below the diagonal, samples above.

    The diagonal compares the one-dimensional marginals (histograms, data and samples).
    """
    ref = points if points is not None else samples
    k = min(ref.shape[-1], max_angles)
    fig = Figure(figsize=(2.6 * k, 2.6 * k), dpi=100)
    FigureCanvasAgg(fig)
    edges = np.linspace(0, 2 * math.pi, bins + 1)
    data, model = _numpy(points), _numpy(samples)
    for i in range(k):
        for j in range(k):
            ax = fig.add_subplot(k, k, i * k + j + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == j:
                for arr, color in ((data, "crimson"), (model, "royalblue")):
                    if arr is not None:
                        ax.hist(arr[:, i], bins=edges, density=True, histtype="step", color=color)
                ax.set_xlim(0, 2 * math.pi)
                ax.set_title(f"angle {i + 1}", fontsize=8)
                continue
            arr = data if i > j else model
            if arr is not None:
                ax.hist2d(arr[:, j], arr[:, i], bins=[edges, edges], cmap="magma")
    fig.suptitle((title + "\n" if title else "") + f"pairwise marginals of the first {k} of {ref.shape[-1]} angles: "
                 "test data below the diagonal, model samples above")
    return _save(fig, path)


def plot_other_manifold(objective, net, points: torch.Tensor, path: Path, *, cfg=None,
                        n_samples: int = 2000) -> Optional[Path]:
    """The figure of a model on SO(3), hyperbolic space, SPD(2) or a torus T^d with d > 2; None for other manifolds."""
    m: Manifold = objective.manifold
    kind = ("so3" if isinstance(m, SO3) else "disk" if isinstance(m, (PoincareBall, Hyperboloid))
            else "spd2" if isinstance(m, SPD) and m.n == 2
            else "pairs" if isinstance(m, FlatTorus) and m.dim > 2 else None)
    if kind is None:
        return None
    p = next(net.parameters())
    steps = min(cfg.solver_steps, 50) if cfg is not None else 50
    solver = cfg.solver if cfg is not None else "rk4"
    samples = objective.sample(n_samples, net=net, solver=solver, solver_steps=steps)
    title = f"{cfg.method.upper()} on {cfg.data}" if cfg is not None else ""
    if kind == "so3":
        return so3_axis_angle(path, samples=samples, points=points, title=title)
    if kind == "spd2":
        return spd2_coordinates(path, samples=samples, points=points, title=title)
    if kind == "pairs":
        return torus_pairs(path, samples=samples, points=points, title=title)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return objective.log_prob(x.to(device=p.device, dtype=p.dtype), net=net, solver=solver, solver_steps=steps)

    return poincare_disk(m, path, log_prob=log_prob, samples=samples, points=points, title=title, resolution=90)
