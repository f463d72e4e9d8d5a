"""Shared fixtures: the manifolds every generic test runs over."""

import pytest

import manifolds as mf

MANIFOLDS = {
    "sphere1": lambda: mf.Sphere(1),
    "sphere2": lambda: mf.Sphere(2),
    "sphere3": lambda: mf.Sphere(3),
    "sphere5": lambda: mf.Sphere(5),
    "torus1": lambda: mf.FlatTorus(1),
    "torus2": lambda: mf.FlatTorus(2),
    "torus4": lambda: mf.FlatTorus(4),
    "euclidean2": lambda: mf.Euclidean(2),
    "euclidean3": lambda: mf.Euclidean(3),
    "sphere2_x_torus2": lambda: mf.ProductManifold(mf.Sphere(2), mf.FlatTorus(2)),
    "euclidean1_x_sphere1": lambda: mf.ProductManifold(mf.Euclidean(1), mf.Sphere(1)),
    "so3": lambda: mf.SO3(),
    "spd2": lambda: mf.SPD(2),
    "spd3": lambda: mf.SPD(3),
    "poincare2": lambda: mf.PoincareBall(2),
    "poincare3": lambda: mf.PoincareBall(3),
    "hyperboloid2": lambda: mf.Hyperboloid(2),
    "hyperboloid3_c0.5": lambda: mf.Hyperboloid(3, c=0.5),
}


@pytest.fixture(params=sorted(MANIFOLDS), ids=sorted(MANIFOLDS))
def manifold(request):
    return MANIFOLDS[request.param]()


@pytest.fixture(scope="session")
def bunny_path():
    """The bundled Stanford bunny (5000 faces, raw coordinates)."""
    from manifold_flows.datasets.mesh import MESHES

    return MESHES["bunny"]
