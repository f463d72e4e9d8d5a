"""The training loop: schedule, EMA, validation, atomic verified checkpoints, resume, Ctrl-C, time budgets, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .builders import build_objective, load_data
from .checkpoint import (
    CheckpointError,
    RunLock,
    atomic_write_text,
    data_fingerprint,
    fingerprint_changes,
    load_checkpoint,
    save_checkpoint,
)
from .config import DTYPES, RESUMABLE, TIMED_EVALS, TrainConfig
from .evaluation import evaluate_split, nll
from .nets import EMA


class Interrupted(RuntimeError):
    """Training stopped by Ctrl-C (SIGINT) after writing ``last.pt``; ``--resume`` continues it."""


def lr_factor(step: int, progress: float, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then a cosine from 1 to 0 over ``progress``.

    Args:
        step: optimiser steps taken so far.
        progress: fraction of the budget spent, in [0, 1] (steps, or time with ``--minutes``).
        warmup: warm-up steps.
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def resident_mb() -> Optional[float]:
    """This process's resident memory in MB (Linux ``/proc``; None where that is not available)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def copy_state(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A detached copy of a module's state dict (the live one changes as training goes on)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _SigintFlag:
    """Turns the first Ctrl-C into a flag the loop checks between steps (a second one interrupts at once)."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self) -> "_SigintFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.raised = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Budget:
    """How much of a run's budget is spent: steps (``cfg.steps``) and, with ``cfg.minutes``, wall time.

    Time counts training and validation (everything between the first step and the last
    checkpoint), not the data loading before or the test evaluation after.
    """

    def __init__(self, cfg: TrainConfig):
        self.steps = cfg.steps
        self.seconds = None if cfg.minutes is None else 60.0 * cfg.minutes

    def progress(self, step: int, elapsed: float) -> float:
        """Fraction spent: the larger of the step fraction and the time fraction."""
        p = step / self.steps if self.steps is not None else 0.0
        if self.seconds is not None:
            p = max(p, elapsed / self.seconds)
        return p

    def done(self, step: int, elapsed: float, reserve: float = 0.0) -> bool:
        """Whether to stop: the step cap reached, or too little time left for another step plus ``reserve`` seconds."""
        if self.steps is not None and step >= self.steps:
            return True
        return self.seconds is not None and elapsed + reserve >= self.seconds


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          allow_data_change: bool = False) -> Dict[str, Any]:
    """Train, validate, checkpoint and evaluate; returns the metrics written to ``out/metrics.json``.

    Checkpoints: ``out/last.pt`` (everything needed to resume, written at every validation and on
    Ctrl-C) and ``out/best.pt`` (the EMA weights with the lowest validation NLL), both written
    atomically with a checksum and the fingerprint of the data split. Under ``torchrun`` each
    process trains on its own batches and gradients are averaged (DDP); only rank 0 evaluates
    and writes.

    Args:
        cfg: the run's configuration (validated before anything is loaded or trained).
        resume: continue from ``out/last.pt`` if it exists. Fields in :data:`~manifold_flows.config.RESUMABLE`
            may change and take effect; any other change is refused with the field named.
        overwrite: start afresh in a folder that already holds a run (its checkpoints are replaced).
        allow_data_change: resume although the data file now gives a different split (recorded).

    Raises:
        ValueError: a bad config, data, or a resume that does not match (the message names it).
        CheckpointError: an unreadable or corrupt ``last.pt``, or a folder in use by another run.
        Interrupted: Ctrl-C; ``last.pt`` holds the state after the last completed step.
    """
    cfg = cfg.resolved()
    cfg.validate()
    rank, world = _distributed()
    if world > 1 and cfg.minutes is not None:
        raise ValueError("--minutes is not supported under torchrun yet (the processes would have to agree on "
                         "when time is up); give --steps")
    out = Path(cfg.out)
    lock = None
    if rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--out {out}: cannot create the folder ({e.strerror})") from None
        lock = RunLock(out).acquire()
    try:
        return _train(cfg, out, rank, world, resume=resume, overwrite=overwrite, allow_data_change=allow_data_change)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, out: Path, rank: int, world: int, *, resume: bool, overwrite: bool,
           allow_data_change: bool) -> Dict[str, Any]:
    last_path, best_path = out / "last.pt", out / "best.pt"
    if rank == 0 and not resume and not overwrite and last_path.exists():
        raise CheckpointError(f"{out} already holds a run (last.pt): pass --resume to continue it, --overwrite to "
                              "start afresh over it, or choose another --out")
    device = torch.device(cfg.device)
    dtype = DTYPES[cfg.dtype]
    data = load_data(cfg)
    fingerprint = data_fingerprint(data)
    manifold = data["manifold"].to(device)
    train_x, val_x, test_x = (data[k].to(device=device, dtype=dtype) for k in ("train", "val", "test"))
    val_eval = val_x[: cfg.max_val_points]

    torch.manual_seed(cfg.seed)
    objective = build_objective(cfg, manifold).to(device=device, dtype=dtype)
    objective_info = objective.prepare(train_x, val_x)
    ema = EMA(objective.net, cfg.ema)
    opt = torch.optim.AdamW(objective.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1009 + rank)
    step, best_val, history, train_seconds = 0, math.inf, [], 0.0
    best: Optional[Dict[str, Any]] = None  # the best.pt content; last.pt carries it too, so a kill cannot split them
    resumes: List[Dict[str, Any]] = []

    if resume and last_path.exists():
        ck = load_checkpoint(last_path, map_location=device, require=("config", "net", "ema", "optimizer", "step"))
        saved = TrainConfig.from_dict(ck["config"])
        changed = saved.changes(cfg)
        fixed = {k: v for k, v in changed.items() if k not in RESUMABLE}
        if fixed:
            k, (old, new) = next(iter(fixed.items()))
            raise ValueError(f"cannot resume {last_path}: it was trained with {k}={old!r}, not {new!r} "
                             f"(only {', '.join(RESUMABLE)} may change on resume)")
        if cfg.steps is not None and ck["step"] > cfg.steps:
            raise ValueError(f"cannot resume {last_path} with --steps {cfg.steps}: it has already trained {ck['step']} steps")
        drift = fingerprint_changes(ck["data_fingerprint"], fingerprint)
        if drift and not allow_data_change:
            raise ValueError(f"cannot resume {last_path}: the data {cfg.data!r} changed since it was written ({drift}); "
                             "pass --allow-data-change to continue on the new data")
        objective.net.load_state_dict(ck["net"])
        ema.model.load_state_dict(ck["ema"])
        ema.set_count(ck["step"])  # one EMA update per step
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"].cpu())
        step, best_val, history, train_seconds = ck["step"], ck["best_val"], ck["history"], ck["train_seconds"]
        best = ck["best"]
        if best is not None:  # a kill after last.pt but before best.pt was written leaves best.pt behind: renew it
            save_checkpoint(best, best_path)
        resumes = ck.get("resumes", [])
        event: Dict[str, Any] = {"step": step, "changed": {k: list(v) for k, v in changed.items()}}
        if drift:
            event["data_changed"] = drift
        resumes.append(event)
    for group in opt.param_groups:  # a resumed run takes the new values (and the optimiser's state stays)
        group["initial_lr"] = cfg.lr
        group["weight_decay"] = cfg.weight_decay

    model = objective.net
    if world > 1:
        objective.net = torch.nn.parallel.DistributedDataParallel(model)
    budget = Budget(cfg)

    def state(at: int) -> Dict[str, Any]:
        return {"config": asdict(cfg), "step": at, "net": model.state_dict(), "ema": ema.model.state_dict(),
                "optimizer": opt.state_dict(), "generator": gen.get_state(),
                "best_val": best_val, "best": best, "history": history, "train_seconds": train_seconds, "resumes": resumes,
                "data_fingerprint": fingerprint}

    bar = tqdm(total=cfg.steps, initial=step, disable=not cfg.progress or rank != 0,
               desc=f"{cfg.method} {cfg.data}", dynamic_ncols=True)
    # the bar shows the loss every 25 steps on CPU; on a GPU reading it would stall the device, so only at validations
    show_loss_every = 25 if device.type == "cpu" and cfg.progress and rank == 0 else 0
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    loss_count = 0
    val_seconds = 0.0
    # validations every eval_every steps, or (time budget, no eval_every) every tenth of the time
    eval_period = None if cfg.eval_every else budget.seconds / TIMED_EVALS
    next_eval = (math.floor(train_seconds / eval_period) + 1) * eval_period if eval_period else math.inf
    tick = window_start = time.perf_counter()
    window_first_step = step
    with _SigintFlag() as sigint:
        while not budget.done(step, train_seconds + time.perf_counter() - tick, reserve=val_seconds):
            elapsed = train_seconds + time.perf_counter() - tick
            factor = lr_factor(step, budget.progress(step, elapsed), cfg.warmup)
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor
            idx = torch.randint(0, train_x.shape[0], (cfg.batch_size,), device=device, generator=gen)
            loss = objective.loss(train_x[idx], generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(model)
            loss_sum += loss.detach()
            loss_count += 1
            step += 1
            bar.update(1)
            if show_loss_every and step % show_loss_every == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", best_val=f"{best_val:.3f}")
            elapsed = train_seconds + time.perf_counter() - tick
            last_step = budget.done(step, elapsed, reserve=val_seconds)
            due = step % cfg.eval_every == 0 if cfg.eval_every else elapsed >= next_eval
            if due or last_step or sigint.raised:
                if eval_period:
                    next_eval = (math.floor(elapsed / eval_period) + 1) * eval_period
                if rank == 0:
                    improved = False
                    mean_loss = float(loss_sum / max(loss_count, 1))
                    loss_sum.zero_()
                    loss_count = 0
                    if not sigint.raised:
                        ema.copy_buffers(model)
                        v0 = time.perf_counter()
                        step_ms = 1000 * (v0 - window_start) / max(step - window_first_step, 1)
                        val = nll(objective, val_eval, ema.model, cfg, steps=cfg.val_solver_steps)
                        val_seconds = time.perf_counter() - v0
                        history.append({"step": step, "val_nll": val, "loss": mean_loss,
                                        "seconds": round(train_seconds + time.perf_counter() - tick, 2),
                                        "val_seconds": round(val_seconds, 2), "step_ms": round(step_ms, 3),
                                        "rss_mb": resident_mb()})
                        improved = val < best_val
                        if improved:
                            best_val = val
                            best = {"config": asdict(cfg), "step": step, "ema": copy_state(ema.model), "val_nll": val,
                                    "data_fingerprint": fingerprint}
                        bar.set_postfix(loss=f"{mean_loss:.4f}", val=f"{val:.3f}", best_val=f"{best_val:.3f}")
                    now = time.perf_counter()
                    train_seconds += now - tick
                    tick = now
                    save_checkpoint(state(step), last_path)
                    if improved:  # written after last.pt, so best.pt is never ahead of the run it belongs to
                        save_checkpoint(best, best_path)
                    window_start, window_first_step = time.perf_counter(), step
                if sigint.raised:
                    bar.close()
                    raise Interrupted(f"interrupted at step {step}; {last_path} holds it: add --resume to continue")
    train_seconds += time.perf_counter() - tick
    bar.close()
    objective.net = model
    if world > 1:
        dist.barrier()
    if rank != 0:
        return {}
    if best is None:
        raise RuntimeError(f"no validation ran, so there is no {best_path}: give --steps >= 1")
    ema.model.load_state_dict(best["ema"])
    metrics = evaluate_split(objective, ema.model, cfg, data, test_x, manifold)
    metrics.update(
        val_nll=best["val_nll"], val_likelihood=objective.likelihood_method(solver=cfg.solver, solver_steps=cfg.val_solver_steps),
        best_step=best["step"], steps=step, train_seconds=round(train_seconds, 2),
        steps_per_second=round(step / max(train_seconds, 1e-9), 3),
        world_size=world, history=history, resumes=resumes, config=asdict(cfg), objective=objective_info,
        data=fingerprint, device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    )
    if cfg.plot:
        from .plots import plot_model

        metrics["figure"] = str(plot_model(objective, ema.model, test_x, out / "density.png", cfg=cfg))
    atomic_write_text(json.dumps(metrics, indent=2), out / "metrics.json")
    return metrics
