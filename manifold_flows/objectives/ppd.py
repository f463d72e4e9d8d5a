"""PPD: a time-dependent field fitted to a tractable target path through the log mass-conservation residual."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
from torch import nn

from manifolds import Manifold

from ..divergence import resolve_estimator, value_and_divergence
from ..kde import KernelDensityPath, kernel_support_problem
from .base import FlowObjective


def ppd_residual(log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], net: nn.Module, x: torch.Tensor,
                 t: torch.Tensor, manifold: Manifold, *, create_graph: bool = True, divergence: str = "exact",
                 n_probes: int = 1, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The log mass-conservation residual ``d/dt log p_t + div v_t + <grad log p_t, v_t>_g`` at ``(x_b, t_b)``.

    It vanishes exactly when ``v`` transports the path ``p_t`` (continuity equation divided by ``p_t``).

    Args:
        log_prob: ``log p_t``: ``(x [B, D], t [B]) -> [B]``, differentiable in ``x`` and ``t``.
        net: the field, ``net(x [B, D], t [B]) -> [B, D]`` tangent vectors.
        x: points on the manifold ``[B, D]``.
        t: times ``[B]``.
        manifold: the manifold.
        create_graph: keep the graph w.r.t. the network's parameters (training).
        divergence: ``"exact"`` or ``"hutchinson"``.
        n_probes: number of Hutchinson probes averaged per point (``"hutchinson"`` only).
        generator: random generator for the probes (on ``x``'s device).

    Returns:
        The residual ``[B]``.
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        tg = t.detach().requires_grad_(True)
        lp = log_prob(xg, tg)
        gx, gt = torch.autograd.grad(lp.sum(), (xg, tg))
    dt = gt.detach()
    tt = t.detach()
    v, div = value_and_divergence(lambda y, s: net(y, tt), x.detach(), 0.0, manifold=manifold, estimator=divergence,
                                  n_probes=n_probes, generator=generator, create_graph=create_graph)
    # <grad log p_t, v>_g is the derivative of log p_t along the tangent vector v: the ambient gradient
    # dotted with v, whatever the metric (no tangent projection or metric factor enters)
    return dt + div + (gx.detach() * v).sum(-1)


class PPD(FlowObjective):
    """Probability path divergence (Ben-Hamu et al., ICML 2022): fit ``v_t`` to a tractable target path.

    The target ``p_t`` is a :class:`~manifold_flows.kde.KernelDensityPath` from the base density
    (t = 0) to a kernel density estimate of the training data (t = 1), fitted by
    :meth:`prepare`. The loss is ``mean |r|^p`` of :func:`ppd_residual` at ``t ~ U[0, 1]`` and
    ``x ~ p_t`` (a kernel draw around each training point of the batch, or a base draw with the
    path's uniform weight). No ODE is solved in training; likelihoods and samples use the
    shared augmented ODE like RFM.

    Args:
        manifold: Sphere (d <= 3), FlatTorus, Euclidean, SO3 or products of them.
        net: the time-dependent field network.
        norm: ``p`` of the residual norm (1 or 2).
        kappa1: concentration of the kernels at ``t = 1``; ``None`` picks it on the validation split.
        uniform: base weight of the path; ``None`` picks it on the validation split.
        divergence: ``"exact"``, ``"hutchinson"`` or ``"auto"`` (Hutchinson above
            :data:`~manifold_flows.divergence.HUTCHINSON_ABOVE` dimensions).
        n_probes: Hutchinson probes per point.
    """

    def __init__(self, manifold: Manifold, net: nn.Module, *, norm: int = 2, kappa1: Optional[float] = None,
                 uniform: Optional[float] = None, divergence: str = "exact", n_probes: int = 1):
        super().__init__(manifold, net)
        if not getattr(net, "time_dependent", True):
            raise ValueError("PPD learns a time-dependent field: build the network with time_dependent=True")
        problem = kernel_support_problem(manifold)
        if problem is not None:
            raise ValueError(f"PPD cannot run on {manifold}: {problem}")
        if norm not in (1, 2):
            raise ValueError(f"norm must be 1 or 2, got {norm!r}")
        divergence = resolve_estimator(divergence, manifold)
        self.norm, self.kappa1, self.uniform = norm, kappa1, uniform
        self.divergence, self.n_probes = divergence, n_probes
        self.path: Optional[KernelDensityPath] = None

    def prepare(self, train: torch.Tensor, val: torch.Tensor) -> Dict[str, Any]:
        """Build the target path on ``train``; ``kappa1`` / ``uniform`` left as ``None`` are chosen on ``val``."""
        kappas = [self.kappa1] if self.kappa1 is not None else None
        uniforms = [self.uniform] if self.uniform is not None else None
        kw = {k: v for k, v in (("kappas", kappas), ("uniforms", uniforms)) if v is not None}
        self.path = KernelDensityPath.fit(self.manifold, train, val, **kw)
        return {"kappa1": self.path.kappa1, "uniform": self.path.uniform, "n_centres": int(train.shape[0]),
                "path_val_nll": -self.path.val_log_likelihood}

    def loss(self, x1: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """PPD loss on a data batch ``x1 [B, D]`` (the batch picks the kernels the points are drawn from)."""
        if self.path is None:
            raise RuntimeError("PPD has no target path yet: call prepare(train, val) first")
        t = torch.rand(x1.shape[0], dtype=x1.dtype, device=x1.device, generator=generator)
        x = self.path.sample(t, generator, centres=x1)
        r = ppd_residual(self.path.log_prob, self.net, x, t, self.manifold, divergence=self.divergence,
                         n_probes=self.n_probes, generator=generator)
        return r.abs().mean() if self.norm == 1 else r.pow(2).mean()

    def diagnostics(self, x: torch.Tensor, net: Optional[nn.Module] = None, **kwargs) -> Dict[str, Any]:
        """The NLL of the target path's ``t = 1`` end on ``x`` (what a perfect fit would score)."""
        if self.path is None:
            return {}
        with torch.no_grad():
            one = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
            lp = self.path.log_prob(x.to(torch.float64), one)
        return {"path_nll": float(-lp.mean())}
