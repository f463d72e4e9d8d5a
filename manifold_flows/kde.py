"""Kernel density paths: tractable probability paths from the base distribution to a smoothed data density.

PPD (:class:`manifold_flows.objectives.PPD`) needs a target path ``p_t`` whose log-density, time
derivative and Riemannian gradient can be evaluated anywhere. The path used here is

    p_t(x) = w nu(x) + (1 - w) (1/N) sum_i k(x; c_i, kappa(t)),      kappa(t) = t * kappa_1 ** t,

with ``nu`` the base density, ``c_i`` the training points, ``w`` a small uniform weight and
``k(.; c, kappa)`` a kernel of concentration ``kappa`` centred at ``c``:

* sphere S^d (d = 1, 2, 3): von Mises-Fisher, ``k = C_d(kappa) exp(kappa <x, c>)``;
* flat torus T^d: a product of von Mises kernels, ``prod_j exp(kappa cos(x_j - c_j)) / (2 pi I_0(kappa))``;
* Euclidean R^d (base N(0, I)): ``N(x; a c, (1 - a^2) I)`` with ``a^2 = kappa / (1 + kappa)``;
* SO(3): an antipodally symmetric von Mises-Fisher kernel on unit quaternions (below);
* products: the product of the factors' kernels with the same ``kappa``.

The SO(3) kernel. A rotation is a pair of unit quaternions ``+-q``; with the metric
``tr(A^T B) / 2`` the rotation angle of ``R_c^T R`` is ``theta = 2 arccos|<q, q_c>|``, so SO(3) is the
unit sphere S^3 scaled by 2 (volume ``8 * 2 pi^2``) with antipodes identified (``8 pi^2``). A
density ``f`` on the unit S^3 w.r.t. its surface measure gives the density ``(f(q) + f(-q)) / 8``
on SO(3) (a fundamental domain of S^3 has volume ``2 pi^2 / 2`` and is stretched by ``2^3``). With
``f`` the vMF density ``C_4(kappa) exp(kappa <q, q_c>)``, ``C_4 = kappa / (4 pi^2 I_1(kappa))``,

    k(R; R_c, kappa) = C_4(kappa) cosh(kappa c) / 4,     c = |<q, q_c>| = cos(theta / 2),

which is ``1 / (8 pi^2)`` (uniform) at ``kappa = 0`` and samples exactly as a vMF draw on S^3
around either quaternion of ``R_c``. ``c`` comes from the Frobenius distance without quaternions:
``|R - R_c|_F^2 = 2 (3 - tr R_c^T R) = 8 (1 - c^2)``, and ``1 - c = (1 - c^2) / (1 + c)`` keeps
small angles precise.

Why this path: every kernel family equals the base distribution at ``kappa = 0`` *exactly* (vMF
and von Mises are uniform, the Gaussian is N(0, I)), so ``p_0 = nu`` for any ``w`` and any
data; the normalisers are closed-form and differentiable in ``kappa``, so ``d/dt log p_t`` and
``grad log p_t`` come from autograd without truncated series (a wrapped normal would need a
number of images that grows as the bandwidth widens, and never reaches the uniform density);
and the schedule ``kappa(t) = t kappa_1^t`` is linear near ``t = 0`` (where ``kappa`` is small and
the density is nearly uniform) and geometric later, shrinking the bandwidth ``~ kappa^(-1/2)``
at a constant rate in log-scale, as in variance-exploding diffusion paths. At ``t = 1`` the
path is a kernel density estimate with concentration ``kappa_1`` mixed with ``w`` of the base;
:meth:`KernelDensityPath.fit` picks ``kappa_1`` and ``w`` by validation likelihood.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from manifolds import SO3, Euclidean, FlatTorus, Manifold, Sphere

from .datasets import matrix_to_quaternion, quaternion_to_matrix, sample_vmf

KAPPA_GRID = tuple(10.0 ** (k / 4) for k in range(0, 17))  # 1 ... 1e4
"""Concentrations tried by :meth:`KernelDensityPath.fit` (a bandwidth of about 1 down to 0.01 radians)."""
UNIFORM_GRID = (0.001, 0.01, 0.05, 0.2)
"""Uniform weights tried by :meth:`KernelDensityPath.fit`."""
_SMALL = 1e-3  # below this concentration the normalisers use their Taylor expansions


def _log_vmf_offset(d: int, kappa: torch.Tensor) -> torch.Tensor:
    """``log C_d(kappa) + kappa`` for the von Mises-Fisher density ``C_d exp(kappa <x, c>)`` on S^d.

    Written with exponentially scaled Bessel functions so that it is finite for large ``kappa``,
    and with its Taylor expansion for ``kappa < 1e-3`` so that ``kappa = 0`` (the uniform
    density) has a finite value and gradient.
    """
    small = kappa < _SMALL
    k = torch.where(small, torch.full_like(kappa, _SMALL), kappa)  # safe branch for the exact formula
    if d == 2:
        # C = kappa / (4 pi sinh kappa); log C + kappa = log(kappa / (1 - e^(-2 kappa))) - log(2 pi)
        exact = torch.log(k / -torch.expm1(-2.0 * k)) - math.log(2 * math.pi)
        series = -math.log(4 * math.pi) + kappa - kappa**2 / 6
    elif d == 1:
        # C = 1 / (2 pi I_0(kappa)); i0e = e^(-kappa) I_0
        exact = -math.log(2 * math.pi) - torch.log(torch.special.i0e(k))
        series = -math.log(2 * math.pi) + kappa - kappa**2 / 4
    elif d == 3:
        # C = kappa / ((2 pi)^2 I_1(kappa)); I_1(kappa) / kappa = (1 + kappa^2 / 8 + ...) / 2
        exact = torch.log(k / torch.special.i1e(k)) - 2 * math.log(2 * math.pi)
        series = math.log(2.0) - 2 * math.log(2 * math.pi) + kappa - kappa**2 / 8
    else:
        raise NotImplementedError(f"von Mises-Fisher kernels are implemented on S^1, S^2 and S^3, not S^{d}")
    return torch.where(small, series, exact)


def kernel_support_problem(manifold: Manifold) -> Optional[str]:
    """Why kernel density paths cannot be built on ``manifold``, or None when they can."""
    for m in manifold.factors:
        if isinstance(m, Sphere):
            if m.dim not in (1, 2, 3):
                return f"kernel density paths support S^1, S^2 and S^3, not S^{m.dim}"
        elif not isinstance(m, (FlatTorus, Euclidean, SO3)):
            reason = ("its base distribution is not uniform, and no kernel family with a closed-form normaliser "
                      "reduces to that base at zero concentration" if not m.compact
                      else "no kernel family is implemented")
            return ("PPD's target path needs kernels that equal the base distribution at zero concentration, with "
                    f"exact log-densities and samplers; {m} has none ({reason}). Kernel density paths support spheres "
                    "S^1-S^3, flat tori, SO(3), Euclidean space and their products")
    return None


def _check_kernel_support(manifold: Manifold) -> None:
    problem = kernel_support_problem(manifold)
    if problem is not None:
        raise NotImplementedError(problem)


def _log_so3_kernel(sq: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """``log k`` of the SO(3) kernel (module notes).

    From squared Frobenius distances ``sq [B, N]`` and concentrations ``kappa [B, 1]``.
    """
    c2 = (1.0 - sq / 8.0).clamp(0.0, 1.0)  # cos^2(theta / 2)
    c = torch.sqrt(c2.clamp_min(torch.finfo(sq.dtype).tiny))  # zero gradient where c = 0: log cosh is even in c
    one_minus_c = (sq / 8.0).clamp(0.0, 1.0) / (1.0 + c)
    # log k = log C_4 - log 4 + log cosh(kappa c), and log C_4 = offset - kappa with offset = _log_vmf_offset(3, kappa);
    # log cosh(kappa c) - kappa = -kappa (1 - c) + log1p(exp(-2 kappa c)) - log 2 has no overflow
    log_cosh = -kappa * one_minus_c + torch.log1p(torch.exp(-2.0 * kappa * c)) - math.log(2.0)
    return log_cosh + _log_vmf_offset(3, kappa) - math.log(4.0)


MATMUL_ANGLES = 8
"""Tori with more angles than this sum ``sin^2`` of half the angle differences through matrix products (see
:func:`_torus_half_chord`)."""


def _torus_half_chord(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``sum_j sin^2((x_j - c_j) / 2)`` for all pairs: ``x [B, d]``, ``c [N, d]`` -> ``[B, N]``.

    Up to :data:`MATMUL_ANGLES` angles it is summed over a ``[B, N, d]`` tensor, exact for close
    pairs. Above, the identity ``sum_j sin^2(delta_j / 2) = (d - cos x . cos c - sin x . sin c) / 2``
    turns it into two matrix products: no ``[B, N, d]`` intermediate (512 x 8000 x 100 floats would
    be 1.6 GB), at the price of an absolute error of about ``d`` times the dtype's eps, which the
    concentrations that high-dimensional kernel densities pick (small: wide kernels) do not magnify.
    """
    if x.shape[-1] <= MATMUL_ANGLES:
        return torch.sin(0.5 * (x.unsqueeze(-2) - c)).pow(2).sum(-1)
    dot = torch.cos(x) @ torch.cos(c).T + torch.sin(x) @ torch.sin(c).T
    return (0.5 * (x.shape[-1] - dot)).clamp_min(0.0)


