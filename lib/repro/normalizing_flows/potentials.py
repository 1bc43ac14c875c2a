"""The 2-D test potentials of Rezende & Mohamed (2015): unnormalized densities p(z) ~ exp(-U(z)),
and exact quantities computed on a grid."""
from __future__ import annotations

import math

import torch

from ..core.validation import check_choice, check_int


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
    """The centres of an n x n grid of square cells tiling [-lim, lim]^2, as points (n*n, 2), and
    the area of one cell: summing f over the points times the area is the midpoint rule.
    Point i * n + j has z1 = axis[j], z2 = axis[i], so values reshaped to (n, n) have rows along z2."""
    check_int("n", n)
    h = 2 * lim / n
    axis = -lim + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    zz = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    return zz, h ** 2


def log_normalizer(energy, lim: float = 6.0, n: int = 1200) -> float:
    """log Z = log of the integral of exp(-U) over [-lim, lim]^2 by the midpoint rule (2-D only).

    For an energy that does not grow at infinity (Table 1's U2-U4) this grows like log(2 lim):
    wrap it in `confined` first."""
    zz, area = grid(lim, n)
    return (torch.logsumexp(-energy(zz), 0) + math.log(area)).item()


def mass_outside(energy, window: float = 4.0, lim: float = 6.0, n: int = 1200) -> float:
    """The share of the mass of exp(-U) on [-lim, lim]^2 that lies at |z1| > window (midpoint rule):
    how much of a `confined` target its soft wall holds outside the window the paper plots.
    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb"""
    zz, _ = grid(lim, n)
    log_w = -energy(zz)
    outside = zz[:, 0].abs() > window
    return torch.exp(torch.logsumexp(log_w[outside], 0) - torch.logsumexp(log_w, 0)).item()


def best_diagonal_gaussian(energy, lim: float = 10.0, n: int = 500, means=(-2.0, -0.5, 1.0, 2.5),
                           log_sigmas=(-1.0, 0.0)):
    """The diagonal Gaussian q = N(mu, diag sigma^2) with the least free energy E_q[U] - H(q)
    (= KL(q || p) - log Z) on the plane, from every start (mu1, mu2, log sigma) in
    means x means x log_sigmas, each polished by L-BFGS-B: the best member of the K = 0 family,
    against which a flow is compared. E_q[U] is the midpoint rule on an n x n grid over
    [-lim, lim]^2 (for a diagonal q it is q2^T U q1, a matrix product); means are kept within
    lim / 2.5 and sigmas within [e^-4, lim / 5], so q keeps all but a 1e-4 share of its mass on the grid.

    Returns (mu, log_sigma, free energy) of the best start, as float64 tensors (2,), (2,) and a
    float, plus a flag that is True when the best start ended on a bound (then the family's optimum
    lies outside the searched box and the answer is not its minimum).
    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb"""
    from scipy.optimize import minimize

    zz, area = grid(lim, n)
    h = math.sqrt(area)
    axis = zz[:n, 0]
    u = energy(zz).reshape(n, n)                                     # rows: z2, columns: z1
    if not torch.isfinite(u).all():
        raise ValueError("the energy is not finite everywhere on the grid")
    bounds = [(-lim / 2.5, lim / 2.5)] * 2 + [(-4.0, math.log(lim / 5))] * 2

    def objective(params):
        p = torch.tensor(params, dtype=torch.float64, requires_grad=True)
        mu, log_sigma = p[:2], p[2:]
        q = torch.exp(-0.5 * ((axis[:, None] - mu) / log_sigma.exp()) ** 2 - log_sigma) * h / math.sqrt(2 * math.pi)
        f = q[:, 1] @ u @ q[:, 0] - log_sigma.sum() - math.log(2 * math.pi * math.e)
        f.backward()
        return f.item(), p.grad.numpy()

    best = None
    for m1 in means:
        for m2 in means:
            for ls in log_sigmas:
                result = minimize(objective, [m1, m2, ls, ls], jac=True, method="L-BFGS-B", bounds=bounds)
                if best is None or result.fun < best.fun:
                    best = result
    x = torch.tensor(best.x, dtype=torch.float64)
    at_bound = any(min(abs(v - lo), abs(v - hi)) < 1e-6 for v, (lo, hi) in zip(best.x, bounds))
    return x[:2], x[2:], float(best.fun), at_bound
