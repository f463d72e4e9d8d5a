"""The ``manifold-flows`` command line: train, evaluate and sample."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from .objectives import OBJECTIVES
from .train import DTYPES, PATHS, TrainConfig, build_objective, evaluate_split, load_data, train

HELP = {
    "data": "volcano | earthquake | flood | PATH.csv (lat,lon degrees) | a synthetic name (see manifold_flows.datasets) "
            "| mesh:bunny | mesh:PATH (any mesh file trimesh reads) | implicit:sphere|ellipsoid|torus",
    "method": "training objective: rfm | moser | ppd (per-method defaults fill unset options, see README)",
    "lr": "learning rate (default: per method)",
    "activation": "silu | relu | gelu | tanh | softplus | softplus100 (default: per method)",
    "lam": "Moser Flow: weight of the negative-mass penalty (default: per method)",
    "eps": "Moser Flow: density floor in the log and the penalty",
    "n_uniform": "Moser Flow: uniform points per step for the penalty (default: batch size)",
    "zero_init": "start from the zero field (default: per method; on for Moser Flow)",
    "divergence": "divergence estimator in training for moser/ppd: exact | hutchinson",
    "n_probes": "Hutchinson probes per point",
    "ppd_norm": "PPD: 1 or 2, the norm of the residual (default: per method)",
    "kappa1": "PPD: kernel concentration at t=1 (default: chosen on the validation split)",
    "uniform": "PPD: weight of the base density in the target path (default: chosen on the validation split)",
    "out": "output folder (checkpoints, metrics.json, density.png)",
    "steps": "training steps",
    "coupling": "noise-data coupling for RFM: independent | ot (minibatch optimal transport)",
    "eval_every": "validate (and checkpoint) every N steps",
    "solver": "ODE solver for likelihoods and samples: euler | midpoint | rk4 | dopri5 ...",
    "solver_steps": "fixed solver steps for likelihoods and samples",
    "split_seed": "seed of the 80/10/10 split (default: --seed)",
    "dedupe": "remove exact duplicate points before splitting",
    "max_val_points": "validation points used for the periodic validation NLL",
    "path": "RFM conditional path: geodesic (exp/log maps; on meshes traced geodesics and heat-method log maps) | "
            "biharmonic | diffusion (spectral premetrics on meshes; biharmonic is the mesh default)",
    "n_eigs": "meshes: Laplace-Beltrami eigenpairs of the spectral distance",
    "sim_steps": "meshes: Euler steps per simulated RFM path (each state is a target)",
    "diffusion_time": "meshes: time of the diffusion distance (default 2 / the tenth eigenvalue)",
    "density": "mesh data: target density eig:K (clamped K-th eigenfunction) | bumps:N[:SIGMA] (default eig:10)",
    "samples": "mesh/implicit data: a CSV of x,y,z points (the mesh file's coordinates) to train on instead of --density",
    "mesh_scale": "mesh data: none | area | radius | a number (default: 1/250 for the bunny, none for files)",
}


OPTIONAL_TYPES = {"split_seed": int, "lr": float, "activation": str, "lam": float, "n_uniform": int, "ppd_norm": int,
                  "kappa1": float, "uniform": float, "zero_init": bool, "path": str, "diffusion_time": float,
                  "density": str, "samples": str, "mesh_scale": str}
"""Argument types of the config fields whose default is ``None``."""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        kind = OPTIONAL_TYPES[f.name] if default is None else type(default)
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=HELP.get(f.name))
        elif f.name == "method":
            p.add_argument(flag, choices=sorted(OBJECTIVES), default=default, help=HELP.get(f.name))
        elif f.name == "path":
            p.add_argument(flag, choices=[c for c in PATHS if c], default=default, help=HELP.get(f.name))
        else:
            p.add_argument(flag, type=kind, default=default, help=HELP.get(f.name, f"(default: {default})"))


def _load_checkpoint(path: str, device: str):
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt"
    if not p.exists():
        raise SystemExit(f"error: checkpoint {p} does not exist")
    ck = torch.load(p, map_location=device, weights_only=False)
    if "config" not in ck or "ema" not in ck:
        raise SystemExit(f"error: {p} is not a manifold-flows checkpoint (no config/ema entries)")
    cfg = TrainConfig.from_dict(ck["config"]).resolved()
    cfg.device = device
    data = load_data(cfg)
    manifold = data["manifold"]
    dtype = DTYPES[cfg.dtype]
    objective = build_objective(cfg, manifold).to(device=device, dtype=dtype)
    objective.prepare(data["train"].to(device=device, dtype=dtype), data["val"].to(device=device, dtype=dtype))
    objective.net.load_state_dict(ck["ema"])
    objective.eval()
    return cfg, data, objective


def cmd_train(args: argparse.Namespace) -> int:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if cfg.device.startswith("cuda") else "gloo")
        if cfg.device.startswith("cuda"):
            cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    try:
        metrics = train(cfg, resume=args.resume)
    finally:
        if distributed:
            dist.destroy_process_group()
    if metrics:
        keys = ["test_nll", "val_nll", "base_nll", "target_nll", "gap", "negative_mass", "ode_nll", "explicit_nll", "ode_check",
                "path_nll", "steps", "train_seconds", "figure"]
        print(json.dumps({k: metrics[k] for k in keys if k in metrics}, indent=2))
        print(f"wrote {Path(cfg.out) / 'metrics.json'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg, data, objective = _load_checkpoint(args.checkpoint, args.device)
    if args.solver_steps:
        cfg.solver_steps = args.solver_steps
    x = data[args.split].to(device=args.device, dtype=DTYPES[cfg.dtype])
    metrics = evaluate_split(objective, objective.net, cfg, data, x, objective.manifold)
    metrics = {("test_nll" if k == "test_nll" and args.split == "test" else k.replace("test_nll", f"{args.split}_nll")): v
               for k, v in metrics.items()}
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    cfg, data, objective = _load_checkpoint(args.checkpoint, args.device)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    x = objective.sample(args.n, steps=args.solver_steps or cfg.solver_steps, method=cfg.solver, generator=gen)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arr = x.detach().double().cpu().numpy()
    if out.suffix == ".npy":
        np.save(out, arr)
    elif out.suffix == ".pt":
        torch.save(x.cpu(), out)
    else:
        from manifolds import Mesh, Sphere

        from .datasets import xyz_to_latlon

        if isinstance(objective.manifold, Mesh):  # in the mesh file's own coordinates, like --samples input
            raw = objective.manifold.to_raw(x.detach().double().cpu()).numpy()
            np.savetxt(out, raw, delimiter=",", header="x,y,z", comments="", fmt="%.8g")
        elif isinstance(objective.manifold, Sphere) and objective.manifold.dim == 2:
            np.savetxt(out, xyz_to_latlon(x.detach().double().cpu()).numpy(), delimiter=",", header="lat,lon", comments="", fmt="%.6f")
        else:
            header = ",".join(f"x{i}" for i in range(arr.shape[1]))
            np.savetxt(out, arr, delimiter=",", header=header, comments="", fmt="%.8f")
    print(f"wrote {args.n} samples to {out}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="manifold-flows", description="Generative models on Riemannian manifolds.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model; writes checkpoints, metrics.json and a figure to --out")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="negative log-likelihood of a checkpoint on its test (or val) split")
    p.add_argument("checkpoint", help="a .pt checkpoint or a run folder (uses best.pt)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.add_argument("--solver-steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("sample", help="draw samples from a checkpoint (CSV: lat,lon on the globe, x,y,z in the file's "
                                      "coordinates on meshes; or .npy / .pt)")
    p.add_argument("checkpoint")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--solver-steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_sample)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
