"""Every public geometry operation rejects tensors of the wrong trailing dimension or dtype.

The error message names them.
"""

import pytest
import torch

import manifolds as mf

TWO_ARGS = ["proju", "tangent_field", "expmap", "logmap", "inner", "norm", "dist", "dist2", "retr", "egrad2rgrad"]
THREE_ARGS = ["transp", "expmap_transp", "retr_transp", "transp_follow_expmap", "transp_follow_retr"]


def _args(m, n, k, *, bad_dim=None, bad_dtype=None):
    x = m.random_base(4, dtype=torch.float64)
    args = [x] + [m.proju(x, torch.randn(4, m.ambient_dim, dtype=torch.float64)) for _ in range(n - 1)]
    if bad_dim is not None:
        args[k] = torch.zeros(4, m.ambient_dim + 1, dtype=torch.float64)
    if bad_dtype is not None:
        args[k] = args[k].to(bad_dtype)
    return args


@pytest.mark.parametrize("name", ["projx", "base_logprob"] + TWO_ARGS + THREE_ARGS)
def test_wrong_trailing_dimension_is_named(manifold, name):
    n = 1 if name in ("projx", "base_logprob") else 2 if name in TWO_ARGS else 3
    for k in range(n):
        with pytest.raises(ValueError, match=r"has shape \(4, \d+\).*trailing dimension of \d+"):
            getattr(manifold, name)(*_args(manifold, n, k, bad_dim=True))


@pytest.mark.parametrize("name", ["projx", "expmap", "logmap", "dist", "transp"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_non_floating_dtype_is_named(manifold, name, dtype):
    n = {"projx": 1, "transp": 3}.get(name, 2)
    with pytest.raises(ValueError, match="floating dtype"):
        getattr(manifold, name)(*_args(manifold, n, n - 1, bad_dtype=dtype))


def test_scalar_and_mismatched_inputs():
    s = mf.Sphere(2)
    with pytest.raises(ValueError, match=r"'y' has shape \(\)"):
        s.dist(torch.randn(3), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"Sphere\(dim=2\)\.expmap: 'x' has shape \(4, 2\)"):
        s.expmap(torch.randn(4, 2), torch.randn(4, 2))


def test_meshes_and_implicit_surfaces_check_too(bunny_path):
    surface = mf.ImplicitSurface.torus(R=1.0, r=0.4)
    with pytest.raises(ValueError, match="trailing dimension of 3"):
        surface.projx(torch.randn(5, 2))
    mesh = mf.Mesh(bunny_path, scale=1 / 250)
    with pytest.raises(ValueError, match="floating dtype"):
        mesh.projx(torch.ones(5, 3, dtype=torch.int32))


def test_valid_calls_are_unchanged():
    s = mf.Sphere(2)
    x = s.random_base(3, dtype=torch.float64)
    assert torch.allclose(s.projx(x), x / x.norm(dim=-1, keepdim=True), rtol=0, atol=1e-15)
    assert s.expmap.__doc__ and "cos" in s.expmap.__doc__  # docstrings survive the wrapping
