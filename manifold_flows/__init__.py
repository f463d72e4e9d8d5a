"""manifold-flows: generative models (RFM, Moser Flow, PPD) on the manifolds of the ``manifolds`` package."""

__version__ = "0.1.0"

from .config import TrainConfig  # noqa: E402
from .training import train  # noqa: E402

__all__ = ["TrainConfig", "train", "__version__"]
