"""Forces of a flow density and training by force matching, after Koehler, Kraemer & Noe 2021
("Smooth Normalizing Flows").

A flow density q(x) defines an energy -log q(x) and so a force F_q(x) = grad_x log q(x). A target
p(x) = exp(-U(x)) / Z with known forces F(x) = -grad U(x) can then be fitted by force matching,
E_x |F_q(x) - F(x)|^2 over sampled configurations, alone or added to the negative log likelihood.
Forces need the flow's second derivatives: a rational-quadratic spline is C^1 only (its second
derivative jumps at the knots), so the forces of a spline density jump there, while a smooth ramp
mixture (`splines.SmoothRampMixture`) gives continuous forces.

- `IntervalSpline`: a circular rational-quadratic spline (`splines.circular_spline`) read as a
  monotone bijection of [0, 1] with a learned slope shared by both ends, the spline counterpart of
  `SmoothRampMixture` on the same interval.
- `UnitIntervalFlow(layers, dim)`: the density on [0, 1]^D with a uniform base, q(x) = |det du/dx|.
- `flow_forces`, `force_matching_loss`, `force_jump`: forces by autograd, the loss, and the jump of
  a force across a point (a discontinuity keeps it finite as the gap shrinks).
- `scale_rows`: a learning rate per replicate row inside one vectorised fit (Adam's step does
  not depend on the gradient's scale, so training theta = s * phi by Adam at rate 1 moves each row
  of theta at rate s).
- `IntervalDoubleWell`: `targets.DoubleWell` (1-D) on [-L, L] read on [0, 1]: energy, force,
  log Z and exact samples by rejection.

Introduced in: notebooks/normalizing-flows/smooth-normalizing-flows.ipynb
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.validation import check_int, check_positive
from . import splines, targets

TWO_PI = 2 * math.pi


def _check_unit(x, dim):
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, {dim})")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("x has values outside [0, 1], the domain of this flow")


class IntervalSpline(nn.Module):
    """A rational-quadratic spline of [0, 1] per dimension: `splines.circular_spline` applied to
    2 pi x and divided by 2 pi, so f(0) = 0, f(1) = 1 and both ends share one learned slope. Starts
    at the identity (equal bins, unit slopes). `bins` bins, 3 * bins parameters per dimension."""

    def __init__(self, dim: int, bins: int = 8):
        super().__init__()
        self.dim = check_int("dim", dim)
        check_int("bins", bins, minimum=2)
        self.widths = nn.Parameter(torch.zeros(dim, bins))
        self.heights = nn.Parameter(torch.zeros(dim, bins))
        unit = math.log(math.expm1(1 - splines.MIN_DERIVATIVE))     # softplus^-1 of slope 1
        self.derivatives = nn.Parameter(torch.full((dim, bins), unit))

    def _transform(self, x, inverse):
        _check_unit(x, self.dim)
        y, log_deriv = splines.circular_spline(TWO_PI * x, self.widths, self.heights,
                                               self.derivatives, inverse=inverse)
        return y / TWO_PI, log_deriv.sum(-1)

    def knots(self):
        """The interior knots on [0, 1] where the input bins meet, (D, bins - 1)."""
        sizes = splines.MIN_BIN + (1 - splines.MIN_BIN * self.widths.shape[-1]) * torch.softmax(
            self.widths, -1)
        return torch.cumsum(sizes, -1)[..., :-1]

    def forward(self, x):
        return self._transform(x, False)

    def inverse(self, y):
        return self._transform(y, True)


class UnitIntervalFlow(nn.Module):
    """The density q(x) = |det du/dx| on [0, 1]^D, u = layers(x) by their `forward` (data -> base),
    with the uniform base on [0, 1]^D; each layer must map [0, 1]^D onto itself (`IntervalSpline`,
    `splines.SmoothRampMixture`). Sampling runs the inverses on uniform draws."""

    def __init__(self, layers, dim: int):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.layers = nn.ModuleList(layers)
        self.register_buffer("_anchor", torch.zeros(()))

    def log_prob(self, x):
        """log q(x) for x of shape (N, D) in [0, 1]^D, (N,); differentiable in x and parameters."""
        _check_unit(x, self.dim)
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x.clamp(0, 1))
            log_det = log_det + ld
        return log_det

    def sample(self, n: int, generator=None):
        """n samples (n, D) of q, by the layers' inverses applied to uniform draws."""
        u = torch.rand(check_int("n", n), self.dim, generator=generator,
                       device=self._anchor.device, dtype=self._anchor.dtype)
        for layer in reversed(self.layers):
            u, _ = layer.inverse(u.clamp(0, 1))
        return u


