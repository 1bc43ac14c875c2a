"""Multiplicative diffusion: geometric Brownian motion (GBM) as the forward process, its
reverse-time SDE in the ambient space and in log space, and multiplicative denoising score
matching (M-DSM).

Forward, per coordinate: dX = mu X dt + s X dW. By Ito, Y = log X solves dY = b dt + s dW with
b = mu - s^2 / 2, so given x_0 > 0 the law of x_t is log-normal:
    log x_t = log x_0 + b t + s sqrt(t) eps,  eps ~ N(0, I).
If log x_0 follows a Gaussian mixture, so does log x_t (means + b t, covariances + s^2 t I): the
density of x_t is p_X(x) = p_Y(log x) / prod_i x_i and every score is exact. The sampling-relevant
score is the Hyvarinen score h(x) = x * grad_x log p_X(x) = grad_y log p_Y(log x) - 1.

Two samplers run the reverse SDE from t_max down to t_min with a Hyvarinen score h(x, t):
- `ambient_sampler` (sign-agnostic): Euler-Maruyama of the x-space reverse SDE
  dx = [mu x - 2 s^2 x - s^2 x h] dt + s x dW, i.e.
  x <- x (1 - D (mu - 2 s^2 - s^2 h) + s sqrt(D) z),
  a multiplicative factor that can turn negative, so a sample can change sign;
- `dale_langevin` (sign-preserving): Euler-Maruyama of the log-space reverse SDE
  dy = [b - s^2 (h + 1)] dt + s dW, exponentiated: x <- x exp(D (s^2 (h + 1) - b) + s sqrt(D) z),
  an exponentiated-gradient update that keeps every coordinate's sign.

M-DSM: with the conditional Hyvarinen score h_c = x_t * grad log p(x_t | x_0)
= -eps / (s sqrt t) - 1,
E |h_theta(x_t) - h_c|^2 equals the explicit loss E |h_theta(x_t) - h(x_t)|^2 up to a constant that
does not depend on h_theta (M-ESM). Weighted by s^2 t it is noise prediction in log space,
|eps_theta(log x_t, t) - eps|^2, with h_theta = -eps_theta / (s sqrt t) - 1.

Introduced in: notebooks/generative-diffusion/dale-meets-langevin.ipynb
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_positive
from .mixtures import GaussianMixture
from .processes import standard_normal


def _positive(name, x):
    if not bool((x > 0).all()):
        raise ValueError(f"{name} must be strictly positive everywhere (GBM lives on (0, inf)^D)")


def _row_times(t, x):
    """t as a tensor shaped to broadcast against the rows of x."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(-1, *([1] * (x.ndim - 1))) if t.ndim else t


class GeometricBrownianMotion:
    """dX = mu X dt + s X dW on t in [0, t_max], coordinate-wise; b = mu - s^2 / 2 is the drift of
    log X. Introduced in: notebooks/generative-diffusion/dale-meets-langevin.ipynb"""

    def __init__(self, mu: float = 0.0, sigma: float = 1.0, t_max: float = 1.0):
        check_positive("sigma", sigma)
        check_positive("t_max", t_max)
        if not math.isfinite(mu):
            raise ValueError(f"mu == {mu}, must be a finite number")
        self.mu, self.s, self.t_max = float(mu), float(sigma), float(t_max)

    def __repr__(self):
        return f"GeometricBrownianMotion(mu={self.mu}, sigma={self.s}, t_max={self.t_max})"

    @property
    def log_drift(self) -> float:
        """b = mu - s^2 / 2, the drift of log X (Ito's correction)."""
        return self.mu - 0.5 * self.s ** 2

    def log_std(self, t):
        """Standard deviation s sqrt(t) of log x_t given x_0."""
        return self.s * torch.as_tensor(t, dtype=torch.float64).sqrt()

    def perturb(self, x0, t, noise=None, generator=None):
        """x_t = x_0 exp(b t + s sqrt(t) eps) given x_0 > 0 (one time, or one per row):
        (x_t, eps)."""
        _positive("x0", x0)
        t = _row_times(t, x0)
        if noise is None:
            noise = standard_normal(x0.shape, x0, generator)
        return x0 * torch.exp(self.log_drift * t + self.s * t.sqrt() * noise), noise

    def simulate(self, x0, steps: int, generator=None):
        """x_{t_max} by Euler-Maruyama of the forward SDE in x-space (no log transform):
        x <- x (1 + mu D + s sqrt(D) z)."""
        if steps < 1:
            raise ValueError(f"steps == {steps}, must be >= 1")
        h = self.t_max / steps
        x = x0
        for _ in range(steps):
            z = standard_normal(x.shape, x, generator)
            x = x * (1 + self.mu * h + self.s * math.sqrt(h) * z)
        return x

    def prior(self, shape, log_mean, log_var, generator=None, dtype=torch.float64):
        """Log-normal start of the samplers: exp(N(log_mean + b t_max, log_var + s^2 t_max))."""
        log_mean = torch.as_tensor(log_mean, dtype=dtype)
        log_var = torch.as_tensor(log_var, dtype=dtype)
        if bool((log_var < 0).any()):
            raise ValueError("log_var must be >= 0")
        std = (log_var + self.s ** 2 * self.t_max).sqrt()
        z = torch.randn(shape, generator=generator, dtype=dtype)
        return torch.exp(log_mean + self.log_drift * self.t_max + std * z)


