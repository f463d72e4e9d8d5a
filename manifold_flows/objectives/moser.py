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
from ..solvers import SOLVERS, check_solver, odeint_augmented, time_grid
from .base import FlowObjective

REFERENCE_VOLUME = 4 * math.pi
"""Volume of the unit sphere, where Moser Flow's published settings (``eps = 1e-5``, a field of unit scale) were set.

Elsewhere the defaults keep their ratio to the uniform density ``1 / Vol``: the floor is
``1e-5 * REFERENCE_VOLUME / Vol`` and the network's output is multiplied by ``REFERENCE_VOLUME / Vol``,
so ``mu / nu = 1 - 4 pi div(net)`` starts on the same footing on any manifold. Without that, on
``T^10`` (uniform density 1e-8) the floor 1e-5 lies a thousand times above the uniform density,
every point is clamped, the loss has no gradient and training stays at the uniform NLL
(BENCHMARKS.md, "Known-density gaps").
"""

PUBLISHED_EPS = 1e-5
"""Moser Flow's published density floor on the unit sphere."""


def reference_ratio(manifold: Manifold) -> float:
    """``REFERENCE_VOLUME / Vol(manifold)``: the default ``field_scale``, and ``eps / PUBLISHED_EPS``.

    Exactly 1 on the unit sphere (whose volume may differ from ``4 pi`` in the last bit).
    """
    ratio = REFERENCE_VOLUME / manifold.volume
    return 1.0 if math.isclose(ratio, 1.0, rel_tol=1e-12) else ratio


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
    ``t = 1``, which carries ``nu`` along ``alpha_t = (1 - t) nu + t mu`` where ``mu >= eps``; the
    clamp elsewhere costs each sample a known deficit (:meth:`clamp_deficit`), which importance
    resampling removes, and Metropolis-Hastings steps on the explicit density remove what the
    solver gets wrong. :meth:`diagnostics` compares the explicit density with the ODE's likelihood
    and splits their difference into the clamp's part and the solver's.

    Args:
        manifold: a compact manifold with a uniform base distribution.
        net: the tangent-field network (build it with ``time_dependent=False``).
        eps: floor ``eps`` of the density in the log and in the penalty (default: the published 1e-5 on the
            unit sphere, in proportion to the uniform density elsewhere; see :data:`REFERENCE_VOLUME`).
        lam: weight of the negative-mass penalty (published 2; 100 on the earth data).
        field_scale: ``u = field_scale * net(x)`` (default ``REFERENCE_VOLUME / Vol``: 1 on the unit sphere).
        n_uniform: uniform points per step for the penalty (default: the data batch size).
        divergence: ``"exact"``, ``"hutchinson"`` or ``"auto"`` (Hutchinson above
            :data:`~manifold_flows.divergence.HUTCHINSON_ABOVE` dimensions); training only, :meth:`log_prob` is exact.
        n_probes: Hutchinson probes per point.
        n_mass: uniform points of the Monte Carlo normaliser of :meth:`log_prob`.
        mcmc_steps: Metropolis-Hastings steps that :meth:`sample` runs after the ODE (0: none).
        resample: let :meth:`sample` resample the ODE's samples by their importance weights
            ``exp(C)`` (see :meth:`clamp_deficit`), truncated, before the Metropolis steps.
    """

    def __init__(self, manifold: Manifold, net: nn.Module, *, eps: Optional[float] = None, lam: float = 2.0,
                 field_scale: Optional[float] = None,
                 n_uniform: Optional[int] = None, divergence: str = "exact", n_probes: int = 1,
                 n_mass: int = 20_000, mcmc_steps: int = 40, resample: bool = False):
        super().__init__(manifold, net)
        if not manifold.compact or manifold.has_boundary:
            raise ValueError(f"Moser Flow needs a compact manifold without boundary (the divergence theorem makes mu "
                             f"integrate to 1); {manifold} is not one")
        divergence = resolve_estimator(divergence, manifold)
        ratio = reference_ratio(manifold)
        eps = PUBLISHED_EPS * ratio if eps is None else eps
        field_scale = ratio if field_scale is None else field_scale
        if not field_scale > 0 or not math.isfinite(field_scale):
            raise ValueError(f"field_scale must be a positive finite number, got {field_scale}")
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
        self.field_scale = float(field_scale)
        self.mcmc_steps, self.resample = int(mcmc_steps), bool(resample)
        self.last_resample: Optional[Dict[str, torch.Tensor]] = None
        self._normalizer_cache: Optional[tuple] = None
        self.last_chain: Optional[ChainStats] = None
        self.divergence, self.n_probes = divergence, n_probes
        self.log_volume = math.log(manifold.volume)

    def tangent_field(self, net: Optional[nn.Module] = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``u(x) = field_scale * net(x)``, the time-independent field whose divergence makes the density."""
        u, c = (net if net is not None else self.net), self.field_scale
        return u if c == 1.0 else (lambda y: c * u(y))

    def density(self, x: torch.Tensor, *, net: Optional[nn.Module] = None, create_graph: bool = False,
                divergence: str = "exact", generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``mu(x) = nu - div u(x)``, shape ``[...]`` (can be negative; differentiable with ``create_graph``)."""
        u = self.tangent_field(net)
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

    ode_likelihood = False

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
               device: Optional[torch.device] = None, mcmc_steps: Optional[int] = None,
               resample: Optional[bool] = None) -> torch.Tensor:
        """``n`` samples ``[n, D]`` of the normalised density ``max(eps, mu) / Z`` that :meth:`log_prob` reports.

        Three stages, each optional after the first:

        1. the ODE of :meth:`field` carries ``n`` base samples forward, accumulating the clamp
           deficit ``C`` of :meth:`clamp_deficit` on the way (no extra network evaluations: the
           divergence is already computed for the field). The ODE's density at a sample is exactly
           ``max(eps, mu) exp(-C)`` (up to the solver's error), so
        2. with ``resample``, resampling them with weights ``exp(C)`` (multinomial, with
           replacement) turns them into samples of ``max(eps, mu) / Z``; the mean weight estimates
           ``Z`` and the effective sample size says how much the weights vary
           (:attr:`last_resample`). The weights are truncated at ``sqrt(n)`` times their median,
           because the solver overstates ``C`` on trajectories that pass where ``alpha_t`` is tiny;
           off by default (see BENCHMARKS.md, "Moser Flow sampler");
        3. ``mcmc_steps`` Metropolis-Hastings steps on the explicit density (:mod:`manifold_flows.mcmc`)
           spread the duplicates of resampling and remove the solver's remaining error. The
           chain's acceptance rates are kept in :attr:`last_chain`.
        """
        x, c = self.ode_samples(n, net=net, solver=solver, solver_steps=solver_steps, generator=generator,
                                dtype=dtype, device=device)
        self.last_resample = None
        if (self.resample if resample is None else resample) and n > 0:
            x, self.last_resample = self.resample_by_deficit(x, c, generator=generator)
        k = self.mcmc_steps if mcmc_steps is None else mcmc_steps
        self.last_chain = None
        if k == 0 or n == 0:
            return x
        x, self.last_chain = metropolis_refine(lambda y: self.log_density(y, net=net), x, self.manifold, steps=k,
                                               generator=generator)
        return x

    @torch.no_grad()
    def ode_samples(self, n: int, *, net: Optional[nn.Module] = None, solver: str = "rk4", solver_steps: int = 100,
                    generator: Optional[torch.Generator] = None, dtype: Optional[torch.dtype] = None,
                    device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The first stage of :meth:`sample`: ``n`` ODE samples ``[n, D]`` and their clamp deficits ``C`` ``[n]``."""
        check_solver(solver)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        p = next(self.net.parameters())
        x0 = self.manifold.random_base(n, dtype=dtype or p.dtype, device=device or p.device, generator=generator)
        grid = time_grid(solver_steps if solver in SOLVERS else 1, t0=0.0, t1=1.0, dtype=x0.dtype)
        x, c = odeint_augmented(self._sampling_system(net), x0, grid, manifold=self.manifold,
                                a0=x0.new_zeros(n, 1), solver=solver)
        return x, c[:, 0]

    @staticmethod
    def resample_by_deficit(x: torch.Tensor, deficit: torch.Tensor, *, generator: Optional[torch.Generator] = None
                            ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The second stage of :meth:`sample`: ``len(x)`` multinomial draws from ``x [n, D]`` with weights ``exp(C)``.

        The weights are truncated (Ionides 2008) at ``sqrt(n)`` times their median: a trajectory
        that skirts ``alpha ~ eps`` near ``t = 1`` picks up a deficit that the fixed-step solver
        overstates by many nats, and one such weight would otherwise take every draw.

        Returns:
            The resampled points and 0-dim tensors (no host synchronisation): the effective sample
            size as a fraction of ``n``, the log mean (truncated) weight (an estimate of ``log Z``),
            the largest raw log-weight and the fraction of weights truncated.
        """
        n = x.shape[0]
        cap = deficit.median() + 0.5 * math.log(n)
        logw = torch.minimum(deficit, cap)
        w = torch.softmax(logw, 0)
        idx = torch.multinomial(w, n, replacement=True, generator=generator)
        stats = {"effective_sample_size": 1 / (w * w).sum() / n,
                 "log_mean_weight": torch.logsumexp(logw, 0) - math.log(n),
                 "max_log_weight": deficit.max(), "truncated": (deficit > cap).double().mean()}
        return x[idx], stats

    def _sampling_system(self, net: Optional[nn.Module] = None):
        """``(y, s) -> (v_s(y), (eps - mu(y))_+ / alpha_s(y))``: the sampling field and the clamp deficit rate."""
        u = self.tangent_field(net)
        nu = math.exp(-self.log_volume)

        def func(y: torch.Tensor, s: torch.Tensor):
            uy, div = value_and_divergence(lambda z, _: u(z), y, 0.0, manifold=self.manifold)
            mu = nu - div
            alpha = (1 - s) * nu + s * torch.clamp(mu, min=self.eps)
            return uy / alpha.unsqueeze(-1), ((self.eps - mu).clamp_min(0) / alpha).unsqueeze(-1)

        return func

    @torch.no_grad()
    def log_density(self, x: torch.Tensor, *, net: Optional[nn.Module] = None) -> torch.Tensor:
        """Unnormalised ``log max(eps, mu(x))``, ``[N, D] -> [N]`` (no input check: for inner loops)."""
        out = [torch.log(torch.clamp(self.density(c, net=net), min=self.eps)) for c in torch.split(x, 4096)]
        return torch.cat(out) if out else x.new_zeros(0)

    def field(self, net: Optional[nn.Module] = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The sampling field ``v_t(x) = u(x) / ((1 - t) nu + t max(eps, mu(x)))``."""
        u = self.tangent_field(net)
        nu = math.exp(-self.log_volume)

        def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # keep the graph when an outer divergence (the ODE likelihood) differentiates v
            create = torch.is_grad_enabled() and x.requires_grad
            ux, div = value_and_divergence(lambda y, s: u(y), x, 0.0, manifold=self.manifold, create_graph=create)
            mu = torch.clamp(nu - div, min=self.eps)
            return ux / ((1 - t) * nu + t * mu).unsqueeze(-1)

        return v

    @torch.no_grad()
    def clamp_deficit(self, x: torch.Tensor, *, net: Optional[nn.Module] = None, solver: str = "rk4",
                      solver_steps: int = 100) -> torch.Tensor:
        """``C(x) = int_0^1 (eps - mu(x_t))_+ / alpha_t(x_t) dt`` along the sampler's trajectory that ends at ``x``.

        Along any trajectory of :meth:`field`, ``d/dt log alpha_t(x_t) = -div v_t(x_t) + (eps - mu)_+ / alpha_t``
        with ``alpha_t = (1 - t) nu + t max(eps, mu)`` (the continuity equation holds wherever
        ``mu >= eps`` and fails by the clamp elsewhere). Integrated from ``t = 0`` to ``1``, the
        sampler's ODE likelihood is therefore exactly ``log max(eps, mu(x)) - C(x)``, and

            explicit - ODE = C(x) - log Z   (up to the solver's error).

        ``C`` vanishes for trajectories that never meet ``mu < eps``; where ``mu`` is negative near
        ``t = 1`` it grows like ``(|mu| / nu) log(nu / eps)``. It is what keeps the ODE alone from
        sampling ``max(eps, mu) / Z`` (the Metropolis steps of :meth:`sample` remove it).
        Returns ``[N]`` for ``x [N, D]``, integrated backward with the given fixed-step solver.
        """
        if solver not in SOLVERS:
            raise ValueError(f"clamp_deficit takes a fixed-step solver ({sorted(SOLVERS)}), got {solver!r}")
        func = self._sampling_system(net)
        grid = time_grid(solver_steps, t0=1.0, t1=0.0, dtype=x.dtype)
        out = []
        for chunk in torch.split(x, 4096):
            a0 = chunk.new_zeros(chunk.shape[0], 1)
            _, a = odeint_augmented(func, chunk, grid, manifold=self.manifold, a0=a0, solver=solver)
            out.append(-a[:, 0])  # the backward integral runs from 1 to 0
        return torch.cat(out) if out else x.new_zeros(0)

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
        if solver in SOLVERS:
            # explicit - ODE = C - log Z exactly in continuous time (clamp_deficit): split the gap into
            # what the clamp explains and what is left for the solver
            deficit = self.clamp_deficit(xs, net=net, solver=solver, solver_steps=solver_steps)
            rest = (explicit - ode) - (deficit - log_z)
            out.update(ode_clamp_deficit_mean=float(deficit.mean()),
                       ode_clamp_free_points=float((deficit == 0).double().mean()),
                       ode_unexplained_abs_mean=float(rest.abs().mean()))
        return out
