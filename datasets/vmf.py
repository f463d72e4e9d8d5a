"""Von Mises-Fisher distributions on spheres of any dimension: normaliser, exact sampler, mixtures."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import scipy.special
import torch

from manifolds import Sphere

from .target_base import TWO_PI, ArrayLike, SyntheticTarget, float64_tensor, log_weights


def _log_sphere_volume(d: int) -> float:
    """``log Vol(S^d) = log(2 pi^((d+1)/2) / Gamma((d+1)/2))``."""
    k = (d + 1) / 2
    return math.log(2.0) + k * math.log(math.pi) - math.lgamma(k)


def vmf_log_normalizer(dim: int, kappa: ArrayLike) -> torch.Tensor:
    """Log of the von Mises-Fisher normaliser on S^dim, w.r.t. the Riemannian (surface) measure.

    With ``p = dim + 1`` and ``v = p/2 - 1`` the density is ``C_p(kappa) exp(kappa <mu, x>)``,
    ``C_p(kappa) = kappa^v / ((2 pi)^(p/2) I_v(kappa))``. ``log I_v(kappa)`` is computed as
    ``log(ive(v, kappa)) + kappa`` with scipy's exponentially scaled Bessel function, which is
    finite for any finite kappa (``kappa = 1e5`` included). Where that underflows (very high
    dimensions, where kappa is small next to v) or for ``kappa < 1e-3``, the power series of
    ``I_v`` is summed in log space instead, up to well past its largest term; ``kappa = 0``
    gives the uniform value ``-log Vol(S^dim)``.

    Args:
        dim: intrinsic dimension ``d >= 1`` of the sphere.
        kappa: concentrations ``>= 0``, any shape ``[...]``.

    Returns:
        ``log C_p(kappa)``, float64 CPU tensor of shape ``[...]``.
    """
    k = float64_tensor(kappa, "kappa").numpy()
    if (k < 0).any():
        raise ValueError(f"kappa must be >= 0, got {k}")
    v = (dim + 1) / 2 - 1
    log_uniform = -_log_sphere_volume(dim)
    out = np.full(k.shape, log_uniform, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = scipy.special.ive(v, k)
        log_iv = np.log(scaled) + k
        direct = v * np.log(k) - (v + 1) * math.log(TWO_PI) - log_iv
    use_direct = (k >= 1e-3) & (scaled > 0) & np.isfinite(direct)
    out[use_direct] = direct[use_direct]
    series = (k > 0) & ~use_direct
    if series.any():
        # I_v(k) = (k/2)^v / Gamma(v+1) * S,  S = sum_m (k^2/4)^m Gamma(v+1) / (m! Gamma(m+v+1)),
        # and log C = -log Vol(S^d) - log S (the powers of k cancel analytically).
        ks = k[series][:, None]
        # the terms peak near m* with m*(m* + v) = k^2/4 and fall off within a few sqrt(m*) of it
        peak = 0.5 * (np.sqrt(v * v + ks.max() ** 2) - v)
        m = np.arange(int(peak + 20 * np.sqrt(peak + 1) + 40), dtype=np.float64)[None, :]
        log_terms = (
            2 * m * np.log(ks / 2)
            + math.lgamma(v + 1)
            - scipy.special.gammaln(m + 1)
            - scipy.special.gammaln(m + v + 1)
        )
        out[series] = log_uniform - scipy.special.logsumexp(log_terms, axis=1)
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------------------- von Mises-Fisher
def _sample_one_minus_w(kap: torch.Tensor, p: int, generator, f64) -> torch.Tensor:
    """``1 - <mu, x>`` for vMF samples with concentrations ``kap`` (shape ``[n]``) on S^(p-1).

    ``1 - w`` rather than ``w`` keeps full precision for large kappa, where ``w`` is
    within ``1/kappa`` of 1.
    """
    n = kap.shape[0]
    if p == 3:
        u = torch.rand(n, generator=generator, **f64)
        positive = kap > 0
        k_safe = torch.where(positive, kap, torch.ones_like(kap))
        # 1 - w = -log(u + (1 - u) e^(-2k)) / k = -log1p((1 - u) expm1(-2k)) / k
        exact = -torch.log1p((1.0 - u) * torch.expm1(-2.0 * k_safe)) / k_safe
        return torch.where(positive, exact, 2.0 * (1.0 - u)).clamp(0.0, 2.0)
    # Wood (1994): envelope parameters b, x0 = (1 - b) / (1 + b), c = kappa x0 + (p-1) log(1 - x0^2)
    m1 = p - 1.0
    b = m1 / (2.0 * kap + torch.sqrt(4.0 * kap * kap + m1 * m1))
    x0 = (1.0 - b) / (1.0 + b)
    one_minus_x0 = 2.0 * b / (1.0 + b)
    c = kap * x0 + m1 * torch.log(4.0 * b / (1.0 + b) ** 2)
    out = torch.empty(n, **f64)
    todo = torch.arange(n, device=kap.device)
    while todo.numel() > 0:
        m = todo.numel()
        bb, kk, xx, omx, cc = b[todo], kap[todo], x0[todo], one_minus_x0[todo], c[todo]
        # Z ~ Beta((p-1)/2, (p-1)/2) as (1 + t) / 2, t the first coordinate of a uniform point on S^(p-1)
        g = torch.randn(m, p, generator=generator, **f64)
        z = 0.5 * (1.0 + g[:, 0] / torch.linalg.vector_norm(g, dim=-1).clamp_min(1e-300))
        u = torch.rand(m, generator=generator, **f64)
        omw = 2.0 * bb * z / (1.0 - (1.0 - bb) * z)  # 1 - W
        w = 1.0 - omw
        accept = kk * w + m1 * torch.log(omx + xx * omw) - cc >= torch.log(u)
        out[todo[accept]] = omw[accept]
        todo = todo[~accept]
    return out.clamp(0.0, 2.0)


def sample_vmf(mu: torch.Tensor, kappa: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One von Mises-Fisher sample per row: mean directions ``mu [n, p]`` (unit), concentrations ``kappa [n]``.

    ``1 - <mu, x>`` is drawn exactly (inverse CDF on S^2, Wood's rejection algorithm otherwise),
    then a uniform direction orthogonal to ``mu``. Works in float64 and returns ``[n, p]`` in
    float64 on ``mu``'s device; ``kappa = 0`` gives the uniform distribution.
    """
    f64 = dict(dtype=torch.float64, device=mu.device)
    mu = mu.to(**f64)
    n, p = mu.shape
    one_minus_w = _sample_one_minus_w(kappa.to(**f64), p, generator, f64)
    g = torch.randn(n, p, generator=generator, **f64)
    tangent = g - (g * mu).sum(-1, keepdim=True) * mu
    tangent = tangent / torch.linalg.vector_norm(tangent, dim=-1, keepdim=True).clamp_min(1e-300)
    radial = torch.sqrt((one_minus_w * (2.0 - one_minus_w)).clamp_min(0.0))  # sqrt(1 - w^2)
    return (1.0 - one_minus_w).unsqueeze(-1) * mu + radial.unsqueeze(-1) * tangent


