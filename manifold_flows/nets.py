"""Time-conditioned vector-field networks on manifolds, and an exponential moving average of weights."""

from __future__ import annotations

import copy
import math
from typing import Optional

import torch
from torch import nn

from manifolds import Manifold


class TailClamped(nn.Module):
    """``act(clamp(z, lower, upper))``: an activation whose tails are exactly flat.

    Saturating activations and their derivatives decay like ``exp(-|z|)`` in their tails and pass
    through the subnormal range of the dtype before reaching zero (Softplus(beta=100) already for
    ``z`` in ``[-1.03, -0.87]`` in float32). Matrix products with subnormal operands run 10-20x
    slower on x86 CPUs, and a trained network has many pre-activations there: a Moser Flow run
    slowed down 16x. Clamping the input where the tail is ``e^-20`` of its scale keeps every value,
    first and second derivative either normal or exactly zero; the change to the function is
    below float32 resolution (a derivative jump of about ``2e-9``).

    Args:
        act: the activation.
        lower: inputs below are clamped (``None``: no lower clamp).
        upper: inputs above are clamped (``None``: no upper clamp).
    """

    def __init__(self, act: nn.Module, lower: Optional[float] = None, upper: Optional[float] = None):
        super().__init__()
        self.act, self.lower, self.upper = act, lower, upper

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Elementwise, any shape."""
        return self.act(torch.clamp(z, min=self.lower, max=self.upper))

    def extra_repr(self) -> str:
        """The clamp bounds, for ``repr``."""
        return f"lower={self.lower}, upper={self.upper}"


class Gated(nn.Module):
    """``z * gate(clamp(z, -TAIL, TAIL))`` for a sigmoid-like gate: SiLU (``sigmoid``) and GELU (normal CDF).

    For GELU the native kernel's second derivative holds the Gaussian density ``exp(-z^2 / 2)``,
    which passes through the subnormal range in both tails, so clamping the input below is not
    enough (SiLU's native kernels need only the lower clamp of :class:`TailClamped`). With the gate's
    argument clamped the function stays linear with slope ``gate(+-TAIL)``
    outside ``[-TAIL, TAIL]``, the second derivative is exactly zero there, and every value is
    normal or zero.

    Args:
        gate: ``"sigmoid"`` (SiLU) or ``"normal_cdf"`` (GELU).
        tail: where the gate's argument is clamped.
    """

    def __init__(self, gate: str, tail: float):
        super().__init__()
        if gate not in ("sigmoid", "normal_cdf"):
            raise ValueError(f"unknown gate {gate!r}")
        self.gate, self.tail = gate, tail

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Elementwise, any shape."""
        c = torch.clamp(z, -self.tail, self.tail)
        g = torch.sigmoid(c) if self.gate == "sigmoid" else 0.5 * (1.0 + torch.erf(c * math.sqrt(0.5)))
        return z * g

    def extra_repr(self) -> str:
        """The gate and the clamp bound, for ``repr``."""
        return f"gate={self.gate}, tail={self.tail}"


TAIL = 20.0
"""Where the activations' tails are cut, in units of their decay length: ``e^-20 = 2e-9``."""

ACTIVATIONS = {
    "silu": lambda: TailClamped(nn.SiLU(), lower=-TAIL),
    "relu": nn.ReLU,
    "gelu": lambda: Gated("normal_cdf", TAIL / 2.5),  # the Gaussian tail decays like exp(-z^2 / 2): Phi(-8) = 6e-16
    "tanh": lambda: TailClamped(nn.Tanh(), lower=-TAIL / 2, upper=TAIL / 2),  # 1 - tanh^2 ~ 4 exp(-2 |z|)
    "softplus": lambda: TailClamped(nn.Softplus(), lower=-TAIL),
    # the Moser Flow paper's choice: smooth, near-ReLU; its tail decays like exp(100 z)
    "softplus100": lambda: TailClamped(nn.Softplus(beta=100.0), lower=-TAIL / 100.0),
}
"""Activations by name; all are free of subnormal values in value, first and second derivative."""


def integer_frequencies(rows: int, angles: int, max_coeff: int = 1, seed: int = 0) -> torch.Tensor:
    """Random integer frequency vectors ``[rows, angles]`` with two non-zero entries each (one if ``angles == 1``).

    Each row picks two distinct angles uniformly and integer coefficients of magnitude
    ``1 .. max_coeff`` with random signs, so ``sin(k . x)`` is periodic in every angle and mixes a
    pair of them; drawn from a CPU generator seeded with ``seed`` (the same on every machine).
    """
    out = torch.zeros(rows, angles, dtype=torch.float64)
    if rows == 0 or angles == 0:
        return out
    gen = torch.Generator().manual_seed(seed)
    per_row = min(2, angles)
    for i in range(rows):
        cols = torch.randperm(angles, generator=gen)[:per_row]
        mags = torch.randint(1, max_coeff + 1, (per_row,), generator=gen).to(torch.float64)
        signs = torch.randint(0, 2, (per_row,), generator=gen).to(torch.float64) * 2 - 1
        out[i, cols] = mags * signs
    return out


class InputFeatures(nn.Module):
    """Coordinates a network can use: raw coordinates, random Fourier features, and harmonics of torus angles.

    Angles enter as ``sin(k x), cos(k x)`` for ``k = 1..n_fourier``, which keeps the network
    periodic (a raw angle would make the field jump across 0 = 2 pi). Embedded coordinates (the
    sphere's ``x in R^3``, ...) enter raw and, with ``fourier_features = F > 0``, also as
    ``sin(B x), cos(B x)`` with a fixed Gaussian matrix ``B [F, D]`` of scale ``fourier_scale``:
    random Fourier features, which let an MLP fit structure at the length scale ``1 / fourier_scale``
    (faults, coastlines, volcanic arcs) in far fewer steps than raw coordinates. ``B`` is drawn from
    a fixed seed and saved with the weights.

    Angles get ``fourier_features`` random features of their own, ``sin(K x), cos(K x)`` with an
    integer matrix ``K`` (:func:`integer_frequencies`): periodic like the harmonics, but each couples
    two angles, and their number does not grow with the number of angles (the harmonics give
    ``2 n_fourier d`` inputs on T^d). ``K`` is redrawn from a fixed seed, not saved.
    """

    def __init__(self, manifold: Manifold, n_fourier: int = 2, fourier_features: int = 0, fourier_scale: float = 1.0):
        super().__init__()
        self.sizes = [m.ambient_dim for m in manifold.factors]
        self.periodic = [m.angle_coordinates for m in manifold.factors]
        self.register_buffer("freqs", torch.arange(1, n_fourier + 1, dtype=torch.float32), persistent=False)
        embedded = sum(s for s, p in zip(self.sizes, self.periodic) if not p)
        if fourier_features < 0 or not fourier_scale > 0:
            raise ValueError(f"need fourier_features >= 0 and fourier_scale > 0, got {fourier_features}, "
                             f"{fourier_scale}")
        self.fourier_features = fourier_features if embedded else 0
        gen = torch.Generator().manual_seed(0)
        b = torch.randn(self.fourier_features, embedded, generator=gen, dtype=torch.float64) * fourier_scale
        self.register_buffer("projection", b.to(torch.float32))
        angles = sum(s for s, p in zip(self.sizes, self.periodic) if p)
        self.angle_features = fourier_features if angles else 0
        k = integer_frequencies(self.angle_features, angles, max(1, round(fourier_scale)))
        self.register_buffer("angle_projection", k.to(torch.float32), persistent=False)
        self.out_dim = sum(2 * n_fourier * s if p else s for s, p in zip(self.sizes, self.periodic))
        self.out_dim += 2 * self.fourier_features + 2 * self.angle_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., ambient_dim] -> [..., out_dim]``."""
        parts, embedded, angles = [], [], []
        for chunk, periodic in zip(torch.split(x, self.sizes, dim=-1), self.periodic):
            if periodic:
                kx = (chunk.unsqueeze(-1) * self.freqs.to(chunk.dtype)).flatten(-2)
                parts += [torch.sin(kx), torch.cos(kx)]
                angles.append(chunk)
            else:
                parts.append(chunk)
                embedded.append(chunk)
        if self.fourier_features:
            bx = torch.cat(embedded, -1) @ self.projection.to(x.dtype).T
            parts += [torch.sin(bx), torch.cos(bx)]
        if self.angle_features:
            ax = torch.cat(angles, -1) @ self.angle_projection.to(x.dtype).T
            parts += [torch.sin(ax), torch.cos(ax)]
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]


class TimeFeatures(nn.Module):
    """``t -> [t, sin(2 pi f t), cos(2 pi f t)]`` for a few frequencies ``f``."""

    def __init__(self, n_freqs: int = 3):
        super().__init__()
        self.register_buffer("freqs", 2 * math.pi * 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)
        self.out_dim = 1 + 2 * n_freqs

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``[..., 1] -> [..., out_dim]``."""
        ft = t * self.freqs.to(t.dtype)
        return torch.cat([t, torch.sin(ft), torch.cos(ft)], dim=-1)


