"""Riemannian Flow Matching: regression of a time-dependent field onto conditional path velocities."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

from manifolds import Manifold

from ..coupling import COUPLINGS, ot_pairing
from ..paths import ConditionalPath, GeodesicPath
from .base import FlowObjective


class RFM(FlowObjective):
    """Riemannian Flow Matching (Chen & Lipman, ICLR 2024).

    Loss: ``E |v(x_t, t) - u_t|_g^2`` over the targets of a conditional path
    (:class:`~manifold_flows.paths.ConditionalPath`): geodesic paths by default, with ``x0`` from
    the base distribution and ``t`` uniform on [0, 1]; a
    :class:`~manifold_flows.paths.PremetricPath` (spectral premetrics on meshes) simulates fewer
    pairs and regresses on every state along them, so a step sees about ``B`` targets whatever
    the path.

    Args:
        manifold: the manifold.
        net: the vector-field network; it must depend on time (``net.time_dependent``).
        coupling: ``"independent"`` or ``"ot"`` (minibatch optimal transport under geodesic cost).
        path: a conditional path; ``None`` for geodesic paths.
    """

    def __init__(self, manifold: Manifold, net: nn.Module, coupling: str = "independent",
                 path: Optional[ConditionalPath] = None):
        super().__init__(manifold, net)
        if coupling not in COUPLINGS:
            raise ValueError(f"unknown coupling {coupling!r}; choose from {COUPLINGS}")
        if not getattr(net, "time_dependent", True):
            raise ValueError("RFM learns a time-dependent field: build the network with time_dependent=True")
        if path is None and not manifold.has_geodesics:
            raise ValueError(f"{manifold} has no exp/log maps: RFM needs a PremetricPath (spectral distance) "
                             "there, or use Moser Flow")
        if path is not None and not isinstance(path, GeodesicPath) and coupling != "independent":
            raise ValueError("premetric paths support only the independent coupling")
        if coupling == "ot" and not manifold.exact_expmap:
            raise ValueError(f"the OT coupling needs all pairwise distances of each batch, which {manifold} cannot "
                             "give cheaply (heat-method log maps on the host); use the independent coupling")
        self.coupling = coupling
        self.path = GeodesicPath(manifold) if path is None else path

    def prepare(self, train: torch.Tensor, val: torch.Tensor) -> Dict[str, Any]:
        """Let the path see the training points.

        A :class:`~manifold_flows.geodesic_bank.GeodesicBank` traces its first bank here.
        """
        self.path.prepare(train)
        return {}

    def loss(self, x1: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """RFM loss on a data batch ``x1 [B, D]`` (the path may use only its first ``path.pairs(B)`` rows)."""
        n = self.path.pairs(x1.shape[0])
        x1 = x1[:n]
        x0 = self.manifold.random_base(n, dtype=x1.dtype, device=x1.device, generator=generator)
        if self.coupling == "ot":
            x0 = ot_pairing(self.manifold, x0, x1)
        t = torch.rand(n, dtype=x1.dtype, device=x1.device, generator=generator)
        ps = self.path.sample(x0, x1, t, generator=generator)
        diff = self.net(ps.xt, ps.t) - ps.ut
        return self.manifold.inner(ps.xt, diff).mean()
