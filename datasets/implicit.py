"""Data on implicit surfaces: named surfaces, a bump-mixture target sampled exactly by rejection, user samples."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import torch

from manifolds.implicit import ImplicitSurface

from .earth import split
from .target_base import SyntheticTarget

IMPLICIT_SURFACES: Dict[str, Callable[[], ImplicitSurface]] = {
    "sphere": lambda: ImplicitSurface.sphere(1.0),
    "ellipsoid": lambda: ImplicitSurface.ellipsoid(1.0, 0.7, 0.5),
    "torus": lambda: ImplicitSurface.torus(1.0, 0.4),
}
"""Named implicit surfaces for ``--data implicit:NAME``."""


class NormalBumps(SyntheticTarget):
    """``p(x) ∝ sum_j w_j exp(kappa (<n(x), mu_j> - 1))``: bumps where the surface normal points along ``mu_j``.

    Samples are exact (rejection from the uniform distribution, accepted with probability
    ``f(x) / max f``). The normaliser ``Z = area * E_uniform[f]`` is a Monte Carlo mean over
    ``n_mc`` uniform points, so :meth:`log_prob` carries a constant error whose standard error
    is :attr:`log_z_se` (about 1e-3 nats at the default).

    Args:
        surface: the implicit surface.
        directions: unit vectors ``[K, 3]``.
        kappa: concentration.
        n_mc: uniform points for the normaliser.
        seed: seed of the normaliser's points.
    """

    def __init__(self, surface: ImplicitSurface, directions, kappa: float = 8.0, n_mc: int = 400_000, seed: int = 0):
        super().__init__()
        mu = torch.as_tensor(directions, dtype=torch.float64)
        if mu.dim() != 2 or mu.shape[1] != 3:
            raise ValueError(f"directions must have shape [K, 3], got {tuple(mu.shape)}")
        self.manifold = surface
        self.kappa = float(kappa)
        self.register_buffer("mu", mu / mu.norm(dim=1, keepdim=True))
        g = torch.Generator().manual_seed(seed)
        f = self._unnormalised(surface.random_base(n_mc, dtype=torch.float64, generator=g))
        z = surface.volume * float(f.mean())
        self.log_z = math.log(z)
        self.log_z_se = float(f.std() / f.mean()) / math.sqrt(n_mc)

    def _unnormalised(self, x: torch.Tensor) -> torch.Tensor:
        n = self.manifold.normal(x).to(torch.float64)
        return torch.exp(self.kappa * (n @ self.mu.T - 1.0)).mean(-1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density ``[...]`` (normaliser by Monte Carlo, see the class notes)."""
        with torch.no_grad():
            return (torch.log(self._unnormalised(x.reshape(-1, 3))) - self.log_z).reshape(x.shape[:-1]).to(x.dtype)

    def sample(self, n, generator=None, *, dtype=None, device=None) -> torch.Tensor:
        """``n`` exact samples ``[n, 3]`` by rejection from the uniform distribution."""
        dtype, device = self._dtype_device(dtype, device)
        out, have = [], 0
        while have < n:
            y = self.manifold.random_base(max(4 * (n - have), 1024), dtype=torch.float64, generator=generator)
            keep = torch.rand(y.shape[0], dtype=torch.float64, generator=generator) < self._unnormalised(y)
            out.append(y[keep])
            have += int(keep.sum())
        return torch.cat(out)[:n].to(dtype=dtype, device=device)


def load_implicit_dataset(spec: str, *, density: Optional[str] = None, samples: Optional[Union[str, Path]] = None,
                          seed: int = 0, n: int = 10_000, dedupe: bool = False) -> Dict[str, object]:
    """A data set on ``"implicit:NAME"`` (:data:`IMPLICIT_SURFACES`).

    With ``samples`` (CSV of x, y, z) the points are projected (refused beyond 1% of the size);
    otherwise ``n`` points come from ``density`` ``"bumps:K"`` (default ``"bumps:3"``): K normal
    bumps with seeded random directions and concentration 8.
    """
    from .mesh import project_samples, read_points_csv

    name = spec.split(":", 1)[1]
    if name not in IMPLICIT_SURFACES:
        raise ValueError(f"unknown implicit surface {name!r}; choose from {sorted(IMPLICIT_SURFACES)}")
    surface = IMPLICIT_SURFACES[name]()
    if samples is not None:
        if density is not None:
            raise ValueError("pass either --density or --samples for implicit data, not both")
        points = project_samples(surface, read_points_csv(samples), source=str(samples))
        train, val, test = split(points, seed, dedupe_first=dedupe)
        return dict(manifold=surface, train=train, val=val, test=test, target=None)
    kind, _, count = (density or "bumps:3").partition(":")
    if kind != "bumps" or not count.isdigit() or int(count) < 1:
        raise ValueError(f"unknown implicit-surface density {density!r}: use bumps:K")
    g = torch.Generator().manual_seed(int(seed))
    dirs = torch.randn(int(count), 3, dtype=torch.float64, generator=g)
    target = NormalBumps(surface, dirs, seed=seed)
    points = target.sample(n, generator=g, dtype=torch.float64)
    train, val, test = split(points, seed, dedupe_first=dedupe)
    return dict(manifold=surface, train=train, val=val, test=test, target=target)


__all__ = ["IMPLICIT_SURFACES", "NormalBumps", "load_implicit_dataset"]
