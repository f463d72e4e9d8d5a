"""The configuration of a training run: fields, per-method defaults, validation and resume rules."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}

PATHS = ("geodesic", "shortest", "patched", "biharmonic", "diffusion")
"""Values of ``TrainConfig.path`` (unset: geodesic where exp/log exist or geodesics can be traced, as on meshes)."""

DEFAULT_STEPS = 2000
"""Training steps of a run that gives neither ``steps`` nor ``minutes``."""
DEFAULT_EVAL_EVERY = 500
"""Steps between validations of a step-budgeted run that does not set ``eval_every``."""
TIMED_EVALS = 10
"""Validations of a time-budgeted (``minutes``) run that does not set ``eval_every``, evenly spaced in time."""
MAX_VALIDATION_SHARE = 0.2
"""Largest share of a time budget that periodic validations may take: when one validation is slow (a likelihood
solve on a 9-dimensional manifold, a mesh), the next waits until training has had the rest."""

METHODS = ("rfm", "moser", "ppd")
"""Training objectives by name (see :data:`manifold_flows.objectives.OBJECTIVES`)."""

METHOD_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "rfm": {"lr": 1e-3, "activation": "silu", "zero_init": False, "coupling": "independent", "n_eigs": 100,
            "sim_steps": 50},
    "moser": {"lr": 1e-3, "activation": "softplus100", "lam": 2.0, "zero_init": True,
              "divergence": "auto", "n_probes": 1},
    "ppd": {"lr": 1e-3, "activation": "silu", "ppd_norm": 1, "zero_init": False, "divergence": "auto", "n_probes": 1},
}
"""Per-method defaults of the config fields left as ``None`` (see README, 'Choosing a method')."""

METHOD_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "coupling": ("rfm",), "path": ("rfm",), "n_eigs": ("rfm",), "sim_steps": ("rfm",), "diffusion_time": ("rfm",),
    "lam": ("moser",), "eps": ("moser",), "field_scale": ("moser",), "n_uniform": ("moser",),
    "ppd_norm": ("ppd",), "kappa1": ("ppd",), "uniform": ("ppd",),
    "divergence": ("moser", "ppd"), "n_probes": ("moser", "ppd"),
}
"""Options that only some methods use; setting one for another method is an error, not silently ignored."""

SPHERE_FOURIER: Dict[str, Tuple[int, float]] = {"rfm": (128, 16.0), "moser": (64, 8.0), "ppd": (128, 16.0)}
"""Random Fourier features (count, scale) of each method on spheres (see :meth:`TrainConfig.resolved_for`)."""

MESH_FOURIER: Dict[str, Tuple[int, float]] = {"rfm": (64, 8.0), "moser": (64, 8.0)}
"""Random Fourier features on meshes: (count, scale times the square root of the mesh's area).

The scale follows the mesh's size, so that a mesh and the same mesh in other units get the same
network: a network of raw coordinates learned the unit square's targets far more slowly than the
same square drawn four times larger (BENCHMARKS.md, "Meshes after 1,000 steps")."""

RESUMABLE = ("steps", "minutes", "lr", "weight_decay", "warmup", "ema", "batch_size", "eval_every", "solver_steps",
             "device", "plot", "progress", "out")
"""Fields a resumed run may change; the change takes effect from the resumed step (the learning-rate
schedule is recomputed for the new ``steps``, ``lr``, ``warmup``). Every other field defines the model,
the data, the split, the objective or the validation score that picks the best checkpoint, and must match."""


def _help(text: str) -> Dict[str, str]:
    return {"help": text}


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in every checkpoint and in metrics.json.

    Options left as ``None`` take the method's default (:data:`METHOD_DEFAULTS`) in :meth:`resolved`.
    """

    data: str = field(default="volcano", metadata=_help(
        "volcano | earthquake | flood | PATH.csv (lat,lon degrees, or --manifold coordinates) | PATH.tsv (protein "
        "torsions source,phi,psi,amino in degrees, on T^2) | a synthetic name (see manifold_flows.datasets) "
        "| mesh:bunny | mesh:PATH (any mesh file trimesh reads) | implicit:sphere|ellipsoid|torus"))
    manifold: Optional[str] = field(default=None, metadata=_help(
        "the manifold of a CSV of your own points, one per row in its coordinates (matrices flattened row-major): "
        "so3 | spd:N | poincare:D | hyperboloid:D | torus:D (radians) | sphere:D (default: lat,lon degrees on S^2)"))
    amino: Optional[str] = field(default=None, metadata=_help(
        "protein torsion TSV: keep one Ramachandran class: General | Glycine | Proline | Pre-Pro (default: all rows)"))
    method: str = field(default="rfm", metadata=_help(
        "training objective: rfm | moser | ppd (per-method defaults fill unset options, see README)"))
    out: str = field(default="runs/volcano", metadata=_help("output folder (checkpoints, metrics.json, density.png)"))
    steps: Optional[int] = field(default=None, metadata=_help(
        "training steps (default 2000, or as many as --minutes allows)"))
    minutes: Optional[float] = field(default=None, metadata=_help(
        "time budget: train until this many minutes of training and validation are spent (the learning-rate "
        "schedule follows the time spent; --steps, if given, caps the steps)"))
    batch_size: int = field(default=512, metadata=_help("training points per step"))
    lr: Optional[float] = field(default=None, metadata=_help("peak learning rate (default: per method)"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    warmup: int = field(default=100, metadata=_help("linear learning-rate warm-up steps before the cosine decay"))
    hidden: int = field(default=256, metadata=_help("width of the hidden layers"))
    depth: int = field(default=4, metadata=_help("number of hidden layers"))
    fourier_features: Optional[int] = field(default=None, metadata=_help(
        "random Fourier features of embedded coordinates as extra network inputs, and as many of torus angles "
        "(integer frequencies coupling pairs of angles); 0: none (default: per method on spheres, see README; "
        "none elsewhere)"))
    fourier_scale: Optional[float] = field(default=None, metadata=_help(
        "frequency scale of the random Fourier features, 1 / the length scale they resolve (default: per method)"))
    eig_features: Optional[int] = field(default=None, metadata=_help(
        "meshes: the first K Laplace-Beltrami eigenfunctions of the point as extra network inputs (default: "
        "see README, 'Densities on meshes'; 0: none)"))
    activation: Optional[str] = field(default=None, metadata=_help(
        "silu | relu | gelu | tanh | softplus | softplus100 (default: per method)"))
    ema: float = field(default=0.999, metadata=_help("decay of the exponential moving average of the weights"))
    coupling: Optional[str] = field(default=None, metadata=_help(
        "RFM: noise-data coupling: independent | ot (minibatch optimal transport)"))
    path: Optional[str] = field(default=None, metadata=_help(
        "RFM conditional path: geodesic (exp/log maps; on meshes traced geodesics and heat-method log maps) | "
        "shortest (meshes: exact shortest paths through vertices, starting at the base points) | "
        "patched (meshes: traced geodesics closed by a shortest path to their base points) | "
        "biharmonic | diffusion (spectral premetrics on meshes; default: geodesic everywhere it exists)"))
    n_eigs: Optional[int] = field(default=None, metadata=_help(
        "RFM on meshes: Laplace-Beltrami eigenpairs of the spectral distance (default 100)"))
    sim_steps: Optional[int] = field(default=None, metadata=_help(
        "RFM on meshes: Euler steps per simulated premetric path, each state a target (default 50)"))
    diffusion_time: Optional[float] = field(default=None, metadata=_help(
        "RFM on meshes: time of the diffusion distance (default 2 / the tenth eigenvalue)"))
    lam: Optional[float] = field(default=None, metadata=_help(
        "Moser Flow: weight of the negative-mass penalty, > 0 (default: per method)"))
    eps: Optional[float] = field(default=None, metadata=_help(
        "Moser Flow: density floor in the log and the penalty (default: 1e-5 on the unit sphere, in proportion to "
        "the uniform density elsewhere: 1e-5 * 4 pi / volume)"))
    field_scale: Optional[float] = field(default=None, metadata=_help(
        "Moser Flow: the field is this times the network's output (default 4 pi / volume: 1 on the unit sphere, "
        "so that the density relative to the uniform one starts on the same footing everywhere)"))
    n_uniform: Optional[int] = field(default=None, metadata=_help(
        "Moser Flow: uniform points per step for the penalty (default: batch size)"))
    zero_init: Optional[bool] = field(default=None, metadata=_help(
        "start from the zero field (default: per method; on for Moser Flow)"))
    divergence: Optional[str] = field(default=None, metadata=_help(
        "Moser Flow / PPD: divergence estimator in training: exact | hutchinson | auto (exact up to "
        "manifold_flows.divergence.HUTCHINSON_ABOVE dimensions, Hutchinson above)"))
    n_probes: Optional[int] = field(default=None, metadata=_help("Moser Flow / PPD: Hutchinson probes per point"))
    ppd_norm: Optional[int] = field(default=None, metadata=_help(
        "PPD: 1 or 2, the norm of the residual (default: per method)"))
    kappa1: Optional[float] = field(default=None, metadata=_help(
        "PPD: kernel concentration at t=1 (default: chosen on the validation split)"))
    uniform: Optional[float] = field(default=None, metadata=_help(
        "PPD: weight of the base density in the target path, in [0, 1) (default: chosen on the validation split)"))
    eval_every: Optional[int] = field(default=None, metadata=_help(
        "validate (and checkpoint) every N steps (default 500; with --minutes, ten times spread over the time)"))
    solver: str = field(default="rk4", metadata=_help(
        "ODE solver for likelihoods and samples: euler | midpoint | rk4 | dopri5 | ..."))
    solver_steps: int = field(default=100, metadata=_help("fixed solver steps for likelihoods and samples"))
    val_solver_steps: int = field(default=25, metadata=_help(
        "fixed solver steps of the periodic validation NLL that picks the best checkpoint (the test NLL uses "
        "--solver-steps)"))
    max_val_points: int = field(default=2000, metadata=_help("validation points used for the periodic validation NLL"))
    seed: int = field(default=0, metadata=_help("seed of the network, the batches and (by default) the split"))
    split_seed: Optional[int] = field(default=None, metadata=_help("seed of the 80/10/10 split (default: --seed)"))
    dedupe: bool = field(default=False, metadata=_help("remove exact duplicate points before splitting"))
    n_synthetic: int = field(default=10_000, metadata=_help("points drawn from a synthetic or mesh target"))
    density: Optional[str] = field(default=None, metadata=_help(
        "mesh data: target density eig:K (clamped K-th eigenfunction) | bumps:N[:SIGMA] (default eig:10)"))
    samples: Optional[str] = field(default=None, metadata=_help(
        "mesh/implicit data: a CSV of x,y,z points (the mesh file's coordinates) to train on instead of --density"))
    mesh_scale: Optional[str] = field(default=None, metadata=_help(
        "mesh data: none | area | radius | a number (default: 1/250 for the bunny, none for files)"))
    device: str = field(default="cpu", metadata=_help("cpu | cuda | cuda:N | mps"))
    dtype: str = field(default="float32", metadata=_help("float32 | float64"))
    plot: bool = field(default=True, metadata=_help("write density.png at the end"))
    progress: bool = field(default=True, metadata=_help("show a progress bar"))

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` that has a per-method default (:data:`METHOD_DEFAULTS`) filled in."""
        if self.method not in METHOD_DEFAULTS:
            raise ValueError(f"unknown method {self.method!r}; choose from {sorted(METHOD_DEFAULTS)}")
        fill = {k: v for k, v in METHOD_DEFAULTS[self.method].items() if getattr(self, k) is None}
        if self.steps is None and self.minutes is None:
            fill["steps"] = DEFAULT_STEPS
        if self.eval_every is None and self.minutes is None:
            fill["eval_every"] = DEFAULT_EVAL_EVERY
        return dataclasses.replace(self, **fill)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field; call on a :meth:`resolved` config.

        Checks every field: types, ranges, names (method, activation, solver, coupling, path,
        divergence, dtype, device), options that belong to another method, and ``out`` naming
        something other than a folder. Nothing is trained before this passes.
        """
        for problem in self.problems():
            raise ValueError(problem)

    def problems(self) -> List[str]:
        """Every problem :meth:`validate` would raise for, in field order (empty when the config is valid)."""
        from .nets import ACTIVATIONS
        from .solvers import available_solvers

        out: List[str] = []
        types = {f.name: f.type for f in dataclasses.fields(self)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            kind = types[f.name].replace("Optional[", "").rstrip("]")
            if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                out.append(f"{_flag(f.name)} must be an integer, got {value!r}")
            elif kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                out.append(f"{_flag(f.name)} must be a finite number, got {value!r}")
            elif kind == "bool" and not isinstance(value, bool):
                out.append(f"{_flag(f.name)} must be true or false, got {value!r}")
            elif kind == "str" and not isinstance(value, str):
                out.append(f"{_flag(f.name)} must be a string, got {value!r}")
        if out:
            return out
        if self.method not in METHOD_DEFAULTS:
            return [f"unknown method {self.method!r}; choose from {sorted(METHOD_DEFAULTS)}"]
        for name, methods in METHOD_OPTIONS.items():
            if getattr(self, name) is not None and self.method not in methods:
                out.append(f"{_flag(name)} applies to --method {' / '.join(methods)} only, not {self.method}")
        for name in ("lr", "activation", "zero_init"):
            if getattr(self, name) is None:
                out.append(f"{name} is unset; call TrainConfig.resolved() for the method's default")
        positive_ints = ("steps", "batch_size", "hidden", "depth", "eval_every", "solver_steps", "val_solver_steps",
                         "max_val_points",
                         "n_synthetic", "n_eigs", "sim_steps", "n_uniform", "n_probes")
        out += [f"{_flag(n)} must be >= 1, got {getattr(self, n)}" for n in positive_ints
                if getattr(self, n) is not None and getattr(self, n) < 1]
        out += [f"{_flag(n)} must be >= 0, got {getattr(self, n)}" for n in ("warmup", "seed", "split_seed")
                if getattr(self, n) is not None and getattr(self, n) < 0]
        positive = ("lr", "lam", "eps", "field_scale", "kappa1", "diffusion_time", "minutes")
        out += [f"{_flag(n)} must be > 0, got {getattr(self, n)}" for n in positive
                if getattr(self, n) is not None and not getattr(self, n) > 0]
        if self.eig_features is not None and self.eig_features < 0:
            out.append(f"--eig-features must be >= 0, got {self.eig_features}")
        if self.fourier_features is not None and self.fourier_features < 0:
            out.append(f"--fourier-features must be >= 0, got {self.fourier_features}")
        if self.fourier_scale is not None and not self.fourier_scale > 0:
            out.append(f"--fourier-scale must be > 0, got {self.fourier_scale}")
        if self.weight_decay < 0:
            out.append(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.ema < 1:
            out.append(f"--ema must be in [0, 1), got {self.ema}")
        if self.uniform is not None and not 0 <= self.uniform < 1:
            out.append("--uniform must be in [0, 1) (the base density's weight in PPD's target path), got "
                       f"{self.uniform}")
        if self.activation is not None and self.activation not in ACTIVATIONS:
            out.append(f"unknown --activation {self.activation!r}; choose from {sorted(ACTIVATIONS)}")
        if self.solver not in available_solvers():
            out.append(f"unknown --solver {self.solver!r}; choose from {available_solvers()}")
        choices = {"coupling": ("independent", "ot"), "path": PATHS, "divergence": ("exact", "hutchinson", "auto"),
                   "ppd_norm": (1, 2), "dtype": tuple(DTYPES)}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                out.append(f"{_flag(name)} must be one of {list(allowed)}, got {value!r}")
        if self.data.strip() == "":
            out.append("--data is empty")
        mesh_data = self.data.startswith(("mesh:", "implicit:"))
        for name in ("density", "samples", "mesh_scale"):
            if getattr(self, name) is not None and not mesh_data:
                out.append(f"{_flag(name)} applies to mesh: and implicit: data only, not {self.data!r}")
        out += _data_problems(self.data, self.manifold, self.amino, mesh_data)
        if self.density is not None and self.samples is not None:
            out.append("--density and --samples exclude each other (a target to sample, or your own points)")
        problem = device_problem(self.device)
        if problem:
            out.append(problem)
        target = Path(self.out)
        if target.exists() and not target.is_dir():
            out.append(f"--out {self.out} exists and is not a folder")
        return out

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        """A config from a stored dict (unknown keys are an error, so a foreign file is not half-read)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}")
        if d.get("method") == "moser" and "field_scale" not in d:
            # stored before the field had a scale: those models used the network's output as it is
            d = {**d, "field_scale": 1.0}
        return cls(**d)

    def resolved_for(self, manifold) -> "TrainConfig":
        """A copy with the defaults that depend on the data's manifold filled in (input encodings, Moser's scales).

        Random Fourier features of the coordinates help on spheres, where the earth data sets have
        structure far finer than a network of raw coordinates learns in a CPU budget
        (:data:`SPHERE_FOURIER`, chosen by measurement, BENCHMARKS.md "Earth ablation"), and on
        meshes at a scale set by the mesh's size (:data:`MESH_FOURIER`); elsewhere the default is none.
        """
        from manifolds import Mesh, Sphere

        count, scale = SPHERE_FOURIER[self.method] if isinstance(manifold, Sphere) else (0, 1.0)
        if isinstance(manifold, Mesh) and self.method in MESH_FOURIER:
            count, per_length = MESH_FOURIER[self.method]
            scale = per_length / math.sqrt(manifold.volume)
        fill: Dict[str, Any] = {}
        if self.method == "moser":
            from .objectives.moser import PUBLISHED_EPS, reference_ratio

            ratio = reference_ratio(manifold)
            if self.eps is None:
                fill["eps"] = PUBLISHED_EPS * ratio
            if self.field_scale is None:
                fill["field_scale"] = ratio
        if self.fourier_features is None:
            fill["fourier_features"] = count
        if self.fourier_scale is None:
            fill["fourier_scale"] = scale
        return dataclasses.replace(self, **fill)

    def changes(self, other: "TrainConfig") -> Dict[str, Tuple[Any, Any]]:
        """``{field: (self's value, other's value)}`` for every field that differs."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}


def _data_problems(data: str, manifold: Optional[str], amino: Optional[str], mesh_data: bool) -> List[str]:
    """Problems of ``--manifold`` and ``--amino`` against ``--data`` (both describe files of your own points)."""
    from .datasets import AMINO_CLASSES, EARTH_DATASETS, SYNTHETIC, parse_manifold

    out = []
    own_file = not mesh_data and data not in SYNTHETIC and data not in EARTH_DATASETS
    if manifold is not None:
        if not own_file:
            out.append(f"--manifold applies to a CSV file of your own points, not {data!r} (it has its own manifold)")
        try:
            parse_manifold(manifold)
        except ValueError as e:
            out.append(f"--manifold: {e}")
    if amino is not None:
        if not (own_file and data.lower().endswith(".tsv")):
            out.append(f"--amino applies to protein torsion files (.tsv), not {data!r}")
        if amino not in AMINO_CLASSES:
            out.append(f"--amino must be one of {list(AMINO_CLASSES)}, got {amino!r}")
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def device_problem(device: str) -> Optional[str]:
    """Why ``device`` cannot run here (an unknown name, no CUDA, an index past the GPUs), or None."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        return f"--device {device!r} is not a device name ({e})"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return f"--device {device}: CUDA is not available here (torch {torch.__version__}, no usable GPU)"
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            return f"--device {device}: MPS is not available here"
    elif dev.type != "cpu":
        return f"--device {device}: only cpu, cuda and mps devices are supported"
    return None
