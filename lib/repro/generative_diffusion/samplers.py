"""Samplers that run a forward process backwards with a score function score(x, t):
the reverse-time SDE by Euler-Maruyama, and the probability-flow ODE by Euler or Heun.

dx = [f(t) x - g(t)^2 score(x, t)] dt + g(t) dW (reverse SDE, t decreasing)
dx/dt = f(t) x - g(t)^2 score(x, t) / 2          (probability-flow ODE)

Both integrate over a decreasing grid of times from t_max to an early-stopping time t_min > 0
(`time_grid`), and return x at t_min (or the whole path when asked).
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_choice, check_int
from .processes import Process, standard_normal

GRIDS = ("uniform", "exponential")
ODE_METHODS = ("euler", "heun")


def time_grid(steps: int, t_max: float, t_min: float, kind: str = "uniform", dtype=torch.float64):
    """steps + 1 decreasing times from t_max to t_min: equally spaced ('uniform') or equally spaced
    in log t ('exponential': step sizes shrink geometrically towards t_min)."""
    check_int("steps", steps)
    check_choice("kind", kind, GRIDS)
    if not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    if kind == "uniform":
        return torch.linspace(t_max, t_min, steps + 1, dtype=dtype)
    return torch.logspace(math.log10(t_max), math.log10(t_min), steps + 1, dtype=dtype)


def _check(times):
    times = torch.as_tensor(times)
    if times.ndim != 1 or len(times) < 2 or not bool((times[1:] < times[:-1]).all()):
        raise ValueError("times must be a decreasing 1-D grid of at least 2 times")
    return times


def euler_maruyama(score, process: Process, x, times, generator=None, path: bool = False):
    """Reverse-SDE samples at times[-1], starting from x at times[0]."""
    times = _check(times).to(x)
    xs = [x]
    for t, t_next in zip(times[:-1], times[1:]):
        h = t - t_next
        drift = process.f(t).to(x) * x - process.g(t).to(x) ** 2 * score(x, t)
        noise = standard_normal(x.shape, x, generator)
        x = x - h * drift + process.g(t).to(x) * h.sqrt() * noise
        xs.append(x)
    return torch.stack(xs) if path else x


def _ode_velocity(score, process, x, t):
    return process.f(t).to(x) * x - 0.5 * process.g(t).to(x) ** 2 * score(x, t)


def probability_flow(score, process: Process, x, times, method: str = "euler", path: bool = False):
    """Probability-flow ODE solution at times[-1], starting from x at times[0]."""
    check_choice("method", method, ODE_METHODS)
    times = _check(times).to(x)
    xs = [x]
    for t, t_next in zip(times[:-1], times[1:]):
        h = t_next - t                                         # negative: time runs backwards
        v = _ode_velocity(score, process, x, t)
        if method == "euler":
            x = x + h * v
        else:
            x_euler = x + h * v
            x = x + 0.5 * h * (v + _ode_velocity(score, process, x_euler, t_next))
        xs.append(x)
    return torch.stack(xs) if path else x
