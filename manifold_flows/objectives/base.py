"""The face every objective shares: ``loss(x1)``, ``log_prob(x)``, ``sample(n)``, and the ODE evaluation behind them."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
from torch import nn

from manifolds import Manifold

from ..divergence import default_estimator
from ..likelihood import log_likelihood, sample as integrate_samples


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

    def prepare(self, train: torch.Tensor, val: torch.Tensor) -> Dict[str, Any]:
        """Fit whatever the objective derives from the data before training; returns a summary for metrics.json."""
        return {}

    def diagnostics(self, x: torch.Tensor, net: Optional[nn.Module] = None, **kwargs) -> Dict[str, Any]:
        """Objective-specific checks on held-out points ``x`` (added to metrics.json)."""
        return {}

    def field(self, net: Optional[nn.Module] = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The tangent field ``(x, t) -> v`` that transports the base at t=0 to the model at t=1."""
        return net if net is not None else self.net

    ode_likelihood = True
    """Whether :meth:`log_prob` solves the augmented ODE (so its solver settings matter)."""

    def likelihood_method(self, *, solver: str = "rk4", solver_steps: int = 100) -> str:
        """How :meth:`log_prob` computes its numbers with these solver settings (stored beside every NLL)."""
        from ..solvers import SOLVERS

        how = f"{solver}, {solver_steps} steps" if solver in SOLVERS else f"{solver}, adaptive, atol = rtol = 1e-5"
        if default_estimator(self.manifold) == "exact":
            return f"augmented ODE from t=1 to t=0 ({how}), exact divergence"
        return (f"augmented ODE from t=1 to t=0 ({how}), Hutchinson divergence (one Rademacher probe per step; an "
                f"unbiased estimate of each log-likelihood in {self.manifold.dim} dimensions)")

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, *, net: Optional[nn.Module] = None, solver: str = "rk4",
                 solver_steps: int = 100, **kwargs) -> torch.Tensor:
        """Log-density ``[N]`` of the model at ``x [N, D]`` (w.r.t. the Riemannian volume), by the augmented ODE.

        The divergence is exact up to :data:`~manifold_flows.divergence.HUTCHINSON_ABOVE` dimensions and
        Hutchinson's estimate above (pass ``divergence=`` to choose; ``generator=`` seeds its probes).
        """
        kwargs.setdefault("divergence", default_estimator(self.manifold))
        if kwargs["divergence"] == "hutchinson" and kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator(device=x.device).manual_seed(0)  # the same probes at every evaluation
        return log_likelihood(self.field(net), x, manifold=self.manifold, solver=solver, solver_steps=solver_steps,
                              **kwargs)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        net: Optional[nn.Module] = None,
        solver: str = "rk4",
        solver_steps: int = 100,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[torch.device] = None,
    ) -> torch.Tensor:
        """``n`` samples ``[n, D]`` of the model."""
        p = next(self.net.parameters())
        return integrate_samples(
            self.field(net), n, manifold=self.manifold, solver=solver, solver_steps=solver_steps, generator=generator,
            dtype=dtype or p.dtype, device=device or p.device,
        )
