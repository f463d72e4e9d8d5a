"""Area of an implicit surface and area-uniform points on it, both from box points in a thin shell around it."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from .implicit_newton import NewtonFoot

MAX_CHUNK = 1 << 20
"""Box points evaluated at once."""


def box_points(foot: NewtonFoot, n: int, dtype: torch.dtype, device,
               generator: Optional[torch.Generator]) -> torch.Tensor:
    """``n`` uniform points ``[n, 3]`` in the surface's bounding box."""
    c = foot.consts(dtype, device)
    u = torch.rand(n, 3, dtype=dtype, device=device, generator=generator)
    return c["lo"] + (c["hi"] - c["lo"]) * u


def _box_volume(foot: NewtonFoot) -> float:
    return math.prod(b - a for a, b in zip(foot.lo, foot.hi))


@torch.no_grad()
def shell_area(foot: NewtonFoot, n: int, seed: int, shell: float, dtype: torch.dtype,
               device: torch.device) -> Tuple[float, float]:
    """Monte Carlo area from the fraction of ``n`` box points in the shell ``|f|/|grad f| < delta``.

    By the coarea formula the shell has volume ``2 delta area (1 + O(delta^2))``, so
    ``area ~ box_volume * fraction / (2 delta)`` with ``delta = shell * diagonal``.

    Returns:
        ``(area, relative standard error)``.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    delta = shell * foot.diagonal
    hits, left = 0, n
    while left > 0:
        m = min(left, MAX_CHUNK)
        hits += int((foot.residual(box_points(foot, m, dtype, device, gen)) < delta).sum())
        left -= m
    if hits < 100:
        raise ValueError(
            f"only {hits} of {n} points of the bounds lie within {delta:.3g} of the zero set of f: check "
            f"that the bounds contain the surface and that f vanishes on it (or pass area=)"
        )
    frac = hits / n
    return _box_volume(foot) * frac / (2.0 * delta), math.sqrt((1.0 - frac) / hits)


@torch.no_grad()
def shell_sample(foot: NewtonFoot, n: int, shell: float, area: float, dtype: torch.dtype, device,
                 generator: Optional[torch.Generator]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``n`` box points ``[n, 3]`` in the shell ``|f|/|grad f| < shell * diagonal``, to be projected onto the surface.

    Draws a fixed number of box points, enough that at least ``n`` fall in the shell except with a
    chance below ``1e-15`` (the expected count is ``n`` plus 8 standard deviations plus 64), and keeps
    the first ``n`` shell points in drawing order: nothing is read on the host. By the coarea
    formula their foot points are uniform on the surface up to a relative error ``O(delta^2)``.

    Returns:
        The points and how many of them are not in the shell (a 0-dim tensor, normally 0).
    """
    delta = shell * foot.diagonal
    rate = min(1.0, max(1e-6, 2.0 * delta * area / _box_volume(foot)))
    m = math.ceil((n + 8.0 * math.sqrt(n) + 64.0) / rate)
    z = box_points(foot, m, dtype, device, generator)
    inside = torch.cat([foot.residual(c) < delta for c in torch.split(z, MAX_CHUNK)])
    order = torch.argsort((~inside).to(torch.int8), stable=True)[:n]
    return z[order], (~inside[order]).sum()
