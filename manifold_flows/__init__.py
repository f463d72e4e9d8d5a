"""manifold-flows: generative models (RFM, Moser Flow, PPD) on the manifolds of the ``manifolds`` package."""

__version__ = "0.1.0"
