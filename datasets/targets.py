"""Synthetic targets with exact log-densities and samplers on SO(3), SPD(n), hyperbolic space and T^d.

Every target is a wrapped-normal mixture: a component centred at ``m`` draws ``v ~ N(0, sigma^2 I)``
in orthonormal coordinates of the tangent space at ``m`` and returns ``exp_m(v)``. Its density
w.r.t. the Riemannian volume is the Gaussian density divided by the volume factor of the
exponential map, summed over every preimage of the point:

* SPD(n) and hyperbolic space are complete, simply connected and non-positively curved, so
  ``exp_m`` is a diffeomorphism (one preimage) and the density depends on the point through its
  distance to ``m`` (hyperbolic) or the eigenvalues of ``log(M^-1/2 P M^-1/2)`` (SPD); the
  volume factors are those of the manifolds' own wrapped-normal bases.
* SO(3): ``exp_m`` wraps the Lie algebra around the group, so a rotation at angle ``theta`` from
  ``m`` has the preimages ``(theta + 2 pi k) n`` (``k`` in Z), and the volume factor at radius
  ``r`` is ``2 (1 - cos r) / r^2`` (see :class:`WrappedNormalSO3`).
* T^d: the existing :class:`~manifold_flows.datasets.WrappedNormalMixture` (images ``x + 2 pi k``).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Sequence, Union

import torch

from manifolds import SO3, SPD, Hyperboloid, PoincareBall
from manifolds._numerics import log_sinhc, sinc
from manifolds.so3 import rotation_angle, rotation_exp

from .synthetic import WrappedNormalMixture
from .target_base import ArrayLike, SyntheticTarget, float64_tensor, log_weights

TWO_PI = 2.0 * math.pi


def _positive(values: ArrayLike, k: int, name: str) -> torch.Tensor:
    """``values`` as ``k`` positive float64 numbers."""
    t = float64_tensor(values, name)
    if t.shape != (k,) or bool((t <= 0).any()):
        raise ValueError(f"{name} must be {k} positive numbers, got {t.tolist()}")
    return t


# ---------------------------------------------------------------------------------------- SO(3)
def axis_angle_rotation(axis: Sequence[float], angle: float) -> torch.Tensor:
    """The rotation matrix ``[3, 3]`` (float64) by ``angle`` radians about ``axis`` (normalised here)."""
    a = float64_tensor(axis, "axis")
    if a.shape != (3,) or float(a.norm()) == 0.0:
        raise ValueError(f"axis must be a non-zero 3-vector, got {a.tolist()}")
    return rotation_exp(a / a.norm() * float(angle))


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``q = (w, x, y, z)`` ``[...,  4]``.

    The quaternions are normalised here; ``q`` and ``-q`` give the same rotation.
    """
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, a, b, c = q.unbind(-1)
    rows = [1 - 2 * (b * b + c * c), 2 * (a * b - c * w), 2 * (a * c + b * w),
            2 * (a * b + c * w), 1 - 2 * (a * a + c * c), 2 * (b * c - a * w),
            2 * (a * c - b * w), 2 * (b * c + a * w), 1 - 2 * (a * a + b * b)]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(r: torch.Tensor) -> torch.Tensor:
    """A unit quaternion ``(w, x, y, z)`` ``[..., 4]`` of rotation matrices ``[..., 3, 3]`` (one of the two signs).

    Of the four expressions ``4 w^2 = 1 + tr R``, ``4 x^2 = 1 + 2 R_00 - tr R``, ... the largest is
    used to divide the off-diagonal sums and differences, so no small number is divided by.
    """
    tr = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    squares = torch.stack([1 + tr, 1 + 2 * r[..., 0, 0] - tr, 1 + 2 * r[..., 1, 1] - tr, 1 + 2 * r[..., 2, 2] - tr], -1)
    i = squares.argmax(-1, keepdim=True)
    big = 0.5 * torch.sqrt(torch.gather(squares, -1, i).clamp_min(0.0))  # the largest |component|, >= 1/2
    d = 0.25 / big
    r01, r10, r02, r20, r12, r21 = r[..., 0, 1], r[..., 1, 0], r[..., 0, 2], r[..., 2, 0], r[..., 1, 2], r[..., 2, 1]
    cands = torch.stack([
        torch.stack([big[..., 0], (r21 - r12) * d[..., 0], (r02 - r20) * d[..., 0], (r10 - r01) * d[..., 0]], -1),
        torch.stack([(r21 - r12) * d[..., 0], big[..., 0], (r01 + r10) * d[..., 0], (r02 + r20) * d[..., 0]], -1),
        torch.stack([(r02 - r20) * d[..., 0], (r01 + r10) * d[..., 0], big[..., 0], (r12 + r21) * d[..., 0]], -1),
        torch.stack([(r10 - r01) * d[..., 0], (r02 + r20) * d[..., 0], (r12 + r21) * d[..., 0], big[..., 0]], -1),
    ], -2)  # [..., 4 candidates, 4 components]
    q = torch.gather(cands, -2, i.unsqueeze(-1).expand(*i.shape[:-1], 1, 4)).squeeze(-2)
    return q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)


