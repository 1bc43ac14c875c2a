"""Functional diffusion processes (Franzese et al., 2023) on periodic functions of [0, 1).

A function is written in the real orthonormal Fourier basis of L2[0, 1),
phi_0 = 1, phi_{2k-1} = sqrt(2) cos(2 pi k s), phi_{2k} = sqrt(2) sin(2 pi k s) (k = 1, 2, ...),
and truncated to `n_modes` (odd) coefficients: a band-limited function. Its values on an
equispaced grid of n >= n_modes points determine it exactly (the sampling theorem), and
`reconstruct` carries grid values to any other points.

The forward process acts on each coefficient independently,
    dX_k = -beta(t) b_k X_k / 2 dt + sqrt(beta(t) r_k) dW_k,
with a linear rate beta(t) = beta_min + t (beta_max - beta_min) on [0, 1]: the drift operator has
eigenvalues b_k (b_k = 1 + heat (2 pi k)^2: heat = 0 is the VP SDE, heat > 0 adds a Laplacian), and
the Wiener process has covariance operator R with eigenvalues r_k. R is trace class when the r_k
are summable (`matern_eigenvalues` with smoothness > 1/2); r_k = 1 is white noise. Its marginals
are exact: X_k(t) = alpha_k(t) X_k(0) + sigma_k(t) eps_k with
    alpha_k = exp(-b_k B(t) / 2), sigma_k^2 = r_k / b_k (1 - exp(-b_k B(t))), B(t) = int_0^t beta,
and the samplers start from its invariant law N(0, r_k / b_k).

`FunctionalProcess` follows the shared `processes.Process` interface with one coefficient per
mode, so `samplers.euler_maruyama` runs it unchanged; `SpectralGaussianProcess` is a Gaussian
process data law diagonal in the same basis, whose noised score is exact and linear.
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_int, check_positive
from .processes import Process, _tensor, standard_normal


def _check_modes(n_modes) -> int:
    check_int("n_modes", n_modes)
    if n_modes % 2 == 0:
        raise ValueError(f"n_modes == {n_modes}, must be odd (a constant, then cos/sin pairs)")
    return int(n_modes)


def frequencies(n_modes: int, dtype=torch.float64):
    """Frequency of each basis function: 0, 1, 1, 2, 2, ..., (n_modes - 1) / 2."""
    n_modes = _check_modes(n_modes)
    return torch.div(torch.arange(1, n_modes + 1), 2, rounding_mode="floor").to(dtype)


def grid(n: int, dtype=torch.float64):
    """n equispaced points i / n of [0, 1)."""
    check_int("n", n)
    return torch.arange(n, dtype=dtype) / n


def fourier_basis(points, n_modes: int):
    """(len(points), n_modes) matrix of the orthonormal Fourier basis evaluated at the points."""
    points = torch.as_tensor(points, dtype=torch.float64)
    if points.ndim != 1:
        raise ValueError(f"points must be a 1-D tensor of locations in [0, 1), got {points.shape}")
    k = frequencies(n_modes)
    angle = 2 * math.pi * points[:, None] * k[None, 1:]
    odd = torch.arange(1, n_modes) % 2 == 1                  # columns 1, 3, ...: cosines
    rest = math.sqrt(2) * torch.where(odd, torch.cos(angle), torch.sin(angle))
    return torch.cat([torch.ones(len(points), 1, dtype=torch.float64), rest], 1)


def evaluate(coefficients, points):
    """Values at the points of the functions whose coefficients are the rows of `coefficients`."""
    coefficients = torch.as_tensor(coefficients)
    if coefficients.ndim != 2:
        raise ValueError(f"coefficients must be (n_functions, n_modes), got {coefficients.shape}")
    return coefficients @ fourier_basis(points, coefficients.shape[1]).to(coefficients).T


def coefficients_from_values(values, n_modes: int):
    """Least-squares (minimum-norm) coefficients of `n_modes` modes from values on grid(n): exact
    for a band-limited function when n >= n_modes; aliased when n < n_modes."""
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be (n_functions, n_points), got {values.shape}")
    basis = fourier_basis(grid(values.shape[1]), n_modes)
    return values @ torch.linalg.pinv(basis).T


def reconstruct(values, points, n_modes: int):
    """Values at `points` of the `n_modes`-mode functions fitted to `values` on grid(n)."""
    return evaluate(coefficients_from_values(values, n_modes), points)


def matern_eigenvalues(n_modes: int, lengthscale: float = 0.2, smoothness: float = 1.0,
                       variance: float = 1.0):
    """Eigenvalues variance (1 + (2 pi k lengthscale)^2)^(-smoothness) of a stationary covariance
    operator on the circle: summable over all k (trace class) iff smoothness > 1/2."""
    check_positive("lengthscale", lengthscale)
    check_positive("smoothness", smoothness)
    check_positive("variance", variance)
    k = frequencies(n_modes)
    return variance * (1 + (2 * math.pi * k * lengthscale) ** 2) ** (-smoothness)


def white_eigenvalues(n_modes: int):
    """r_k = 1: white noise, whose covariance operator (the identity) is not trace class."""
    return torch.ones(_check_modes(n_modes), dtype=torch.float64)


class FunctionalProcess(Process):
    """dX_k = -beta(t) b_k X_k / 2 dt + sqrt(beta(t) r_k) dW_k on Fourier coefficients, with
    beta(t) linear from beta_min to beta_max on [0, 1] and b_k = 1 + heat (2 pi k)^2.
    alpha, sigma, f and g return one value per mode (a trailing axis of length n_modes)."""

    def __init__(self, noise_eigenvalues, beta_min: float = 0.1, beta_max: float = 20.0,
                 heat: float = 0.0):
        r = torch.as_tensor(noise_eigenvalues, dtype=torch.float64)
        if r.ndim != 1:
            raise ValueError(f"noise_eigenvalues must be 1-D (one per mode), got {r.shape}")
        self.n_modes = _check_modes(len(r))
        check_positive("noise_eigenvalues", r.numpy())
        check_positive("beta_min", beta_min)
        check_positive("beta_max", beta_max)
        if heat < 0 or not math.isfinite(heat):
            raise ValueError(f"heat == {heat!r}, must be finite and >= 0")
        self.r, self.beta_min, self.beta_max, self.heat = r, float(beta_min), float(beta_max), heat
        self.b = 1 + heat * (2 * math.pi * frequencies(self.n_modes)) ** 2
        self.t_max = 1.0

    def __repr__(self):
        return (f"FunctionalProcess(n_modes={self.n_modes}, beta_min={self.beta_min}, "
                f"beta_max={self.beta_max}, heat={self.heat})")

    def _t(self, t):
        return _tensor(t)[..., None]                         # times broadcast against the modes

    def beta(self, t):
        return self.beta_min + _tensor(t) * (self.beta_max - self.beta_min)

    def integrated_beta(self, t):
        t = _tensor(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2

    def alpha(self, t):
        return torch.exp(-0.5 * self.b.to(_tensor(t)) * self._t(self.integrated_beta(t)))

    def sigma(self, t):
        decay = -torch.expm1(-self.b.to(_tensor(t)) * self._t(self.integrated_beta(t)))
        return (self.r.to(decay) / self.b.to(decay) * decay).sqrt()

    def f(self, t):
        return -0.5 * self._t(self.beta(t)) * self.b.to(_tensor(t))

    def g(self, t):
        return (self._t(self.beta(t)) * self.r.to(_tensor(t))).sqrt()

    def stationary_variance(self):
        """r_k / b_k: the variance of each mode under the invariant law."""
        return self.r / self.b

    def perturb(self, x0, t, noise=None, generator=None):
        """x_t given the coefficients x_0 (rows) at one time or one time per row: (x_t, eps)."""
        if x0.ndim != 2 or x0.shape[1] != self.n_modes:
            raise ValueError(f"x0 must be (n, {self.n_modes}) coefficients, got {tuple(x0.shape)}")
        t = _tensor(t, x0)
        if noise is None:
            noise = standard_normal(x0.shape, x0, generator)
        a, s = self.alpha(t).to(x0), self.sigma(t).to(x0)
        return a * x0 + s * noise, noise

    def prior(self, shape, generator=None, dtype=None):
        """Samples of the invariant law N(0, diag(r / b)), where the samplers start."""
        if shape[-1] != self.n_modes:
            raise ValueError(f"shape must end in n_modes == {self.n_modes}, got {shape}")
        z = torch.randn(shape, generator=generator, dtype=dtype or torch.float64)
        return z * self.stationary_variance().sqrt().to(z)


def functional_score_model(model, process: FunctionalProcess):
    """Score (x, t) -> -eps_theta(x, t) / sigma_k(t) of a noise-prediction network on the
    coefficients (one time for the whole batch, as the samplers call it)."""
    def score(x, t):
        return -model(x, t) / process.sigma(t).to(x)
    return score


class SpectralGaussianProcess:
    """Zero-mean Gaussian process on the circle, diagonal in the Fourier basis: coefficient k
    has variance c_k. Under a FunctionalProcess X_k(t) ~ N(0, alpha_k^2 c_k + sigma_k^2), so
    the exact score is -x_k / (alpha_k^2 c_k + sigma_k^2)."""

    def __init__(self, variances):
        c = torch.as_tensor(variances, dtype=torch.float64)
        if c.ndim != 1:
            raise ValueError(f"variances must be 1-D (one per mode), got {c.shape}")
        self.n_modes = _check_modes(len(c))
        check_positive("variances", c.numpy())
        self.c = c

    def sample(self, n: int, generator=None):
        check_int("n", n)
        z = torch.randn(n, self.n_modes, generator=generator, dtype=torch.float64)
        return z * self.c.sqrt()

    def noised_variance(self, process: FunctionalProcess, t):
        if process.n_modes != self.n_modes:
            raise ValueError(f"process has {process.n_modes} modes, the law {self.n_modes}")
        return process.alpha(t) ** 2 * self.c + process.sigma(t) ** 2

    def score(self, x, t, process: FunctionalProcess):
        """Exact grad log p_t at the coefficients x (rows) for one time t."""
        return -x / self.noised_variance(process, t).to(x)

    def covariance(self, points):
        """Covariance matrix of the function values at the points: Phi diag(c) Phi^T."""
        basis = fourier_basis(points, self.n_modes)
        return basis @ torch.diag(self.c) @ basis.T


def random_sinusoids(n: int, n_modes: int, frequencies_=(1, 2, 3), amplitude=(0.5, 1.0),
                     generator=None):
    """Coefficients of a * sin(2 pi k s + phase) with k uniform on `frequencies_`, a uniform on
    `amplitude` and a uniform phase: a non-Gaussian law of band-limited functions."""
    check_int("n", n)
    n_modes = _check_modes(n_modes)
    top = max(frequencies_)
    if min(frequencies_) < 1 or 2 * top + 1 > n_modes:
        raise ValueError(f"frequencies_ == {frequencies_}, must lie in 1..{(n_modes - 1) // 2}")
    freq = torch.tensor(frequencies_)[torch.randint(len(frequencies_), (n,), generator=generator)]
    lo, hi = amplitude
    if not 0 <= lo <= hi:
        raise ValueError(f"amplitude == {amplitude}, must be (low, high) with 0 <= low <= high")
    a = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    # a sin(w s + p) = a sin(p) cos(w s) + a cos(p) sin(w s); basis functions carry sqrt(2)
    coef = torch.zeros(n, n_modes, dtype=torch.float64)
    rows = torch.arange(n)
    coef[rows, 2 * freq - 1] = a * torch.sin(phase) / math.sqrt(2)
    coef[rows, 2 * freq] = a * torch.cos(phase) / math.sqrt(2)
    return coef
