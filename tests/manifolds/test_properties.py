"""The generic property table of manifolds.testing, run over every built-in manifold, dtype and seed."""

import pytest
import torch

from manifolds.testing import PROPERTIES, check_manifold


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("prop", sorted(PROPERTIES))
def test_property(manifold, prop, dtype, seed):
    PROPERTIES[prop](manifold, dtype, seed)


def test_check_manifold_reports_every_failure():
    from manifolds import Sphere

    class Broken(Sphere):
        def transp(self, x, y, v):  # a vector transport, not parallel transport: not an isometry
            return self.proju(y, v)

    with pytest.raises(AssertionError, match="transp_preserves_inner_products"):
        check_manifold(Broken(2), seeds=(0,), properties=["transp_preserves_inner_products", "zero_at_identity"])
    with pytest.raises(ValueError, match="unknown properties"):
        check_manifold(Broken(2), properties=["nope"])