def _log_wrapped_angle_density(theta: torch.Tensor, sigma: torch.Tensor, n_images: int) -> torch.Tensor:
    """Log-density on SO(3) of ``R = M exp(hat(v))``, ``v ~ N(0, sigma^2 I_3)``, at angle ``theta`` from ``M``.

    ``log p = -1.5 log(2 pi sigma^2)
    + log sum_k exp(-(theta + 2 pi k)^2 / (2 sigma^2)) (theta + 2 pi k)^2 / (4 sin^2(theta / 2))``
    with ``k`` in ``[-n_images, n_images]``. The ``k = 0`` term is written as ``-2 log sinc(theta / 2)``
    (finite at ``theta = 0``); the others as ``2 log|1 + 2 pi k / theta|`` plus the same, which
    grows like ``-2 log theta``: the density is infinite at the centre, with weight
    ``exp(-2 pi^2 / sigma^2)`` (the whole sphere ``|v| = 2 pi`` maps onto ``M``), a removable
    curiosity at every ``sigma`` used here.

    Args:
        theta: angles in ``[0, pi]``, shape ``[...]``.
        sigma: standard deviations broadcastable against ``theta``.
        n_images: images kept on each side of ``k = 0``.

    Returns:
        Log-density w.r.t. the Riemannian volume of SO(3), shape of the broadcast.
    """
    log_sinc = torch.log(sinc(0.5 * theta))
    k = torch.arange(-n_images, n_images + 1, dtype=theta.dtype, device=theta.device)
    th = theta.unsqueeze(-1)
    shifted = th + TWO_PI * k
    ratio = torch.where(k == 0, torch.ones_like(shifted), shifted / th.clamp_min(torch.finfo(theta.dtype).tiny))
    log_terms = -0.5 * (shifted / sigma.unsqueeze(-1)) ** 2 + 2.0 * torch.log(ratio.abs())
    return -1.5 * torch.log(TWO_PI * sigma * sigma) + torch.logsumexp(log_terms, dim=-1) - 2.0 * log_sinc


