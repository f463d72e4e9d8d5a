"""The ``manifold-flows`` command line: train, evaluate and sample.

Every expected failure (bad options, data or checkpoints, I/O, devices, encodings) ends in one line
``error: ...`` on stderr and exit code 2; Ctrl-C during training writes ``last.pt`` and exits with 130.
"""

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

from .config import DTYPES, TrainConfig
from .evaluation import evaluate_split
from .runs import load_run
from .solvers import SOLVERS, available_solvers
from .training import Interrupted, train

SAMPLE_FORMATS = (".csv", ".txt", ".npy", ".pt")


def _config_type(f: dataclasses.Field):
    kind = str(f.type).replace("Optional[", "").rstrip("]")
    return {"int": int, "float": float, "str": str, "bool": bool}[kind]


def _add_config_args(p: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = _config_type(f)
        text = f.metadata.get("help", "")
        if f.default is not None and kind is not bool:
            text += f" (default: {f.default})"
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=text)
        else:
            p.add_argument(flag, type=kind, default=f.default, help=text)


def cmd_train(args: argparse.Namespace) -> int:
    """``manifold-flows train``: train a model from the command-line configuration; returns the exit code."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if cfg.device.startswith("cuda") else "gloo")
        if cfg.device.startswith("cuda"):
            cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    try:
        metrics = train(cfg, resume=args.resume, overwrite=args.overwrite, allow_data_change=args.allow_data_change)
    finally:
        if distributed:
            dist.destroy_process_group()
    if metrics:
        keys = ["test_nll", "likelihood", "solver_check", "solver_check_change", "val_nll", "base_nll", "target_nll",
                "gap", "negative_mass", "log_normalizer", "ode_nll", "explicit_nll", "ode_check", "path_nll", "steps",
                "train_seconds", "figure"]
        print(json.dumps({k: metrics[k] for k in keys if k in metrics}, indent=2))
        print(f"wrote {Path(cfg.out) / 'metrics.json'}")
    return 0


def _solver_options(args: argparse.Namespace, cfg: TrainConfig) -> None:
    if args.solver is not None:
        if args.solver not in available_solvers():
            raise ValueError(f"unknown --solver {args.solver!r}; choose from {available_solvers()}")
        cfg.solver = args.solver
    if args.solver_steps is not None:
        if args.solver_steps < 1:
            raise ValueError(f"--solver-steps must be >= 1, got {args.solver_steps}")
        cfg.solver_steps = args.solver_steps


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``manifold-flows evaluate``: print a checkpoint's metrics on one split as JSON; returns the exit code."""
    cfg, data, objective, note = load_run(args.checkpoint, device=args.device, allow_data_change=args.allow_data_change)
    _solver_options(args, cfg)
    x = data[args.split].to(device=args.device, dtype=DTYPES[cfg.dtype])
    metrics = evaluate_split(objective, objective.net, cfg, data, x, objective.manifold)
    metrics = {(k.replace("test_nll", f"{args.split}_nll") if k == "test_nll" else k): v for k, v in metrics.items()}
    metrics.update(note)
    print(json.dumps(metrics, indent=2))
    return 0


def _sample_target(out: str) -> Path:
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name ending in {', '.join(SAMPLE_FORMATS)}")
    if path.suffix not in SAMPLE_FORMATS:
        raise ValueError(f"--out {out}: unknown format {path.suffix or '(no suffix)'!r}; use "
                         f"{', '.join(SAMPLE_FORMATS)}")
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"--out {out}: {path.parent} is not a folder")
    return path


def cmd_sample(args: argparse.Namespace) -> int:
    """``manifold-flows sample``: draw samples from a checkpoint and write them to ``--out``; returns the exit code."""
    out = _sample_target(args.out)
    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    cfg, data, objective, _ = load_run(args.checkpoint, device=args.device, allow_data_change=args.allow_data_change)
    _solver_options(args, cfg)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    x = objective.sample(args.n, solver=cfg.solver, solver_steps=cfg.solver_steps, generator=gen)
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
            np.savetxt(out, xyz_to_latlon(x.detach().double().cpu()).numpy(), delimiter=",", header="lat,lon",
                       comments="", fmt="%.6f")
        else:
            header = ",".join(f"x{i}" for i in range(arr.shape[1]))
            np.savetxt(out, arr, delimiter=",", header=header, comments="", fmt="%.8f")
    how = f"ODE {cfg.solver}" + (f", {cfg.solver_steps} steps" if cfg.solver in SOLVERS else "")
    resampled = getattr(objective, "last_resample", None)
    if resampled is not None:
        how += (f", resampled by the clamp's importance weights (effective sample size "
                f"{float(resampled['effective_sample_size']):.0%})")
    chain = getattr(objective, "last_chain", None)
    if chain is not None:
        how += (f", then {chain.local_steps + chain.global_steps} Metropolis-Hastings steps on the explicit density "
                f"(acceptance: local {chain.local_acceptance:.2f}, global {chain.global_acceptance:.2f})")
    print(f"wrote {args.n} samples to {out} ({how})")
    return 0


def _add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .pt checkpoint or a run folder (uses best.pt)")
    p.add_argument("--solver", default=None, help="ODE solver (default: the run's): " + " | ".join(available_solvers()))
    p.add_argument("--solver-steps", type=int, default=None, help="fixed solver steps (default: the run's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--allow-data-change", action="store_true",
                   help="use the data as it is now although it changed since training (reported in the output)")


def make_parser() -> argparse.ArgumentParser:
    """The command-line parser with the ``train``, ``evaluate`` and ``sample`` sub-commands."""
    parser = argparse.ArgumentParser(prog="manifold-flows", description="Generative models on Riemannian manifolds.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model; writes checkpoints, metrics.json and a figure to --out")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an --out folder that holds a run")
    p.add_argument("--allow-data-change", action="store_true",
                   help="with --resume: continue although the data file changed since last.pt was written")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="negative log-likelihood of a checkpoint on its test (or val) split")
    _add_checkpoint_args(p)
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("sample", help="draw samples from a checkpoint (CSV: lat,lon on the globe, x,y,z in the file's "
                                      "coordinates on meshes; or .npy / .pt)")
    _add_checkpoint_args(p)
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--out", required=True, help="file to write: " + ", ".join(SAMPLE_FORMATS))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point: run the sub-command and return the exit code (2 on errors, 130 if interrupted)."""
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except torch.cuda.OutOfMemoryError as e:
        print(f"error: out of device memory ({str(e).splitlines()[0]}); try a smaller --batch-size", file=sys.stderr)
        return 2
    except (ValueError, OSError, FloatingPointError) as e:  # ValueError covers CheckpointError and UnicodeDecodeError
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
