"""The exact divergence along tangent frames against the trace over every coordinate.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/bench_divergence.py

Where a manifold gives an orthonormal tangent frame (``Manifold.tangent_frame``), the exact
divergence takes one vector-Jacobian product per intrinsic dimension instead of one per ambient
coordinate. This times both on the default network (MLP 4x256, SiLU) for the two uses: a Moser
Flow training step (divergence with ``create_graph``, then the backward pass of a loss on it) and
one likelihood evaluation of the field (no graph), in interleaved rounds of the same process, and
writes the BENCHMARKS.md section "Exact divergence along tangent frames".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import interleaved_medians, write_section  # noqa: E402

import manifolds as mf  # noqa: E402
from manifold_flows.datasets.mesh import load_mesh  # noqa: E402
from manifold_flows.divergence import divergence  # noqa: E402
from manifold_flows.nets import VectorField  # noqa: E402

CASES = {
    "S^2": lambda: mf.Sphere(2),
    "SO(3)": mf.SO3,
    "SPD(3)": lambda: mf.SPD(3),
    "bunny mesh": lambda: load_mesh("bunny"),
}


def timings(m: mf.Manifold, batch: int, repeats: int) -> dict:
    """Median seconds of a training step and of a likelihood evaluation, along the frame and over the coordinates."""
    torch.manual_seed(0)
    net = VectorField(m, 256, 4, time_dependent=False)
    x = m.random_base(batch, generator=torch.Generator().manual_seed(1))
    field = lambda y, t: net(y, t)  # noqa: E731
    frame_of = type(m).tangent_frame

    def run(create_graph: bool, framed: bool):
        def fn():
            type(m).tangent_frame = frame_of if framed else (lambda self, y: None)
            try:
                d = divergence(field, x, 0.0, manifold=m, create_graph=create_graph)
                if create_graph:
                    net.zero_grad()
                    (d ** 2).mean().backward()
            finally:
                type(m).tangent_frame = frame_of
        return fn

    fns = {(g, f): run(g, f) for g in (True, False) for f in (True, False)}
    return interleaved_medians(fns, repeats=repeats, warmup=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    rows = ["| manifold | VJPs: frame / coordinates | training step ms: frame / coordinates (ratio) | "
            "likelihood evaluation ms: frame / coordinates (ratio) |", "|---|---|---|---|"]
    for name, make in CASES.items():
        m = make()
        t = timings(m, args.batch, args.repeats)
        train = t[(True, True)], t[(True, False)]
        lik = t[(False, True)], t[(False, False)]
        rows.append(f"| {name} | {m.dim} / {m.ambient_dim} | {train[0] * 1e3:.1f} / {train[1] * 1e3:.1f} "
                    f"({train[0] / train[1]:.2f}) | {lik[0] * 1e3:.1f} / {lik[1] * 1e3:.1f} ({lik[0] / lik[1]:.2f}) |")
        print(rows[-1], flush=True)
    body = "\n".join([
        f"Exact divergence of the default network (MLP 4x256, SiLU) at {args.batch} points, float32: along "
        "`Manifold.tangent_frame` (one vector-Jacobian product per intrinsic dimension) and over every ambient "
        "coordinate (the trace without a frame). Training step: the divergence with `create_graph` and the "
        "backward pass of a loss on it (Moser Flow and PPD); likelihood evaluation: the divergence without a "
        f"graph (one function evaluation of the likelihood ODE). Medians of {args.repeats} interleaved rounds "
        "in one process, one thread on one core (the other core ran another pinned job). Both give the same "
        "values to 1e-10 in float64 (tests/flows/test_tangent_frames.py).",
        "",
        *rows,
    ])
    write_section("Exact divergence along tangent frames", body)


if __name__ == "__main__":
    main()
