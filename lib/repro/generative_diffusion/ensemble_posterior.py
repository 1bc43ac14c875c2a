"""Posterior sampling with a diffusion prior by weighted particles (Chen, Ren, Min, Ying, Izzo
2025), and the DPS baseline (Chung et al. 2023), for a linear measurement y = A x + noise_std eps.

The ensemble sampler follows the tilted path q_t(x) = p_t(x) L(x) / Z_t, with p_t the prior's
noised law and L(x) = N(y; A x, noise_std^2 I) the likelihood: q_0 is the posterior and
q_T = N(0, I) L (to the accuracy of p_T = N(0, I)) is a Gaussian sampled exactly. In reverse time
tau = T - t the prior follows d_tau p = -div(b p) + (g^2 / 2) lap p, b = -f x + g^2 grad log p_t,
and with l = log L the tilted law obeys

    d_tau q = -div((b + g^2 grad l) q) + (g^2 / 2) lap q + (V - E_q[V]) q,
    V(x, t) = b . grad l + (g^2 / 2) (|grad l|^2 + lap l),

a transport-diffusion equation with a modified drift and a reweighting (birth-death) term. Weighted
particles simulate it: each moves with the drift b + g^2 grad l (its linear part
integrated exactly, `linear_step`), its log-weight
gains V integrated along its path (trapezoid rule), and the ensemble is resampled when its effective size falls below a threshold. With the
exact prior score nothing is approximated: the errors are the number of particles, the time step
and the score's error (`shifted_score` injects a controlled one).
"""
from __future__ import annotations

import torch

from ..core.validation import check_choice, check_int, check_positive
from .processes import Process

RESAMPLERS = ("multinomial", "systematic")


class LinearGaussianLikelihood:
    """L(x) = N(y; A x, noise_std^2 I) for A (M, D) and one measurement y (M,)."""

    def __init__(self, operator, noise_std: float, y):
        self.operator = torch.as_tensor(operator, dtype=torch.float64)
        self.y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        if self.operator.ndim != 2 or self.y.shape != (self.operator.shape[0],):
            raise ValueError(f"operator (M, D) and y (M,) needed; got "
                             f"{tuple(self.operator.shape)} and {tuple(self.y.shape)}")
        check_positive("noise_std", noise_std)
        self.noise_std = float(noise_std)
        self.dim = self.operator.shape[1]

    def _check(self, x):
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, {self.dim})")

    def log_prob(self, x):
        """log L(x) up to its x-independent constant, (N,)."""
        self._check(x)
        r = self.y.to(x) - x @ self.operator.to(x).T
        return -0.5 * (r ** 2).sum(1) / self.noise_std ** 2

    def grad(self, x):
        """grad_x log L(x) = A^T (y - A x) / noise_std^2, (N, D)."""
        self._check(x)
        a = self.operator.to(x)
        return (self.y.to(x) - x @ a.T) @ a / self.noise_std ** 2

    def laplacian(self) -> float:
        """lap_x log L = -tr(A^T A) / noise_std^2 (constant in x)."""
        return float(-(self.operator ** 2).sum() / self.noise_std ** 2)

    def tilted_gaussian(self, prior_std: float = 1.0):
        """Mean (D,) and covariance (D, D) of N(0, prior_std^2 I) L(x), normalized."""
        check_positive("prior_std", prior_std)
        a = self.operator
        precision = torch.eye(self.dim, dtype=torch.float64) / prior_std ** 2 \
            + a.T @ a / self.noise_std ** 2
        cov = torch.linalg.inv(precision)
        return cov @ a.T @ self.y / self.noise_std ** 2, 0.5 * (cov + cov.T)


def reweighting_potential(score, process: Process, likelihood: LinearGaussianLikelihood, x, t):
    """V(x, t) = b . grad l + (g^2 / 2) (|grad l|^2 + lap l), b = -f x + g^2 score(x, t), (N,)."""
    gl = likelihood.grad(x)
    g2 = process.g(t).to(x) ** 2
    b = -process.f(t).to(x) * x + g2 * score(x, t)
    return (b * gl).sum(1) + 0.5 * g2 * ((gl ** 2).sum(1) + likelihood.laplacian())


def effective_sample_size(log_w) -> float:
    """(sum w)^2 / sum w^2 of normalized weights exp(log_w)."""
    w = torch.softmax(log_w, 0)
    return float(1.0 / (w ** 2).sum())


def resample(log_w, n: int | None = None, method: str = "systematic", generator=None):
    """Indices (n,) of an unbiased resampling of weights proportional to exp(log_w)."""
    check_choice("method", method, RESAMPLERS)
    if log_w.ndim != 1 or len(log_w) < 1:
        raise ValueError(f"log_w must be a non-empty 1-D tensor, got shape {tuple(log_w.shape)}")
    if not bool(torch.isfinite(log_w).any()):
        raise ValueError("every log-weight is non-finite: nothing to resample")
    n = len(log_w) if n is None else check_int("n", n)
    w = torch.softmax(log_w.double(), 0)
    if method == "multinomial":
        return torch.multinomial(w, n, replacement=True, generator=generator)
    u = (torch.rand(1, generator=generator, dtype=torch.float64)
         + torch.arange(n, dtype=torch.float64)) / n
    return torch.searchsorted(torch.cumsum(w, 0), u).clamp(max=len(w) - 1)


