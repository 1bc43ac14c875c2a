"""Probability-flow ODE samplers run on Gaussian data, where every law they produce is Gaussian.

For data N(m, C) under a linear forward process x_t = alpha(t) x_0 + sigma(t) eps, the noised law is
N(alpha m, P_t) with P_t = alpha^2 C + sigma^2 I, and its score -P_t^{-1} (x - alpha m) is affine in
x. A step of the probability-flow ODE dx/dt = f x - g^2 score / 2 (time running backwards) by Euler,
Heun or the exponential integrator (linear part solved exactly, score frozen at the step's start)
is then an affine map x -> A x + b, so a sampler started from the Gaussian prior outputs an exactly
Gaussian law, and its W2 distance to the data is closed-form: no samples, no Monte Carlo noise.

`step_affine` and `push_gaussian` do this with full matrices. All the maps are functions of C and
commute with it, so in C's eigenbasis they are diagonal: `GaussianData.sampler_law` runs the same
recursion on per-eigendirection numbers (fast, and exact to rounding), `GaussianData.flow_law` is
the exact continuous-time ODE's output, and `commuting_w2` the W2 distance between two laws
diagonal in that basis. Everything is float64.
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_choice, check_positive
from .processes import Process, VarianceExploding, VariancePreserving

METHODS = ("euler", "heun", "exponential")


def _f64(x, name):
    try:
        return torch.as_tensor(x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be numeric, got {x!r}") from err


def _check_gaussian(mean, cov):
    mean, cov = _f64(mean, "mean"), _f64(cov, "cov")
    if mean.ndim != 1 or cov.shape != (len(mean), len(mean)):
        raise ValueError(f"need mean of shape (D,) and cov of shape (D, D), got "
                         f"{tuple(mean.shape)} and {tuple(cov.shape)}")
    if not torch.allclose(cov, cov.T, atol=1e-12, rtol=1e-10):
        raise ValueError("cov must be symmetric")
    if torch.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError("cov must be positive definite (a strongly log-concave Gaussian)")
    return mean, cov


def _check_times(times):
    times = _f64(times, "times")
    if times.ndim != 1 or len(times) < 2 or not bool((times[1:] < times[:-1]).all()) \
            or times[-1] < 0:
        raise ValueError("times must be a decreasing 1-D grid of at least 2 times >= 0")
    return times


def _coef(fn, t):
    return float(fn(torch.tensor(float(t), dtype=torch.float64)))


def score_affine(mean, cov, process: Process, t):
    """(J, c) with score of the noised law N(alpha m, alpha^2 C + sigma^2 I) at time t = J x + c.
    Introduced in:
    notebooks/generative-diffusion/convergence-analysis-for-general-probability-flow.ipynb"""
    mean, cov = _check_gaussian(mean, cov)
    a, s = _coef(process.alpha, t), _coef(process.sigma, t)
    precision = torch.linalg.inv(a ** 2 * cov + s ** 2 * torch.eye(len(mean), dtype=torch.float64))
    return -precision, precision @ (a * mean)


def _velocity(mean, cov, process, t):
    """(M, n) with the probability-flow velocity f x - g^2 score / 2 = M x + n."""
    j, c = score_affine(mean, cov, process, t)
    f, g2 = _coef(process.f, t), _coef(process.g, t) ** 2
    eye = torch.eye(len(c), dtype=torch.float64)
    return f * eye - 0.5 * g2 * j, -0.5 * g2 * c


def exponential_weights(process: Process, t, t_next):
    """(r, kappa) of the exponential-integrator step x' = r x + kappa score(x, t), t to t_next < t:
    r = alpha(t_next) / alpha(t); kappa = r - 1 (VP, OU), (sigma(t)^2 - sigma(t_next)^2) / 2 (VE).
    Introduced in:
    notebooks/generative-diffusion/convergence-analysis-for-general-probability-flow.ipynb"""
    if not float(t_next) < float(t):
        raise ValueError(f"need t_next < t (time runs backwards), got t={t}, t_next={t_next}")
    if isinstance(process, VariancePreserving):
        r = _coef(process.alpha, t_next) / _coef(process.alpha, t)
        return r, r - 1.0
    if isinstance(process, VarianceExploding):
        return 1.0, 0.5 * (_coef(process.sigma, t) ** 2 - _coef(process.sigma, t_next) ** 2)
    raise ValueError(f"the exponential integrator is written for VariancePreserving and "
                     f"VarianceExploding processes, got {type(process).__name__}")


def step_affine(mean, cov, process: Process, t, t_next, method: str = "exponential"):
    """(A, b): one step of the probability-flow ODE from t to t_next < t with the exact score of
    N(mean, cov) noised, as the affine map x -> A x + b ('euler', 'heun' or 'exponential').
    Introduced in:
    notebooks/generative-diffusion/convergence-analysis-for-general-probability-flow.ipynb"""
    check_choice("method", method, METHODS)
    mean, cov = _check_gaussian(mean, cov)
    if not float(t_next) < float(t):
        raise ValueError(f"need t_next < t (time runs backwards), got t={t}, t_next={t_next}")
    eye = torch.eye(len(mean), dtype=torch.float64)
    if method == "exponential":
        r, kappa = exponential_weights(process, t, t_next)
        j, c = score_affine(mean, cov, process, t)
        return r * eye + kappa * j, kappa * c
    h = float(t_next) - float(t)
    m1, n1 = _velocity(mean, cov, process, t)
    a_euler, b_euler = eye + h * m1, h * n1
    if method == "euler":
        return a_euler, b_euler
    m2, n2 = _velocity(mean, cov, process, t_next)
    return eye + 0.5 * h * (m1 + m2 @ a_euler), 0.5 * h * (n1 + m2 @ b_euler + n2)


def push_gaussian(mean, cov, process: Process, times, method: str = "exponential",
                  start_mean=None, start_cov=None):
    """(mean, cov) of the sampler's output at times[-1], started from N(start_mean, start_cov) at
    times[0] (default: the process's prior N(0, prior_std^2 I)); full matrices, one step at a time.
    Introduced in:
    notebooks/generative-diffusion/convergence-analysis-for-general-probability-flow.ipynb"""
    mean, cov = _check_gaussian(mean, cov)
    times = _check_times(times)
    d = len(mean)
    m = torch.zeros(d, dtype=torch.float64) if start_mean is None \
        else _f64(start_mean, "start_mean")
    s = process.prior_std ** 2 * torch.eye(d, dtype=torch.float64) if start_cov is None \
        else _f64(start_cov, "start_cov")
    if m.shape != (d,) or s.shape != (d, d):
        raise ValueError(f"start_mean and start_cov must have shapes ({d},) and ({d}, {d})")
    for t, t_next in zip(times[:-1], times[1:]):
        a, b = step_affine(mean, cov, process, t, t_next, method)
        m, s = a @ m + b, a @ s @ a.T
    return m, 0.5 * (s + s.T)


def commuting_w2(mean1, var1, mean2, var2) -> float:
    """W2 between N(mean1, diag(var1)) and N(mean2, diag(var2)), coordinates in a shared basis:
    sqrt(|mean1 - mean2|^2 + sum (sqrt(var1) - sqrt(var2))^2).
    Introduced in:
    notebooks/generative-diffusion/convergence-analysis-for-general-probability-flow.ipynb"""
    m1, v1, m2, v2 = (_f64(x, n) for x, n in ((mean1, "mean1"), (var1, "var1"),
                                              (mean2, "mean2"), (var2, "var2")))
    if not (m1.shape == v1.shape == m2.shape == v2.shape) or m1.ndim != 1:
        raise ValueError("means and variances must be 1-D of one length")
    if (v1 < 0).any() or (v2 < 0).any():
        raise ValueError("variances must be >= 0")
    return math.sqrt(float(((m1 - m2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum()))


class GaussianData:
    """Data N(mean, cov), with cov = U diag(lam) U^T; laws of samplers in the basis U.
    Introduced in:
    notebooks/generative-diffusion/convergence-analysis-for-general-probability-flow.ipynb"""

    def __init__(self, mean, cov):
        self.mean, self.cov = _check_gaussian(mean, cov)
        self.lam, self.basis = torch.linalg.eigh(self.cov)
        self.mean_e = self.basis.T @ self.mean                 # the mean in the eigenbasis
        self.dim = len(self.mean)

    def __repr__(self):
        return f"GaussianData(dim={self.dim}, eigenvalues in [{self.lam.min():.3g}, " \
               f"{self.lam.max():.3g}])"

    @classmethod
    def random(cls, dim: int, eig_low: float, eig_high: float, generator=None):
        """A random rotation, eigenvalues log-uniform in [eig_low, eig_high] and a N(0, I) mean."""
        check_positive("eig_low", eig_low)
        if not eig_high >= eig_low:
            raise ValueError(f"need eig_high >= eig_low, got {eig_high} < {eig_low}")
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))
        u = torch.rand(dim, generator=generator, dtype=torch.float64)
        lam = eig_low * (eig_high / eig_low) ** u
        mean = torch.randn(dim, generator=generator, dtype=torch.float64)
        return cls(mean, (q * lam) @ q.T)

    def constants(self):
        """(m0, L0) = (1/max(lam), 1/min(lam)): strong log-concavity and smoothness constants."""
        return float(1 / self.lam.max()), float(1 / self.lam.min())

    def noised_variances(self, process: Process, t):
        """Eigenvalues alpha^2 lam + sigma^2 of the noised covariance P_t."""
        return _coef(process.alpha, t) ** 2 * self.lam + _coef(process.sigma, t) ** 2

    def _steps(self, process, times, method):
        """Per-step, per-eigendirection (a, b), each (K, D): step k maps x_e to a[k] x_e + b[k]."""
        t, t_next = times[:-1, None], times[1:, None]

        def coefs(s):
            a, g2 = process.alpha(s).to(torch.float64), process.g(s).to(torch.float64) ** 2
            p = a ** 2 * self.lam + process.sigma(s).to(torch.float64) ** 2
            return a, g2, p, process.f(s).to(torch.float64)

        a0, g20, p0, f0 = coefs(t)
        if method == "exponential":
            r = process.alpha(t_next).to(torch.float64) / a0
            if isinstance(process, VariancePreserving):
                kappa = r - 1.0
            elif isinstance(process, VarianceExploding):
                kappa = 0.5 * (process.sigma(t) ** 2 - process.sigma(t_next) ** 2)
            else:
                exponential_weights(process, 1.0, 0.0)           # raises the ValueError
            return r - kappa / p0, kappa * a0 * self.mean_e / p0
        h = t_next - t
        m1, n1 = f0 + 0.5 * g20 / p0, -0.5 * g20 * a0 * self.mean_e / p0
        a_e, b_e = 1 + h * m1, h * n1
        if method == "euler":
            return a_e, b_e
        a1, g21, p1, f1 = coefs(t_next)
        m2, n2 = f1 + 0.5 * g21 / p1, -0.5 * g21 * a1 * self.mean_e / p1
        return 1 + 0.5 * h * (m1 + m2 * a_e), 0.5 * h * (n1 + m2 * b_e + n2)

    def sampler_law(self, process: Process, times, method: str = "exponential"):
        """(mean, variances) in the eigenbasis of the output at times[-1], from the prior."""
        check_choice("method", method, METHODS)
        times = _check_times(times)
        a, b = self._steps(process, times, method)
        # m_K = sum_k (a_{k+1} ... a_{K-1}) b_k, from a zero prior mean
        after = torch.cat([a[1:].flip(0).cumprod(0).flip(0), torch.ones_like(a[:1])])
        return (after * b).sum(0), process.prior_std ** 2 * (a ** 2).prod(0)

    def flow_law(self, process: Process, t_max: float, t_min: float = 0.0,
                 start_mean=None, start_var=None):
        """(mean, variances) in the eigenbasis of the EXACT probability-flow ODE's output at t_min,
        from N(start_mean, diag(start_var)) at t_max (default: the prior). The flow map is
        x -> alpha(t_min) m + (P_min / P_max)^1/2 (x - alpha(t_max) m) per eigendirection."""
        if not 0 <= t_min < t_max:
            raise ValueError(f"need 0 <= t_min < t_max, got t_min={t_min}, t_max={t_max}")
        m = torch.zeros(self.dim, dtype=torch.float64) if start_mean is None \
            else _f64(start_mean, "start_mean")
        v = torch.full((self.dim,), process.prior_std ** 2, dtype=torch.float64) \
            if start_var is None else _f64(start_var, "start_var")
        ratio = (self.noised_variances(process, t_min) / self.noised_variances(process, t_max))
        ratio = ratio.sqrt()
        a_max, a_min = _coef(process.alpha, t_max), _coef(process.alpha, t_min)
        return a_min * self.mean_e + ratio * (m - a_max * self.mean_e), ratio ** 2 * v

    def w2_to_data(self, mean_e, var_e) -> float:
        """W2 from N(U mean_e, U diag(var_e) U^T) to the data."""
        return commuting_w2(mean_e, var_e, self.mean_e, self.lam)

    def to_full(self, mean_e, var_e):
        """(mean, cov) in the original coordinates of a law given in the eigenbasis."""
        mean_e, var_e = _f64(mean_e, "mean_e"), _f64(var_e, "var_e")
        return self.basis @ mean_e, (self.basis * var_e) @ self.basis.T
