"""Held-out evaluation of a trained model: NLL on a split, the base's NLL for scale, gaps to known densities."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from manifolds import Manifold

from .config import TrainConfig
from .objectives import FlowObjective


def nll(objective: FlowObjective, x: torch.Tensor, net, cfg: TrainConfig, steps: Optional[int] = None) -> float:
    """Mean negative log-likelihood of ``x [N, D]`` in nats.

    Computed with ``cfg.solver`` and ``steps`` solver steps (default ``cfg.solver_steps``).

    Raises:
        FloatingPointError: if any log-likelihood is not finite (never reported as a number).
    """
    lp = objective.log_prob(x, net=net, solver=cfg.solver, solver_steps=steps or cfg.solver_steps)
    if not torch.isfinite(lp).all():
        raise FloatingPointError(f"non-finite log-likelihood on {int((~torch.isfinite(lp)).sum())} "
                                 f"of {lp.numel()} points")
    return float(-lp.mean())


def evaluate_split(objective: FlowObjective, net, cfg: TrainConfig, data: Dict[str, Any], x: torch.Tensor,
                   manifold: Manifold) -> Dict[str, Any]:
    """Test NLL, the base distribution's NLL on the same points and, for synthetic data, the gap to the truth.

    ``likelihood`` says how the NLL was computed (the solver and its steps, or the explicit
    density and its normalisation), so every reported number carries its method.
    """
    metrics: Dict[str, Any] = {
        "test_nll": nll(objective, x, net, cfg),
        "likelihood": objective.likelihood_method(solver=cfg.solver, solver_steps=cfg.solver_steps),
        "base_nll": float(-manifold.base_logprob(x).mean()),
        "n_test": int(x.shape[0]),
    }
    target = data.get("target")
    if target is not None:
        metrics["target_nll"] = float(-target.log_prob(x.to(torch.float64).cpu()).mean())
        metrics["gap"] = metrics["test_nll"] - metrics["target_nll"]
    metrics.update(objective.diagnostics(x, net, solver=cfg.solver, solver_steps=cfg.solver_steps))
    return metrics
