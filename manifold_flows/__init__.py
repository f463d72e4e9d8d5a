"""manifold-flows: generative models (RFM, Moser Flow, PPD) on the manifolds of the ``manifolds`` package.

The public API::

    from manifold_flows import RFM, MoserFlow, PPD            # objectives: loss(x1), log_prob(x), sample(n)
    from manifold_flows import VectorField, EMA                # networks
    from manifold_flows import odeint, log_likelihood, sample, time_grid, divergence   # solvers and likelihoods
    from manifold_flows import train, TrainConfig, load_run    # the training loop of the command line, runs from disk
    from manifold_flows import datasets                        # earth data, meshes, targets with exact densities
"""

__version__ = "0.1.0"

from . import datasets  # noqa: E402
from .config import TrainConfig  # noqa: E402
from .divergence import divergence  # noqa: E402
from .likelihood import log_likelihood, sample  # noqa: E402
from .nets import EMA, VectorField  # noqa: E402
from .objectives import PPD, RFM, FlowObjective, MoserFlow  # noqa: E402
from .runs import load_run  # noqa: E402
from .solvers import available_solvers, odeint, time_grid  # noqa: E402
from .training import train  # noqa: E402

__all__ = [
    "EMA", "PPD", "RFM", "FlowObjective", "MoserFlow", "TrainConfig", "VectorField", "available_solvers", "datasets",
    "divergence", "load_run", "log_likelihood", "odeint", "sample", "time_grid", "train", "__version__",
]
