"""Forward noising processes x_t = alpha(t) x_0 + sigma(t) eps, eps ~ N(0, I), as SDEs
dx = f(t) x dt + g(t) dW, with the coefficients that samplers and exact scores need.

`VariancePreserving(beta_min, beta_max)` is Song et al.'s VP SDE with a linear rate
beta(t) = beta_min + t (beta_max - beta_min) on t in [0, 1]; with beta_min = beta_max = 2 it is the
unit-rate Ornstein-Uhlenbeck process dx = -x dt + sqrt(2) dW, for which alpha(t) = exp(-t)
(`ornstein_uhlenbeck()`, on any horizon). `VarianceExploding(sigma_min, sigma_max)` adds noise of
scale sigma(t) = sigma_min (sigma_max / sigma_min)^t without shrinking x.

Times are floats or tensors; every coefficient broadcasts over a tensor of times.
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_positive


def _tensor(t, like=None):
    """t as a tensor: in like's dtype when given, else its own dtype (float64 for a number)."""
    if like is not None:
        return torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t if torch.is_tensor(t) else torch.tensor(float(t), dtype=torch.float64)


def standard_normal(shape, like, generator=None):
    """N(0, I) draws in like's dtype, on like's device. With a generator they are drawn on the
    generator's device and then moved, so a CPU generator gives the same draws on every device
    (and torch refuses a CPU generator for CUDA draws)."""
    device = like.device if generator is None else generator.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


def _per_row(c, x):
    """Coefficient c (scalar or one per row of x) shaped to broadcast against x."""
    return c.reshape(-1, *([1] * (x.ndim - 1))) if c.ndim else c


class Process:
    """Shared part of a linear forward process; subclasses define alpha, sigma, f and g."""

    t_max: float = 1.0
    prior_std: float = 1.0  # the law the samplers start from at t_max: N(0, prior_std^2 I)

    def alpha(self, t):
        raise NotImplementedError

    def sigma(self, t):
        raise NotImplementedError

    def f(self, t):
        """Drift coefficient: the drift is f(t) x."""
        raise NotImplementedError

    def g(self, t):
        """Diffusion coefficient."""
        raise NotImplementedError

    def perturb(self, x0, t, noise=None, generator=None):
        """x_t given x_0 (one time, or one per row), and the noise used: (x_t, eps)."""
        t = _tensor(t, x0)
        if noise is None:
            noise = standard_normal(x0.shape, x0, generator)
        a, s = _per_row(self.alpha(t), x0), _per_row(self.sigma(t), x0)
        return a * x0 + s * noise, noise

    def prior(self, shape, generator=None, dtype=None):
        """Samples of N(0, prior_std^2 I), the law the samplers start from at t_max."""
        return self.prior_std * torch.randn(shape, generator=generator, dtype=dtype)


class VariancePreserving(Process):
    """beta(t) = beta_min + t (beta_max - beta_min); alpha = exp(-int_0^t beta / 2),
    sigma^2 = 1 - alpha^2; f = -beta / 2, g = sqrt(beta). The samplers start from N(0, I)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_max: float = 1.0):
        check_positive("beta_min", beta_min)
        check_positive("beta_max", beta_max)
        check_positive("t_max", t_max)
        self.beta_min, self.beta_max, self.t_max = float(beta_min), float(beta_max), float(t_max)

    def __repr__(self):
        return f"VariancePreserving(beta_min={self.beta_min}, beta_max={self.beta_max}, " \
               f"t_max={self.t_max})"

    def beta(self, t):
        return self.beta_min + _tensor(t) * (self.beta_max - self.beta_min)

    def log_alpha(self, t):
        t = _tensor(t)
        return -0.5 * (self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2)

    def alpha(self, t):
        return self.log_alpha(t).exp()

    def sigma(self, t):
        return (-torch.expm1(2 * self.log_alpha(t))).sqrt()

    def f(self, t):
        return -0.5 * self.beta(t)

    def g(self, t):
        return self.beta(t).sqrt()


def ornstein_uhlenbeck(t_max: float = 1.0) -> VariancePreserving:
    """dx = -x dt + sqrt(2) dW: alpha(t) = exp(-t), sigma(t)^2 = 1 - exp(-2t)."""
    return VariancePreserving(2.0, 2.0, t_max)


class VarianceExploding(Process):
    """alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t on t in [0, 1]; f = 0,
    g = sqrt(d sigma^2 / dt). The samplers start from N(0, sigma_max^2 I)."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 10.0):
        check_positive("sigma_min", sigma_min)
        if not sigma_max > sigma_min:
            raise ValueError(f"sigma_max == {sigma_max}, must exceed sigma_min == {sigma_min}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.prior_std = self.sigma_max

    def __repr__(self):
        return f"VarianceExploding(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"

    def alpha(self, t):
        return torch.ones_like(_tensor(t))

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** _tensor(t)

    def f(self, t):
        return torch.zeros_like(_tensor(t))

    def g(self, t):
        return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))
