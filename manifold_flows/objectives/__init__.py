"""Training objectives sharing one face: ``loss(x1)``, ``log_prob(x)``, ``sample(n)``."""

from .base import FlowObjective
from .moser import MoserFlow
from .ppd import PPD, ppd_residual
from .rfm import RFM

OBJECTIVES = {"rfm": RFM, "moser": MoserFlow, "ppd": PPD}
"""The objectives by the name ``TrainConfig.method`` uses."""

__all__ = ["FlowObjective", "MoserFlow", "OBJECTIVES", "PPD", "RFM", "ppd_residual"]
