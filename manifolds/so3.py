"""The rotation group SO(3) as 3x3 matrices with the bi-invariant metric; Rodrigues exp/log safe at angles 0 and pi."""

from __future__ import annotations

import functools
import math

import torch

from ._matrix_functions import sym
from ._numerics import dot, norm, safe_sqrt, sinc, tiny
from .base import Manifold, batch_shape


def _mat(x: torch.Tensor) -> torch.Tensor:
    """``[..., 9] -> [..., 3, 3]`` (row-major)."""
    return x.reshape(*x.shape[:-1], 3, 3)


def _flat(m: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3] -> [..., 9]`` (row-major)."""
    return m.reshape(*m.shape[:-2], 9)


def _tmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``A^T B`` for ``[..., 3, 3]`` matrices, summed term by term so that ``R^T R`` is exactly symmetric."""
    return (a.unsqueeze(-1) * b.unsqueeze(-2)).sum(-3)


def hat(w: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrices ``[..., 3, 3]`` of rotation vectors ``[..., 3]`` (``hat(w) v = w x v``)."""
    z = torch.zeros_like(w[..., 0])
    w0, w1, w2 = w.unbind(-1)
    return torch.stack([z, -w2, w1, w2, z, -w0, -w1, w0, z], dim=-1).reshape(*w.shape[:-1], 3, 3)


def vee(m: torch.Tensor) -> torch.Tensor:
    """Rotation vector ``[..., 3]`` of the skew-symmetric part of ``[..., 3, 3]`` matrices."""
    return 0.5 * torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], dim=-1
    )


def rotation_exp(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula ``I + sinc(t) K + (1 - cos t)/t^2 K^2`` with ``K = hat(w)``, ``t = |w|``.

    Args:
        w: rotation vectors ``[..., 3]``.

    Returns:
        Rotation matrices ``[..., 3, 3]``; exactly ``I`` at ``w = 0``. ``(1 - cos t)/t^2`` is
        evaluated as ``sinc(t/2)^2 / 2``, free of cancellation.
    """
    t = safe_sqrt(dot(w, w))
    a = sinc(t)[..., None, None]
    b = (0.5 * sinc(0.5 * t) ** 2)[..., None, None]
    k = hat(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device)
    return eye + a * k + b * (k @ k)


def rotation_angle(m: torch.Tensor) -> torch.Tensor:
    """Rotation angle in ``[0, pi]`` of matrices ``[..., 3, 3]``: ``atan2(|vee(M)|, (tr M - 1)/2)``."""
    s = norm(vee(m))
    c = 0.5 * (m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    return torch.atan2(s, c)


def rotation_log(m: torch.Tensor) -> torch.Tensor:
    """Rotation vector ``[..., 3]`` (length in ``[0, pi]``) of rotation matrices ``[..., 3, 3]``.

    With angle ``t`` and unit axis ``k``: ``vee(M) = sin(t) k`` and ``sym(M) - cos(t) I =
    (1 - cos t) k k^T``. For ``cos t >= 0`` the vector is ``vee(M) / sinc(t)``; beyond ``pi/2``,
    where ``vee(M)`` vanishes and loses the axis, the axis is read from the column of
    ``(1 - cos t) k k^T`` with the largest diagonal entry (at least a third of ``1 - cos t``), its
    sign from ``vee(M)``. Both branches are fed harmless inputs where they are not used.
    """
    v = vee(m)
    c = 0.5 * (m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    t = torch.atan2(norm(v), c)
    far = c < 0
    near = v / sinc(torch.where(far, torch.zeros_like(t), t)).unsqueeze(-1)
    eye = torch.eye(3, dtype=m.dtype, device=m.device)
    b = sym(m) - c[..., None, None] * eye
    i = b.diagonal(dim1=-2, dim2=-1).argmax(-1)
    col = torch.gather(b, -1, i[..., None, None].expand(*b.shape[:-1], 1)).squeeze(-1)
    col = torch.where(far.unsqueeze(-1), col, torch.ones_like(col))
    sign = torch.where(dot(col, v) < 0, -1.0, 1.0).to(m.dtype)
    away = (t * sign).unsqueeze(-1) * col / norm(col, keepdim=True)
    return torch.where(far.unsqueeze(-1), away, near)


class _RotationProjection(torch.autograd.Function):
    """Closest rotation ``U diag(1, 1, det(U V^T)) V^T`` to ``X = U diag(s) V^T``, with a gap-free backward.

    Writing ``X = R S`` with ``S = V diag(mu) V^T`` symmetric (``mu = s * (1, 1, d)``) and
    differentiating gives ``R^T dR = V Om V^T`` with ``Om_ij = (K_ij - K_ji) / (mu_i + mu_j)``,
    ``K = V^T R^T dX V``: the denominators are sums, not differences, of singular values, so the
    gradient is finite at repeated singular values (every rotation has three equal ones).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        u, s, vh = torch.linalg.svd(x)
        d = torch.where(torch.linalg.det(u @ vh) < 0, -1.0, 1.0).to(x.dtype)
        signs = torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1)
        r = (u * signs.unsqueeze(-2)) @ vh
        ctx.save_for_backward(r, vh, s * signs)
        return r

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        r, vh, mu = ctx.saved_tensors
        v = vh.transpose(-1, -2)
        g = vh @ r.transpose(-1, -2) @ grad @ v
        den = mu.unsqueeze(-1) + mu.unsqueeze(-2)
        floor = tiny(den.dtype)
        den = torch.where(den.abs() > floor, den, torch.full_like(den, floor))
        return r @ v @ ((g - g.transpose(-1, -2)) / den) @ vh


@functools.lru_cache(maxsize=None)
def _skew_generators(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The unit skew matrices ``E_k`` (``E_k v = e_k x v``), ``[3, 3, 3]``, built once per dtype and device."""
    e = torch.zeros(3, 3, 3, dtype=dtype, device=device)
    for k, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
        e[k, i, j], e[k, j, i] = -1.0, 1.0
    return e


class SO3(Manifold):
    """The rotation group ``SO(3)``; a point is a rotation matrix flattened row-major to ``[..., 9]``.

    The metric is the bi-invariant ``<A, B> = tr(A^T B) / 2``, so a tangent vector ``R hat(w)``
    has norm ``|w|`` and the distance is the rotation angle of ``R1^T R2`` in ``[0, pi]``; the
    volume is ``8 pi^2``. Tangent vectors at ``R`` are stored as the ambient matrices
    ``R Omega`` (``Omega`` skew-symmetric), flattened. The base distribution is the Haar
    (uniform) measure.
    """

    name = "SO3"
    compact = True
    ambient_metric = False
    exact_expmap = True
    injectivity_radius = math.pi
    symmetric_random_walk = True  # bi-invariant metric: the kernel depends on the angle of x^T y only

    def __init__(self):
        super().__init__()
        self.dim = 3
        self.ambient_dim = 9

    def extra_repr(self) -> str:
        """Nothing: SO(3) has no parameters."""
        return ""

    @property
    def volume(self) -> float:
        """``8 pi^2``."""
        return 8.0 * math.pi**2

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Closest rotation in the Frobenius norm (polar factor with its determinant made +1); ``[..., 9]``.

        Gradients are finite at rotations (repeated singular values); see :class:`_RotationProjection`.
        """
        return _flat(_RotationProjection.apply(_mat(x)))

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Orthogonal projection ``R skew(R^T U)`` onto the tangent space at ``R``; shapes ``[..., 9]``."""
        r = _mat(x)
        a = r.transpose(-1, -2) @ _mat(u)
        return _flat(r @ (0.5 * (a - a.transpose(-1, -2))))

    def tangent_frame(self, x: torch.Tensor) -> torch.Tensor:
        """``R E_k / sqrt 2`` for the three unit skew generators ``E_k``: a Frobenius-orthonormal basis ``[..., 3, 9]``.

        The polar projection's differential at a rotation is the orthogonal projector ``R skew(R^T H)``.
        """
        return _flat(_mat(x).unsqueeze(-3) @ _skew_generators(x.dtype, x.device)) / math.sqrt(2.0)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riemannian gradient ``2 proju(x, u)`` (the metric is half the Frobenius one); ``[..., 9]``."""
        return 2.0 * self.proju(x, u)

    def inner(self, x, u, v=None, *, keepdim: bool = False) -> torch.Tensor:
        """``tr(U^T V) / 2`` broadcast over ``x``; shape ``[...]`` (``[..., 1]`` with ``keepdim``)."""
        out = 0.5 * (u * (u if v is None else v)).sum(-1, keepdim=keepdim)
        return out.expand(torch.broadcast_shapes(out.shape, x.shape[:-1] + ((1,) if keepdim else ())))

    def norm(self, x, u, *, keepdim: bool = False) -> torch.Tensor:
        """``|U|_F / sqrt(2)`` (the length of the rotation vector) with a zero gradient at ``u = 0``."""
        out = math.sqrt(0.5) * norm(u, keepdim=keepdim)
        return out.expand(torch.broadcast_shapes(out.shape, x.shape[:-1] + ((1,) if keepdim else ())))

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``R expm(R^T U)`` by Rodrigues' formula; shapes ``[..., 9]``; exactly ``R`` at ``U = 0``."""
        r = _mat(x)
        return _flat(r @ rotation_exp(vee(r.transpose(-1, -2) @ _mat(u))))

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``R hat(w)`` with ``w`` the rotation vector of ``R^T S`` (``|w| <= pi``); shapes ``[..., 9]``.

        Well conditioned up to the angle ``pi``; at exactly ``pi`` one of the two opposite
        rotation vectors is returned.
        """
        r = _mat(x)
        return _flat(r @ hat(rotation_log(_tmul(r, _mat(y)))))

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        """Rotation angle of ``R1^T R2`` in ``[0, pi]`` (``atan2``, never ``acos``); shape ``[...]``."""
        t = rotation_angle(_tmul(_mat(x), _mat(y)))
        return t.unsqueeze(-1) if keepdim else t

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Parallel transport ``R H (R^T V) H`` along the geodesic ``R exp(t Omega)``, ``H = exp(Omega / 2)``.

        For a bi-invariant metric ``nabla_X Y = [X, Y] / 2`` on left-invariant fields, so the
        left-trivialised transported vector ``xi(t)`` solves ``xi' = -[Omega, xi] / 2``, i.e.
        ``xi(t) = exp(-t Omega/2) xi(0) exp(t Omega/2)``; at ``t = 1`` the vector is
        ``R exp(Omega) xi(1) = R H xi(0) H``. Conjugation keeps ``xi`` skew and its norm.
        Shapes ``[..., 9]``.
        """
        r = _mat(x)
        h = rotation_exp(0.5 * rotation_log(_tmul(r, _mat(y))))
        return _flat(r @ h @ (r.transpose(-1, -2) @ _mat(v)) @ h)

    def random_base(self, *shape, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Haar-uniform rotations from normalised Gaussian quaternions, shape ``[*shape, 9]``."""
        q = torch.randn(*batch_shape(shape), 4, dtype=dtype, device=device, generator=generator)
        q = q / norm(q, keepdim=True).clamp_min(tiny(q.dtype))
        w, a, b, c = q.unbind(-1)
        rows = [
            1 - 2 * (b * b + c * c), 2 * (a * b - c * w), 2 * (a * c + b * w),
            2 * (a * b + c * w), 1 - 2 * (a * a + c * c), 2 * (b * c - a * w),
            2 * (a * c - b * w), 2 * (b * c + a * w), 1 - 2 * (a * a + b * b),
        ]
        return torch.stack(rows, dim=-1)

    def base_logprob(self, x: torch.Tensor) -> torch.Tensor:
        """``-log(8 pi^2)`` for every point; shape ``[...]``."""
        return torch.full(x.shape[:-1], -math.log(self.volume), dtype=x.dtype, device=x.device)

    def _check_point_on_manifold(self, x, *, atol=1e-5, rtol=1e-5):
        r = _mat(x)
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        err = (_tmul(r, r) - eye).abs().amax(dim=(-1, -2))
        ok, reason = self._tolerance_report(err, atol, "are off SO(3): not orthogonal (|R^T R - I| too large)")
        if not ok:
            return ok, reason
        flipped = (-torch.linalg.det(r)).clamp_min(0.0)
        return self._tolerance_report(flipped, 0.0, "are off SO(3): not a rotation (det R = -1, a reflection)")

    def _check_vector_on_tangent(self, x, u, *, atol=1e-5, rtol=1e-5):
        a = _mat(x).transpose(-1, -2) @ _mat(u)
        err = (a + a.transpose(-1, -2)).abs().amax(dim=(-1, -2)) * 0.5
        limit = atol + rtol * u.abs().amax(-1)
        return self._tolerance_report(err, limit, "are not tangent (R^T U is not skew-symmetric)")
