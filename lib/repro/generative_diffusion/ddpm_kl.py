"""The exponential-integrator sampler of the reverse Ornstein-Uhlenbeck SDE with early stopping,
and the exact law of its output in 1-D, transported on a grid, so that KL(p_delta || q) to the
delta-perturbed data law is measured without Monte Carlo.

Forward process (`processes.ornstein_uhlenbeck`): dx = -x dt + sqrt(2) dW, so
x_t = e^-t x_0 + sqrt(1 - e^-2t) eps. The sampler starts from N(0, 1) at forward time T and walks
down a decreasing grid T = t_0 > t_1 > ... > t_N = delta. On [t_{k+1}, t_k] it freezes the score at
t_k and solves the linear part exactly (the exponential integrator), with h = t_k - t_{k+1}:

    y' = e^h y + 2 (e^h - 1) score(y, t_k) + sqrt(e^{2h} - 1) z,   z ~ N(0, I).

Each step is therefore a Gaussian Markov kernel y' | y ~ N(m(y), v) with v = e^{2h} - 1. In 1-D the
law of y is a density on a fine uniform grid; one step moves the mass of every grid point to m(x_i)
(split linearly between the two nearest grid points) and convolves with N(0, v) by FFT.

Step schedules (`ou_times`): 'uniform' (equal steps in t) and 'exponential' (equal steps on
[1, T], then step sizes shrinking geometrically from 1 down to delta), the choice that makes the
number of steps grow like log(1/delta).

Introduced in: notebooks/generative-diffusion/improved-analysis-of-score-based-generative-modeling.ipynb
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_choice, check_int, check_positive
from .processes import standard_normal

SCHEDULES = ("uniform", "exponential")


def ou_times(steps: int, t_max: float, delta: float, kind: str = "exponential"):
    """steps + 1 decreasing forward times from t_max to delta (float64). 'exponential': a constant
    step on [1, t_max] and a geometric one on [delta, 1], split so that the step size is the same
    on both sides of t = 1 (needs delta < 1 < t_max and steps >= 2)."""
    check_int("steps", steps)
    check_choice("kind", kind, SCHEDULES)
    check_positive("delta", delta)
    if not delta < t_max:
        raise ValueError(f"need 0 < delta < t_max, got delta={delta}, t_max={t_max}")
    if kind == "uniform":
        return torch.linspace(t_max, delta, steps + 1, dtype=torch.float64)
    if not (delta < 1.0 < t_max and steps >= 2):
        raise ValueError(f"the exponential schedule needs delta < 1 < t_max and steps >= 2, got "
                         f"delta={delta}, t_max={t_max}, steps={steps}")
    log_span = math.log(1.0 / delta)
    upper = min(max(round(steps * (t_max - 1.0) / (t_max - 1.0 + log_span)), 1), steps - 1)
    top = torch.linspace(t_max, 1.0, upper + 1, dtype=torch.float64)
    bottom = torch.logspace(0.0, math.log10(delta), steps - upper + 1, dtype=torch.float64)
    return torch.cat([top, bottom[1:]])


def _check_times(times):
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.ndim != 1 or len(times) < 2 or not bool((times[1:] < times[:-1]).all()) \
            or not bool(times[-1] > 0):
        raise ValueError("times must be a decreasing 1-D grid of at least 2 positive times")
    return times


def step_coefficients(t: float, t_next: float):
    """(e^h, 2 (e^h - 1), e^{2h} - 1) for the step from t down to t_next, h = t - t_next."""
    h = float(t) - float(t_next)
    if not h > 0:
        raise ValueError(f"a step must go down in time, got t={t}, t_next={t_next}")
    return math.exp(h), 2 * math.expm1(h), math.expm1(2 * h)


def exponential_integrator(score, x, times, generator=None):
    """Samples of the sampler's output at times[-1], from x (N, D) at times[0]; score(x, t)."""
    times = _check_times(times)
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        a, b, v = step_coefficients(t, t_next)
        noise = standard_normal(x.shape, x, generator)
        x = a * x + b * score(x, t) + math.sqrt(v) * noise
    return x


