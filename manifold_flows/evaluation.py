"""Held-out evaluation of a trained model: NLL on a split, the base's NLL for scale, gaps to known densities."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from manifolds import Manifold

from .config import TrainConfig
from .objectives import FlowObjective

SETTLED_NATS = 0.05
"""Largest change of the mean NLL from ``n`` to ``2 n`` solver steps for which an ODE likelihood counts as settled."""
SOLVER_CHECK_POINTS = 200
"""Test points whose NLL :func:`solver_check` recomputes with twice the solver steps."""


def log_likelihoods(objective: FlowObjective, x: torch.Tensor, net, cfg: TrainConfig,
                    steps: Optional[int] = None) -> torch.Tensor:
    """Log-likelihoods ``[N]`` of ``x [N, D]`` with ``cfg.solver`` and ``steps`` steps (default ``cfg.solver_steps``).

    Raises:
        FloatingPointError: if any log-likelihood is not finite (never reported as a number).
    """
    lp = objective.log_prob(x, net=net, solver=cfg.solver, solver_steps=steps or cfg.solver_steps)
    if not torch.isfinite(lp).all():
        raise FloatingPointError(f"non-finite log-likelihood on {int((~torch.isfinite(lp)).sum())} "
                                 f"of {lp.numel()} points")
    return lp


def nll(objective: FlowObjective, x: torch.Tensor, net, cfg: TrainConfig, steps: Optional[int] = None) -> float:
    """Mean negative log-likelihood of ``x [N, D]`` in nats (see :func:`log_likelihoods`)."""
    return float(-log_likelihoods(objective, x, net, cfg, steps).mean())


def solver_check(objective: FlowObjective, x: torch.Tensor, lp: torch.Tensor, net, cfg: TrainConfig
                 ) -> Dict[str, Any]:
    """Whether an ODE likelihood has settled: the NLL of the first points again with twice the solver steps.

    ``lp [N]`` holds the log-likelihoods of ``x [N, D]`` at ``cfg.solver_steps``. A fixed-step
    solve that is far from converged (a fast or stiff learned field) gives a number that is not
    the model's normalised log-density; this check says so beside it. Skipped (with the reason)
    where the likelihood is not an ODE solve, the solver is adaptive, or the divergence is a
    stochastic estimate (whose probes would differ between the two solves).
    """
    from .divergence import default_estimator
    from .solvers import SOLVERS

    if not objective.ode_likelihood:
        return {"solver_check": "skipped: the likelihood is explicit, not an ODE solve"}
    if cfg.solver not in SOLVERS:
        return {"solver_check": f"skipped: {cfg.solver} is adaptive"}
    if default_estimator(objective.manifold) != "exact":
        return {"solver_check": "skipped: Hutchinson's divergence estimate differs between solves"}
    n = min(SOLVER_CHECK_POINTS, x.shape[0])
    steps = cfg.solver_steps
    base = float(-lp[:n].mean())
    doubled = nll(objective, x[:n], net, cfg, steps=2 * steps)
    change = doubled - base
    return {"solver_check": "settled" if abs(change) <= SETTLED_NATS else "not settled",
            "solver_check_points": n, "solver_check_nll": base, f"solver_check_nll_{2 * steps}_steps": doubled,
            "solver_check_change": change}


def evaluate_split(objective: FlowObjective, net, cfg: TrainConfig, data: Dict[str, Any], x: torch.Tensor,
                   manifold: Manifold) -> Dict[str, Any]:
    """Test NLL, the base distribution's NLL on the same points and, for synthetic data, the gap to the truth.

    ``likelihood`` says how the NLL was computed (the solver and its steps, or the explicit
    density and its normalisation), so every reported number carries its method; for an ODE
    likelihood :func:`solver_check` adds whether it settled, and ``likelihood`` says so where it did not.
    """
    lp = log_likelihoods(objective, x, net, cfg)
    metrics: Dict[str, Any] = {
        "test_nll": float(-lp.mean()),
        "likelihood": objective.likelihood_method(solver=cfg.solver, solver_steps=cfg.solver_steps),
        "base_nll": float(-manifold.base_logprob(x).mean()),
        "n_test": int(x.shape[0]),
    }
    metrics.update(solver_check(objective, x, lp, net, cfg))
    if metrics["solver_check"] == "not settled":
        metrics["likelihood"] += (f"; NOT SETTLED: the NLL of {metrics['solver_check_points']} of these points "
                                  f"moves by {metrics['solver_check_change']:+.3f} nats with {2 * cfg.solver_steps} "
                                  "steps (more --solver-steps, or --solver dopri5)")
    target = data.get("target")
    if target is not None:
        metrics["target_nll"] = float(-target.log_prob(x.to(torch.float64).cpu()).mean())
        metrics["gap"] = metrics["test_nll"] - metrics["target_nll"]
    metrics.update(objective.diagnostics(x, net, solver=cfg.solver, solver_steps=cfg.solver_steps))
    return metrics
