"""Numerically safe scalar functions shared by the manifolds (safe at zero, in values and gradients)."""

import torch


def tiny(dtype: torch.dtype) -> float:
    """Smallest value that is safely invertible in ``dtype`` (well above the subnormal range)."""
    return torch.finfo(dtype).tiny ** 0.5


def dot(x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
    """Inner product over the last dimension, ``[..., D] x [..., D] -> [...]``.

    For the handful of coordinates typical here (D <= 4) a sum of column products is several
    times faster on CPU than a reduction over a short contiguous last dimension.
    """
    n = x.shape[-1]
    if n <= 4 and y.shape[-1] == n:
        out = x[..., 0] * y[..., 0]
        for i in range(1, n):
            out = torch.addcmul(out, x[..., i], y[..., i])
    else:
        out = (x * y).sum(-1)
    return out.unsqueeze(-1) if keepdim else out


def safe_sqrt(s: torch.Tensor) -> torch.Tensor:
    """``sqrt(s)`` for ``s >= 0`` with a finite (zero) gradient at ``s = 0``.

    ``s`` is floored at the smallest normal number of its dtype, so the result at zero is about
    1e-19 (float32) or 1e-154 (float64) rather than exactly 0: zero to the dtype's precision.
    """
    return torch.sqrt(s.clamp_min(torch.finfo(s.dtype).tiny))


def norm(x: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
    """Euclidean norm over the last dimension with a zero gradient at the zero vector."""
    return safe_sqrt(dot(x, x, keepdim=keepdim))
