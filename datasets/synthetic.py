"""Synthetic targets with exact log-densities and exact samplers on spheres and flat tori."""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.special
import torch

from manifolds import FlatTorus, Sphere
from manifolds.torus import wrap_angle

TWO_PI = 2.0 * math.pi
ArrayLike = Union[torch.Tensor, Sequence[float], Sequence[Sequence[float]]]


# ---------------------------------------------------------------------------------------- helpers
def _float64(value: ArrayLike, name: str) -> torch.Tensor:
    """``value`` as a float64 CPU tensor whose entries are all finite."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t}")
    return t


def _log_weights(weights: ArrayLike, k: int) -> torch.Tensor:
    """Log of the normalised mixture weights, shape ``[K]``."""
    w = _float64(weights, "weights")
    if w.shape != (k,):
        raise ValueError(f"weights must have shape [{k}], got {tuple(w.shape)}")
    if bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {w.tolist()}")
    return torch.log(w / w.sum())


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
    k = _float64(kappa, "kappa").numpy()
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


# ---------------------------------------------------------------------------------------- base class
class SyntheticTarget(torch.nn.Module):
    """A probability density on a manifold with an exact log-density and an exact sampler.

    Parameters are float64 buffers, so ``.to(device)`` moves them and ``.float()`` changes the
    default dtype of :meth:`sample`. :meth:`log_prob` follows the dtype and device of its input.

    Attributes:
        manifold: the :class:`manifolds.Sphere` or :class:`manifolds.FlatTorus` the density lives on.
    """

    manifold: Union[Sphere, FlatTorus]

    def _dtype_device(self, dtype: Optional[torch.dtype], device: Optional[torch.device]):
        """Defaults for :meth:`sample`: the dtype and device of the target's buffers."""
        ref = next(self.buffers())
        return (ref.dtype if dtype is None else dtype), (ref.device if device is None else torch.device(device))

    def sample(
        self,
        n: int,
        generator: Optional[torch.Generator] = None,
        *,
        dtype: Optional[torch.dtype] = None,
        device: Optional[torch.device] = None,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """Exact samples, shape ``[n, ambient_dim]``.

        Args:
            n: number of samples.
            generator: random generator on ``device`` (None: torch's global one).
            dtype: dtype of the samples (default: the dtype of the target's buffers).
            device: device of the samples (default: the device of the target's buffers).
        """
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Exact log-density w.r.t. the Riemannian volume of :attr:`manifold`; ``[..., D] -> [...]``."""
        raise NotImplementedError

    def entropy(self, n: int = 200_000, generator: Optional[torch.Generator] = None) -> Tuple[float, float]:
        """Monte Carlo estimate of the differential entropy ``-E[log p(X)]``, ``X ~ p``.

        Args:
            n: number of samples.
            generator: random generator on the target's device.

        Returns:
            ``(value, stderr)``: the estimate in nats and its standard error.
        """
        if n < 2:
            raise ValueError(f"entropy needs n >= 2 samples, got {n}")
        lp = self.log_prob(self.sample(n, generator=generator)).to(torch.float64)
        return float(-lp.mean()), float(lp.std() / math.sqrt(n))

    def _components(self, log_weights: torch.Tensor, n: int, generator, device) -> torch.Tensor:
        """Mixture component of each of ``n`` samples, int64 shape ``[n]``."""
        if n == 0:  # torch.multinomial refuses to draw zero samples
            return torch.zeros(0, dtype=torch.long, device=device)
        return torch.multinomial(log_weights.exp().to(device), n, replacement=True, generator=generator)


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
        mu = _float64(means, "means")
        if mu.dim() != 2 or mu.shape[1] != p:
            raise ValueError(f"means must have shape [K, {p}] on S^{dim}, got {tuple(mu.shape)}")
        lengths = torch.linalg.vector_norm(mu, dim=1, keepdim=True)
        if bool((lengths == 0).any()):
            raise ValueError("means must be non-zero vectors")
        k = mu.shape[0]
        kap = _float64(kappas, "kappas")
        if kap.shape != (k,) or bool((kap < 0).any()):
            raise ValueError(f"kappas must be {k} non-negative numbers, got {kap.tolist()}")
        self.register_buffer("means", mu / lengths)
        self.register_buffer("kappas", kap)
        self.register_buffer("log_weights", _log_weights(weights, k))
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

# ---------------------------------------------------------------------------------------- wrapped normal
class WrappedNormalMixture(SyntheticTarget):
    """Mixture of wrapped normal distributions on the flat torus ``[0, 2 pi)^d``.

    Each component is ``N(mean, diag(std^2))`` on R^d pushed through ``x -> x mod 2 pi``; its
    density is the sum over the images ``x + 2 pi k``, ``k in Z^d``. The covariance is diagonal,
    so the sum over ``k in {-n..n}^d`` factorises into ``d`` one-dimensional sums of ``2n + 1``
    terms each, evaluated in log space about ``wrap(x - mean)`` in ``[-pi, pi]``. A dropped image
    is at least ``(2n + 1) pi`` away while the kept central one is within ``pi``, so the relative
    truncation error of a factor is below ``2 exp(-((2n+1)^2 - 1) pi^2 / (2 std^2))``;
    ``n`` is the smallest integer (and at least 3) making this below 1e-17 for the largest std:
    ``n = 3`` up to std 2.4, ``n = 7`` at std 5.

    Args:
        dim: number of angles ``d >= 1``.
        means: shape ``[K, d]`` (reduced mod 2 pi here).
        stds: standard deviations ``> 0``, shape ``[K]`` (isotropic) or ``[K, d]``.
        weights: mixture weights ``>= 0``, shape ``[K]`` (normalised here).

    Attributes:
        n_images: the truncation ``n`` described above.
    """

    def __init__(self, dim: int, means: ArrayLike, stds: ArrayLike, weights: ArrayLike):
        super().__init__()
        self.manifold = FlatTorus(dim)
        mu = _float64(means, "means")
        if mu.dim() != 2 or mu.shape[1] != dim:
            raise ValueError(f"means must have shape [K, {dim}] on T^{dim}, got {tuple(mu.shape)}")
        k = mu.shape[0]
        sd = _float64(stds, "stds")
        if sd.shape == (k,):
            sd = sd.unsqueeze(1).expand(k, dim)
        if sd.shape != (k, dim) or bool((sd <= 0).any()):
            raise ValueError(f"stds must be positive with shape [{k}] or [{k}, {dim}], got {tuple(sd.shape)}")
        self.register_buffer("means", self.manifold.projx(mu))
        self.register_buffer("stds", sd.clone())
        self.register_buffer("log_weights", _log_weights(weights, k))
        self.n_images = self.images_needed(float(sd.max()))

    @staticmethod
    def images_needed(std: float, tol: float = 1e-17) -> int:
        """Smallest ``n >= 3`` with ``2 exp(-((2n+1)^2 - 1) pi^2 / (2 std^2)) < tol``.

        Args:
            std: the largest standard deviation of the mixture.
            tol: relative truncation error allowed.

        Returns:
            The number of images ``n`` kept on each side.
        """
        need = 2.0 * std * std * math.log(2.0 / tol) / math.pi**2 + 1.0  # bound on (2n+1)^2
        return max(3, math.ceil((math.sqrt(need) - 1.0) / 2.0))

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"dim={self.manifold.dim}, components={self.means.shape[0]}, n_images={self.n_images}"

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density w.r.t. the Lebesgue (Riemannian) measure on ``[0, 2 pi)^d``.

        Args:
            x: angles, shape ``[..., d]`` (any real values; they are read mod 2 pi).

        Returns:
            Log-density, shape ``[...]``, dtype and device of ``x``.
        """
        mu, sd = self.means.to(x), self.stds.to(x)
        shifts = TWO_PI * torch.arange(-self.n_images, self.n_images + 1, dtype=x.dtype, device=x.device)
        delta = wrap_angle(x.unsqueeze(-2) - mu)  # [..., K, d]
        z = (delta.unsqueeze(-1) + shifts) / sd.unsqueeze(-1)  # [..., K, d, 2n+1]
        log_1d = torch.logsumexp(-0.5 * z * z, dim=-1) - torch.log(sd) - 0.5 * math.log(TWO_PI)
        return torch.logsumexp(self.log_weights.to(x) + log_1d.sum(-1), dim=-1)

    def sample(self, n, generator=None, *, dtype=None, device=None) -> torch.Tensor:
        """Exact samples ``(mean + std * N(0, I)) mod 2 pi``, shape ``[n, d]``."""
        dtype, device = self._dtype_device(dtype, device)
        comp = self._components(self.log_weights, n, generator, device)
        mu, sd = self.means.to(dtype=dtype, device=device), self.stds.to(dtype=dtype, device=device)
        z = torch.randn(n, self.manifold.dim, generator=generator, dtype=dtype, device=device)
        return self.manifold.projx(mu[comp] + sd[comp] * z)


# ---------------------------------------------------------------------------------------- checkerboard
class Checkerboard(SyntheticTarget):
    """Checkerboard density on the flat torus T^2 or the sphere S^2, floored by a uniform part.

    The domain is cut into ``k1 x k2`` cells of equal area and the cells ``(i, j)`` with
    ``i + j`` even carry the board: ``p = (1 - eps) * board + eps * uniform``, where ``board`` is
    uniform on the board cells. The ``eps`` floor keeps ``log p`` finite everywhere so test NLLs
    are defined; with the default ``eps = 1e-3`` an off-board point costs
    ``log((2 - eps) / eps) = 7.6`` nats more than an on-board one.

    - ``space="torus"``: cells of ``[0, 2 pi)^2`` of size ``(2 pi / k1) x (2 pi / k2)``.
    - ``space="sphere"``: cells in longitude ``[-pi, pi)`` x ``z = sin(latitude)`` in ``[-1, 1]``,
      of size ``(2 pi / k1) x (2 / k2)``; by Archimedes' theorem ``dA = d(lon) dz``, so these
      cells have equal area.

    ``k1`` must be even (on the torus ``k2`` too) so that the pattern alternates across the
    periodic seam; the board then covers exactly half of the area, its density is
    ``(2 - eps) / Vol`` and the off-board density ``eps / Vol``.

    Args:
        space: ``"torus"`` or ``"sphere"``.
        cells: ``k`` (meaning ``k x k``) or ``(k1, k2)``.
        eps: weight of the uniform floor, in ``(0, 1)``.
    """

    def __init__(self, space: str = "torus", cells: Union[int, Tuple[int, int]] = 4, eps: float = 1e-3):
        super().__init__()
        if space not in ("torus", "sphere"):
            raise ValueError(f"space must be 'torus' or 'sphere', got {space!r}")
        k1, k2 = (cells, cells) if isinstance(cells, int) else tuple(cells)
        if not (isinstance(k1, int) and isinstance(k2, int)) or k1 < 2 or k2 < 1 or k1 % 2:
            raise ValueError(f"cells must give an even k1 >= 2 and k2 >= 1, got {cells!r}")
        if space == "torus" and k2 % 2:
            raise ValueError(f"on the torus both cell counts must be even (periodic in both angles), got {cells!r}")
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        self.space, self.cells, self.eps = space, (k1, k2), float(eps)
        self.manifold = FlatTorus(2) if space == "torus" else Sphere(2)
        self.extent = (TWO_PI, TWO_PI if space == "torus" else 2.0)  # range of the two cell coordinates
        log_vol = math.log(self.manifold.volume)
        self.register_buffer(
            "log_densities", torch.tensor([math.log(2.0 - eps) - log_vol, math.log(eps) - log_vol], dtype=torch.float64)
        )

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return f"space={self.space!r}, cells={self.cells}, eps={self.eps}"

    def _cell_coordinates(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Coordinates ``(a, b)`` in ``[0, extent)`` in which the cells are a regular grid."""
        if self.space == "torus":
            x = self.manifold.projx(x)
            return x[..., 0], x[..., 1]
        lon = torch.atan2(x[..., 1], x[..., 0])
        z = (x[..., 2] / torch.linalg.vector_norm(x, dim=-1)).clamp(-1.0, 1.0)
        return lon + math.pi, z + 1.0

    def on_board(self, x: torch.Tensor) -> torch.Tensor:
        """Whether each point lies in a board cell; ``[..., 2 or 3] -> [...]`` bool."""
        a, b = self._cell_coordinates(x)
        (k1, k2), (e1, e2) = self.cells, self.extent
        i = torch.floor(a * (k1 / e1)).clamp(0, k1 - 1).long()
        j = torch.floor(b * (k2 / e2)).clamp(0, k2 - 1).long()
        return (i + j) % 2 == 0

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density w.r.t. the area measure: ``log((2 - eps)/Vol)`` on the board, ``log(eps/Vol)`` off it.

        Args:
            x: points, shape ``[..., 2]`` (torus angles) or ``[..., 3]`` (unit vectors).

        Returns:
            Log-density, shape ``[...]``, dtype and device of ``x``.
        """
        dens = self.log_densities.to(x)
        return torch.where(self.on_board(x), dens[0], dens[1])

    def sample(self, n, generator=None, *, dtype=None, device=None) -> torch.Tensor:
        """Exact samples: uniform with probability ``eps``, else uniform on the board; shape ``[n, 2 or 3]``."""
        dtype, device = self._dtype_device(dtype, device)
        opts = dict(generator=generator, device=device)
        (k1, k2), (e1, e2) = self.cells, self.extent
        # a board cell: row j uniform, then one of the k1 / 2 columns i with i + j even
        j = torch.randint(0, k2, (n,), **opts)
        i = 2 * torch.randint(0, k1 // 2, (n,), **opts) + j % 2
        u = torch.rand(n, 2, dtype=dtype, **opts)
        a = (i.to(dtype) + u[:, 0]) * (e1 / k1)
        b = (j.to(dtype) + u[:, 1]) * (e2 / k2)
        floor = torch.rand(n, dtype=dtype, **opts) < self.eps
        v = torch.rand(n, 2, dtype=dtype, **opts)
        a = torch.where(floor, v[:, 0] * e1, a)
        b = torch.where(floor, v[:, 1] * e2, b)
        if self.space == "torus":
            return self.manifold.projx(torch.stack([a, b], dim=-1))
        lon, z = a - math.pi, (b - 1.0).clamp(-1.0, 1.0)
        r = torch.sqrt((1.0 - z) * (1.0 + z))
        return torch.stack([r * torch.cos(lon), r * torch.sin(lon), z], dim=-1)


# ---------------------------------------------------------------------------------------- registry
def vmf_mixture_s2() -> VonMisesFisherMixture:
    """Four vMF components on S^2 with concentrations 10, 20, 35, 50.

    Means at (lat, lon) = (45, -60), (-30, 20), (10, 120), (-60, -150) degrees, weights
    0.3, 0.3, 0.2, 0.2.
    """
    lat = torch.deg2rad(torch.tensor([45.0, -30.0, 10.0, -60.0], dtype=torch.float64))
    lon = torch.deg2rad(torch.tensor([-60.0, 20.0, 120.0, -150.0], dtype=torch.float64))
    means = torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], dim=-1)
    return VonMisesFisherMixture(2, means, kappas=[10.0, 20.0, 35.0, 50.0], weights=[0.3, 0.3, 0.2, 0.2])


def wrapped_normal_t2() -> WrappedNormalMixture:
    """Four isotropic wrapped normals on T^2 with stds 0.3, 0.4, 0.5, 0.6 and equal weights.

    Means (1.0, 1.5), (3.5, 4.0), (5.9, 0.3), (2.5, 5.8): the last two sit near the seams, so
    their mass wraps around.
    """
    means = [[1.0, 1.5], [3.5, 4.0], [5.9, 0.3], [2.5, 5.8]]
    return WrappedNormalMixture(2, means, stds=[0.3, 0.4, 0.5, 0.6], weights=[1.0, 1.0, 1.0, 1.0])


def checkerboard_s2() -> Checkerboard:
    """Checkerboard on S^2 with 8 longitude x 4 sin(latitude) cells and ``eps = 1e-3``."""
    return Checkerboard("sphere", cells=(8, 4), eps=1e-3)


def checkerboard_t2() -> Checkerboard:
    """Checkerboard on T^2 with 4 x 4 cells and ``eps = 1e-3``."""
    return Checkerboard("torus", cells=4, eps=1e-3)


SYNTHETIC: Dict[str, Callable[[], SyntheticTarget]] = {
    "vmf_mixture_s2": vmf_mixture_s2,
    "wrapped_normal_t2": wrapped_normal_t2,
    "checkerboard_s2": checkerboard_s2,
    "checkerboard_t2": checkerboard_t2,
}
"""Named synthetic targets: zero-argument factories with the fixed parameters documented on each."""