class VectorField(nn.Module):
    """An MLP ``v(x, t)`` whose input is projected onto the manifold and output onto its tangent space.

    The output goes through ``manifold.tangent_field`` (``proju``, except on meshes, where the
    component along the smooth vertex normal is dropped first, see ``Mesh.tangent_field``, and on
    SPD matrices and the Poincare ball, where it is read in an orthonormal frame). The input is
    read through ``manifold.normal_coordinates`` (the points themselves, except on non-compact
    manifolds whose coordinates grow exponentially: SPD matrices and hyperbolic models).

    Args:
        manifold: the manifold the field lives on.
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        activation: one of :data:`ACTIVATIONS`.
        n_fourier: Fourier frequencies per torus angle.
        fourier_features: random Fourier features of the embedded coordinates (0: none).
        fourier_scale: their frequency scale (inverse length).
        time_dependent: if False the field ignores ``t`` (Moser Flow).
        zero_init: start from the zero field (last layer zeroed); a Moser Flow model then starts at
            the base density exactly.
        surface_features: an optional module ``[..., D] -> [..., out_dim]`` of further inputs (e.g.
            :class:`~manifold_flows.surface_features.SpectralFeatures` on meshes).
    """

    def __init__(
        self,
        manifold: Manifold,
        hidden: int = 256,
        depth: int = 4,
        activation: str = "silu",
        n_fourier: int = 2,
        time_dependent: bool = True,
        zero_init: bool = False,
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
        surface_features: Optional[nn.Module] = None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        if hidden < 1 or depth < 1:
            raise ValueError(f"hidden and depth must be >= 1, got hidden={hidden}, depth={depth}")
        # a plain reference, not a submodule: the manifold's own parameters (an ImplicitSurface built
        # from a network) are not the field's to train, and the manifold moves devices on its own
        object.__setattr__(self, "manifold", manifold)
        self.time_dependent = time_dependent
        self.inputs = InputFeatures(manifold, n_fourier, fourier_features, fourier_scale)
        self.time = TimeFeatures() if time_dependent else None
        self.surface_features = surface_features
        width_in = self.inputs.out_dim + (self.time.out_dim if self.time is not None else 0)
        width_in += surface_features.out_dim if surface_features is not None else 0
        layers = []
        for i in range(depth):
            layers += [nn.Linear(width_in if i == 0 else hidden, hidden), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(hidden, manifold.ambient_dim))
        self.mlp = nn.Sequential(*layers)
        if zero_init:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)

    def __deepcopy__(self, memo):
        # copies (the EMA's) share the manifold: geometry is not state, and a mesh is large
        memo[id(self.manifold)] = self.manifold
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = copy.deepcopy(value, memo)
        return new

    def forward(self, x: torch.Tensor, t: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Tangent vectors ``[..., D]`` at ``projx(x)``; ``t`` is a scalar or ``[...]`` tensor."""
        x = self.manifold.projx(x)
        feats = self.inputs(self.manifold.normal_coordinates(x))
        if self.surface_features is not None:
            feats = torch.cat([feats, self.surface_features(x)], dim=-1)
        if self.time is not None:
            if t is None:
                raise ValueError("this field is time-dependent: pass t")
            t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
            t = t.reshape(t.shape + (1,)).expand(x.shape[:-1] + (1,))
            feats = torch.cat([feats, self.time(t)], dim=-1)
        return self.manifold.tangent_field(x, self.mlp(feats))


class EMA(nn.Module):
    """Exponential moving average of a model's parameters.

    The decay of update ``n`` (counting from 0) is ``min(decay, (1 + n) / (10 + n))``: early
    updates average over the few steps taken so far instead of holding on to the random
    initialisation, so short runs (and slow objectives) are evaluated on trained weights. The
    count lives on the host (no device read per step) and is mirrored in the ``num_updates``
    buffer, saved and restored with the state dict. Buffers (constants of the network) are copied
    by :meth:`copy_buffers`, not at every step.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._count = 0

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        return min(self.decay, (1.0 + self._count) / (10.0 + self._count))

    def set_count(self, n: int) -> None:
        """Declare ``n`` updates done (after restoring averaged weights, e.g. on resume)."""
        self._count = int(n)
        self.num_updates.fill_(self._count)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current parameters (no host synchronisation)."""
        weight = 1.0 - self.current_decay()
        for avg, p in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(p.detach(), weight)
        self.set_count(self._count + 1)

    @torch.no_grad()
    def copy_buffers(self, model: nn.Module) -> None:
        """Copy ``model``'s buffers into the average (call before evaluating it)."""
        for avg, b in zip(self.model.buffers(), model.buffers()):
            avg.copy_(b)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        key = prefix + "num_updates"
        if key in state_dict:
            self._count = int(state_dict[key])
