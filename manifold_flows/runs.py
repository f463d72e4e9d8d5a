"""Trained runs back from disk: a verified checkpoint, its config, data and model, ready to evaluate or sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple, Union

from .builders import build_objective, load_data
from .checkpoint import CheckpointError, data_fingerprint, fingerprint_changes, load_checkpoint
from .config import DTYPES, TrainConfig, device_problem
from .objectives import FlowObjective


def load_run(path: Union[str, Path], *, device: str = "cpu", allow_data_change: bool = False
             ) -> Tuple[TrainConfig, Dict[str, Any], FlowObjective, Dict[str, Any]]:
    """A trained model back from its checkpoint (or run folder, meaning its ``best.pt``), verified.

    Args:
        path: a checkpoint file or a run folder.
        device: where to put the model.
        allow_data_change: accept data that changed since training (the note says how).

    Returns:
        ``(config, data, objective, note)``: the run's config (with ``device``), its data set and
        split as :func:`~manifold_flows.builders.load_data` gives it, the objective holding the
        checkpoint's EMA weights in eval mode, and a note (checkpoint, step, package version, data change).

    Raises:
        CheckpointError: missing, corrupt or foreign checkpoint, or weights that do not fit its config.
        ValueError: an unusable device, or data that changed (unless allowed).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt"
    problem = device_problem(device)
    if problem:
        raise ValueError(problem)
    ck = load_checkpoint(p, map_location=device, require=("config", "ema", "data_fingerprint"))
    cfg = TrainConfig.from_dict(ck["config"]).resolved()
    cfg.device = device
    data = load_data(cfg)
    cfg = cfg.resolved_for(data["manifold"])  # a no-op for configs saved by a run; fills them for older ones
    drift = fingerprint_changes(ck["data_fingerprint"], data_fingerprint(data))
    if drift and not allow_data_change:
        raise ValueError(f"the data of {p} changed since it was trained ({cfg.data!r}: {drift}); the split it was "
                         "tested on no longer exists. Pass --allow-data-change to use the data as it is now")
    dtype = DTYPES[cfg.dtype]
    objective = build_objective(cfg, data["manifold"]).to(device=device, dtype=dtype)
    objective.prepare(data["train"].to(device=device, dtype=dtype), data["val"].to(device=device, dtype=dtype))
    try:
        objective.net.load_state_dict(ck["ema"])
    except RuntimeError as e:
        raise CheckpointError(f"{p} does not fit the model its own config describes "
                              f"({str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e})") from None
    objective.eval()
    note = {"checkpoint": str(p), "step": ck.get("step"), "package_version": ck.get("package_version")}
    if drift:
        note["data_changed"] = drift
    return cfg, data, objective, note
