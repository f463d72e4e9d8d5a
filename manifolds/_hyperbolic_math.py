"""Closed-form formulas of hyperbolic space of curvature -c in the Poincare ball and Lorentz models.

Pure functions of tensors ``[..., d]`` (ball) or ``[..., d+1]`` (hyperboloid, time coordinate
first) and a curvature magnitude ``c > 0``. Distances use ``asinh`` of a chord length instead
of ``arcosh`` of an inner product (``arcosh`` is ill-conditioned near 1, so small distances
would have an error floor); every formula is exact at ``y = x`` and has finite gradients there.
"""

from __future__ import annotations

import math

import torch

from ._numerics import dot, norm, safe_sqrt, tiny


def minkowski(x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
    """Lorentz inner product ``-x0 y0 + <xs, ys>``; ``[..., d+1] -> [...]``."""
    out = dot(x[..., 1:], y[..., 1:]) - x[..., 0] * y[..., 0]
    return out.unsqueeze(-1) if keepdim else out


def conformal_gap(x: torch.Tensor, c: float, *, keepdim: bool = False) -> torch.Tensor:
    """``1 - c |x|^2`` (``2 / lambda_x``, positive inside the ball); ``[..., d] -> [...]``."""
    return 1.0 - c * dot(x, x, keepdim=keepdim)


def mobius_add(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """Mobius addition ``x (+) y`` in the ball of radius ``1/sqrt(c)``; shapes ``[..., d]``.

    The textbook ``((1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y) / (1 + 2c<x,y> + c^2|x|^2|y|^2)`` is
    evaluated with ``1 + 2c<x,y> + c|y|^2 = (1 - c|x|^2) + c|x + y|^2`` and
    ``1 + 2c<x,y> + c^2|x|^2|y|^2 = (1 - c|x|^2)(1 - c|y|^2) + c|x + y|^2``: sums of non-negative
    terms, so nothing cancels when ``y`` is near ``-x`` at the edge of the ball.
    """
    s = x + y
    s2 = dot(s, s, keepdim=True)
    gx = conformal_gap(x, c, keepdim=True)
    return ((gx + c * s2) * x + gx * y) / (gx * conformal_gap(y, c, keepdim=True) + c * s2)


def mobius_diff(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """``(-x) (+) y`` written in ``delta = y - x`` so that it is exactly zero at ``y = x``; ``[..., d]``.

    With ``delta = y - x``: numerator ``(1 - c|x|^2) delta - c |delta|^2 x`` and denominator
    ``(1 - c|x|^2)(1 - c|y|^2) + c |delta|^2`` (expand ``1 - 2c<x, y> + c^2 |x|^2 |y|^2``).
    """
    delta = y - x
    d2 = dot(delta, delta, keepdim=True)
    gx = conformal_gap(x, c, keepdim=True)
    num = gx * delta - c * d2 * x
    return num / (gx * conformal_gap(y, c, keepdim=True) + c * d2)


def poincare_dist(x: torch.Tensor, y: torch.Tensor, c: float, *, keepdim: bool = False) -> torch.Tensor:
    """``(2/sqrt(c)) asinh(sqrt(c) |x - y| / sqrt((1 - c|x|^2)(1 - c|y|^2)))``; ``[..., d] -> [...]``.

    Equal to ``arcosh(1 + 2c|x - y|^2 / ((1 - c|x|^2)(1 - c|y|^2))) / sqrt(c)`` (use
    ``cosh t = 1 + 2 sinh^2(t/2)``), without its conditioning problem near zero.
    """
    sc = math.sqrt(c)
    den = torch.sqrt(conformal_gap(x, c, keepdim=keepdim) * conformal_gap(y, c, keepdim=keepdim))
    return (2.0 / sc) * torch.asinh(sc * norm(y - x, keepdim=keepdim) / den)


def gyration(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, c: float) -> torch.Tensor:
    """``gyr[a, b] w = -(a (+) b) (+) (a (+) (b (+) w))`` in closed form (linear in ``w``); ``[..., d]``.

    Ungar's form is ``w + 2 (A a + B b) / D`` with ``A = -c^2 <a,w>|b|^2 + c <b,w> + 2c^2 <a,b><b,w>``,
    ``B = -c^2 <b,w>|a|^2 - c <a,w>``, ``D = 1 + 2c <a,b> + c^2 |a|^2 |b|^2``. Near the edge of the
    ball with ``b`` close to ``-a`` (transport between nearby far-out points) ``D`` and the numerator
    both cancel catastrophically. Substituting ``b = s - a`` with ``s = a + b`` gives the
    equivalent, cancellation-free

        A a + B b = (A - B) a + B s,
        A - B = c <s,w> (g_a + 2c <a,s>) - c^2 |s|^2 <a,w>,
        B = -c <a,w> g_a - c^2 |a|^2 <s,w>,
        D = g_a g_b + c |s|^2,

    with ``g_a = 1 - c|a|^2``, ``g_b = 1 - c|b|^2``; the correction to ``w`` is ``O(|s|)``.
    """
    s = a + b
    sw = dot(s, w, keepdim=True)
    aw = dot(a, w, keepdim=True)
    s2 = dot(s, s, keepdim=True)
    a2 = dot(a, a, keepdim=True)
    ga = 1.0 - c * a2
    a_minus_b = c * sw * (ga + 2.0 * c * dot(a, s, keepdim=True)) - c * c * s2 * aw
    cb = -c * aw * ga - c * c * a2 * sw
    den = ga * conformal_gap(b, c, keepdim=True) + c * s2
    return w + 2.0 * (a_minus_b * a + cb * s) / den


def poincare_to_lorentz(p: torch.Tensor, c: float) -> torch.Tensor:
    """The isometry ball -> hyperboloid, ``[..., d] -> [..., d+1]``.

    ``p`` maps to ``(1 + c|p|^2, 2 sqrt(c) p) / (sqrt(c) (1 - c|p|^2))``.
    """
    sc = math.sqrt(c)
    p2 = dot(p, p, keepdim=True)
    gap = 1.0 - c * p2
    return torch.cat([(1.0 + c * p2) / (sc * gap), 2.0 * p / gap], dim=-1)


def lorentz_to_poincare(x: torch.Tensor, c: float) -> torch.Tensor:
    """The isometry hyperboloid -> ball: ``xs / (1 + sqrt(c) x0)``; ``[..., d+1] -> [..., d]``."""
    return x[..., 1:] / (1.0 + math.sqrt(c) * x[..., :1])


def lorentz_dist(x: torch.Tensor, y: torch.Tensor, c: float, *, keepdim: bool = False) -> torch.Tensor:
    """Geodesic distance between points of the hyperboloid (``x0 = sqrt(1/c + |xs|^2)``); ``[..., d+1] -> [...]``.

    ``sinh(sqrt(c) d / 2)`` is computed in one of two cancellation-free forms:

    * Through the ball: with ``p, q`` the ball images, ``1 - c|p|^2 = 2 / (1 + sqrt(c) x0)``, so
      ``sinh(sqrt(c) d/2) = sqrt(c) |p - q| sqrt((1 + sqrt(c) x0)(1 + sqrt(c) y0)) / 2``. Accurate
      unless ``p`` and ``q`` crowd together at the boundary (far points on nearly the same ray).
    * From the space parts: with ``delta = ys - xs``, ``m = xs + ys``, ``e = m / |m|``,
      ``P = <e, delta>^2``, ``Q = |delta|^2 - P`` and ``S = (x0 + y0)^2``, the identities
      ``y0 - x0 = <delta, m> / (x0 + y0)`` and ``S - |m|^2 = (2/c)(1 + cosh(sqrt(c) d))`` turn
      ``<x - y, x - y>_L = (2/c)(cosh(sqrt(c) d) - 1)`` into
      ``sinh(sqrt(c) d / 2)^2 = (c Q S + 4 P) / (4 (S - P))``: a ratio of sums of non-negative
      terms, used where ``P <= S/2`` (so ``S - P`` does not cancel either).

    Where ``P > S/2`` the Euclidean chord is at least ``(x0 + y0)/sqrt(2)`` long and the ball
    images are well separated, so the first form is accurate there.
    """
    sc = math.sqrt(c)
    xs, ys = torch.broadcast_tensors(x[..., 1:], y[..., 1:])
    x0, y0 = torch.broadcast_tensors(x[..., :1], y[..., :1])
    ax, ay = 1.0 + sc * x0, 1.0 + sc * y0
    ball = 0.5 * sc * norm(xs / ax - ys / ay, keepdim=True) * torch.sqrt(ax * ay)
    delta, m = ys - xs, xs + ys
    e = m / norm(m, keepdim=True).clamp_min(tiny(m.dtype))
    along = dot(e, delta, keepdim=True)
    pp = along * along
    qq = dot(delta - along * e, delta - along * e, keepdim=True)
    ss = (x0 + y0) ** 2
    near = pp <= 0.5 * ss
    den = torch.where(near, ss - pp, ss)
    space = 0.5 * safe_sqrt((c * qq * ss + 4.0 * pp) / den)
    out = (2.0 / sc) * torch.asinh(torch.where(near, space, ball))
    return out if keepdim else out.squeeze(-1)