class WrappedNormalSO3(SyntheticTarget):
    """Mixture of wrapped normals on SO(3): component ``k`` is ``M_k exp(hat(v))``, ``v ~ N(0, sigma_k^2 I_3)``.

    The metric is ``tr(A^T B) / 2`` (:class:`manifolds.SO3`), in which ``hat(v)`` at the identity
    has norm ``|v|``, so ``v`` is Gaussian in orthonormal coordinates. The density of a rotation at
    angle ``theta`` from ``M_k`` sums over the preimages ``(theta + 2 pi k) n`` of the exponential
    map, each divided by its volume factor ``2 (1 - cos r) / r^2`` at ``r = |theta + 2 pi k|``
    (the derivative of ``exp`` shrinks the two directions orthogonal to ``v`` by
    ``sin(r/2) / (r/2)`` each). Images with ``|k| <= n`` are kept, ``n`` as for the torus
    (:meth:`WrappedNormalMixture.images_needed`): the dropped ones are at least ``(2n + 1) pi``
    long, so their Gaussian weight is below ``1e-17`` of the central term's.

    Args:
        means: rotation matrices ``[K, 3, 3]`` or ``[K, 9]`` (projected onto SO(3) here).
        stds: standard deviations ``> 0``, shape ``[K]`` (radians of rotation angle).
        weights: mixture weights ``>= 0``, shape ``[K]``.
    """

    def __init__(self, means: ArrayLike, stds: ArrayLike, weights: ArrayLike):
        super().__init__()
        self.manifold = SO3()
        m = float64_tensor(means, "means")
        if m.dim() == 3 and m.shape[1:] == (3, 3):
            m = m.reshape(-1, 9)
        if m.dim() != 2 or m.shape[1] != 9:
            raise ValueError(f"means must have shape [K, 3, 3] or [K, 9], got {tuple(m.shape)}")
        k = m.shape[0]
        self.register_buffer("means", self.manifold.projx(m))
        self.register_buffer("stds", _positive(stds, k, "stds"))
        self.register_buffer("log_weights", log_weights(weights, k))
        self.n_images = WrappedNormalMixture.images_needed(float(self.stds.max()))

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"components={self.means.shape[0]}, n_images={self.n_images}"

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density w.r.t. the Riemannian volume of SO(3) (total ``8 pi^2``); ``[..., 9] -> [...]``."""
        mu = self.means.to(x).reshape(-1, 3, 3)
        r = x.reshape(*x.shape[:-1], 1, 3, 3)
        theta = rotation_angle(mu.transpose(-1, -2) @ r)  # [..., K]
        log_comp = _log_wrapped_angle_density(theta, self.stds.to(x), self.n_images)
        return torch.logsumexp(self.log_weights.to(x) + log_comp, dim=-1)

    def sample(self, n, generator=None, *, dtype=None, device=None) -> torch.Tensor:
        """Exact samples ``M_k exp(hat(sigma_k z))``, shape ``[n, 9]``."""
        dtype, device = self._dtype_device(dtype, device)
        comp = self._components(self.log_weights, n, generator, device)
        f64 = dict(dtype=torch.float64, device=device)
        v = torch.randn(n, 3, generator=generator, **f64) * self.stds.to(**f64)[comp].unsqueeze(-1)
        r = self.means.to(**f64)[comp].reshape(n, 3, 3) @ rotation_exp(v)
        return r.reshape(n, 9).to(dtype)


# ---------------------------------------------------------------------------------------- SPD(n)
def _lognormal_logprob(w: torch.Tensor, sigma: torch.Tensor, n: int) -> torch.Tensor:
    """Log-density (Riemannian volume) at SPD ``w [..., n, n]`` of ``expm(S)``, ``S`` isotropic normal.

    ``sigma`` is the scale of ``S``.

    The formula of :class:`manifolds.SPD`'s base: ``-|s|^2 / (2 sigma^2) - (N/2) log(2 pi sigma^2) -
    sum_{i<j} log sinhc((s_i - s_j) / 2)`` with ``s`` the logarithms of the eigenvalues and ``N = n(n+1)/2``.
    """
    lam = torch.linalg.eigvalsh(0.5 * (w + w.transpose(-1, -2))).clamp_min(torch.finfo(w.dtype).tiny)
    s = torch.log(lam)
    var = sigma * sigma
    out = -0.5 * (s * s).sum(-1) / var - 0.25 * n * (n + 1) * torch.log(TWO_PI * var)
    i, j = torch.triu_indices(n, n, offset=1, device=w.device)
    if i.numel():
        out = out - log_sinhc(0.5 * (s[..., i] - s[..., j])).sum(-1)
    return out


class WrappedNormalSPD(SyntheticTarget):
    """Mixture of log-normals on SPD(n): component ``k`` is ``A_k expm(S) A_k^T`` with ``M_k = A_k A_k^T``.

    ``S`` is symmetric with density ``N(0, sigma_k^2)`` in orthonormal coordinates of the
    affine-invariant metric at the identity (diagonal ``N(0, sigma^2)``, off-diagonal
    ``N(0, sigma^2 / 2)``), exactly like :class:`manifolds.SPD`'s base, moved to ``M_k`` by the
    isometry ``P -> A_k P A_k^T`` (``A_k`` the Cholesky factor; the law of ``S`` is invariant
    under the rotation that separates ``A_k`` from ``M_k^1/2``). So the density at ``P`` is the
    base density formula, at scale ``sigma_k``, of ``A_k^-1 P A_k^-T``.

    Args:
        n: matrix size.
        means: SPD matrices ``[K, n, n]`` or ``[K, n*n]``.
        stds: scales ``sigma_k > 0``, shape ``[K]``.
        weights: mixture weights ``>= 0``, shape ``[K]``.
    """

    def __init__(self, n: int, means: ArrayLike, stds: ArrayLike, weights: ArrayLike):
        super().__init__()
        self.manifold = SPD(n)
        m = float64_tensor(means, "means")
        if m.dim() == 2 and m.shape[1] == n * n:
            m = m.reshape(-1, n, n)
        if m.dim() != 3 or m.shape[1:] != (n, n):
            raise ValueError(f"means must have shape [K, {n}, {n}] or [K, {n * n}], got {tuple(m.shape)}")
        ok, reason = self.manifold.check_point(m.reshape(-1, n * n))
        if not ok:
            raise ValueError(f"means must be symmetric positive-definite: {reason}")
        k = m.shape[0]
        m = 0.5 * (m + m.transpose(-1, -2))
        self.register_buffer("means", m.reshape(k, n * n))
        self.register_buffer("chol", torch.linalg.cholesky(m))
        self.register_buffer("stds", _positive(stds, k, "stds"))
        self.register_buffer("log_weights", log_weights(weights, k))

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"n={self.manifold.n}, components={self.means.shape[0]}"

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density w.r.t. the affine-invariant Riemannian volume; ``[..., n*n] -> [...]``."""
        n = self.manifold.n
        a = self.chol.to(x)  # [K, n, n]
        p = x.reshape(*x.shape[:-1], 1, n, n)
        left = torch.linalg.solve_triangular(a, p, upper=False)
        w = torch.linalg.solve_triangular(a, left.transpose(-1, -2), upper=False)  # A^-1 P A^-T
        log_comp = _lognormal_logprob(w, self.stds.to(x), n)
        return torch.logsumexp(self.log_weights.to(x) + log_comp, dim=-1)

    def sample(self, n, generator=None, *, dtype=None, device=None) -> torch.Tensor:
        """Exact samples ``A_k expm(S) A_k^T``, shape ``[n, size*size]`` (``size`` the matrices' size)."""
        dtype, device = self._dtype_device(dtype, device)
        size = self.manifold.n
        comp = self._components(self.log_weights, n, generator, device)
        f64 = dict(dtype=torch.float64, device=device)
        g = torch.randn(n, size, size, generator=generator, **f64)
        low = torch.tril(g, diagonal=-1) * math.sqrt(0.5)
        s = (low + low.transpose(-1, -2) + torch.diag_embed(g.diagonal(dim1=-2, dim2=-1)))
        s = s * self.stds.to(**f64)[comp].reshape(-1, 1, 1)
        lam, vec = torch.linalg.eigh(s)
        e = (vec * torch.exp(lam).unsqueeze(-2)) @ vec.transpose(-1, -2)
        a = self.chol.to(**f64)[comp]
        p = a @ e @ a.transpose(-1, -2)
        p = 0.5 * (p + p.transpose(-1, -2))
        return p.reshape(n, size * size).to(dtype)


