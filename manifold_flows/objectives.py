"""Training objectives sharing one face: ``loss(x1)``, ``log_prob(x)``, ``sample(n)``."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from manifolds import Manifold

from .coupling import COUPLINGS, ot_pairing
from .likelihood import log_likelihood, sample as integrate_samples
from .paths import GeodesicPath


class FlowObjective(nn.Module):
    """Base of the objectives: a manifold, a vector-field network and the shared evaluation.

    Subclasses define :meth:`loss`. Models defined by a time-dependent field get their
    likelihoods from the augmented ODE and their samples by integrating from the base.

    Args:
        manifold: the manifold.
        net: a module ``net(x [..., D], t) -> [..., D]`` returning tangent vectors.
    """

    def __init__(self, manifold: Manifold, net: nn.Module):
        super().__init__()
        self.manifold = manifold
        self.net = net

    def loss(self, x1: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:  # pragma: no cover
        """Scalar training loss on a data batch ``x1 [B, D]``."""
        raise NotImplementedError

    def field(self, net: Optional[nn.Module] = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The tangent field ``(x, t) -> v`` that transports the base at t=0 to the model at t=1."""
        return net if net is not None else self.net

    @torch.no_grad()
    def log_prob(
        self, x: torch.Tensor, *, net: Optional[nn.Module] = None, steps: int = 100, method: str = "rk4", **kwargs
    ) -> torch.Tensor:
        """Log-density ``[N]`` of the model at ``x [N, D]`` (w.r.t. the Riemannian volume)."""
        return log_likelihood(self.field(net), x, manifold=self.manifold, steps=steps, method=method, **kwargs)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        net: Optional[nn.Module] = None,
        steps: int = 100,
        method: str = "rk4",
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[torch.device] = None,
    ) -> torch.Tensor:
        """``n`` samples ``[n, D]`` of the model."""
        p = next(self.net.parameters())
        return integrate_samples(
            self.field(net), n, manifold=self.manifold, steps=steps, method=method, generator=generator,
            dtype=dtype or p.dtype, device=device or p.device,
        )


class RFM(FlowObjective):
    """Riemannian Flow Matching with geodesic conditional paths (Chen & Lipman, ICLR 2024).

    Loss: ``E_{t, x0, x1} |v(x_t, t) - u_t|_g^2`` with ``x0`` from the base distribution, ``t``
    uniform on [0, 1] and ``x_t``, ``u_t`` from :class:`~manifold_flows.paths.GeodesicPath`.

    Args:
        manifold: the manifold.
        net: the vector-field network.
        coupling: ``"independent"`` or ``"ot"`` (minibatch optimal transport under geodesic cost).
    """

    def __init__(self, manifold: Manifold, net: nn.Module, coupling: str = "independent"):
        super().__init__(manifold, net)
        if coupling not in COUPLINGS:
            raise ValueError(f"unknown coupling {coupling!r}; choose from {COUPLINGS}")
        self.coupling = coupling
        self.path = GeodesicPath(manifold)

    def loss(self, x1: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """RFM loss on a data batch ``x1 [B, D]``."""
        b = x1.shape[0]
        x0 = self.manifold.random_base(b, dtype=x1.dtype, device=x1.device, generator=generator)
        if self.coupling == "ot":
            x0 = ot_pairing(self.manifold, x0, x1)
        t = torch.rand(b, dtype=x1.dtype, device=x1.device, generator=generator)
        ps = self.path.sample(x0, x1, t)
        diff = self.net(ps.xt, ps.t) - ps.ut
        return self.manifold.inner(ps.xt, diff).mean()


OBJECTIVES = {"rfm": RFM}