def kernel_log_matrix(manifold: Manifold, x: torch.Tensor, centres: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """``log k(x_b; c_n, kappa_b)`` for all pairs: ``x [B, D]``, ``centres [N, D]``, ``kappa [B]`` -> ``[B, N]``."""
    _check_kernel_support(manifold)
    out = x.new_zeros(x.shape[0], centres.shape[0])
    sizes = [m.ambient_dim for m in manifold.factors]
    kap = kappa.unsqueeze(-1)
    for m, xf, cf in zip(manifold.factors, torch.split(x, sizes, -1), torch.split(centres, sizes, -1)):
        if isinstance(m, Sphere):
            # kappa (<x, c> - 1) = -kappa |x - c|^2 / 2 on the sphere; the squared distance keeps precision
            sq = torch.cdist(xf, cf).pow(2)
            out = out - 0.5 * kap * sq + _log_vmf_offset(m.dim, kappa).unsqueeze(-1)
        elif isinstance(m, SO3):
            out = out + _log_so3_kernel(torch.cdist(xf, cf).pow(2), kap)
        elif isinstance(m, FlatTorus):
            # sum_j kappa (cos(x_j - c_j) - 1) = -2 kappa sum_j sin^2((x_j - c_j) / 2)
            # von Mises = vMF on S^1
            out = out - 2.0 * kap * _torus_half_chord(xf, cf) + m.dim * _log_vmf_offset(1, kappa).unsqueeze(-1)
        else:  # Euclidean: N(x; a c, (1 - a^2) I) with a^2 = kappa / (1 + kappa), 1 - a^2 = 1 / (1 + kappa)
            a = torch.sqrt(kap / (1.0 + kap))
            sq = (xf.unsqueeze(-2) - a.unsqueeze(-1) * cf).pow(2).sum(-1)
            out = out - 0.5 * (1.0 + kap) * sq + 0.5 * m.dim * (torch.log1p(kap) - math.log(2 * math.pi))
    return out


def kernel_sample(manifold: Manifold, centres: torch.Tensor, kappa: torch.Tensor,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One draw from ``k(.; c_b, kappa_b)`` per row: ``centres [B, D]``, ``kappa [B]`` -> ``[B, D]``."""
    _check_kernel_support(manifold)
    sizes = [m.ambient_dim for m in manifold.factors]
    parts = []
    for m, cf in zip(manifold.factors, torch.split(centres, sizes, -1)):
        if isinstance(m, Sphere):
            parts.append(sample_vmf(cf, kappa, generator).to(centres.dtype))
        elif isinstance(m, SO3):
            # a vMF draw on S^3 around either quaternion of the centre (module notes)
            q = sample_vmf(matrix_to_quaternion(cf.reshape(-1, 3, 3).to(torch.float64)), kappa, generator)
            parts.append(quaternion_to_matrix(q).reshape(-1, 9).to(centres.dtype))
        elif isinstance(m, FlatTorus):
            # each angle: a von Mises draw = a vMF draw on the circle around (cos c, sin c)
            b, d = cf.shape
            mu = torch.stack([torch.cos(cf), torch.sin(cf)], -1).reshape(b * d, 2)
            z = sample_vmf(mu, kappa.repeat_interleave(d), generator)
            parts.append(torch.atan2(z[:, 1], z[:, 0]).reshape(b, d).to(centres.dtype))
        else:
            k = kappa.unsqueeze(-1)
            noise = torch.randn(cf.shape, generator=generator, dtype=cf.dtype, device=cf.device)
            parts.append(torch.sqrt(k / (1 + k)) * cf + noise / torch.sqrt(1 + k))
    return manifold.projx(torch.cat(parts, -1) if len(parts) > 1 else parts[0])


LOG_FLOOR = 60.0
"""Terms more than ``e^-60`` below the largest of a log-sum-exp are floored there (see :func:`_logsumexp_floored`)."""


def _logsumexp_floored(a: torch.Tensor) -> torch.Tensor:
    """``logsumexp(a, -1)`` with every term floored at ``max - LOG_FLOOR``.

    Far kernels contribute ``exp(-hundreds)``: subnormal weights in the softmax of the gradient,
    which make the products that follow 10-20x slower on x86 CPUs. Floored terms add at most
    ``N e^-60`` relative to the sum and get an exactly zero gradient.
    """
    top = a.detach().amax(-1, keepdim=True)
    return torch.logsumexp(torch.maximum(a, top - LOG_FLOOR), dim=-1)


class KernelDensityPath(nn.Module):
    """The path ``p_t = w nu + (1 - w) KDE_{kappa(t)}`` from the base (t = 0) to a kernel density estimate (t = 1).

    See the module notes for the kernels and the schedule ``kappa(t) = t kappa_1^t``.

    Args:
        manifold: Sphere (d <= 3), FlatTorus, Euclidean, SO3 or a product of them.
        centres: the kernel centres (training points), ``[N, D]`` on the manifold.
        kappa1: concentration at ``t = 1`` (> 0).
        uniform: weight ``w`` of the base distribution, in ``[0, 1)``.
    """

    def __init__(self, manifold: Manifold, centres: torch.Tensor, kappa1: float = 100.0, uniform: float = 0.01):
        super().__init__()
        _check_kernel_support(manifold)
        if centres.dim() != 2 or centres.shape[-1] != manifold.ambient_dim or centres.shape[0] == 0:
            raise ValueError(f"centres must have shape [N >= 1, {manifold.ambient_dim}], got {tuple(centres.shape)}")
        if not kappa1 > 0:
            raise ValueError(f"kappa1 must be positive, got {kappa1}")
        if not 0.0 <= uniform < 1.0:
            raise ValueError(f"uniform weight must be in [0, 1), got {uniform}")
        manifold.assert_check_point(centres)
        self.manifold = manifold
        self.register_buffer("centres", centres.detach().clone())
        self.kappa1 = float(kappa1)
        self.uniform = float(uniform)

    def extra_repr(self) -> str:
        """Number of centres, ``kappa1`` and the uniform weight, for ``repr``."""
        return f"N={self.centres.shape[0]}, kappa1={self.kappa1:.4g}, uniform={self.uniform:g}"

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        """Concentration ``kappa(t) = t kappa_1^t`` (0 at t = 0, kappa_1 at t = 1)."""
        return t * torch.exp(t * math.log(self.kappa1))

    def log_prob(self, x: torch.Tensor, t: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """``log p_t(x)`` for ``x [B, D]`` and ``t [B]`` (or a scalar); differentiable in both."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        kappa = self.kappa(t)
        centres = self.centres.to(x.dtype)
        n = centres.shape[0]
        # logsumexp over the centres, in chunks to bound the [B, N] matrices
        parts = [_logsumexp_floored(kernel_log_matrix(self.manifold, x, c, kappa)) for c in torch.split(centres, chunk)]
        kde = _logsumexp_floored(torch.stack(parts, -1)) - math.log(n) if len(parts) > 1 else parts[0] - math.log(n)
        if self.uniform == 0.0:
            return kde
        return torch.logaddexp(kde + math.log1p(-self.uniform), self.manifold.base_logprob(x) + math.log(self.uniform))

    def sample(self, t: torch.Tensor, generator: Optional[torch.Generator] = None,
               centres: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One draw from ``p_{t_b}`` per entry of ``t [B]``.

        ``centres [B, D]`` picks the kernel of each draw (for instance a minibatch of training
        points, which is a uniform choice among the centres); by default they are drawn here.
        """
        b = t.shape[0]
        dev = self.centres.device
        if centres is None:
            centres = self.centres[torch.randint(0, self.centres.shape[0], (b,), generator=generator, device=dev)]
        x = kernel_sample(self.manifold, centres.to(t.dtype), self.kappa(t), generator)
        if self.uniform > 0:
            u = torch.rand(b, generator=generator, dtype=t.dtype, device=t.device) < self.uniform
            base = self.manifold.random_base(b, dtype=t.dtype, device=t.device, generator=generator)
            x = torch.where(u.unsqueeze(-1), base, x)
        return x

    @classmethod
    def fit(cls, manifold: Manifold, centres: torch.Tensor, val: torch.Tensor,
            kappas: Sequence[float] = KAPPA_GRID, uniforms: Sequence[float] = UNIFORM_GRID,
            max_val: int = 2000) -> "KernelDensityPath":
        """The path whose ``t = 1`` end has the highest likelihood on ``val`` over a grid of ``kappa_1`` and ``w``.

        The scores of every candidate are kept in ``path.scores`` (mean validation log-likelihood).
        """
        if val.dim() != 2 or val.shape[0] == 0:
            raise ValueError(f"validation points must have shape [M >= 1, D], got {tuple(val.shape)}")
        val = val[:max_val].to(torch.float64)
        c64 = centres.to(torch.float64)
        one = torch.ones(val.shape[0], dtype=torch.float64, device=val.device)
        scores: Dict[str, float] = {}
        best, best_score = None, -math.inf
        log_base = manifold.base_logprob(val)
        with torch.no_grad():
            for k in kappas:
                kde = cls(manifold, c64, kappa1=k, uniform=0.0).log_prob(val, one)
                for w in uniforms:
                    lp = torch.logaddexp(kde + math.log1p(-w), log_base + math.log(w)) if w > 0 else kde
                    score = float(lp.mean())
                    scores[f"kappa1={k:.4g},uniform={w:g}"] = score
                    if score > best_score:
                        best, best_score = (k, w), score
        path = cls(manifold, centres, kappa1=best[0], uniform=best[1])
        path.scores = scores
        path.val_log_likelihood = best_score
        return path
