"""The training loop: configuration, checkpoints (atomic, resumable), validation, metrics and figures."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from manifolds import Manifold, Mesh, SpectralDistance

from .nets import EMA, VectorField
from .objectives import OBJECTIVES, PPD, RFM, FlowObjective, MoserFlow
from .paths import PremetricPath

PATHS = (None, "geodesic", "biharmonic", "diffusion")
"""Values of ``TrainConfig.path`` (None: geodesic where exp/log exist, biharmonic on meshes)."""

DTYPES = {"float32": torch.float32, "float64": torch.float64}

METHOD_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "rfm": {"lr": 1e-3, "activation": "silu", "zero_init": False},
    "moser": {"lr": 1e-3, "activation": "softplus100", "lam": 2.0, "zero_init": True},
    "ppd": {"lr": 1e-3, "activation": "silu", "ppd_norm": 1, "zero_init": False},
}
"""Per-method defaults of the config fields left as ``None`` (see README, 'Choosing a method')."""


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in every checkpoint and in metrics.json."""

    data: str = "volcano"
    method: str = "rfm"
    out: str = "runs/volcano"
    steps: int = 2000
    batch_size: int = 512
    lr: Optional[float] = None
    weight_decay: float = 0.0
    warmup: int = 100
    hidden: int = 256
    depth: int = 4
    activation: Optional[str] = None
    ema: float = 0.999
    coupling: str = "independent"
    path: Optional[str] = None
    n_eigs: int = 100
    sim_steps: int = 50
    diffusion_time: Optional[float] = None
    lam: Optional[float] = None
    eps: float = 1e-5
    n_uniform: Optional[int] = None
    zero_init: Optional[bool] = None
    divergence: str = "exact"
    n_probes: int = 1
    ppd_norm: Optional[int] = None
    kappa1: Optional[float] = None
    uniform: Optional[float] = None
    eval_every: int = 500
    solver: str = "rk4"
    solver_steps: int = 100
    max_val_points: int = 2000
    seed: int = 0
    split_seed: Optional[int] = None
    dedupe: bool = False
    n_synthetic: int = 10_000
    density: Optional[str] = None
    samples: Optional[str] = None
    mesh_scale: Optional[str] = None
    device: str = "cpu"
    dtype: str = "float32"
    plot: bool = True
    progress: bool = True

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` that has a per-method default (:data:`METHOD_DEFAULTS`) filled in."""
        if self.method not in OBJECTIVES:
            raise ValueError(f"unknown method {self.method!r}; choose from {sorted(OBJECTIVES)}")
        fill = {k: v for k, v in METHOD_DEFAULTS[self.method].items() if getattr(self, k) is None}
        return dataclasses.replace(self, **fill)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field (call on a :meth:`resolved` config)."""
        if self.method not in OBJECTIVES:
            raise ValueError(f"unknown method {self.method!r}; choose from {sorted(OBJECTIVES)}")
        for name in ("lr", "activation"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} is unset; call TrainConfig.resolved() for the method's default")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        for name in ("steps", "batch_size", "hidden", "depth", "eval_every", "solver_steps", "max_val_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.divergence not in ("exact", "hutchinson"):
            raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {self.divergence!r}")
        if self.method == "moser" and not (self.eps > 0 and self.lam >= 0):
            raise ValueError(f"Moser Flow needs eps > 0 and lam >= 0, got eps={self.eps}, lam={self.lam}")
        if self.method == "ppd" and self.ppd_norm not in (1, 2):
            raise ValueError(f"ppd_norm must be 1 or 2, got {self.ppd_norm}")
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {[p for p in PATHS if p]}, got {self.path!r}")
        for name in ("n_eigs", "sim_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    """Write text atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_path(cfg: TrainConfig, manifold: Manifold) -> Optional[PremetricPath]:
    """The conditional path RFM uses: ``None`` for geodesics, a simulated spectral-premetric path on meshes."""
    kind = cfg.path
    if kind is None:
        kind = "geodesic" if manifold.exact_expmap else "biharmonic"
    if kind == "geodesic":
        return None
    if not isinstance(manifold, Mesh):
        raise ValueError(f"--path {kind} (a spectral premetric) needs a mesh, not {manifold}")
    distance = SpectralDistance(manifold, kind, n_eigs=cfg.n_eigs, tau=cfg.diffusion_time)
    return PremetricPath(manifold, distance, steps=cfg.sim_steps)


def build_objective(cfg: TrainConfig, manifold: Manifold) -> FlowObjective:
    """The objective named by ``cfg.method`` with a fresh network (``cfg`` is resolved first)."""
    cfg = cfg.resolved()
    moser = cfg.method == "moser"
    net = VectorField(manifold, hidden=cfg.hidden, depth=cfg.depth, activation=cfg.activation,
                      time_dependent=not moser, zero_init=bool(cfg.zero_init))
    if cfg.method == "rfm":
        return RFM(manifold, net, coupling=cfg.coupling, path=build_path(cfg, manifold))
    if moser:
        return MoserFlow(manifold, net, eps=cfg.eps, lam=cfg.lam, n_uniform=cfg.n_uniform, divergence=cfg.divergence,
                         n_probes=cfg.n_probes)
    return PPD(manifold, net, norm=cfg.ppd_norm, kappa1=cfg.kappa1, uniform=cfg.uniform, divergence=cfg.divergence,
               n_probes=cfg.n_probes)


def load_data(cfg: TrainConfig) -> Dict[str, Any]:
    """The data set and split of a config (same seed, same split, also in evaluate)."""
    from .datasets import load_dataset

    seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    return load_dataset(cfg.data, seed=seed, n_synthetic=cfg.n_synthetic, dedupe=cfg.dedupe, density=cfg.density,
                        samples=cfg.samples, mesh_scale=cfg.mesh_scale)


def nll(objective: FlowObjective, x: torch.Tensor, net, cfg: TrainConfig) -> float:
    """Mean negative log-likelihood of ``x [N, D]`` in nats."""
    lp = objective.log_prob(x, net=net, steps=cfg.solver_steps, method=cfg.solver)
    if not torch.isfinite(lp).all():
        raise FloatingPointError(f"non-finite log-likelihood on {int((~torch.isfinite(lp)).sum())} of {lp.numel()} points")
    return float(-lp.mean())


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(cfg: TrainConfig, *, resume: bool = False) -> Dict[str, Any]:
    """Train, validate, checkpoint and evaluate; returns the metrics written to ``out/metrics.json``.

    Checkpoints: ``out/last.pt`` (everything needed to resume, written at every evaluation)
    and ``out/best.pt`` (the EMA weights with the lowest validation NLL). Under
    ``torchrun`` each process trains on its own batches and gradients are averaged (DDP);
    only rank 0 evaluates and writes.
    """
    cfg = cfg.resolved()
    cfg.validate()
    rank, world = _distributed()
    device = torch.device(cfg.device)
    dtype = DTYPES[cfg.dtype]
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    data = load_data(cfg)
    manifold: Manifold = data["manifold"].to(device)
    train_x, val_x, test_x = (data[k].to(device=device, dtype=dtype) for k in ("train", "val", "test"))
    val_eval = val_x[: cfg.max_val_points]

    torch.manual_seed(cfg.seed)
    objective = build_objective(cfg, manifold).to(device=device, dtype=dtype)
    objective_info = objective.prepare(train_x, val_x)
    ema = EMA(objective.net, cfg.ema)
    opt = torch.optim.AdamW(objective.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_lambda(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1009 + rank)
    start, best_val, history, train_seconds = 0, math.inf, [], 0.0

    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume and last_path.exists():
        ck = torch.load(last_path, map_location=device, weights_only=False)
        saved = TrainConfig.from_dict(ck["config"]).resolved()
        for key in ("data", "method", "hidden", "depth", "activation", "dtype", "seed", "split_seed", "dedupe", "zero_init"):
            if getattr(saved, key) != getattr(cfg, key):
                raise ValueError(f"cannot resume {last_path}: it was trained with {key}={getattr(saved, key)!r}, not {getattr(cfg, key)!r}")
        objective.net.load_state_dict(ck["net"])
        ema.model.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"].cpu())
        start, best_val, history, train_seconds = ck["step"], ck["best_val"], ck["history"], ck["train_seconds"]
        ema.num_updates.fill_(start)  # one EMA update per step

    model = objective.net
    if world > 1:
        objective.net = torch.nn.parallel.DistributedDataParallel(model)

    def checkpoint(step: int) -> None:
        state = {
            "config": asdict(cfg), "step": step, "net": model.state_dict(), "ema": ema.model.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "generator": gen.get_state(),
            "best_val": best_val, "history": history, "train_seconds": train_seconds,
        }
        atomic_save(state, last_path)

    bar = tqdm(total=cfg.steps, initial=start, disable=not cfg.progress or rank != 0, desc=f"{cfg.method} {cfg.data}",
               dynamic_ncols=True)
    step = start
    tick = time.perf_counter()
    while step < cfg.steps:
        idx = torch.randint(0, train_x.shape[0], (cfg.batch_size,), device=device, generator=gen)
        loss = objective.loss(train_x[idx], generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update(model)
        step += 1
        bar.update(1)
        if step % 25 == 0 or step == cfg.steps:
            bar.set_postfix(loss=f"{loss.item():.4f}", best_val=f"{best_val:.3f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            train_seconds += time.perf_counter() - tick
            if rank == 0:
                val = nll(objective, val_eval, ema.model, cfg)
                history.append({"step": step, "val_nll": val, "loss": loss.item()})
                if val < best_val:
                    best_val = val
                    atomic_save({"config": asdict(cfg), "step": step, "ema": ema.model.state_dict(), "val_nll": val}, best_path)
                checkpoint(step)
                bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{val:.3f}", best_val=f"{best_val:.3f}")
            tick = time.perf_counter()
    bar.close()
    objective.net = model
    if world > 1:
        dist.barrier()
    if rank != 0:
        return {}

    best = torch.load(best_path, map_location=device, weights_only=False)
    ema.model.load_state_dict(best["ema"])
    metrics = evaluate_split(objective, ema.model, cfg, data, test_x, manifold)
    metrics.update(
        val_nll=best["val_nll"], best_step=best["step"], steps=cfg.steps, train_seconds=round(train_seconds, 2),
        world_size=world, history=history, config=asdict(cfg), objective=objective_info,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    )
    if cfg.plot:
        from .plots import plot_model

        metrics["figure"] = str(plot_model(objective, ema.model, test_x, out / "density.png", cfg=cfg))
    atomic_write_text(json.dumps(metrics, indent=2), out / "metrics.json")
    return metrics


def evaluate_split(objective: FlowObjective, net, cfg: TrainConfig, data: Dict[str, Any], x: torch.Tensor,
                   manifold: Manifold) -> Dict[str, Any]:
    """Test NLL, the base distribution's NLL on the same points and, for synthetic data, the gap to the truth."""
    metrics: Dict[str, Any] = {
        "test_nll": nll(objective, x, net, cfg),
        "base_nll": float(-manifold.base_logprob(x).mean()),
        "n_test": int(x.shape[0]),
    }
    target = data.get("target")
    if target is not None:
        metrics["target_nll"] = float(-target.log_prob(x.to(torch.float64).cpu()).mean())
        metrics["gap"] = metrics["test_nll"] - metrics["target_nll"]
    metrics.update(objective.diagnostics(x, net, steps=cfg.solver_steps, method=cfg.solver))
    return metrics