def linear_step(score, process: Process, likelihood: LinearGaussianLikelihood, x, t, h,
                generator=None):
    """One step of length h (reverse time) of dX = [K X + g^2 (score(X_k, t) + A^T y / s^2)] dtau
    + g dW, K = -f I - g^2 A^T A / s^2, solved exactly with the score frozen at the step's start:
    an exponential integrator, stable however stiff the likelihood's pull g^2 |A|^2 / s^2 is."""
    a, s2 = likelihood.operator.to(x), likelihood.noise_std ** 2
    f, g2 = float(process.f(t)), float(process.g(t)) ** 2
    h = float(h)
    kappa, u = torch.linalg.eigh(-f * torch.eye(likelihood.dim, dtype=x.dtype) - g2 * a.T @ a / s2)
    phi1 = torch.where(kappa.abs() > 1e-12, torch.expm1(kappa * h) / kappa.where(
        kappa.abs() > 1e-12, torch.ones_like(kappa)), torch.full_like(kappa, h))
    phi2 = torch.where(kappa.abs() > 1e-12, torch.expm1(2 * kappa * h) / (2 * kappa).where(
        kappa.abs() > 1e-12, torch.ones_like(kappa)), torch.full_like(kappa, h))
    c = g2 * (score(x, t) + likelihood.y.to(x) @ a / s2)                 # (N, D)
    z = x @ u                                                            # eigen-coordinates
    mean = torch.exp(kappa * h) * z + phi1 * (c @ u)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return (mean + (g2 * phi2).sqrt() * noise) @ u.T


def ensemble_posterior(score, process: Process, likelihood: LinearGaussianLikelihood, n: int,
                       times, generator=None, ess_threshold: float = 0.5,
                       method: str = "systematic", return_log_weights: bool = False):
    """n particles of the posterior: start from N(0, prior_std^2 I) L exactly, move each particle
    by the modified reverse SDE and reweight it by V (trapezoid rule) along a decreasing grid `times` (t_max to
    t_min), resampling when ESS < ess_threshold n. Returns equally weighted particles (n, D) at
    times[-1] (after a final resampling), or the weighted ones and their log-weights."""
    n = check_int("n", n)
    if not 0 < ess_threshold <= 1:
        raise ValueError(f"ess_threshold == {ess_threshold}, must be in (0, 1]")
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.ndim != 1 or len(times) < 2 or not bool((times[1:] < times[:-1]).all()):
        raise ValueError("times must be a decreasing 1-D grid of at least 2 times")
    mean, cov = likelihood.tilted_gaussian(process.prior_std)
    z = torch.randn(n, likelihood.dim, generator=generator, dtype=torch.float64)
    x = mean + z @ torch.linalg.cholesky(cov).T
    log_w = torch.zeros(n, dtype=torch.float64)
    v = reweighting_potential(score, process, likelihood, x, times[0])
    for t, t_next in zip(times[:-1], times[1:]):
        h = t - t_next
        x = linear_step(score, process, likelihood, x, t, h, generator)
        v_next = reweighting_potential(score, process, likelihood, x, t_next)
        log_w = log_w + 0.5 * h * (v + v_next)           # trapezoid rule along each path
        log_w, v = log_w - log_w.max(), v_next
        if effective_sample_size(log_w) < ess_threshold * n:
            idx = resample(log_w, n, method, generator)
            x, v, log_w = x[idx], v[idx], torch.zeros(n, dtype=torch.float64)
    if return_log_weights:
        return x, log_w
    return x[resample(log_w, n, method, generator)]


def tweedie_from_score(score, process: Process, x, t):
    """E[x_0 | x_t = x] = (x + sigma^2 score(x, t)) / alpha, differentiable in x."""
    return (x + process.sigma(t).to(x) ** 2 * score(x, t)) / process.alpha(t).to(x)


def dps(score, process: Process, likelihood: LinearGaussianLikelihood, n: int, times,
        scale: float = 1.0, generator=None):
    """Diffusion posterior sampling: the reverse SDE with the prior score plus
    scale * grad_x log N(y; A xhat_0(x), noise_std^2 I), xhat_0 Tweedie's mean (autograd through
    the score). scale = 1 is the plain Gaussian approximation of p(y | x_t); Chung et al. tune it."""
    n = check_int("n", n)
    if not scale >= 0:
        raise ValueError(f"scale == {scale}, must be >= 0")
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.ndim != 1 or len(times) < 2 or not bool((times[1:] < times[:-1]).all()):
        raise ValueError("times must be a decreasing 1-D grid of at least 2 times")
    x = process.prior((n, likelihood.dim), generator=generator, dtype=torch.float64)
    for t, t_next in zip(times[:-1], times[1:]):
        h = t - t_next
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            s = score(xr, t)
            x0 = (xr + process.sigma(t).to(x) ** 2 * s) / process.alpha(t).to(x)
            guide, = torch.autograd.grad(likelihood.log_prob(x0).sum(), xr)
        g = process.g(t).to(x)
        drift = process.f(t).to(x) * x - g ** 2 * (s.detach() + scale * guide)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = (x - h * drift + g * h.sqrt() * noise).detach()
    return x


def shifted_score(score, shift):
    """score(x, t) + shift: a score whose error has norm |shift| at every x and t."""
    shift = torch.as_tensor(shift, dtype=torch.float64).reshape(-1)
    return lambda x, t: score(x, t) + shift.to(x)


def mixture_score(mixture, process: Process):
    """The exact score (x, t) -> grad log p_t(x) of a GaussianMixture prior under `process`."""
    return lambda x, t: mixture.noised(process.alpha(t), process.sigma(t)).score(x)


def mode_weights(posterior, x):
    """The mass of each component of `posterior` (a GaussianMixture) estimated from particles x:
    the mean of its responsibilities, whose expectation under the posterior is exactly its weight."""
    return posterior.component_posterior(x).mean(0)
