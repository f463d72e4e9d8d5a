"""Moser Flow: an explicit density ``mu = nu - div u``, its normaliser once clamped, and a faithful sampler."""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

from manifolds import Manifold

from ..divergence import resolve_estimator, value_and_divergence
from ..mcmc import ChainStats, metropolis_refine
from .base import FlowObjective


class MoserFlow(FlowObjective):
    """Moser Flow (Rozen, Grover, Nickel, Lipman, NeurIPS 2021): the density is ``mu = nu - div u``.

    ``u`` is a time-independent tangent field (``net(x)``; a ``t`` argument is ignored) and ``nu``
    the uniform base density. By the divergence theorem ``mu`` integrates to 1 on a closed
    manifold, so no ODE is solved in training or in :meth:`log_prob`. The loss is

        -mean_data log max(eps, mu(x)) + lam * Vol(M) * mean_uniform (eps - min(eps, mu(y))),

    the second term a Monte Carlo estimate of ``lam * int_M mu_-`` over ``n_uniform`` uniform
    points ``y`` (``mu_- / eta`` with ``eta = 1 / Vol`` the uniform density).

    The density the model defines is ``max(eps, mu) / Z`` (:meth:`log_prob`, :meth:`log_normalizer`).
    Samples integrate ``v_t = u / ((1 - t) nu + t mu_+)`` from base samples at ``t = 0`` to
    ``t = 1``, which carries ``nu`` along ``alpha_t = (1 - t) nu + t mu`` where ``mu >= eps``, and
    then take Metropolis-Hastings steps on the explicit density, which remove what the ODE gets
    wrong (its stiffness where ``mu`` is small, the clamp); :meth:`diagnostics` compares the
    explicit density with the ODE's likelihood.

    Args:
        manifold: a compact manifold with a uniform base distribution.
        net: the tangent-field network (build it with ``time_dependent=False``).
        eps: floor ``eps`` of the density in the log and in the penalty (published 1e-5).
        lam: weight of the negative-mass penalty (published 2; 100 on the earth data).
        n_uniform: uniform points per step for the penalty (default: the data batch size).
        divergence: ``"exact"``, ``"hutchinson"`` or ``"auto"`` (Hutchinson above
            :data:`~manifold_flows.divergence.HUTCHINSON_ABOVE` dimensions); training only, :meth:`log_prob` is exact.
        n_probes: Hutchinson probes per point.
        n_mass: uniform points of the Monte Carlo normaliser of :meth:`log_prob`.
        mcmc_steps: Metropolis-Hastings steps that :meth:`sample` runs after the ODE (0: the ODE alone).
    """

    def __init__(self, manifold: Manifold, net: nn.Module, *, eps: float = 1e-5, lam: float = 2.0,
                 n_uniform: Optional[int] = None, divergence: str = "exact", n_probes: int = 1,
                 n_mass: int = 20_000, mcmc_steps: int = 40):
        super().__init__(manifold, net)
        if not manifold.compact or manifold.has_boundary:
            raise ValueError(f"Moser Flow needs a compact manifold without boundary (the divergence theorem makes mu "
                             f"integrate to 1); {manifold} is not one")
        divergence = resolve_estimator(divergence, manifold)
        if not eps > 0 or not lam > 0:
            raise ValueError(f"Moser Flow needs eps > 0 and lam > 0 (without the negative-mass penalty mu need not be "
                             f"a density), got eps={eps}, lam={lam}")
        if n_mass < 2:
            raise ValueError(f"n_mass must be >= 2, got {n_mass}")
        if n_uniform is not None and n_uniform < 1:
            raise ValueError(f"n_uniform must be >= 1, got {n_uniform}")
        if mcmc_steps < 0:
            raise ValueError(f"mcmc_steps must be >= 0, got {mcmc_steps}")
        self.eps, self.lam, self.n_uniform, self.n_mass = float(eps), float(lam), n_uniform, int(n_mass)
        self.mcmc_steps = int(mcmc_steps)
        self._normalizer_cache: Optional[tuple] = None
        self.last_chain: Optional[ChainStats] = None
        self.divergence, self.n_probes = divergence, n_probes
        self.log_volume = math.log(manifold.volume)

    def density(self, x: torch.Tensor, *, net: Optional[nn.Module] = None, create_graph: bool = False,
                divergence: str = "exact", generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``mu(x) = nu - div u(x)``, shape ``[...]`` (can be negative; differentiable with ``create_graph``)."""
        u = net if net is not None else self.net
        _, div = value_and_divergence(lambda y, s: u(y), x, 0.0, manifold=self.manifold, estimator=divergence,
                                      n_probes=self.n_probes, generator=generator, create_graph=create_graph)
        return math.exp(-self.log_volume) - div

    def loss(self, x1: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Moser Flow loss on a data batch ``x1 [B, D]``."""
        m = self.n_uniform or x1.shape[0]
        y = self.manifold.random_base(m, dtype=x1.dtype, device=x1.device, generator=generator)
        mu = self.density(torch.cat([x1, y]), create_graph=True, divergence=self.divergence, generator=generator)
        mu_data, mu_unif = mu[: x1.shape[0]], mu[x1.shape[0]:]
        fit = -torch.log(torch.clamp(mu_data, min=self.eps)).mean()
        negative = (self.eps - torch.clamp(mu_unif, max=self.eps)).mean() * math.exp(self.log_volume)
        return fit + self.lam * negative

    @torch.no_grad()
    def log_normalizer(self, *, net: Optional[nn.Module] = None, n: Optional[int] = None,
                       generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``log Z`` and its standard error, for the density the model defines once clamped, ``max(eps, mu) / Z``.

        ``Z = int max(eps, mu) dV = int mu dV + int (eps - mu)_+ dV = 1 + Vol(M) E_uniform[(eps - mu)_+]``
        (``int mu = 1`` exactly by the divergence theorem), estimated over ``n`` uniform points
        (default :attr:`n_mass`, drawn from a fixed seed so that successive validations compare
        like with like). The integrand vanishes wherever ``mu >= eps``, so the estimate is far
        less noisy than a Monte Carlo mean of the density itself.

        Returns:
            ``(log Z, standard error of log Z)``, 0-dim tensors on the model's device (no host sync).
        """
        p = next(self.net.parameters())
        u = net if net is not None else self.net
        key = (tuple(q._version for q in u.parameters()), p.dtype, p.device)
        cached = self._normalizer_cache
        if n is None and generator is None and cached is not None and cached[0]() is u and cached[1] == key:
            return cached[2]  # the same network with the same weights as last time (e.g. the chunks of one figure)
        cacheable = n is None and generator is None
        n = n or self.n_mass
        gen = generator if generator is not None else torch.Generator(device=p.device).manual_seed(0)
        y = self.manifold.random_base(n, dtype=p.dtype, device=p.device, generator=gen)
        mu = torch.cat([self.density(c, net=net) for c in torch.split(y, 4096)])
        excess = (self.eps - mu).clamp_min(0) * math.exp(self.log_volume)
        z = 1 + excess.mean()
        out = (torch.log(z), excess.std() / math.sqrt(n) / z)
        if cacheable:
            self._normalizer_cache = (weakref.ref(u), key, out)
        return out

    def likelihood_method(self, *, solver: str = "rk4", solver_steps: int = 100) -> str:
        """How :meth:`log_prob` computes its numbers (no ODE: the solver settings do not enter)."""
        return (f"explicit log max(eps, mu) - log Z, eps = {self.eps:g}, Z = 1 + Vol E[(eps - mu)+] by Monte Carlo "
                f"over {self.n_mass} uniform points (log_normalizer, log_normalizer_se)")

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, *, net: Optional[nn.Module] = None, **kwargs) -> torch.Tensor:
        """Normalised log-density ``log max(eps, mu(x)) - log Z`` (see :meth:`log_normalizer`); ``[N, D] -> [N]``.

        This is the density the clamped model actually defines, so it integrates to 1 however much
        mass ``mu`` puts below zero (no ODE; solver arguments are accepted and ignored).
        """
        self.manifold.assert_check_point(x)
        log_z, _ = self.log_normalizer(net=net)
        return self.log_density(x, net=net) - log_z

    def ode_log_prob(self, x: torch.Tensor, *, net: Optional[nn.Module] = None, solver: str = "rk4",
                     solver_steps: int = 100, **kwargs) -> torch.Tensor:
        """Log-likelihood of the *sampler's ODE* (the flow of :meth:`field`) at ``x``, by the augmented ODE."""
        return super().log_prob(x, net=net, solver=solver, solver_steps=solver_steps, **kwargs)

    @torch.no_grad()
    def sample(self, n: int, *, net: Optional[nn.Module] = None, solver: str = "rk4", solver_steps: int = 100,
               generator: Optional[torch.Generator] = None, dtype: Optional[torch.dtype] = None,
               device: Optional[torch.device] = None, mcmc_steps: Optional[int] = None) -> torch.Tensor:
        """``n`` samples ``[n, D]`` of the normalised density ``max(eps, mu) / Z`` that :meth:`log_prob` reports.

        The ODE of :meth:`field` carries base samples close to it; ``mcmc_steps`` Metropolis-Hastings
        steps on the explicit density then remove what the ODE gets wrong (its stiffness where
        ``mu`` is small, the clamp at ``eps``), see :mod:`manifold_flows.mcmc`. The chain's
        acceptance rates are kept in :attr:`last_chain`.
        """
        x = super().sample(n, net=net, solver=solver, solver_steps=solver_steps, generator=generator, dtype=dtype,
                           device=device)
        k = self.mcmc_steps if mcmc_steps is None else mcmc_steps
        if k == 0:
            return x
        x, self.last_chain = metropolis_refine(lambda y: self.log_density(y, net=net), x, self.manifold, steps=k,
                                               generator=generator)
        return x

    @torch.no_grad()
    def log_density(self, x: torch.Tensor, *, net: Optional[nn.Module] = None) -> torch.Tensor:
        """Unnormalised ``log max(eps, mu(x))``, ``[N, D] -> [N]`` (no input check: for inner loops)."""
        out = [torch.log(torch.clamp(self.density(c, net=net), min=self.eps)) for c in torch.split(x, 4096)]
        return torch.cat(out) if out else x.new_zeros(0)

    def field(self, net: Optional[nn.Module] = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The sampling field ``v_t(x) = u(x) / ((1 - t) nu + t max(eps, mu(x)))``."""
        u = net if net is not None else self.net
        nu = math.exp(-self.log_volume)

        def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # keep the graph when an outer divergence (the ODE likelihood) differentiates v
            create = torch.is_grad_enabled() and x.requires_grad
            ux, div = value_and_divergence(lambda y, s: u(y), x, 0.0, manifold=self.manifold, create_graph=create)
            mu = torch.clamp(nu - div, min=self.eps)
            return ux / ((1 - t) * nu + t * mu).unsqueeze(-1)

        return v

    @torch.no_grad()
    def negative_mass(self, n: int = 100_000, *, net: Optional[nn.Module] = None,
                      generator: Optional[torch.Generator] = None) -> Dict[str, float]:
        """Monte Carlo over ``n`` uniform points: ``int mu_-`` (mass below zero) and ``int mu`` (should be 1).

        Also returns the standard errors of both.
        """
        p = next(self.net.parameters())
        y = self.manifold.random_base(n, dtype=p.dtype, device=p.device, generator=generator)
        mu = torch.cat([self.density(c, net=net) for c in torch.split(y, 4096)]) * math.exp(self.log_volume)
        neg = torch.clamp(-mu, min=0)
        se = lambda z: float(z.std() / math.sqrt(n))  # noqa: E731
        return {"negative_mass": float(neg.mean()), "negative_mass_se": se(neg),
                "total_mass": float(mu.mean()), "total_mass_se": se(mu)}

    def diagnostics(self, x: torch.Tensor, net: Optional[nn.Module] = None, *, solver: str = "rk4",
                    solver_steps: int = 100,
                    max_points: int = 200, n_mc: int = 100_000, **kwargs) -> Dict[str, Any]:
        """Negative mass, total mass, and the explicit-versus-ODE likelihood agreement on ``x[:max_points]``.

        On piecewise-flat manifolds (meshes) the agreement is not computed (``ode_check`` says
        why): ``mu`` jumps across edges, and the ODE likelihood would need a jump term at every
        edge a trajectory crosses. The explicit density stays exact there.
        """
        gen = torch.Generator(device=x.device).manual_seed(0)
        out: Dict[str, Any] = self.negative_mass(n_mc, net=net, generator=gen)
        log_z, log_z_se = self.log_normalizer(net=net)
        out.update(log_normalizer=float(log_z), log_normalizer_se=float(log_z_se), normalizer_points=self.n_mass)
        if self.manifold.piecewise_flat:
            # mu = nu - div u jumps across edges, so the sampler's density alpha_t = (1 - t) nu + t mu
            # jumps where trajectories cross them; the augmented ODE has no jump terms and would
            # disagree with the (exact) explicit density for that reason alone
            out["ode_check"] = "skipped: the density is discontinuous across the mesh's edges"
            return out
        xs = x[:max_points]
        explicit = self.log_prob(xs, net=net)
        ode = self.ode_log_prob(xs, net=net, solver=solver, solver_steps=solver_steps)
        diff = (explicit - ode).abs()
        out.update(ode_check_points=int(xs.shape[0]), explicit_nll=float(-explicit.mean()), ode_nll=float(-ode.mean()),
                   ode_abs_diff_mean=float(diff.mean()), ode_abs_diff_max=float(diff.max()))
        return out
