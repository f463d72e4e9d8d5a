"""Synthetic targets with exact log-densities and exact samplers on spheres and flat tori, by name."""

from __future__ import annotations

import math
from typing import Callable, Dict, Tuple, Union

import torch

from manifolds import FlatTorus, Sphere
from manifolds.torus import wrap_angle

from .target_base import TWO_PI, ArrayLike, SyntheticTarget, float64_tensor, log_weights
from .vmf import VonMisesFisherMixture, sample_vmf, vmf_log_normalizer

__all__ = ["SYNTHETIC", "ArrayLike", "Checkerboard", "SyntheticTarget", "VonMisesFisherMixture",
           "WrappedNormalMixture", "checkerboard_s2", "checkerboard_t2", "sample_vmf", "vmf_log_normalizer",
           "vmf_mixture_s2", "wrapped_normal_t2"]


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
        mu = float64_tensor(means, "means")
        if mu.dim() != 2 or mu.shape[1] != dim:
            raise ValueError(f"means must have shape [K, {dim}] on T^{dim}, got {tuple(mu.shape)}")
        k = mu.shape[0]
        sd = float64_tensor(stds, "stds")
        if sd.shape == (k,):
            sd = sd.unsqueeze(1).expand(k, dim)
        if sd.shape != (k, dim) or bool((sd <= 0).any()):
            raise ValueError(f"stds must be positive with shape [{k}] or [{k}, {dim}], got {tuple(sd.shape)}")
        self.register_buffer("means", self.manifold.projx(mu))
        self.register_buffer("stds", sd.clone())
        self.register_buffer("log_weights", log_weights(weights, k))
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
