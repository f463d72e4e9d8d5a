"""The base class of synthetic targets (exact log-density, exact sampler) and the checks their parameters share."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence, Tuple, Union

import torch

if TYPE_CHECKING:
    from manifolds import FlatTorus, Sphere

TWO_PI = 2.0 * math.pi
ArrayLike = Union[torch.Tensor, Sequence[float], Sequence[Sequence[float]]]


# ---------------------------------------------------------------------------------------- helpers
def float64_tensor(value: ArrayLike, name: str) -> torch.Tensor:
    """``value`` as a float64 CPU tensor whose entries are all finite."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t}")
    return t


def log_weights(weights: ArrayLike, k: int) -> torch.Tensor:
    """Log of the normalised mixture weights, shape ``[K]``."""
    w = float64_tensor(weights, "weights")
    if w.shape != (k,):
        raise ValueError(f"weights must have shape [{k}], got {tuple(w.shape)}")
    if bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {w.tolist()}")
    return torch.log(w / w.sum())



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
