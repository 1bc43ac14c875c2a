"""Known diffeomorphisms of the plane, and the errors of an approximation of one.

Teshima et al. (2020) prove that invertible networks built from affine coupling layers approximate
any C^2 diffeomorphism (in the sup norm on a compact set, and in L^p), and that flows built from
them are universal distributional approximators. To check this numerically we need a target map
that is known exactly, with its inverse and its Jacobian, and the error measures of the theorems.

`Twist` is the time-1 flow of the rotational vector field v(x) = theta(|x|) J x, J the rotation by
+90 degrees: since v is tangent to circles, |x| stays constant along a trajectory, every point
turns at the constant angular speed theta(|x|), and after time 1

    f(x) = R(theta(|x|)) x,      f^-1(y) = R(-theta(|y|)) y,      det Df = 1,

with theta(r) = strength * exp(-r^2 / (2 width^2)). Near the origin points turn by `strength`
radians, far from it hardly at all, so f is a smooth swirl that no affine map can imitate.

Introduced in: notebooks/normalizing-flows/coupling-based-invertible-neural-networks-are-universal.ipynb
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.validation import check_int, check_positive


def _check_plane(x):
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"input has shape {tuple(x.shape)}, must be (N, 2)")


def _rotate(x, angle):
    """Rotate each row x_i of (N, 2) by angle_i (N,) radians."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1]], dim=1)


class Twist(nn.Module):
    """The swirl f(x) = R(theta(|x|)) x with theta(r) = strength exp(-r^2 / (2 width^2)): the
    time-1 flow of v(x) = theta(|x|) J x (module docstring); exact inverse, det Df = 1.

    `forward(x) -> (f(x), log|det Df|)` and `inverse(y) -> (f^-1(y), log|det Df^-1|)`, like the
    layers of `coupling`.
    """

    def __init__(self, strength: float = 2.0, width: float = 0.8):
        super().__init__()
        if not math.isfinite(strength):
            raise ValueError(f"strength == {strength}, must be a finite number of radians")
        self.strength = float(strength)
        check_positive("width", width)
        self.width = float(width)

    def angle(self, x):
        """theta(|x|) for each row of x, (N,)."""
        return self.strength * torch.exp(-(x ** 2).sum(1) / (2 * self.width ** 2))

    def vector_field(self, x):
        """v(x) = theta(|x|) J x, the field whose time-1 flow is f, (N, 2)."""
        _check_plane(x)
        return self.angle(x)[:, None] * torch.stack([-x[:, 1], x[:, 0]], dim=1)

    def forward(self, x):
        _check_plane(x)
        return _rotate(x, self.angle(x)), x.new_zeros(x.shape[0])

    def inverse(self, y):
        _check_plane(y)
        return _rotate(y, -self.angle(y)), y.new_zeros(y.shape[0])

    def log_prob_pushforward(self, y, mean, std: float):
        """log density at y (N, 2) of f_# N(mean, std^2 I), the law of f(z) for
        z ~ N(mean, std^2 I): log N(f^-1(y); mean, std^2 I), exact since det Df = 1."""
        z, _ = self.inverse(y)
        check_positive("std", std)
        mean = torch.as_tensor(mean, dtype=y.dtype, device=y.device)
        return (-0.5 * (((z - mean) / std) ** 2).sum(1) - 2 * math.log(std)
                - math.log(2 * math.pi))


def compose(layers, x):
    """Apply flow layers (forward direction) in order: (layers(x), summed log|det|)."""
    log_det = x.new_zeros(x.shape[0])
    for layer in layers:
        x, ld = layer(x)
        log_det = log_det + ld
    return x, log_det


def grid(low: float, high: float, n: int):
    """The n x n grid of points of the square [low, high]^2, (n^2, 2)."""
    if not high > low:
        raise ValueError(f"low == {low}, high == {high}: must have low < high")
    t = torch.linspace(low, high, check_int("n", n, 2))
    a, b = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)


def sup_error(pred, target):
    """max_i |pred_i - target_i| (Euclidean norm per point): the sup error over the points."""
    return (pred - target).norm(dim=1).max().item()


def lp_error(pred, target, p: float = 2.0):
    """(mean_i |pred_i - target_i|^p)^(1/p): the L^p error for the uniform law on the points."""
    if not p >= 1:
        raise ValueError(f"p == {p}, must be >= 1")
    return ((pred - target).norm(dim=1) ** p).mean().pow(1 / p).item()


def best_affine(x, y):
    """The least-squares affine fit y ~ x A + b on the points: returns its predictions (N, D).
    It is the L^2-best affine map for the uniform law on the points."""
    design = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    coef = torch.linalg.lstsq(design, y).solution
    return design @ coef