class VonMisesFisherMixture(SyntheticTarget):
    """Mixture of von Mises-Fisher distributions on the sphere S^d (any d >= 1).

    ``p(x) = sum_k w_k C_p(kappa_k) exp(kappa_k <mu_k, x>)`` with ``p = d + 1`` and
    :func:`vmf_log_normalizer`; a component with ``kappa = 0`` is the uniform distribution.
    Sampling draws the component, then ``w = <mu, x>`` exactly: on S^2 by the inverse CDF
    ``w = 1 + log(u + (1 - u) e^(-2 kappa)) / kappa``, otherwise by Wood's (1994) rejection
    algorithm, and finally a uniform direction orthogonal to ``mu``. The sampler works in float64
    internally and casts at the end.

    Args:
        dim: intrinsic dimension ``d >= 1`` of the sphere.
        means: mean directions, shape ``[K, d+1]`` (normalised to unit length here).
        kappas: concentrations ``>= 0``, shape ``[K]``.
        weights: mixture weights ``>= 0``, shape ``[K]`` (normalised here).
    """

    def __init__(self, dim: int, means: ArrayLike, kappas: ArrayLike, weights: ArrayLike):
        super().__init__()
        self.manifold = Sphere(dim)
        p = dim + 1
        mu = float64_tensor(means, "means")
        if mu.dim() != 2 or mu.shape[1] != p:
            raise ValueError(f"means must have shape [K, {p}] on S^{dim}, got {tuple(mu.shape)}")
        lengths = torch.linalg.vector_norm(mu, dim=1, keepdim=True)
        if bool((lengths == 0).any()):
            raise ValueError("means must be non-zero vectors")
        k = mu.shape[0]
        kap = float64_tensor(kappas, "kappas")
        if kap.shape != (k,) or bool((kap < 0).any()):
            raise ValueError(f"kappas must be {k} non-negative numbers, got {kap.tolist()}")
        self.register_buffer("means", mu / lengths)
        self.register_buffer("kappas", kap)
        self.register_buffer("log_weights", log_weights(weights, k))
        self.register_buffer("log_normalizers", vmf_log_normalizer(dim, kap))

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"dim={self.manifold.dim}, components={self.means.shape[0]}"

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density w.r.t. the surface measure of S^d.

        Evaluated as ``log C + kappa - kappa |x - mu|^2 / 2`` (equal to ``log C + kappa <mu, x>``
        on the sphere), which keeps both terms of moderate size for large kappa.

        Args:
            x: points on S^d, shape ``[..., d+1]``.

        Returns:
            Log-density, shape ``[...]``, dtype and device of ``x``.
        """
        mu = self.means.to(x)
        kap = self.kappas.to(x)
        offset = (self.log_normalizers + self.kappas + self.log_weights).to(x)
        sq = (x.unsqueeze(-2) - mu).pow(2).sum(-1)  # [..., K]
        return torch.logsumexp(offset - 0.5 * kap * sq, dim=-1)

    def sample(self, n, generator=None, *, dtype=None, device=None) -> torch.Tensor:
        """Exact samples on S^d, shape ``[n, d+1]`` (see :meth:`SyntheticTarget.sample`)."""
        dtype, device = self._dtype_device(dtype, device)
        f64 = dict(dtype=torch.float64, device=device)
        comp = self._components(self.log_weights, n, generator, device)
        mu = self.means.to(**f64)[comp]
        kap = self.kappas.to(**f64)[comp]
        return self.manifold.projx(sample_vmf(mu, kap, generator)).to(dtype)
