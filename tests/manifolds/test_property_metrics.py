"""The property table's machinery for metrics other than the coordinates': volume factors, projectors, power."""

import math

import pytest
import torch

from manifolds import SO3, SPD, FlatTorus, Hyperboloid, PoincareBall
from manifolds._numerics import log_sinhc
from manifolds.testing import check_manifold
from manifolds.volume import log_volume_factor, orthogonal_projector

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_log_volume_factor_closed_forms():
    """``log sqrt(det g)`` on the tangent space relative to the Euclidean surface measure."""
    ball = PoincareBall(3, c=0.5)
    x = ball.random_base(20, dtype=F64, generator=gen(0))
    assert torch.allclose(log_volume_factor(ball, x), 3 * torch.log(2 / (1 - 0.5 * (x * x).sum(-1))))
    so3 = SO3()
    assert torch.allclose(log_volume_factor(so3, so3.random_base(5, dtype=F64, generator=gen(1))),
                          torch.full((5,), -1.5 * math.log(2), dtype=F64))
    # hyperboloid: dvol_g = dxs / (sqrt(c) x0) and dvol_e = sqrt(1 + |xs|^2 / x0^2) dxs in space coordinates
    hyp = Hyperboloid(2, c=2.0)
    h = hyp.random_base(20, dtype=F64, generator=gen(2))
    want = -0.5 * torch.log(2.0 * ((h * h).sum(-1)))
    assert torch.allclose(log_volume_factor(hyp, h), want)
    # SPD: -(n+1)/2 log det P plus a constant (the symmetric embedding's scaling)
    spd = SPD(3)
    p = spd.random_base(20, dtype=F64, generator=gen(3))
    diff = log_volume_factor(spd, p) + 2 * torch.logdet(p.reshape(-1, 3, 3))
    assert torch.allclose(diff, diff[0].expand(20), atol=1e-10)


def test_orthogonal_projector_from_an_oblique_proju():
    hyp = Hyperboloid(3)
    x = hyp.random_base(10, dtype=F64, generator=gen(4))
    p = orthogonal_projector(hyp, x)
    assert torch.allclose(p, p.transpose(-1, -2), atol=1e-12) and torch.allclose(p @ p, p, atol=1e-10)
    normal = torch.cat([-x[:, :1], x[:, 1:]], -1)  # J x spans the Euclidean normal of the sheet
    assert (p @ normal.unsqueeze(-1)).abs().max() < 1e-10
    eye = torch.eye(4, dtype=F64)
    oblique = hyp.proju(x.unsqueeze(-2), eye.expand(10, 4, 4))
    assert (oblique - oblique.transpose(-1, -2)).abs().max() > 0.1  # proju itself is not orthogonal


class _SPDWithoutJacobian(SPD):
    def base_logprob(self, x):
        s = torch.linalg.eigvalsh(self._mat(x)).log()
        return -0.5 * (s * s).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)


class _BallWithoutJacobian(PoincareBall):
    def base_logprob(self, x):
        r = self.dist(torch.zeros_like(x), x)
        return super().base_logprob(x) + (self.dim - 1) * log_sinhc(math.sqrt(self.c) * r)


class _SO3WithWrongVolume(SO3):
    @property
    def volume(self):
        return 1.1 * 8 * math.pi**2


@pytest.mark.parametrize(
    "broken, prop",
    [
        (_SPDWithoutJacobian(2), "base_logprob_integrates_to_one"),
        (_SPDWithoutJacobian(2), "base_is_stationary"),
        (_BallWithoutJacobian(3), "base_is_stationary"),
        (_SO3WithWrongVolume(), "base_logprob_integrates_to_one"),
    ],
    ids=["spd-integral", "spd-stein", "ball-stein", "so3-volume"],
)
def test_properties_catch_wrong_densities(broken, prop):
    with pytest.raises(AssertionError, match=prop):
        check_manifold(broken, dtypes=(F64,), seeds=(0,), properties=[prop])


def test_exponential_chart_is_skipped_where_it_cannot_cover():
    """A flat torus declared non-ambient: the property must skip, not fail.

    The ball of radius pi misses the corners of [-pi, pi]^2, so the chart integral would be pi^3 / (2 pi)^2 ~ 0.79.
    """

    class Torus(FlatTorus):
        ambient_metric = False

    check_manifold(Torus(2), dtypes=(F64,), seeds=(0,), properties=["base_logprob_integrates_to_one"])
