"""Riemannian manifolds for generative modelling, built on geoopt.

Every class derives from :class:`manifolds.Manifold` (itself a ``geoopt.Manifold``), so its
points can be ``geoopt.ManifoldParameter`` s optimised with ``geoopt.optim.RiemannianAdam``.
"""

from .base import AmbientMetric, Manifold
from .euclidean import Euclidean
from .hyperbolic import Hyperboloid, PoincareBall
from .implicit import ImplicitSurface
from .mesh import Mesh
from .product import ProductManifold
from .so3 import SO3
from .spd import SPD
from .spectral import SpectralDistance
from .sphere import Sphere
from .torus import FlatTorus

__all__ = ["Manifold", "AmbientMetric", "Sphere", "FlatTorus", "Euclidean", "ProductManifold", "Mesh",
           "SpectralDistance", "ImplicitSurface", "SO3", "SPD", "PoincareBall", "Hyperboloid"]
