"""Network inputs on high-dimensional tori.

Random integer-frequency features that stay periodic and do not grow with d.
"""

import math

import torch

import manifolds as mf
from manifold_flows import VectorField
from manifold_flows.nets import InputFeatures, integer_frequencies


def test_integer_frequencies_couple_pairs_of_angles():
    k = integer_frequencies(64, 100, max_coeff=2)
    assert torch.equal(k, k.round()) and ((k != 0).sum(-1) == 2).all() and k.abs().max() == 2
    assert torch.equal(k, integer_frequencies(64, 100, max_coeff=2))  # fixed seed
    assert ((integer_frequencies(5, 1) != 0).sum(-1) == 1).all()


def test_angle_features_are_periodic_and_their_number_fixed():
    m = mf.FlatTorus(50)
    f = InputFeatures(m, n_fourier=1, fourier_features=32)
    assert f.out_dim == 2 * 50 + 2 * 32
    x = m.random_base(8, dtype=torch.float64)
    shift = torch.zeros(50, dtype=torch.float64)
    shift[7] = 2 * math.pi
    assert torch.allclose(f(x), f(x + shift), atol=1e-9)
    net = VectorField(m, hidden=16, depth=1, fourier_features=32)
    assert net(x.float(), 0.5).shape == (8, 50)
    # a sphere factor keeps its Gaussian features and the torus factor gets integer ones
    p = InputFeatures(mf.ProductManifold(mf.Sphere(2), mf.FlatTorus(3)), fourier_features=4)
    assert p.out_dim == 3 + 2 * 2 * 3 + 2 * 4 + 2 * 4