# ---------------------------------------------------------------------------------------- hyperbolic
class WrappedNormalHyperbolic(SyntheticTarget):
    """Mixture of isotropic wrapped normals on hyperbolic space (Poincare ball or hyperboloid).

    Component ``k`` is ``exp_{m_k}(PT_{o -> m_k} v)`` with ``v ~ N(0, sigma_k^2 I_d)`` in
    orthonormal coordinates at the origin ``o`` (Nagano et al. 2019). Isotropy makes the density
    a function of the distance ``r`` to ``m_k`` alone: with curvature ``-c``,

        log p = -r^2 / (2 sigma^2) - (d/2) log(2 pi sigma^2) - (d - 1) log(sinh(sqrt(c) r) / (sqrt(c) r)).

    Args:
        manifold: a :class:`manifolds.PoincareBall` or :class:`manifolds.Hyperboloid` (its base is the
            wrapped normal at the origin; the target uses only its geometry).
        means: points of the manifold, ``[K, ambient_dim]``.
        stds: standard deviations ``> 0``, ``[K]``.
        weights: mixture weights ``>= 0``, ``[K]``.
    """

    def __init__(self, manifold: Union[PoincareBall, Hyperboloid], means: ArrayLike, stds: ArrayLike,
                 weights: ArrayLike):
        super().__init__()
        if not isinstance(manifold, (PoincareBall, Hyperboloid)):
            raise ValueError(f"manifold must be a PoincareBall or a Hyperboloid, got {manifold!r}")
        self.manifold = manifold
        m = float64_tensor(means, "means")
        if m.dim() != 2 or m.shape[1] != manifold.ambient_dim:
            raise ValueError(f"means must have shape [K, {manifold.ambient_dim}] on {manifold}, got {tuple(m.shape)}")
        manifold.assert_check_point(m)
        k = m.shape[0]
        self.register_buffer("means", manifold.projx(m))
        self.register_buffer("stds", _positive(stds, k, "stds"))
        self.register_buffer("log_weights", log_weights(weights, k))

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"{self.manifold}, components={self.means.shape[0]}"

    def _origin(self, **kw) -> torch.Tensor:
        o = torch.zeros(self.manifold.ambient_dim, **kw)
        if isinstance(self.manifold, Hyperboloid):
            o[0] = 1.0 / math.sqrt(self.manifold.c)
        return o

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density w.r.t. the Riemannian volume; ``[..., ambient_dim] -> [...]``."""
        m = self.manifold
        r = m.dist(x.unsqueeze(-2), self.means.to(x))  # [..., K]
        sd = self.stds.to(x)
        log_comp = (-0.5 * (r / sd) ** 2 - 0.5 * m.dim * torch.log(TWO_PI * sd * sd)
                    - (m.dim - 1) * log_sinhc(math.sqrt(m.c) * r))
        return torch.logsumexp(self.log_weights.to(x) + log_comp, dim=-1)

    def sample(self, n, generator=None, *, dtype=None, device=None) -> torch.Tensor:
        """Exact samples ``exp_m(PT_{o -> m} v)``, shape ``[n, ambient_dim]``."""
        dtype, device = self._dtype_device(dtype, device)
        m = self.manifold
        f64 = dict(dtype=torch.float64, device=device)
        comp = self._components(self.log_weights, n, generator, device)
        v = torch.randn(n, m.dim, generator=generator, **f64) * self.stds.to(**f64)[comp].unsqueeze(-1)
        o = self._origin(**f64).expand(n, -1)
        if isinstance(m, PoincareBall):
            u = 0.5 * v  # the metric at the origin is 4 times the Euclidean one: |v / 2|_o = |v|
        else:
            u = torch.cat([torch.zeros(n, 1, **f64), v], dim=-1)  # at (1/sqrt(c), 0): <u, u>_L = |v|^2
        mu = self.means.to(**f64)[comp]
        return m.expmap(mu, m.transp(o, mu, u)).to(dtype)


# ---------------------------------------------------------------------------------------- T^d
def torus_mixture(dim: int, components: int = 4, std: float = 0.6, seed: int = 0) -> WrappedNormalMixture:
    """Equal-weight isotropic wrapped normals on T^d with means drawn uniformly from a fixed seed.

    Args:
        dim: number of angles ``d``.
        components: number of components.
        std: standard deviation of every angle of every component.
        seed: seed of the means (a CPU generator, so they are the same on every machine).
    """
    gen = torch.Generator().manual_seed(seed)
    means = TWO_PI * torch.rand(components, dim, dtype=torch.float64, generator=gen)
    return WrappedNormalMixture(dim, means, stds=[std] * components, weights=[1.0] * components)


# ---------------------------------------------------------------------------------------- registry
def wrapped_normal_so3() -> WrappedNormalSO3:
    """Three wrapped normals on SO(3).

    Means: rotations by 0.5 rad about z, 2.0 rad about x and 2.8 rad about (1, 1, 1) (the last
    close to the cut locus of the identity); stds 0.3, 0.5, 0.4 rad; weights 0.4, 0.3, 0.3.
    """
    means = torch.stack([axis_angle_rotation([0, 0, 1], 0.5), axis_angle_rotation([1, 0, 0], 2.0),
                         axis_angle_rotation([1, 1, 1], 2.8)])
    return WrappedNormalSO3(means, stds=[0.3, 0.5, 0.4], weights=[0.4, 0.3, 0.3])


def wrapped_normal_spd2() -> WrappedNormalSPD:
    """Three log-normals on SPD(2).

    Means ``[[2, 0.5], [0.5, 1]]``, ``0.5 I`` and ``[[1, -0.6], [-0.6, 3]]``; scales 0.3, 0.4, 0.25;
    weights 0.4, 0.3, 0.3.
    """
    means = [[[2.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 0.5]], [[1.0, -0.6], [-0.6, 3.0]]]
    return WrappedNormalSPD(2, means, stds=[0.3, 0.4, 0.25], weights=[0.4, 0.3, 0.3])


def wrapped_normal_spd3() -> WrappedNormalSPD:
    """Two log-normals on SPD(3): means ``diag(2, 1, 0.5)`` and a correlated matrix; scales 0.3, 0.4; equal weights."""
    means = [[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]],
             [[1.0, 0.5, 0.2], [0.5, 1.5, -0.3], [0.2, -0.3, 0.8]]]
    return WrappedNormalSPD(3, means, stds=[0.3, 0.4], weights=[0.5, 0.5])


def _disk_means() -> torch.Tensor:
    """Four points of the Poincare disk at hyperbolic distances 1.0 to 1.6 from the origin."""
    radii = torch.tensor([1.0, 1.2, 1.6, 1.4], dtype=torch.float64)
    angles = torch.tensor([0.3, 2.0, 3.6, 5.0], dtype=torch.float64)
    r = torch.tanh(0.5 * radii)  # distance 2 artanh(|x|) from the origin
    return torch.stack([r * torch.cos(angles), r * torch.sin(angles)], dim=-1)


def wrapped_normal_poincare2() -> WrappedNormalHyperbolic:
    """Four wrapped normals on the Poincare disk (c = 1).

    Means at distances 1.0, 1.2, 1.6, 1.4 from the origin (angles 0.3, 2.0, 3.6, 5.0 rad), stds 0.3, 0.4, 0.5, 0.35,
    weights 0.3, 0.2, 0.2, 0.3.
    """
    return WrappedNormalHyperbolic(PoincareBall(2), _disk_means(), stds=[0.3, 0.4, 0.5, 0.35],
                                   weights=[0.3, 0.2, 0.2, 0.3])


def wrapped_normal_hyperboloid2() -> WrappedNormalHyperbolic:
    """The mixture of :func:`wrapped_normal_poincare2` on the hyperboloid (its image under the isometry)."""
    ball = PoincareBall(2)
    return WrappedNormalHyperbolic(Hyperboloid(2), ball.to_hyperboloid(_disk_means()), stds=[0.3, 0.4, 0.5, 0.35],
                                   weights=[0.3, 0.2, 0.2, 0.3])


TORUS_MIXTURE_DIMS = (2, 5, 10, 20, 50, 100)
"""Dimensions of the registered ``torus_mixture_t{d}`` targets (:func:`torus_mixture` with its defaults)."""

NEW_TARGETS: Dict[str, Callable[[], SyntheticTarget]] = {
    "wrapped_normal_so3": wrapped_normal_so3,
    "wrapped_normal_spd2": wrapped_normal_spd2,
    "wrapped_normal_spd3": wrapped_normal_spd3,
    "wrapped_normal_poincare2": wrapped_normal_poincare2,
    "wrapped_normal_hyperboloid2": wrapped_normal_hyperboloid2,
    **{f"torus_mixture_t{d}": (lambda d=d: torus_mixture(d)) for d in TORUS_MIXTURE_DIMS},
}
"""Targets on SO(3), SPD(n), hyperbolic space and T^d, merged into :data:`manifold_flows.datasets.SYNTHETIC`."""


__all__ = ["NEW_TARGETS", "TORUS_MIXTURE_DIMS", "WrappedNormalHyperbolic", "WrappedNormalSO3", "WrappedNormalSPD",
           "axis_angle_rotation", "matrix_to_quaternion", "quaternion_to_matrix", "torus_mixture"]