def mixture_score(mixture):
    """score(x, t) of the OU-noised law of a `GaussianMixture` (exact, closed form)."""
    def score(x, t):
        alpha = math.exp(-float(t))
        return mixture.noised(alpha, math.sqrt(-math.expm1(-2 * float(t)))).score(x)
    return score


def noised_law(mixture, t: float):
    """The law of x_t under the OU process: a `GaussianMixture`."""
    return mixture.noised(math.exp(-t), math.sqrt(-math.expm1(-2 * t)))


class Grid:
    """A uniform 1-D grid of `size` points on [low, high] (float64)."""

    def __init__(self, low: float, high: float, size: int):
        check_int("size", size, minimum=16)
        if not high > low:
            raise ValueError(f"need low < high, got low={low}, high={high}")
        self.points = torch.linspace(low, high, size, dtype=torch.float64)
        self.dx = float(self.points[1] - self.points[0])
        self.low, self.size = float(low), size
        freq = torch.fft.rfftfreq(2 * size, d=self.dx, dtype=torch.float64)
        self._omega2 = (2 * math.pi * freq) ** 2                    # (size + 1,)

    def __repr__(self):
        return f"Grid({self.low}, {float(self.points[-1])}, size={self.size})"

    def density(self, log_prob):
        """exp(log_prob(points)), normalized to integrate to 1 on the grid."""
        p = log_prob(self.points[:, None]).exp()
        return p / (p.sum() * self.dx)

    def step(self, density, mean, var: float):
        """One Gaussian Markov step: the density of y' ~ N(mean(y), var) for y ~ density.
        mean (size,) is m at the grid points. The linear split of each point's mass adds on
        average dx^2 / 6 of variance, which is taken off the convolution when var allows."""
        pos = (mean - self.low) / self.dx
        left = pos.floor().clamp(0, self.size - 2)
        frac = (pos - left).clamp(0.0, 1.0)
        mass = density * self.dx
        moved = torch.zeros(2 * self.size, dtype=torch.float64)
        moved.index_add_(0, left.long(), mass * (1 - frac))
        moved.index_add_(0, left.long() + 1, mass * frac)
        var = max(var - self.dx ** 2 / 6, 0.0)
        spectrum = torch.fft.rfft(moved) * torch.exp(-0.5 * var * self._omega2)
        out = torch.fft.irfft(spectrum, n=2 * self.size)[: self.size].clamp_min(0.0)
        return out / (out.sum() * self.dx)


def sampler_law(score, times, grid: Grid):
    """The density on `grid` of the exponential-integrator sampler's output at times[-1], started
    from N(0, 1) at times[0]; score(x (N, 1), t) -> (N, 1)."""
    times = _check_times(times)
    density = grid.density(lambda x: -0.5 * x[:, 0] ** 2)
    x = grid.points[:, None]
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        a, b, v = step_coefficients(t, t_next)
        mean = a * grid.points + b * score(x, t)[:, 0]
        density = grid.step(density, mean, v)
    return density


def kl_on_grid(p, q, dx: float) -> float:
    """KL(p || q) = sum p log(p / q) dx for two densities on one grid (terms with p = 0 vanish)."""
    if p.shape != q.shape:
        raise ValueError(f"p and q must be on one grid, got shapes {tuple(p.shape)}, "
                         f"{tuple(q.shape)}")
    keep = p > 0
    ratio = p[keep] / q[keep].clamp_min(1e-300)
    return float((p[keep] * ratio.log()).sum() * dx)


def gaussian_sampler_law(mean: float, var: float, times):
    """Closed form for 1-D Gaussian data N(mean, var) (var >= 0): the score is linear, every step
    is a linear Gaussian map, and the output started from N(0, 1) is N(m, v): returns (m, v)."""
    if var < 0:
        raise ValueError(f"var == {var}, must be >= 0")
    times = _check_times(times)
    m, v = 0.0, 1.0
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        a, b, noise = step_coefficients(t, t_next)
        alpha = math.exp(-t)
        c = alpha ** 2 * var - math.expm1(-2 * t)                  # variance of x_t
        gain = a - b / c
        m, v = gain * m + b * alpha * mean / c, gain ** 2 * v + noise
    return m, v
