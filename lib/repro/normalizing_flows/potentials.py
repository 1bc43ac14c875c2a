"""The 2-D test potentials of Rezende & Mohamed (2015): unnormalized densities p(z) ~ exp(-U(z)),
and exact quantities computed on a grid."""
from __future__ import annotations

import math

import torch

from ..core.validation import check_choice


def _w1(z):
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z):
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z):
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def _u1(z):
    ring = 0.5 * ((z.norm(dim=1) - 2) / 0.4) ** 2
    modes = torch.logsumexp(torch.stack([-0.5 * ((z[:, 0] - 2) / 0.6) ** 2,
                                         -0.5 * ((z[:, 0] + 2) / 0.6) ** 2]), dim=0)
    return ring - modes


def _u2(z):
    return 0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2


def _u3(z):
    return -torch.logsumexp(torch.stack([-0.5 * ((z[:, 1] - _w1(z)) / 0.35) ** 2,
                                         -0.5 * ((z[:, 1] - _w1(z) + _w2(z)) / 0.35) ** 2]), dim=0)


def _u4(z):
    return -torch.logsumexp(torch.stack([-0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2,
                                         -0.5 * ((z[:, 1] - _w1(z) + _w3(z)) / 0.35) ** 2]), dim=0)


# The four test energies of Rezende & Mohamed (2015), Table 1. Introduced in:
# notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
POTENTIALS = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}


def potential(name: str):
    """The energy U(z) of a named 2-D test density, taking z of shape (N, 2)."""
    check_choice("potential", name, tuple(POTENTIALS))
    return POTENTIALS[name]


def confined(energy, lim: float = 4.0, width: float = 0.4):
    """U(z) plus 0.5 ((|z1| - lim)_+ / width)^2: unchanged inside |z1| <= lim, integrable outside.

    Table 1's U2-U4 do not grow with |z1|, so exp(-U) has infinite mass; this wall makes them
    densities while leaving the window the paper plots untouched. Introduced in:
    notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb"""
    return lambda z: energy(z) + 0.5 * ((z[..., 0].abs() - lim).clamp_min(0) / width) ** 2


def grid(lim: float = 4.0, n: int = 400):
    """A square n x n grid on [-lim, lim]^2: the points (n*n, 2) and the area of one cell."""
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    return zz, (axis[1] - axis[0]).item() ** 2


def log_normalizer(energy, lim: float = 6.0, n: int = 1200) -> float:
    """log Z = log of the integral of exp(-U) over [-lim, lim]^2 by the midpoint rule (2-D only).

    For an energy that does not grow at infinity (Table 1's U2-U4) this grows like log(2 lim):
    wrap it in `confined` first."""
    zz, area = grid(lim, n)
    return (torch.logsumexp(-energy(zz), 0) + math.log(area)).item()
