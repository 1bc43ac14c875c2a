"""A stochastic normalizing flow (after Wu, Koehler & Noe 2020, "Stochastic Normalizing Flows"):
deterministic invertible layers and stochastic blocks in one chain z -> y_1 -> ... -> x, trained
end to end from path probabilities, never marginalizing the blocks' noise.

The chain runs in the sampling direction, z ~ N(0, I) = exp(-u_Z) first. `sampling.py` gives each
step's Delta S_t = log mu_b(y_{t+1} -> y_t) / mu_f(y_t -> y_{t+1}) (log|det J| for a deterministic
layer, u(y_{t+1}) - u(y_t) for a Metropolis block on energy u), and with them two losses:
  - forward (energy, "KL"): paths started from the prior, E[-log w] with
    log w = u_Z(z) - u_X(x) + sum_t Delta S_t; it equals
    KL(forward paths || backward paths) - log Z, an upper bound on KL(q_X || p) - log Z, where q_X
    is the SNF's marginal density of x;
  - backward (data, "ML"): paths started from samples of the target and run back through the chain
    (inverse layers, the same Metropolis blocks), E[u_Z(z) + sum_t Delta S_t]: an upper bound on
    -E log q_X(x), equal to the negative log-likelihood when every step is deterministic.
Coupling layers (`coupling.py`) are written data -> base; `Inverted` turns one around, so that its
`forward` is the sampling step. `InterpolatedEnergy` gives the blocks' guiding energies
(1 - lambda) u_Z + lambda u_X between prior and target. `DoubleWellSampler` draws exact samples of
`targets.DoubleWell` (1-D inverse CDF in x_1) and integrates its x_1-marginal.
Equation numbers are not cited: only the paper's abstract could be read here.

Introduced in: notebooks/normalizing-flows/stochastic-normalizing-flows.ipynb
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..core.validation import check_int, check_positive
from .sampling import StochasticBlock, flow_log_weights


def prior_energy(z):
    """u_Z(z) = |z|^2 / 2 + (D / 2) log 2 pi, the normalized standard normal prior's energy."""
    return 0.5 * (z ** 2).sum(-1) + 0.5 * z.shape[-1] * math.log(2 * math.pi)


class Inverted(nn.Module):
    """A flow layer turned around: forward is the layer's inverse (base -> data, the sampling step)
    with its log|det|, inverse is the layer's forward."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer.inverse(x)

    def inverse(self, y):
        return self.layer(y)


class InterpolatedEnergy:
    """u_lambda = (1 - lambda) u_Z + lambda u_X: the guiding energy of a block part-way along the
    chain (lambda = 0: the prior's, 1: the target's)."""

    def __init__(self, target_energy, lam: float):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam == {lam}, must be in [0, 1]")
        self.target_energy, self.lam = target_energy, float(lam)

    def __call__(self, x):
        return (1 - self.lam) * prior_energy(x) + self.lam * self.target_energy(x)


class SNF(nn.Module):
    """A chain of steps in the sampling direction (z -> x), each either a deterministic layer whose
    `forward` samples and `inverse` goes back (e.g. `Inverted(AffineCoupling(...))`) or a
    `StochasticBlock`. With no block it is an ordinary normalizing flow.
    """

    def __init__(self, steps, dim: int):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.steps = nn.ModuleList(steps)
        self.register_buffer("_anchor", torch.zeros(()))            # follows .to(device) and dtype

    def sample_with_log_weights(self, n: int, target_energy, generator=None):
        """n forward paths from the prior: their ends x (n, D) and log w (n,), E[w] = Z."""
        z = torch.randn(check_int("n", n), self.dim, generator=generator,
                        device=self._anchor.device, dtype=self._anchor.dtype)
        return flow_log_weights(self.steps, z, prior_energy, target_energy, generator)

    def kl_loss(self, n: int, target_energy, generator=None):
        """E[-log w] over n forward paths: KL(forward || backward paths) - log Z."""
        return -self.sample_with_log_weights(n, target_energy, generator)[1].mean()

    def backward_path(self, x, generator=None):
        """Run x (N, D) back through the chain: the start z (N, D) and the sum of the forward-sense
        Delta S_t along the path (N,)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, {self.dim})")
        delta_s = x.new_zeros(x.shape[0])
        for step in reversed(self.steps):
            if isinstance(step, StochasticBlock):
                x, increment = step(x, generator)    # detailed balance: the same kernel goes back
            else:
                x, increment = step.inverse(x)
            delta_s = delta_s - increment            # forward-sense Delta S of the step just undone
        return x, delta_s

    def ml_loss(self, x, generator=None):
        """E[u_Z(z) + sum Delta S] over backward paths from the data x: an upper bound on
        -E log q_X(x), and equal to it for a chain of deterministic layers."""
        z, delta_s = self.backward_path(x, generator)
        return (prior_energy(z) + delta_s).mean()


class DoubleWellSampler:
    """Exact samples and marginal probabilities of `targets.DoubleWell`: x_1 by the inverse of its
    CDF, tabulated on `points` grid points over [-lim, lim] (trapezoid rule, float64; linear
    interpolation between them), the other coordinates standard normal."""

    def __init__(self, target, lim: float = 5.0, points: int = 200_001):
        check_positive("lim", lim)
        self.target, self.dim = target, target.dim
        self.grid = torch.linspace(-lim, lim, check_int("points", points, 3), dtype=torch.float64)
        u = target.energy_first(self.grid)
        density = torch.exp(-(u - u.min()))
        steps = 0.5 * (density[1:] + density[:-1]) * (self.grid[1] - self.grid[0])
        self.cdf = torch.cat([torch.zeros(1, dtype=torch.float64), steps.cumsum(0)])
        self.cdf = self.cdf / self.cdf[-1].clone()

    def probability(self, low: float, high: float) -> float:
        """P(low < x_1 < high) under the target, from the tabulated CDF."""
        if not low < high:
            raise ValueError(f"low == {low}, high == {high}: need low < high")
        values = torch.tensor([low, high], dtype=torch.float64).clamp(self.grid[0], self.grid[-1])
        cdf = np.interp(values.numpy(), self.grid.numpy(), self.cdf.numpy())
        return float(cdf[1] - cdf[0])

    def sample(self, n: int, generator=None):
        """n samples (n, D) in float64."""
        n = check_int("n", n)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        idx = torch.searchsorted(self.cdf, u).clamp(1, len(self.grid) - 1)
        c0, c1 = self.cdf[idx - 1], self.cdf[idx]
        g0, g1 = self.grid[idx - 1], self.grid[idx]
        x1 = g0 + (g1 - g0) * (u - c0) / (c1 - c0).clamp_min(1e-300)
        rest = torch.randn(n, self.dim - 1, generator=generator, dtype=torch.float64)
        return torch.cat([x1[:, None], rest], 1)
