"""Couplings of noise and data in a minibatch: independent, or optimal transport under geodesic cost."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from manifolds import Manifold

COUPLINGS = ("independent", "ot")


def ot_pairing(manifold: Manifold, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Reorder ``x0 [B, D]`` so that pairs ``(x0[i], x1[i])`` minimise the total squared geodesic distance.

    An exact assignment (Hungarian algorithm on the host; about 20 ms for B = 512 on CPU). The
    pairing is a permutation, so the marginals of noise and data are unchanged.
    """
    with torch.no_grad():
        cost = manifold.dist2(x0.unsqueeze(1), x1.unsqueeze(0))
    rows, cols = linear_sum_assignment(cost.double().cpu().numpy())
    perm = np.empty_like(rows)
    perm[cols] = rows
    return x0[torch.as_tensor(perm, device=x0.device)]
