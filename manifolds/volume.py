"""The Riemannian volume of a manifold seen from its ambient coordinates: projectors, volume factors, divergences.

Generic constructions from ``proju`` and ``inner`` alone (no closed forms), used by the property
table of :mod:`manifolds.testing` to check base densities independently of each class's formulas.
"""

from __future__ import annotations

from typing import Callable

import torch

from .base import Manifold


def orthogonal_projector(m: Manifold, x: torch.Tensor) -> torch.Tensor:
    """Euclidean-orthogonal projector ``[..., D, D]`` onto the tangent spaces at ``x`` ``[..., D]``.

    ``proju`` may be an oblique projection (the hyperboloid's is); for any idempotent ``A`` with
    range ``T``, ``A (A + A^T - I)^-1`` is the orthogonal projector onto ``T``.
    """
    eye = torch.eye(m.ambient_dim, dtype=x.dtype)
    a = m.proju(x.unsqueeze(-2), eye.expand(*x.shape[:-1], -1, -1)).transpose(-1, -2)  # columns: proju(e_k)
    return a @ torch.linalg.inv(a + a.transpose(-1, -2) - eye)


def log_volume_factor(m: Manifold, x: torch.Tensor) -> torch.Tensor:
    """``log sqrt(det g)`` of the metric on the tangent space relative to the Euclidean one; ``[...]``.

    With ``P`` the orthogonal projector and ``G_ij = inner(x, P e_i, P e_j)`` (zero on the normal
    space), ``det(G + I - P)`` is the determinant of ``g`` in a Euclidean-orthonormal tangent basis.
    """
    p = orthogonal_projector(m, x)
    g = m.inner(x[..., None, None, :], p[..., :, None, :], p[..., None, :, :])
    eye = torch.eye(m.ambient_dim, dtype=x.dtype)
    return 0.5 * torch.logdet(g + eye - p)


def surface_divergence(m: Manifold, field: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Divergence ``sum_i <t_i, DV t_i>`` of a tangent field w.r.t. the Euclidean surface measure; ``[...]``.

    ``t_i`` is a Euclidean-orthonormal basis of the tangent space (eigenvectors of the orthogonal
    projector), and each ``t_i^T DV`` one backward pass with ``t_i`` as the incoming gradient:
    ``dim`` passes, not ``ambient_dim``.
    """
    _, evecs = torch.linalg.eigh(orthogonal_projector(m, x.detach()))
    basis = evecs[..., m.ambient_dim - m.dim:].transpose(-1, -2)  # [..., d, D]
    x = x.detach().requires_grad_(True)
    v = field(x)
    div = torch.zeros(x.shape[:-1], dtype=x.dtype)
    for i in range(m.dim):
        t = basis[..., i, :]
        (row,) = torch.autograd.grad(v, x, grad_outputs=t, retain_graph=True)  # t_i^T DV
        div = div + (row * t).sum(-1)
    return div


def coordinate_divergence(m: Manifold, field: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Riemannian divergence tr(P DV) of a tangent field for a metric equal to the coordinates' one."""
    x = x.detach().requires_grad_(True)
    v = field(x)
    eye = torch.eye(m.ambient_dim, dtype=x.dtype)
    proj = m.proju(x.detach().unsqueeze(-2), eye.expand(*x.shape[:-1], -1, -1))  # rows: P e_k
    div = torch.zeros(x.shape[:-1], dtype=x.dtype)
    for k in range(m.ambient_dim):
        (grad_k,) = torch.autograd.grad(v[..., k].sum(), x, retain_graph=True)  # row k of DV
        div = div + (grad_k * proj[..., k, :]).sum(-1)  # (DV P)_kk
    return div


def tangent_basis(m: Manifold, o: torch.Tensor) -> torch.Tensor:
    """``dim`` tangent vectors ``[d, D]`` at the point ``o`` ``[D]``, orthonormal for the metric at ``o``."""
    b = m.proju(o.expand(m.ambient_dim, -1),
                torch.randn(m.ambient_dim, m.ambient_dim, dtype=o.dtype, generator=torch.Generator().manual_seed(5)))
    gram = m.inner(o, b[:, None, :], b[None, :, :])
    evals, evecs = torch.linalg.eigh(gram)
    top = slice(m.ambient_dim - m.dim, m.ambient_dim)
    return (evecs[:, top] / evals[top].sqrt()).T @ b
