"""What a configuration builds: its data set and split, the RFM path, and the objective with a fresh network."""

from __future__ import annotations

from typing import Any, Dict, Optional

from manifolds import Manifold, Mesh, SpectralDistance

from .config import TrainConfig
from .geodesic_bank import GeodesicBank
from .nets import VectorField
from .objectives import PPD, RFM, FlowObjective, MoserFlow
from .paths import ConditionalPath, PremetricPath
from .surface_features import SpectralFeatures


def load_data(cfg: TrainConfig) -> Dict[str, Any]:
    """The data set and split of a config (same seed, same split, also in evaluate)."""
    from .datasets import load_dataset

    seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    return load_dataset(cfg.data, seed=seed, n_synthetic=cfg.n_synthetic, dedupe=cfg.dedupe, density=cfg.density,
                        samples=cfg.samples, mesh_scale=cfg.mesh_scale, manifold=cfg.manifold, amino=cfg.amino)


def build_path(cfg: TrainConfig, manifold: Manifold) -> Optional[ConditionalPath]:
    """The conditional path RFM uses.

    ``None`` for closed-form geodesics; on meshes a bank of traced geodesics (``geodesic``, the default), of
    shortest paths through vertices (``shortest``) or of traced geodesics closed by one (``patched``), or a
    simulated spectral-premetric path (``biharmonic``, ``diffusion``).
    """
    kind = cfg.path
    if kind is None:
        kind = "geodesic" if manifold.exact_expmap or manifold.has_geodesics else "biharmonic"
    if kind == "geodesic":
        return GeodesicBank(manifold, seed=cfg.seed) if isinstance(manifold, Mesh) else None
    if kind in ("shortest", "patched"):
        if not isinstance(manifold, Mesh):
            raise ValueError(f"--path {kind} (paths through mesh vertices) needs a mesh, not {manifold}")
        return GeodesicBank(manifold, seed=cfg.seed, kind=kind)
    if not isinstance(manifold, Mesh):
        raise ValueError(f"--path {kind} (a spectral premetric) needs a mesh, not {manifold}")
    distance = SpectralDistance(manifold, kind, n_eigs=cfg.n_eigs, tau=cfg.diffusion_time)
    return PremetricPath(manifold, distance, steps=cfg.sim_steps)


def build_surface_features(cfg: TrainConfig, manifold: Manifold) -> Optional[SpectralFeatures]:
    """Eigenfunction inputs of the network on meshes (``cfg.eig_features`` of them), else None."""
    k = cfg.eig_features or 0
    if k == 0:
        return None
    if not isinstance(manifold, Mesh):
        raise ValueError(f"--eig-features (Laplace-Beltrami eigenfunctions) needs a mesh, not {manifold}")
    return SpectralFeatures(manifold, k)


def build_objective(cfg: TrainConfig, manifold: Manifold) -> FlowObjective:
    """The objective named by ``cfg.method`` with a fresh network (``cfg`` is resolved first)."""
    cfg = cfg.resolved().resolved_for(manifold)
    moser = cfg.method == "moser"
    net = VectorField(manifold, hidden=cfg.hidden, depth=cfg.depth, activation=cfg.activation,
                      time_dependent=not moser, zero_init=bool(cfg.zero_init), fourier_features=cfg.fourier_features,
                      fourier_scale=cfg.fourier_scale, surface_features=build_surface_features(cfg, manifold))
    if cfg.method == "rfm":
        return RFM(manifold, net, coupling=cfg.coupling, path=build_path(cfg, manifold))
    if moser:
        return MoserFlow(manifold, net, eps=cfg.eps, lam=cfg.lam, field_scale=cfg.field_scale, n_uniform=cfg.n_uniform,
                         divergence=cfg.divergence, n_probes=cfg.n_probes)
    return PPD(manifold, net, norm=cfg.ppd_norm, kappa1=cfg.kappa1, uniform=cfg.uniform, divergence=cfg.divergence,
               n_probes=cfg.n_probes)
