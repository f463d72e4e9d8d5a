"""Numerically safe scalar functions shared by the manifolds (safe at zero, in values and gradients)."""

import functools

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


def orthonormal_complement(n: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis ``[..., D-1, D]`` of the hyperplane orthogonal to unit vectors ``n [..., D]``.

    Rows 1.. of the Householder reflection that sends ``e_0`` to ``-sign(n_0) n``: exact, stable for
    every ``n`` (the reflection vector ``n + sign(n_0) e_0`` has norm at least 1) and batched.
    """
    sign = torch.where(n[..., :1] >= 0, 1.0, -1.0).to(n.dtype)
    w = n.clone()
    w[..., :1] = w[..., :1] + sign
    h = -2.0 * w.unsqueeze(-2) * w[..., 1:].unsqueeze(-1) / dot(w, w)[..., None, None]  # rows 1.. of -2 w w^T / |w|^2
    eye = torch.eye(n.shape[-1], dtype=n.dtype, device=n.device)[1:]
    return h + eye


def safe_sqrt(s: torch.Tensor) -> torch.Tensor:
    """``sqrt(s)`` for ``s >= 0`` with a finite (zero) gradient at ``s = 0``.

    ``s`` is floored at the smallest normal number of its dtype, so the result at zero is about
    1e-19 (float32) or 1e-154 (float64) rather than exactly 0: zero to the dtype's precision.
    """
    return torch.sqrt(s.clamp_min(torch.finfo(s.dtype).tiny))


def norm(x: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
    """Euclidean norm over the last dimension with a zero gradient at the zero vector."""
    return safe_sqrt(dot(x, x, keepdim=keepdim))


# ---------------------------------------------------------------------------------------------
# Even functions with a removable singularity at zero (sin(x)/x and relatives).
#
# Each is evaluated as a Taylor polynomial in t = x^2 below a cutoff where the first omitted
# term falls under the dtype's machine epsilon, and by its closed form above it. The closed form
# is fed a harmless argument on the small branch, so torch.where never propagates NaN or inf
# gradients from the branch it discards.


@functools.lru_cache(maxsize=None)
def series_cutoff(dtype: torch.dtype, next_coeff: float, degree: int) -> float:
    """Largest ``|x|`` where a series' first omitted term ``next_coeff * x^degree`` is below eps."""
    return (torch.finfo(dtype).eps / abs(next_coeff)) ** (1.0 / degree)


def _even_series(x: torch.Tensor, coeffs, next_coeff: float, closed, safe: float = 0.5) -> torch.Tensor:
    """``closed(x)`` with the series ``sum_k coeffs[k] x^(2k)`` near zero; shape of ``x``."""
    cut = series_cutoff(x.dtype, next_coeff, 2 * len(coeffs))
    t = x * x
    series = torch.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        series = series * t + c
    small = x.abs() < cut
    return torch.where(small, series, closed(torch.where(small, torch.full_like(x, safe), x)))


def sinc(x: torch.Tensor) -> torch.Tensor:
    """``sin(x) / x`` (unnormalised), 1 at zero; any shape."""
    return _even_series(x, (1.0, -1 / 6, 1 / 120, -1 / 5040), 1 / 362880, lambda z: torch.sin(z) / z)


def sinhc(x: torch.Tensor) -> torch.Tensor:
    """``sinh(x) / x``, 1 at zero; any shape."""
    return _even_series(x, (1.0, 1 / 6, 1 / 120, 1 / 5040), 1 / 362880, lambda z: torch.sinh(z) / z)


def tanhc(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x) / x``, 1 at zero; any shape."""
    return _even_series(x, (1.0, -1 / 3, 2 / 15, -17 / 315), 62 / 2835, lambda z: torch.tanh(z) / z)


def xcothx(x: torch.Tensor) -> torch.Tensor:
    """``x / tanh(x)``, 1 at zero; any shape."""
    return _even_series(x, (1.0, 1 / 3, -1 / 45, 2 / 945), 1 / 4725, lambda z: z / torch.tanh(z))


def atanhc(x: torch.Tensor) -> torch.Tensor:
    """``atanh(x) / x`` for ``|x| < 1``, 1 at zero; any shape."""
    return _even_series(x, (1.0, 1 / 3, 1 / 5, 1 / 7), 1 / 9, lambda z: torch.atanh(z) / z)


def log_sinhc(x: torch.Tensor) -> torch.Tensor:
    """``log(sinh(x) / x)`` without overflow for large ``|x|``; any shape.

    Series near zero, ``log(sinh(x)/x)`` for moderate ``|x|`` and
    ``|x| - log(2|x|) + log1p(-exp(-2|x|))`` beyond 20 (where ``sinh`` would overflow float32
    at 89 and the asymptotic form has no cancellation).
    """
    a = x.abs()
    big = a > 20.0
    mid = _even_series(
        torch.where(big, torch.ones_like(a), a),
        (0.0, 1 / 6, -1 / 180, 1 / 2835),
        1 / 37800,
        lambda z: torch.log(torch.sinh(z) / z),
    )
    ab = torch.where(big, a, torch.full_like(a, 21.0))
    asym = ab - torch.log(2.0 * ab) + torch.log1p(-torch.exp(-2.0 * ab))
    return torch.where(big, asym, mid)
