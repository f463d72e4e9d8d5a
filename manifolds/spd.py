"""Symmetric positive-definite matrices SPD(n) with the affine-invariant metric and a log-normal base."""

from __future__ import annotations

import functools
import math

import torch

from ._matrix_functions import _log1p_floor, matrix_function, sym
from ._numerics import log_sinhc, norm, tiny
from .base import Manifold, batch_shape


@functools.lru_cache(maxsize=None)
def _symmetric_basis(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``E_ii`` and ``(E_ij + E_ji) / sqrt 2`` flattened: ``[n(n+1)/2, n*n]``, built once per dtype and device."""
    rows = []
    for i in range(n):
        for j in range(i, n):
            e = torch.zeros(n, n, dtype=dtype, device=device)
            e[i, j] = e[j, i] = 1.0 if i == j else 1.0 / math.sqrt(2.0)
            rows.append(e.reshape(-1))
    return torch.stack(rows)


class SPD(Manifold):
    """``n x n`` symmetric positive-definite matrices, flattened row-major to ``[..., n*n]``.

    The metric is the affine-invariant ``<U, V>_P = tr(P^-1 U P^-1 V)``; tangent vectors are
    symmetric matrices (flattened). The space is complete, non-compact and non-positively curved,
    so ``expmap``/``logmap`` are global inverses and the volume is infinite.

    All maps go through a Cholesky factor ``P = A A^T`` (any ``A`` with ``A A^T = P`` gives the
    same geodesics) and work with *differences*: ``logmap`` and ``dist`` whiten ``Q - P`` rather
    than ``Q`` and apply ``log1p``, ``expmap`` adds ``A expm1(W) A^T`` to ``P``. So ``logmap(P, P)``,
    ``dist(P, P)`` and ``expmap(P, 0) - P`` are exactly zero, and small distances keep their
    relative precision. Matrix functions use divided differences in their backward pass
    (:mod:`manifolds._matrix_functions`), so gradients are finite at repeated eigenvalues.

    Base distribution (log-normal): ``S`` symmetric with density ``N(0, sigma^2)`` in orthonormal
    coordinates of the metric at the identity (``S_ii ~ N(0, sigma^2)``,
    ``S_ij ~ N(0, sigma^2 / 2)``), ``P = expm(S)``. With ``s_i`` the eigenvalues of ``S`` (the
    logarithms of the eigenvalues of ``P``), the exponential map at ``I`` multiplies volumes by
    ``J(S) = prod_{i<j} sinh(d_ij / 2) / (d_ij / 2)``, ``d_ij = s_i - s_j``: in the eigenbasis of
    ``S`` its differential scales the ``(i, j)`` entry by the divided difference
    ``(e^{s_i} - e^{s_j}) / (s_i - s_j)``, and the metric at ``P`` divides it by
    ``e^{(s_i + s_j)/2}``. Hence, w.r.t. the Riemannian volume,

        log p(P) = -|s|^2 / (2 sigma^2) - (N/2) log(2 pi sigma^2) - sum_{i<j} log sinhc(d_ij / 2),

    ``N = n(n+1)/2``.

    Args:
        n: matrix size ``n >= 1``.
        sigma: standard deviation of the base's log-normal, ``> 0`` (default 1).
    """

    name = "SPD"
    compact = False
    ambient_metric = False
    exact_expmap = True
    injectivity_radius = math.inf

    def __init__(self, n: int = 2, *, sigma: float = 1.0):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"SPD matrix size must be an integer >= 1, got {n!r}")
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"SPD sigma must be a finite number > 0, got {sigma!r}")
        self.n = n
        self.sigma = float(sigma)
        self.dim = n * (n + 1) // 2
        self.ambient_dim = n * n

    def extra_repr(self) -> str:
        """The matrix size and ``sigma`` (when not 1), for ``repr``."""
        return f"n={self.n}" + ("" if self.sigma == 1.0 else f", sigma={self.sigma}")

    # ------------------------------------------------------------------ helpers
    def _mat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], self.n, self.n)

    @staticmethod
    def _flat(m: torch.Tensor) -> torch.Tensor:
        return m.reshape(*m.shape[:-2], m.shape[-1] * m.shape[-2])

    def _chol(self, x: torch.Tensor) -> torch.Tensor:
        """Lower Cholesky factor ``[..., n, n]`` of the symmetric part of points ``[..., n*n]``."""
        return torch.linalg.cholesky_ex(sym(self._mat(x))).L

    @staticmethod
    def _whiten(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``A^-1 M A^-T`` for symmetric ``M`` by two triangular solves (broadcast), symmetrised."""
        left = torch.linalg.solve_triangular(a, m, upper=False)
        return sym(torch.linalg.solve_triangular(a, left.transpose(-1, -2), upper=False))

    @staticmethod
    def _colour(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``A M A^T`` (the inverse of :meth:`_whiten`), symmetrised."""
        return sym(a @ m @ a.transpose(-1, -2))

    def _floor(self, lam: torch.Tensor) -> torch.Tensor:
        """Eigenvalue floor ``16 n eps max|lambda|`` (at least the dtype's tiny), ``[..., 1]``."""
        eps = torch.finfo(lam.dtype).eps
        return (16 * self.n * eps * lam.abs().amax(-1, keepdim=True)).clamp_min(tiny(lam.dtype))

    # ------------------------------------------------------------------ geometry
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Symmetrise and raise eigenvalues below a floor to it; ``[..., n*n]``.

        The floor is ``16 n eps`` times the largest eigenvalue magnitude (condition numbers stay
        within what the dtype can factorise). Matrices whose eigenvalues are all above half the
        floor are only symmetrised, so valid points are fixed exactly and ``projx`` is idempotent.
        """
        s = sym(self._mat(x))
        lam = torch.linalg.eigvalsh(s.detach())
        floor = self._floor(lam)
        valid = (lam[..., :1] >= 0.5 * floor).unsqueeze(-1)
        return self._flat(torch.where(valid, s, matrix_function(s, "clamp", floor)))

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Symmetric part of ``u`` (broadcast against ``x``); shapes ``[..., n*n]``."""
        u = u.expand(torch.broadcast_shapes(x.shape, u.shape))
        return self._flat(sym(self._mat(u)))

    def tangent_frame(self, x: torch.Tensor) -> torch.Tensor:
        """``E_ii`` and ``(E_ij + E_ji) / sqrt 2``: a Frobenius-orthonormal basis ``[..., n(n+1)/2, n*n]``.

        It spans the symmetric matrices; symmetrisation, the differential of :meth:`projx` inside the
        cone, is their orthogonal projector.
        """
        basis = _symmetric_basis(self.n, x.dtype, x.device)
        return basis.expand(*x.shape[:-1], *basis.shape)

    def tangent_field(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``A sym(U) A^T`` (``P = A A^T``, Cholesky): a network output read in whitened coordinates; ``[..., n*n]``.

        The Riemannian norm of the result is ``|sym(U)|_F``, so a bounded output moves points at a
        bounded speed in the metric (a plain ``sym(U)`` would be arbitrarily fast near the boundary
        of the cone, where flows then leave the range of the dtype).
        """
        u = u.expand(torch.broadcast_shapes(x.shape, u.shape))
        return self._flat(self._colour(self._chol(x), sym(self._mat(u))))

    def normal_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """``logm(P)`` flattened, ``[..., n*n]``: the exponential chart at the identity (the base's centre)."""
        p = sym(self._mat(x))
        eye = torch.eye(self.n, dtype=x.dtype, device=x.device)
        return self._flat(matrix_function(p - eye, "log1p"))

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riemannian gradient ``P sym(G) P`` of a Euclidean gradient ``G``; shapes ``[..., n*n]``."""
        p = sym(self._mat(x))
        return self._flat(sym(p @ sym(self._mat(u)) @ p))

    def inner(self, x, u, v=None, *, keepdim: bool = False) -> torch.Tensor:
        """``tr(P^-1 U P^-1 V)``; shape ``[...]`` (``[..., 1]`` with ``keepdim``)."""
        a = self._chol(x)
        uw = self._whiten(a, sym(self._mat(u)))
        vw = uw if v is None else self._whiten(a, sym(self._mat(v)))
        out = (uw * vw).sum(dim=(-1, -2))
        return out.unsqueeze(-1) if keepdim else out

    def norm(self, x, u, *, keepdim: bool = False) -> torch.Tensor:
        """``|A^-1 U A^-T|_F`` with a zero gradient at ``u = 0``; shape ``[...]``."""
        uw = self._whiten(self._chol(x), sym(self._mat(u)))
        return norm(self._flat(uw), keepdim=keepdim)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``P^1/2 expm(P^-1/2 U P^-1/2) P^1/2 = A expm(W) A^T`` with ``W = A^-1 U A^-T``; ``[..., n*n]``.

        Steps with ``|W|_F <= 1/2`` use ``P + A expm1(W) A^T`` (exactly ``P`` at ``U = 0``; the
        eigenvalues of ``I + expm1(W)`` are at least ``e^-1/2``, so the sum does not cancel);
        longer ones use the Gram form ``(A S)(A S)^T`` with ``S = expm(W/2)``, positive
        semi-definite by construction, where the sum would cancel for strongly contracting steps.
        A step longer than ``log(max)/4`` of the dtype (22 in float32, 177 in float64), whose
        exact result can leave the dtype's range, is shortened to that length along its direction.
        """
        p = sym(self._mat(x))
        a = self._chol(x)
        w = self._whiten(a, sym(self._mat(u)))
        length = norm(self._flat(w), keepdim=True).unsqueeze(-1)
        cap = 0.25 * math.log(torch.finfo(w.dtype).max)
        w = w * torch.where(length > cap, cap / length.clamp_min(cap), torch.ones_like(length))
        small = length <= 0.5
        f = matrix_function(torch.where(small, w, 0.5 * w), "expm1")
        c = a + a @ f
        return self._flat(torch.where(small, p + self._colour(a, f), sym(c @ c.transpose(-1, -2))))

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``A log1p(A^-1 (Q - P) A^-T) A^T`` (``= P^1/2 logm(P^-1/2 Q P^-1/2) P^1/2``); ``[..., n*n]``."""
        p = sym(self._mat(x))
        a = self._chol(x)
        w = self._whiten(a, sym(self._mat(y)) - p)
        return self._flat(self._colour(a, matrix_function(w, "log1p")))

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """``|logm(P^-1/2 Q P^-1/2)|_F = sqrt(sum_i log1p(w_i)^2)``, ``w`` the eigenvalues of the whitened ``Q - P``.

        Exactly zero (to the dtype's tiny) at ``Q = P`` with a zero gradient; shape ``[...]``.
        """
        p = sym(self._mat(x))
        w = torch.linalg.eigvalsh(self._whiten(self._chol(x), sym(self._mat(y)) - p))
        return norm(torch.log1p(_log1p_floor(w)), keepdim=keepdim)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Parallel transport ``E V E^T`` with ``E = (Q P^-1)^1/2 = A M^1/2 A^-1``, ``M = A^-1 Q A^-T``.

        In whitened coordinates this is ``A (I + K) V~ (I + K) A^T`` with ``K = sqrtm(M) - I``
        (zero at ``Q = P``) and ``V~ = A^-1 V A^-T``; it maps ``V~`` to itself in the whitening
        of ``Q`` by ``A M^1/2``, hence is an isometry. Shapes ``[..., n*n]``.
        """
        p = sym(self._mat(x))
        a = self._chol(x)
        k = matrix_function(self._whiten(a, sym(self._mat(y)) - p), "sqrt1pm1")
        vw = self._whiten(a, sym(self._mat(v)))
        kv = k @ vw
        return self._flat(self._colour(a, vw + kv + kv.transpose(-1, -2) + kv @ k))

    def divergence_correction(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``-(n+1)/2 tr(P^-1 V)``: the affine-invariant volume is ``det(P)^(-(n+1)/2)`` times Lebesgue measure.

        ``projx`` only symmetrises valid points, so divergence estimators differentiate in the
        coordinates of the symmetric matrices (Frobenius-Lebesgue measure). The metric at ``P``
        is ``|L_P U|_F^2`` with ``L_P U = P^-1/2 U P^-1/2``, and ``det L_P = det(P)^(-(n+1)/2)`` on
        symmetric matrices, so ``grad log rho = -(n+1)/2 P^-1`` (see
        :meth:`manifolds.Manifold.divergence_correction`). Shapes ``[..., n*n] -> [...]``.
        """
        a = self._chol(x)
        w = self._whiten(a, sym(self._mat(v)))  # A^-1 V A^-T has the trace of P^-1 V
        return -0.5 * (self.n + 1) * w.diagonal(dim1=-2, dim2=-1).sum(-1)

    # ------------------------------------------------------------------ base distribution
    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Log-normal samples ``expm(S)`` (see the class notes), shape ``[*shape, n*n]``."""
        g = torch.randn(*batch_shape(shape), self.n, self.n, dtype=dtype, device=device, generator=generator)
        s = self.sigma * self._symmetric_normal(g)
        eye = torch.eye(self.n, dtype=s.dtype, device=s.device)
        return self._flat(eye + matrix_function(s, "expm1"))

    @staticmethod
    def _symmetric_normal(g: torch.Tensor) -> torch.Tensor:
        """Symmetric matrices with ``N(0, 1)`` diagonal and ``N(0, 1/2)`` off-diagonal entries.

        Built from ``[..., n, n]`` standard normals ``g``.
        """
        low = torch.tril(g, diagonal=-1) * math.sqrt(0.5)
        return low + low.transpose(-1, -2) + torch.diag_embed(g.diagonal(dim1=-2, dim2=-1))

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density of the log-normal base w.r.t. the Riemannian volume; ``[..., n*n] -> [...]``."""
        lam = torch.linalg.eigvalsh(sym(self._mat(x))).clamp_min(tiny(x.dtype))
        s = torch.log(lam)
        var = self.sigma**2
        out = -0.5 * (s * s).sum(-1) / var - 0.5 * self.dim * math.log(2 * math.pi * var)
        i, j = torch.triu_indices(self.n, self.n, offset=1, device=x.device)
        if i.numel():
            out = out - log_sinhc(0.5 * (s[..., i] - s[..., j])).sum(-1)
        return out

    # ------------------------------------------------------------------ validation
    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        p = self._mat(x)
        asym = (p - p.transpose(-1, -2)).abs().amax(dim=(-1, -2))
        limit = atol + rtol * p.abs().amax(dim=(-1, -2))
        ok, reason = self._tolerance_report(
            asym, limit, f"are off {self}: not symmetric positive-definite (not symmetric, |P - P^T| too large)"
        )
        if not ok:
            return ok, reason
        low = torch.linalg.eigvalsh(sym(p))[..., 0]
        bad = low <= 0
        if bool(bad.any()):
            worst, idx = self._worst(-low)
            return False, (
                f"{int(bad.sum())} point(s) are off {self}: not symmetric positive-definite (smallest "
                f"eigenvalue <= 0); worst {-worst:.3g} at index {idx}"
            )
        return True, None

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        m = self._mat(u)
        err = (m - m.transpose(-1, -2)).abs().amax(dim=(-1, -2))
        limit = atol + rtol * m.abs().amax(dim=(-1, -2))
        return self._tolerance_report(err, limit, "are not tangent (U is not symmetric)")