class LogNormalMixture:
    """The law of X = exp(Y) with Y ~ a GaussianMixture: exact densities, scores and noised laws.
    Introduced in: notebooks/generative-diffusion/dale-meets-langevin.ipynb"""

    def __init__(self, log_mixture: GaussianMixture):
        if not isinstance(log_mixture, GaussianMixture):
            raise ValueError("log_mixture must be a GaussianMixture (the law of log X)")
        self.log_mixture = log_mixture
        self.dim = log_mixture.dim

    def __repr__(self):
        return f"LogNormalMixture({self.log_mixture!r})"

    def sample(self, n: int, generator=None):
        return self.log_mixture.sample(n, generator).exp()

    def log_prob(self, x):
        """log p_X(x) = log p_Y(log x) - sum_i log x_i."""
        _positive("x", x)
        y = x.log()
        return self.log_mixture.log_prob(y) - y.sum(1)

    def score(self, x):
        """Stein score grad_x log p_X(x) = (grad_y log p_Y(log x) - 1) / x."""
        return self.hyvarinen_score(x) / x

    def hyvarinen_score(self, x):
        """h(x) = x * grad_x log p_X(x) = grad_y log p_Y(log x) - 1."""
        _positive("x", x)
        return self.log_mixture.score(x.log()) - 1.0

    def noised(self, process: GeometricBrownianMotion, t) -> "LogNormalMixture":
        """The exact law of x_t under GBM started from this law."""
        t = float(t)
        if t < 0:
            raise ValueError(f"t == {t}, must be >= 0")
        m = self.log_mixture
        eye = torch.eye(self.dim, dtype=torch.float64)
        return LogNormalMixture(GaussianMixture(m.means + process.log_drift * t,
                                                m.covariances + process.s ** 2 * t * eye,
                                                m.weights))


def conditional_hyvarinen_score(eps, process: GeometricBrownianMotion, t):
    """h_c = x_t * grad_{x_t} log p(x_t | x_0) = -eps / (s sqrt t) - 1."""
    return -eps / (process.s * _row_times(t, eps).sqrt()) - 1.0


def hyvarinen_model(model, process: GeometricBrownianMotion):
    """The Hyvarinen score (x, t) -> -eps_theta(log x, t) / (s sqrt t) - 1 of a network that
    predicts the log-space noise.
    Introduced in: notebooks/generative-diffusion/dale-meets-langevin.ipynb"""
    def h(x, t):
        return conditional_hyvarinen_score(model(x.log(), t), process, t)
    return h


def _times(n, t_min, t_max, generator, like):
    if not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    u = torch.rand(n, generator=generator, dtype=like.dtype).to(like.device)
    return t_min + (t_max - t_min) * u


def multiplicative_dsm_loss(model, x0, process: GeometricBrownianMotion, t_min: float = 1e-3,
                            t_max: float | None = None, generator=None):
    """M-DSM weighted by s^2 t, in the noise-prediction form: mean over the batch of
    |eps_theta(log x_t, t) - eps|^2 (summed over coordinates), one uniform t per sample."""
    t = _times(len(x0), t_min, process.t_max if t_max is None else t_max, generator, x0)
    xt, eps = process.perturb(x0, t, generator=generator)
    return ((model(xt.log(), t) - eps) ** 2).flatten(1).sum(1).mean()


def score_matching_terms(h, law: LogNormalMixture, x0, process: GeometricBrownianMotion, t,
                         eps):
    """Per-sample M-DSM and M-ESM terms, both weighted by s^2 t, for a Hyvarinen score h(x, t) at
    x_t = perturb(x0, t, eps): (s^2 t |h - h_c|^2, s^2 t |h - h_true|^2), each (N,)."""
    xt, _ = process.perturb(x0, t, noise=eps)
    w = (process.s ** 2 * _row_times(t, xt)).reshape(-1)
    guess = h(xt, t)
    target_c = conditional_hyvarinen_score(eps, process, t)
    exact = law.noised(process, float(t)).hyvarinen_score(xt)
    return w * ((guess - target_c) ** 2).sum(1), w * ((guess - exact) ** 2).sum(1)


def _grid(times, x):
    times = torch.as_tensor(times, dtype=x.dtype, device=x.device)
    if times.ndim != 1 or len(times) < 2 or not bool((times[1:] < times[:-1]).all()):
        raise ValueError("times must be a decreasing 1-D grid of at least 2 times")
    return times


def dale_langevin(h, process: GeometricBrownianMotion, x, times, generator=None):
    """Sign-preserving sampler: x <- x exp(D (s^2 (h(x, t) + 1) - b) + s sqrt(D) z) over a
    decreasing grid (Euler-Maruyama of the reverse SDE of log x). Introduced in:
    notebooks/generative-diffusion/dale-meets-langevin.ipynb"""
    times = _grid(times, x)
    _positive("x", x)
    s2, b = process.s ** 2, process.log_drift
    for t, t_next in zip(times[:-1], times[1:]):
        d = t - t_next
        z = standard_normal(x.shape, x, generator)
        x = x * torch.exp(d * (s2 * (h(x, t) + 1.0) - b) + process.s * d.sqrt() * z)
    return x


def ambient_sampler(h, process: GeometricBrownianMotion, x, times, generator=None):
    """Sign-agnostic sampler: x <- x (1 - D (mu - 2 s^2 - s^2 h(|x|, t)) + s sqrt(D) z), Euler-
    Maruyama of the x-space reverse SDE. GBM never changes a sign, and the Hyvarinen score of the
    law reflected into another orthant is h(|x|), so h is read at |x|; a sample whose factor turns
    negative has changed sign, which the exact reverse process never does."""
    times = _grid(times, x)
    mu, s2 = process.mu, process.s ** 2
    for t, t_next in zip(times[:-1], times[1:]):
        d = t - t_next
        z = standard_normal(x.shape, x, generator)
        safe = x.abs().clamp_min(torch.finfo(x.dtype).tiny)
        x = x * (1 - d * (mu - 2 * s2 - s2 * h(safe, t)) + process.s * d.sqrt() * z)
    return x
