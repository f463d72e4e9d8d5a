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
from .config import DTYPES, MAX_VALIDATION_SHARE, RESUMABLE, TIMED_EVALS, TrainConfig
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

    def next_validation(self, elapsed: float, validation_seconds: float) -> float:
        """When the next periodic validation of a time budget is due (seconds spent), given the last one's cost.

        Validations fall on a grid of :data:`TIMED_EVALS` per budget, and never closer together than the
        training time that keeps them within :data:`MAX_VALIDATION_SHARE` of the time spent.
        """
        period = self.seconds / TIMED_EVALS
        spacing = validation_seconds * (1.0 - MAX_VALIDATION_SHARE) / MAX_VALIDATION_SHARE
        grid = (math.floor(elapsed / period) + 1) * period
        return max(grid, elapsed + spacing)

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
    if rank == 0 and not resume and not overwrite and (out / "last.pt").exists():
        raise CheckpointError(f"{out} already holds a run (last.pt): pass --resume to continue it, --overwrite to "
                              "start afresh over it, or choose another --out")
    run = Trainer(cfg, out, rank, world)
    if resume and run.last_path.exists():
        run.restore(allow_data_change)
    run.fit()
    return run.finish()


class Trainer:
    """One training run: the data, model, optimiser, EMA and budget, and the state a checkpoint holds.

    :func:`train` drives it: :meth:`restore` (on ``--resume``), :meth:`fit` (steps, validations,
    checkpoints), :meth:`finish` (test evaluation, figure, ``metrics.json``).
    """

    def __init__(self, cfg: TrainConfig, out: Path, rank: int, world: int):
        self.cfg, self.out, self.rank, self.world = cfg, out, rank, world
        self.last_path, self.best_path = out / "last.pt", out / "best.pt"
        self.device = torch.device(cfg.device)
        dtype = DTYPES[cfg.dtype]
        self.data = load_data(cfg)
        self.cfg = cfg = cfg.resolved_for(self.data["manifold"])
        self.fingerprint = data_fingerprint(self.data)
        self.manifold = self.data["manifold"].to(self.device)
        self.train_x, val_x, self.test_x = (self.data[k].to(device=self.device, dtype=dtype)
                                            for k in ("train", "val", "test"))
        self.val_x = val_x[: cfg.max_val_points]
        torch.manual_seed(cfg.seed)
        self.objective = build_objective(cfg, self.manifold).to(device=self.device, dtype=dtype)
        self.objective_info = self.objective.prepare(self.train_x, val_x)
        self.model = self.objective.net  # the bare network (objective.net may become its DDP wrapper)
        self.ema = EMA(self.model, cfg.ema)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1009 + rank)
        self.step, self.best_val, self.history, self.train_seconds = 0, math.inf, [], 0.0
        # best.pt's content; last.pt carries it too, so a kill cannot split the two
        self.best: Optional[Dict[str, Any]] = None
        self.resumes: List[Dict[str, Any]] = []
        self.budget = Budget(cfg)

    # ------------------------------------------------------------------ resume
    def restore(self, allow_data_change: bool) -> None:
        """Continue from ``last.pt``: refuse changes that redefine the run, apply those that may change."""
        cfg = self.cfg
        ck = load_checkpoint(self.last_path, map_location=self.device,
                             require=("config", "net", "ema", "optimizer", "step"))
        changed = TrainConfig.from_dict(ck["config"]).changes(cfg)
        fixed = {k: v for k, v in changed.items() if k not in RESUMABLE}
        if fixed:
            k, (old, new) = next(iter(fixed.items()))
            raise ValueError(f"cannot resume {self.last_path}: it was trained with {k}={old!r}, not {new!r} "
                             f"(only {', '.join(RESUMABLE)} may change on resume)")
        if cfg.steps is not None and ck["step"] > cfg.steps:
            raise ValueError(f"cannot resume {self.last_path} with --steps {cfg.steps}: it has already trained "
                             f"{ck['step']} steps")
        drift = fingerprint_changes(ck["data_fingerprint"], self.fingerprint)
        if drift and not allow_data_change:
            raise ValueError(f"cannot resume {self.last_path}: the data {cfg.data!r} changed since it was written "
                             f"({drift}); pass --allow-data-change to continue on the new data")
        self.model.load_state_dict(ck["net"])
        self.ema.model.load_state_dict(ck["ema"])
        self.ema.set_count(ck["step"])  # one EMA update per step
        self.opt.load_state_dict(ck["optimizer"])
        self.gen.set_state(ck["generator"].cpu())
        self.step, self.best_val, self.history = ck["step"], ck["best_val"], ck["history"]
        self.train_seconds, self.best, self.resumes = ck["train_seconds"], ck["best"], ck.get("resumes", [])
        if self.best is not None:  # a kill after last.pt but before best.pt was written leaves best.pt behind
            save_checkpoint(self.best, self.best_path)
        event: Dict[str, Any] = {"step": self.step, "changed": {k: list(v) for k, v in changed.items()}}
        if drift:
            event["data_changed"] = drift
        self.resumes.append(event)

    def state(self) -> Dict[str, Any]:
        """Everything ``last.pt`` holds to resume exactly here."""
        return {"config": asdict(self.cfg), "step": self.step, "net": self.model.state_dict(),
                "ema": self.ema.model.state_dict(), "optimizer": self.opt.state_dict(),
                "generator": self.gen.get_state(),
                "best_val": self.best_val, "best": self.best, "history": self.history,
                "train_seconds": self.train_seconds, "resumes": self.resumes, "data_fingerprint": self.fingerprint}

    # ------------------------------------------------------------------ the loop
    def fit(self) -> None:
        """Train until the budget is spent, validating and checkpointing along the way (Ctrl-C: checkpoint, stop)."""
        cfg = self.cfg
        for group in self.opt.param_groups:  # a resumed run takes the new values (the optimiser's state stays)
            group["initial_lr"] = cfg.lr
            group["weight_decay"] = cfg.weight_decay
        if self.world > 1:
            self.objective.net = torch.nn.parallel.DistributedDataParallel(self.model)
        self.bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress or self.rank != 0,
                        desc=f"{cfg.method} {cfg.data}", dynamic_ncols=True)
        # the bar shows the loss every 25 steps on CPU; on a GPU reading it would stall the device: at validations only
        show_loss_every = 25 if self.device.type == "cpu" and cfg.progress and self.rank == 0 else 0
        self.loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self.loss_count = 0
        self.val_seconds = 0.0
        # validations every eval_every steps, or (time budget, no eval_every) every tenth of the time, spaced
        # out further when they are slow (Budget.next_validation)
        timed = not cfg.eval_every
        next_eval = self.budget.next_validation(self.train_seconds, 0.0) if timed else math.inf
        self.tick = self.window_start = time.perf_counter()
        self.window_first_step = self.step
        with _SigintFlag() as sigint:
            while not self.budget.done(self.step, self.elapsed(), reserve=self.val_seconds):
                loss = self.train_step()
                if show_loss_every and self.step % show_loss_every == 0:
                    self.bar.set_postfix(loss=f"{float(loss):.4f}", best_val=f"{self.best_val:.3f}")
                elapsed = self.elapsed()
                last = self.budget.done(self.step, elapsed, reserve=self.val_seconds)
                due = self.step % cfg.eval_every == 0 if cfg.eval_every else elapsed >= next_eval
                if due or last or sigint.raised:
                    if self.rank == 0:
                        self.validate_and_checkpoint(validate=not sigint.raised)
                    if timed:
                        next_eval = self.budget.next_validation(self.elapsed(), self.val_seconds)
                    if sigint.raised:
                        self.bar.close()
                        raise Interrupted(f"interrupted at step {self.step}; {self.last_path} holds it: add --resume "
                                          "to continue")
        self.train_seconds += time.perf_counter() - self.tick
        self.bar.close()
        self.objective.net = self.model

    def elapsed(self) -> float:
        """Seconds of the budget spent: training and validation, across resumes."""
        return self.train_seconds + time.perf_counter() - self.tick

    def train_step(self) -> torch.Tensor:
        """One optimiser step (schedule, loss, backward, AdamW, EMA); returns the detached loss."""
        cfg = self.cfg
        factor = lr_factor(self.step, self.budget.progress(self.step, self.elapsed()), cfg.warmup)
        for group in self.opt.param_groups:
            group["lr"] = group["initial_lr"] * factor
        idx = torch.randint(0, self.train_x.shape[0], (cfg.batch_size,), device=self.device, generator=self.gen)
        loss = self.objective.loss(self.train_x[idx], generator=self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.ema.update(self.model)
        loss = loss.detach()
        self.loss_sum += loss
        self.loss_count += 1
        self.step += 1
        self.bar.update(1)
        return loss

    def validate_and_checkpoint(self, *, validate: bool = True) -> None:
        """Validation NLL of the EMA weights (a new best is kept), then ``last.pt`` and, if improved, ``best.pt``."""
        cfg = self.cfg
        improved = False
        mean_loss = float(self.loss_sum / max(self.loss_count, 1))
        self.loss_sum.zero_()
        self.loss_count = 0
        if validate:
            self.ema.copy_buffers(self.model)
            v0 = time.perf_counter()
            step_ms = 1000 * (v0 - self.window_start) / max(self.step - self.window_first_step, 1)
            val = nll(self.objective, self.val_x, self.ema.model, cfg, steps=cfg.val_solver_steps)
            self.val_seconds = time.perf_counter() - v0
            self.history.append({"step": self.step, "val_nll": val, "loss": mean_loss,
                                 "seconds": round(self.elapsed(), 2), "val_seconds": round(self.val_seconds, 2),
                                 "step_ms": round(step_ms, 3), "rss_mb": resident_mb()})
            improved = val < self.best_val
            if improved:
                self.best_val = val
                self.best = {"config": asdict(cfg), "step": self.step, "ema": copy_state(self.ema.model),
                             "val_nll": val, "data_fingerprint": self.fingerprint}
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", val=f"{val:.3f}", best_val=f"{self.best_val:.3f}")
        now = time.perf_counter()
        self.train_seconds += now - self.tick
        self.tick = now
        save_checkpoint(self.state(), self.last_path)
        if improved:  # written after last.pt, so best.pt is never ahead of the run it belongs to
            save_checkpoint(self.best, self.best_path)
        self.window_start, self.window_first_step = time.perf_counter(), self.step

    # ------------------------------------------------------------------ the end
    def finish(self) -> Dict[str, Any]:
        """Test NLL of the best checkpoint, the figure and ``metrics.json`` (rank 0; other ranks return ``{}``)."""
        if self.world > 1:
            dist.barrier()
        if self.rank != 0:
            return {}
        cfg = self.cfg
        if self.best is None:
            raise RuntimeError(f"no validation ran, so there is no {self.best_path}: give --steps >= 1")
        self.ema.model.load_state_dict(self.best["ema"])
        metrics = evaluate_split(self.objective, self.ema.model, cfg, self.data, self.test_x, self.manifold)
        metrics.update(
            val_nll=self.best["val_nll"],
            val_likelihood=self.objective.likelihood_method(solver=cfg.solver, solver_steps=cfg.val_solver_steps),
            best_step=self.best["step"], steps=self.step, train_seconds=round(self.train_seconds, 2),
            steps_per_second=round(self.step / max(self.train_seconds, 1e-9), 3), world_size=self.world,
            history=self.history, resumes=self.resumes, config=asdict(cfg), objective=self.objective_info,
            data=self.fingerprint,
            device=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
        )
        if cfg.plot:
            from .plots import plot_model

            metrics["figure"] = str(plot_model(self.objective, self.ema.model, self.test_x, self.out / "density.png",
                                               cfg=cfg))
        atomic_write_text(json.dumps(metrics, indent=2), self.out / "metrics.json")
        return metrics
