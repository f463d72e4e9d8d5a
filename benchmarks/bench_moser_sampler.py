"""Moser Flow's sampler and likelihoods on a trained model: ODE against explicit density, samples against the density.

    python benchmarks/bench_moser_sampler.py RUN_FOLDER [--n 10000] [--cells 450]

On the trained model of RUN_FOLDER (a Moser Flow run on S^2):

1. Likelihood agreement on up to 200 test points: the explicit, normalised log-density against
   the ODE likelihood of the sampler's flow, for several solvers (mean and max |difference|,
   seconds), and the part of the difference that the clamp explains: ``explicit - ODE = C - log Z``
   exactly in continuous time, ``C`` the clamp deficit along the trajectory
   (``MoserFlow.clamp_deficit``); what is left is the solver's error.
2. Samples against the density on equal-area cells (15 latitude bands of equal area x 30
   longitudes = 450 cells): the density's cell masses come from importance weights over 10^6
   uniform points; the noise floor is the total variation of ``n`` exact draws from those masses
   (mean and std over 20 repetitions). Each sampler (the ODE alone, the ODE followed by
   Metropolis-Hastings steps, with and without importance resampling by the clamp deficit) is
   scored by its total variation, its evaluations of the network's divergence per sample (the
   ODE's stages plus the chain's), the effective sample size of resampling and its seconds for
   ``n`` samples.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section  # noqa: E402

from manifold_flows import load_run  # noqa: E402
from manifold_flows.mcmc import metropolis_refine  # noqa: E402
from manifold_flows.solvers import SOLVERS  # noqa: E402


def cell_index(x: torch.Tensor, bands: int, sectors: int) -> torch.Tensor:
    """Equal-area cell of unit vectors ``x [N, 3]``: ``z`` in equal bands, longitude in equal sectors."""
    b = ((x[:, 2] + 1) / 2 * bands).long().clamp(0, bands - 1)
    phi = torch.atan2(x[:, 1], x[:, 0]) + math.pi
    s = (phi / (2 * math.pi) * sectors).long().clamp(0, sectors - 1)
    return b * sectors + s


def tv(counts: torch.Tensor, masses: torch.Tensor) -> float:
    """Total variation between a histogram (normalised here) and cell masses."""
    return 0.5 * float((counts / counts.sum() - masses).abs().sum())


class Counted:
    """Counts the density evaluations (divergences of the network) a sampler makes."""

    def __init__(self, objective):
        self.objective, self.points, self.calls = objective, 0, 0
        self._density = objective.density

    def __enter__(self):
        def density(x, **kw):
            self.points += x.shape[0]
            self.calls += 1
            return self._density(x, **kw)

        self.objective.density = density
        return self

    def __exit__(self, *exc):
        self.objective.density = self._density


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--bands", type=int, default=15)
    p.add_argument("--sectors", type=int, default=30)
    p.add_argument("--mass-points", type=int, default=1_000_000)
    p.add_argument("--adaptive", action="store_true",
                   help="also the ODE likelihood by dopri5 (on a stiff field it may take hours)")
    args = p.parse_args()
    cfg, data, model, note = load_run(args.run)
    if cfg.method != "moser":
        raise SystemExit(f"{args.run} is a {cfg.method} run, not Moser Flow")
    test = data["test"][:200].to(torch.float32)
    rows = ["| solver | mean abs diff (nats) | max abs diff | seconds | clamp deficit C, mean | points with C = 0 "
            "| mean abs (diff - (C - log Z)) |", "|---|---|---|---|---|---|---|"]
    explicit = model.log_prob(test)
    log_z = model.log_normalizer()[0]
    solvers = [("rk4", 100), ("rk4", 400)] + ([("dopri5", 0)] if args.adaptive else [])
    for solver, steps in solvers:
        t0 = time.perf_counter()
        ode = model.ode_log_prob(test, solver=solver, solver_steps=max(steps, 1))
        sec = time.perf_counter() - t0
        d = explicit - ode
        label = f"{solver}, {steps} steps" if steps else f"{solver}, atol = rtol = 1e-5"
        split = "| | |"
        if steps:
            c = model.clamp_deficit(test, solver=solver, solver_steps=steps)
            rest = d - (c - log_z)
            split = f"{float(c.mean()):.3f} | {float((c == 0).double().mean()):.0%} | {float(rest.abs().mean()):.4f} |"
        rows.append(f"| {label} | {float(d.abs().mean()):.3f} | {float(d.abs().max()):.2f} | {sec:.1f} | {split}")
        print(rows[-1], flush=True)

    g = torch.Generator().manual_seed(0)
    y = model.manifold.random_base(args.mass_points, generator=g)
    w = torch.cat([model.log_prob(c) for c in torch.split(y, 20_000)]).exp()
    cells = args.bands * args.sectors
    masses = torch.zeros(cells, dtype=torch.float64).index_add_(0, cell_index(y, args.bands, args.sectors), w.double())
    masses /= masses.sum()
    floor = []
    for r in range(20):
        draw = torch.multinomial(masses, args.n, replacement=True, generator=torch.Generator().manual_seed(100 + r))
        floor.append(tv(torch.bincount(draw, minlength=cells).double(), masses))
    floor_txt = f"{statistics.mean(floor):.4f} ± {statistics.stdev(floor):.4f}"
    table = ["| sampler | TV to the density | divergence evaluations per sample | effective sample size | seconds |",
             "|---|---|---|---|---|",
             f"| {args.n} exact draws (noise floor, 20 repetitions) | {floor_txt} | | | |"]
    # one ODE solve per solver setting; resampling and the chain start from its samples (the stages of
    # MoserFlow.sample), and each row's seconds are the sum of the stages it uses
    def score(x: torch.Tensor) -> float:
        return tv(torch.bincount(cell_index(x.double(), args.bands, args.sectors), minlength=cells).double(), masses)

    def chain(x: torch.Tensor, steps: int):
        with Counted(model) as c:
            t0 = time.perf_counter()
            y, _ = metropolis_refine(lambda z: model.log_density(z), x, model.manifold, steps=steps,
                                     generator=torch.Generator().manual_seed(8))
            return y, c.points / args.n, time.perf_counter() - t0

    for solver, steps, variants in (("rk4", 100, ((False, 0), (True, 0), (False, 40), (True, 40))),
                                    ("rk4", 20, ((True, 40), (False, 40))), ("euler", 10, ((True, 60),))):
        t0 = time.perf_counter()
        x_ode, deficit = model.ode_samples(args.n, solver=solver, solver_steps=steps,
                                           generator=torch.Generator().manual_seed(7))
        sec_ode = time.perf_counter() - t0
        t0 = time.perf_counter()
        x_res, stats = model.resample_by_deficit(x_ode, deficit, generator=torch.Generator().manual_seed(9))
        sec_res = time.perf_counter() - t0
        for resample, mcmc in variants:
            x, sec, evals = (x_res, sec_ode + sec_res, 0.0) if resample else (x_ode, sec_ode, 0.0)
            if mcmc:
                x, evals, sec_mh = chain(x, mcmc)
                sec += sec_mh
            label = (f"ODE {solver} {steps} steps" + (" + resampling" if resample else "")
                     + (f" + {mcmc} Metropolis steps" if mcmc else ""))
            ess = (f"{float(stats['effective_sample_size']):.0%} ({float(stats['truncated']):.1%} truncated)"
                   if resample else "")
            evals += SOLVERS[solver].stages * steps
            table.append(f"| {label} | {score(x):.4f} | {evals:.0f} | {ess} | {sec:.1f} |")
            print(table[-1], flush=True)
    body = (f"Model: `{args.run}` ({cfg.data}, {note['step']} steps, {cfg.hidden}x{cfg.depth}); normaliser log Z = "
            f"{float(log_z):.4f}. Default sampler: ODE rk4 100 steps + 40 Metropolis steps (resampling "
            f"is opt-in).\n\nExplicit log-density against the ODE likelihood of the "
            f"sampler's flow on {test.shape[0]} test points:\n\n" + "\n".join(rows) +
            f"\n\n{args.n} samples on {cells} equal-area cells:\n\n" + "\n".join(table))
    write_section("Moser Flow sampler", body)


if __name__ == "__main__":
    main()