def flow_forces(flow, x, create_graph: bool = False):
    """F_q(x) = grad_x log q(x), (N, D): the force of the energy -log q. With `create_graph` the
    result can be differentiated again (for training by force matching)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        log_q = flow.log_prob(x)
        (forces,) = torch.autograd.grad(log_q.sum(), x, create_graph=create_graph)
    return forces


def force_matching_loss(flow, x, forces):
    """The force-matching loss sum_d mean_n (F_q(x_n)_d - F(x_n)_d)^2 against reference forces F
    (N, D), differentiable in the flow's parameters."""
    if forces.shape != x.shape:
        raise ValueError(f"forces has shape {tuple(forces.shape)}, must match x {tuple(x.shape)}")
    return ((flow_forces(flow, x, create_graph=True) - forces) ** 2).mean(0).sum()


def force_jump(force_fn, points, gap: float):
    """|F(x + gap) - F(x - gap)| at each of `points` (any shape), for an elementwise force function:
    it shrinks in proportion to `gap` where F is differentiable and stays finite where F jumps."""
    check_positive("gap", gap)
    return (force_fn(points + gap) - force_fn(points - gap)).abs()


class IntervalDoubleWell:
    """The 1-D tilted double well of `targets.DoubleWell` (U(z) = a z^4 - b z^2 + c z) on z in
    [-L, L], read on x = (z + L) / (2 L) in [0, 1]: U_x(x) = U(2 L x - L), force -dU_x/dx, and
    log Z_x = log Z_z - log 2 L (the mass beyond [-L, L] is below exp(-`margin`) and is ignored;
    the constructor checks it). Exact samples by rejection from the uniform on [0, 1]."""

    def __init__(self, a: float = 1.0, b: float = 4.0, c: float = 0.5, half_width: float = 2.5,
                 margin: float = 15.0):
        check_positive("half_width", half_width)
        self.base = targets.DoubleWell(a, b, c, dim=1)
        self.half_width = float(half_width)
        grid = torch.linspace(0, 1, 20001, dtype=torch.float64)
        energies = self.energy(grid)
        self.energy_min = energies.min().item()
        edge = min(energies[0].item(), energies[-1].item()) - self.energy_min
        if edge < margin:
            raise ValueError(f"half_width == {half_width!r} leaves the energy at the ends only {edge:.1f}"
                             f" above the minimum, must be >= {margin} (widen the interval)")
        self.log_z = self.base.log_z - math.log(2 * self.half_width)

    def energy(self, x):
        """U_x(x), elementwise on x in [0, 1]."""
        return self.base.energy_first(2 * self.half_width * x - self.half_width)

    def force(self, x):
        """-dU_x/dx, elementwise: -2 L U'(z)."""
        z = 2 * self.half_width * x - self.half_width
        a, b, c = self.base.a, self.base.b, self.base.c
        return -2 * self.half_width * (4 * a * z ** 3 - 2 * b * z + c)

    def log_prob(self, x):
        """log p(x) = -U_x(x) - log Z_x, elementwise."""
        return -self.energy(x) - self.log_z

    def sample(self, n: int, generator=None):
        """n exact samples (n,) in float64: uniform proposals accepted with exp(-(U - U_min))."""
        n = check_int("n", n)
        out = []
        while sum(len(o) for o in out) < n:
            x = torch.rand(8 * n, generator=generator, dtype=torch.float64)
            keep = torch.rand(8 * n, generator=generator, dtype=torch.float64) < torch.exp(
                -(self.energy(x) - self.energy_min))
            out.append(x[keep])
        return torch.cat(out)[:n]


def marginal_log_probs(flow, x):
    """log q_d(x_d) of each coordinate, (N, D), for a flow whose layers all act elementwise (a
    product density, e.g. D independent replicates of a 1-D flow trained side by side): the log of
    the Jacobian's diagonal du_d/dx_d, by autograd."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        u = x
        for layer in flow.layers:
            u, _ = layer(u.clamp(0, 1))
        (diagonal,) = torch.autograd.grad(u.sum(), x)
    return diagonal.log()


class _RowScale(nn.Module):
    """theta = scale * phi, row by row (scale broadcast along the other axes)."""

    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", scale)

    def forward(self, phi):
        return phi * self.scale

    def right_inverse(self, theta):
        return theta / self.scale


def scale_rows(module, scale):
    """Reparametrize every parameter of `module` (not of its children) as theta = scale_d * phi,
    scale (D,) positive along the first axis: Adam at rate 1 on phi then updates row d of theta
    at rate scale_d (up to Adam's eps), so one module holds fits at D learning rates. Returns the
    module; its parameters keep their values."""
    scale = torch.as_tensor(scale, dtype=torch.float64)
    if scale.ndim != 1 or not (scale > 0).all():
        raise ValueError("scale must be a 1-D tensor of positive numbers, one per row")
    for name, p in list(module.named_parameters(recurse=False)):
        if p.shape[0] != len(scale):
            raise ValueError(f"parameter {name} has {p.shape[0]} rows, scale has {len(scale)}")
        shape = (-1,) + (1,) * (p.ndim - 1)
        parametrize.register_parametrization(
            module, name, _RowScale(scale.to(p.device, p.dtype).view(shape)))
    return module
