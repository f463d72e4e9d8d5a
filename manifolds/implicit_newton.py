"""Foot points on implicit surfaces by safeguarded Newton steps.

Fixed work for hot loops, converged for entry points.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Sequence, Tuple

import torch

from ._numerics import dot, norm, safe_sqrt

ValueAndGrad = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]

NUDGES = ((3.0, 5.0, 7.0), (-7.0, 3.0, 5.0), (5.0, -7.0, 3.0), (-3.0, -5.0, 8.0))
"""Directions that push points off critical points of ``f`` (the centre of a sphere, the axis of a torus of
revolution); deliberately not aligned with any coordinate axis or plane."""


def _unit(v: Sequence[float]) -> Tuple[float, ...]:
    s = math.sqrt(sum(c * c for c in v))
    return tuple(c / s for c in v)


class NewtonFoot:
    """Foot points ``y -> p`` with ``f(p) = 0`` by Newton steps ``y - f grad f / |grad f|^2``.

    Args:
        value_and_grad: ``x [..., 3] -> (f(x) [...], grad f(x) [..., 3])`` without a graph.
        bounds: ``((xmin, ymin, zmin), (xmax, ymax, zmax))``, the box holding the surface.
        steps: Newton steps of every projection.
        n_rescue: further attempts of :meth:`settle` for points not yet converged.
        name: the surface's name, for error messages.
    """

    def __init__(self, value_and_grad: ValueAndGrad, bounds, steps: int, *, n_rescue: int = 4, name: str = "surface"):
        self.value_and_grad, self.steps, self.n_rescue, self.name = value_and_grad, int(steps), int(n_rescue), name
        self.lo, self.hi = tuple(bounds[0]), tuple(bounds[1])
        self.diagonal = math.sqrt(sum((b - a) ** 2 for a, b in zip(self.lo, self.hi)))
        self._consts: Dict[Tuple[torch.dtype, torch.device], Dict[str, torch.Tensor]] = {}
        self.unconverged = torch.zeros((), dtype=torch.long)

    def consts(self, dtype: torch.dtype, device: torch.device) -> Dict[str, torch.Tensor]:
        """The box corners ``lo, hi [3]`` and the offsets ``nudge [4, 3]`` in ``dtype`` on ``device`` (cached)."""
        key = (dtype, torch.device(device))
        c = self._consts.get(key)
        if c is None:
            c = {"lo": torch.tensor(self.lo, dtype=dtype, device=device),
                 "hi": torch.tensor(self.hi, dtype=dtype, device=device),
                 "nudge": torch.tensor([_unit(v) for v in NUDGES], dtype=dtype, device=device) * (1e-2 * self.diagonal)}
            self._consts[key] = c
        return c

    def tolerances(self, dtype: torch.dtype) -> Tuple[float, float]:
        """``(tight, loose)`` tolerances.

        Converged within ``16 eps`` times the box diagonal; a failure beyond ``sqrt(eps)`` times it.
        """
        eps = torch.finfo(dtype).eps
        return 16 * eps * self.diagonal, math.sqrt(eps) * self.diagonal

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """First-order distance ``|f(x)| / |grad f(x)|`` to the surface, ``[..., 3] -> [...]``.

        ``inf`` where the gradient vanishes.
        """
        fx, g = self.value_and_grad(x)
        g2 = dot(g, g)
        return torch.where(g2 > 0, fx.abs() / safe_sqrt(g2), torch.full_like(fx, math.inf))

    def newton(self, y: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` safeguarded Newton steps from ``y [N, 3]`` (no graph, no host synchronisation).

        A step is never longer than the box diagonal plus the distance from ``y`` to the box, which
        is enough to reach the surface from anywhere along a signed distance, while a nearly
        vanishing gradient cannot throw a point far away. Points where the gradient vanishes
        exactly (the centre of a sphere, the core circle of a torus) are moved by a fixed small
        offset instead.
        """
        c = self.consts(y.dtype, y.device)
        lo, hi, nudge = c["lo"], c["hi"], c["nudge"][0]
        floor = torch.finfo(y.dtype).tiny
        for _ in range(steps):
            fx, g = self.value_and_grad(y)
            g2 = dot(g, g)
            flat = ~(g2 > floor)
            gn = torch.sqrt(g2.clamp_min(floor))
            cap = self.diagonal + norm(y - torch.minimum(torch.maximum(y, lo), hi))
            length = torch.minimum(fx.abs() / gn, cap)  # an overflow to inf is capped too
            step = (torch.sign(fx) * length / gn).unsqueeze(-1) * g
            y = torch.where(flat.unsqueeze(-1), y + nudge, y - step)
        return y

    @torch.no_grad()
    def fixed(self, y: torch.Tensor) -> torch.Tensor:
        """Foot points ``[N, 3]`` with a fixed amount of work (hot loops); NaN rows for non-finite inputs.

        ``steps`` Newton steps for every row; then the ``max(16, N / 32)`` rows farthest from the
        surface get ``2 steps`` more from where they are and, separately, from a small fixed
        offset, which replaces the first only where it has not converged and the offset start ends
        closer to the surface. Shapes do not depend on values, so nothing is read on the host;
        rows still farther than the loose tolerance are counted in :attr:`unconverged`.
        """
        finite = torch.isfinite(y).all(-1)
        y = torch.where(finite.unsqueeze(-1), y, torch.zeros_like(y))
        p = self.newton(y, self.steps)
        res = torch.where(finite, self.residual(p), torch.zeros_like(p[:, 0]))
        n = p.shape[0]
        if n:
            rows = torch.topk(res, min(n, max(16, math.ceil(n / 32)))).indices
            nudge = self.consts(y.dtype, y.device)["nudge"][1]
            a, b = self.newton(p[rows], 2 * self.steps), self.newton(p[rows] + nudge, 2 * self.steps)
            ra, rb = self.residual(a), self.residual(b)
            nudged = ~(ra <= self.tolerances(p.dtype)[0]) & (rb < ra)  # the offset start only where Newton stalled
            p = p.index_put((rows,), torch.where(nudged.unsqueeze(-1), b, a))
            res = res.index_put((rows,), torch.where(nudged, rb, ra))
        self.unconverged = self.unconverged.to(p.device) + (finite & ~(res <= self.tolerances(p.dtype)[1])).sum()
        return torch.where(finite.unsqueeze(-1), p, torch.full_like(p, math.nan))

    @torch.no_grad()
    def settle(self, y: torch.Tensor) -> torch.Tensor:
        """Foot points ``[N, 3]`` iterated until converged (entry points; reads the device).

        NaN rows for non-finite inputs.

        After ``steps`` steps the residual is checked. Points not yet within the tight tolerance get
        more steps, first from where they are (slow convergence from far away: Newton's linear
        model is poor there unless ``f`` is a distance), then from small fixed offsets (points stuck
        on a set where Newton stalls, such as the axis of a torus). Points still beyond the loose
        tolerance raise ``RuntimeError``; those in between (an ``f`` whose rounding error exceeds the
        tight bound) are returned as they are.
        """
        finite = torch.isfinite(y).all(-1)
        y = torch.where(finite.unsqueeze(-1), y, torch.zeros_like(y))
        p = self.newton(y, self.steps)
        tight, loose = self.tolerances(y.dtype)
        res = self.residual(p)
        bad = finite & ~(res <= tight)
        if bool(bad.any()):
            nudges = self.consts(y.dtype, y.device)["nudge"]
            for attempt in range(self.n_rescue):
                z = p[bad]
                if attempt > 0:
                    z = z + nudges[attempt % nudges.shape[0]]
                z = self.newton(z, (4 if attempt == 0 else 2) * self.steps)
                p = p.index_put((bad,), z)
                res = res.index_put((bad,), self.residual(z))
                bad = finite & ~(res <= tight)
                if not bool(bad.any()):
                    break
            failed = finite & ~(res <= loose)
            if bool(failed.any()):
                worst = torch.where(failed, res, torch.zeros_like(res))
                i = int(worst.argmax())
                raise RuntimeError(
                    f"{self.name}: projx did not converge for {int(failed.sum())} point(s); worst residual "
                    f"|f|/|grad f| = {float(worst[i]):.3g} at index ({i},). Check that f has a regular zero set "
                    f"inside the bounds, or raise newton_steps."
                )
        return torch.where(finite.unsqueeze(-1), p, torch.full_like(p, math.nan))
