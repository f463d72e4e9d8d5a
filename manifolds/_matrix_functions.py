"""Functions of symmetric matrices through batched eigendecompositions, with gap-free gradients.

``f(W) = V diag(f(w)) V^T`` for symmetric ``W = V diag(w) V^T``. Autograd through
``torch.linalg.eigh`` divides by eigenvalue gaps ``w_i - w_j`` and returns NaN at repeated
eigenvalues (the identity, any multiple of it), even where the result is perfectly smooth. Here
the backward pass is the Daleckii-Krein formula

    dL/dW = V (F o (V^T sym(G) V)) V^T,   F_ij = (f(w_i) - f(w_j)) / (w_i - w_j),  F_ii = f'(w_i),

with each divided difference ``F_ij`` written in a form that has no cancellation as
``w_j -> w_i`` (e.g. ``(e^a - e^b)/(a - b) = e^((a+b)/2) sinhc((a-b)/2)``), so gradients are
exact and finite at exactly repeated eigenvalues.

The backward pass holds the eigendecomposition fixed: it is linear (and differentiable) in the
incoming gradient, so derivatives of gradients with respect to other tensors are exact, but
second derivatives with respect to ``W`` itself are not propagated.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from ._numerics import atanhc, sinhc


def sym(a: torch.Tensor) -> torch.Tensor:
    """Symmetric part ``(A + A^T) / 2`` of ``[..., n, n]`` matrices (exact for symmetric input)."""
    return 0.5 * (a + a.transpose(-1, -2))


def _pairs(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues ``[..., n]`` as row and column grids ``a_ij = w_i``, ``b_ij = w_j``."""
    return w.unsqueeze(-1), w.unsqueeze(-2)


def _expm1(w: torch.Tensor, floor: Optional[torch.Tensor]):
    a, b = _pairs(w)
    return torch.expm1(w), torch.exp(0.5 * (a + b)) * sinhc(0.5 * (a - b))


def _log1p_floor(w: torch.Tensor) -> torch.Tensor:
    """Clamp eigenvalues of ``W`` (of ``I + W``, an SPD matrix) to ``> -1`` by the dtype's eps."""
    return w.clamp_min(-1.0 + torch.finfo(w.dtype).eps)


def _log1p(w: torch.Tensor, floor: Optional[torch.Tensor]):
    w = _log1p_floor(w)
    a, b = _pairs(w)
    s = 2.0 + a + b
    z = (a - b) / s  # in (-1, 1)
    close = z.abs() < 0.5
    # (log1p(a) - log1p(b)) / (a - b) = 2 atanh(z) / (a - b) = (2 / s) atanhc(z); the direct quotient
    # is used where a and b are far apart relative to 1 + a and 1 + b (there atanh(z) is ill-conditioned)
    zs = torch.where(close, z, torch.zeros_like(z))
    diff = torch.where(close, torch.ones_like(z), a - b)
    direct = (torch.log1p(a) - torch.log1p(b)) / diff
    return torch.log1p(w), torch.where(close, 2.0 / s * atanhc(zs), direct)


def _sqrt1pm1(w: torch.Tensor, floor: Optional[torch.Tensor]):
    w = _log1p_floor(w)
    r = torch.sqrt(1.0 + w)
    ra, rb = _pairs(r)
    # sqrt(1 + w) - 1 = w / (1 + sqrt(1 + w)) has no cancellation near w = 0
    return w / (1.0 + r), 1.0 / (ra + rb)


def _clamp(w: torch.Tensor, floor: Optional[torch.Tensor]):
    fw = torch.maximum(w, floor)
    a, b = _pairs(w)
    fa, fb = _pairs(fw)
    above_a, above_b = _pairs(w >= floor)
    same = above_a == above_b
    diff = torch.where(same, torch.ones_like(a), a - b)  # straddling pairs differ by more than 0
    return fw, torch.where(same, above_a.to(w.dtype), (fa - fb) / diff)


_KINDS: Dict[str, Callable] = {"expm1": _expm1, "log1p": _log1p, "sqrt1pm1": _sqrt1pm1, "clamp": _clamp}


class _SpectralFunction(torch.autograd.Function):
    """``V diag(f(w)) V^T`` with the Daleckii-Krein backward; see the module notes."""

    @staticmethod
    def forward(ctx, w_mat: torch.Tensor, kind: str, floor: Optional[torch.Tensor]) -> torch.Tensor:
        lam, vec = torch.linalg.eigh(w_mat)
        f, dd = _KINDS[kind](lam, floor)
        ctx.save_for_backward(vec, dd)
        return (vec * f.unsqueeze(-2)) @ vec.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        vec, dd = ctx.saved_tensors
        vt = vec.transpose(-1, -2)
        return vec @ (dd * (vt @ sym(grad) @ vec)) @ vt, None, None


def matrix_function(w: torch.Tensor, kind: str, floor: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Apply a scalar function to the eigenvalues of symmetric matrices.

    Args:
        w: matrices ``[..., n, n]``; only their symmetric part is used.
        kind: ``"expm1"`` (``expm(W) - I``), ``"log1p"`` (``logm(I + W)``, eigenvalues of ``W``
            clamped above ``-1`` by eps), ``"sqrt1pm1"`` (``sqrtm(I + W) - I``) or ``"clamp"``
            (eigenvalues raised to at least ``floor``).
        floor: for ``"clamp"``, a tensor broadcastable to the eigenvalues ``[..., n]``; its
            gradient is not tracked.

    Returns:
        Exactly symmetric matrices ``[..., n, n]``, exactly zero for ``W = 0`` with the first three kinds.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown matrix function {kind!r}; choose from {sorted(_KINDS)}")
    if kind == "clamp":
        if floor is None:
            raise ValueError("matrix_function(kind='clamp') needs a floor")
        floor = floor.detach()
    return sym(_SpectralFunction.apply(sym(w), kind, floor))  # V diag(f) V^T is symmetric only to rounding
