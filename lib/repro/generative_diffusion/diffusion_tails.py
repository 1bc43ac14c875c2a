"""Tails of a law and of the samples a diffusion model generates from it.

A diffusion sampler driven by the probability-flow ODE is a deterministic map x = G(z) of the
Gaussian prior draw z. When G is L-Lipschitz, Gaussian concentration gives, for every 1-Lipschitz
f, P(|f(x) - E f(x)| >= t) <= 2 exp(-t^2 / (2 L^2)): the generated law is sub-Gaussian and cannot
have the polynomial tail of, say, a Student-t law. This module holds the pieces to measure that:

- `student_t(n, dim, nu)`: heavy-tailed data (independent Student-t coordinates, exact inverse
  CDF), and `student_t_map(z, nu)`: the increasing map that sends N(0, 1) to Student-t(nu);
- `abs_quantile(p, nu)`, `tail_ratio_exact(nu)`: exact quantiles of |x| for Student-t and Gaussian
  laws (nu = inf), and `tail_ratio(x)` its empirical counterpart, q_high / q_low of |x - median|;
- `hill(x, k)`: the Hill estimator of the tail index from the k largest |x|, with its standard
  error;
- `lipschitz_on_grid(z, gz)`: the largest slope of a 1-D map sampled on a grid;
- `gaussian_concentration_bound(t, L)` and `empirical_tail(x, t)`: the bound and what a sample
  gives; `pushforward_tail(z, gz, t)`: the exact tail of G(Z) for an increasing 1-D map G, and
  `local_tail_index(z, gz)`: -d log P(X > x) / d log x along it.

Introduced in: notebooks/generative-diffusion/concentration-of-measure-for-distributions-generated.ipynb
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats as sps

from ..core.validation import check_int, check_positive


def _vector(x, name="x") -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    if len(x) == 0 or not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be a non-empty tensor of finite numbers")
    return x


def _probability(name, p):
    if not 0 < p < 1:
        raise ValueError(f"{name} == {p!r}, must be in (0, 1)")


def _check_nu(nu):
    if not (nu > 0):  # also refuses nan
        raise ValueError(f"nu == {nu!r}, must be > 0 (math.inf for a Gaussian)")


def student_t(n: int, dim: int, nu: float, generator=None, dtype=torch.float64) -> torch.Tensor:
    """(n, dim) independent standard Student-t coordinates with nu degrees of freedom, by the
    exact inverse CDF of uniforms drawn from `generator` (nu = math.inf: standard Gaussian)."""
    check_int("n", n)
    check_int("dim", dim)
    _check_nu(nu)
    u = torch.rand(n, dim, generator=generator, dtype=torch.float64).clamp(1e-300, 1 - 1e-16)
    law = sps.norm if math.isinf(nu) else sps.t(nu)
    return torch.as_tensor(law.ppf(u.numpy()), dtype=dtype)


def abs_quantile(p: float, nu: float, scale: float = 1.0) -> float:
    """The p-quantile of |x| for x = scale * Student-t(nu) (nu = math.inf: Gaussian)."""
    _probability("p", p)
    _check_nu(nu)
    check_positive("scale", scale)
    law = sps.norm if math.isinf(nu) else sps.t(nu)
    return float(scale * law.ppf((1 + p) / 2))


def tail_ratio_exact(nu: float, high: float = 0.999, low: float = 0.9) -> float:
    """q_high / q_low of |x| for a centred Student-t(nu) law (scale-free; Gaussian at nu = inf)."""
    if not low < high:
        raise ValueError(f"low == {low!r} must be below high == {high!r}")
    return abs_quantile(high, nu) / abs_quantile(low, nu)


def tail_ratio(x, high: float = 0.999, low: float = 0.9) -> float:
    """Empirical q_high / q_low of |x - median(x)|: about 2.0 for a Gaussian, 5.49 for Student-t
    with 3 degrees of freedom (at the default levels); it grows without bound as the tail gets
    heavier and does not depend on the scale."""
    _probability("high", high)
    _probability("low", low)
    if not low < high:
        raise ValueError(f"low == {low!r} must be below high == {high!r}")
    r = (_vector(x) - _vector(x).median()).abs()
    q = torch.quantile(r, torch.tensor([low, high], dtype=torch.float64))
    if q[0] <= 0:
        raise ValueError("the low quantile of |x - median| is 0: x has too few distinct values")
    return float(q[1] / q[0])


def hill(x, k: int) -> tuple[float, float]:
    """Hill's estimate of the tail index alpha from the k largest values of |x|:
    1 / mean_i log(|x|_(i) / |x|_(k+1)), i = 1..k, and its asymptotic standard error
    alpha / sqrt(k).
    For a law with P(|x| > u) ~ u^-alpha (Pareto, Student-t with nu = alpha) it tends to alpha;
    for a Gaussian it grows without bound (like 2 log(n / k)) as n / k grows."""
    r = _vector(x).abs()
    check_int("k", k)
    if k >= len(r):
        raise ValueError(f"k == {k}, must be below the number of values, {len(r)}")
    top = torch.topk(r, k + 1).values
    if top[k] <= 0:
        raise ValueError("the (k+1)-th largest |x| is 0: choose a smaller k")
    alpha = 1.0 / float((top[:k] / top[k]).log().mean())
    return alpha, alpha / math.sqrt(k)


def lipschitz_on_grid(z, gz) -> float:
    """The largest |G(z_{i+1}) - G(z_i)| / |z_{i+1} - z_i| of a 1-D map G sampled on a grid z
    (a lower bound on its Lipschitz constant, equal to it in the limit of a fine grid)."""
    z, gz = _vector(z, "z"), _vector(gz, "gz")
    if len(z) != len(gz) or len(z) < 2:
        raise ValueError(f"z and gz need the same length >= 2, got {len(z)} and {len(gz)}")
    order = torch.argsort(z)
    dz, dg = z[order].diff(), gz[order].diff()
    if bool((dz <= 0).any()):
        raise ValueError("z must have distinct values")
    return float((dg / dz).abs().max())


def gaussian_concentration_bound(t, lipschitz: float) -> np.ndarray:
    """2 exp(-t^2 / (2 L^2)): the bound on P(|f(G(z)) - E f(G(z))| >= t) for z ~ N(0, I), G
    L-Lipschitz and f 1-Lipschitz (Gaussian concentration of Lipschitz functions)."""
    check_positive("lipschitz", lipschitz)
    t = np.asarray(t, dtype=float)
    if np.any(t < 0):
        raise ValueError("t must be >= 0")
    return 2.0 * np.exp(-t ** 2 / (2.0 * lipschitz ** 2))


def empirical_tail(x, t) -> np.ndarray:
    """The fraction of a sample with |x - mean(x)| >= t, at each t of a grid."""
    x = _vector(x)
    r = (x - x.mean()).abs().numpy()
    t = np.asarray(t, dtype=float).reshape(-1)
    return (r[None, :] >= t[:, None]).mean(1)


def _increasing_map(z, gz):
    z, gz = _vector(z, "z").numpy(), _vector(gz, "gz").numpy()
    if len(z) != len(gz) or len(z) < 3:
        raise ValueError(f"z and gz need the same length >= 3, got {len(z)} and {len(gz)}")
    if np.any(np.diff(z) <= 0) or np.any(np.diff(gz) <= 0):
        raise ValueError("z must be an increasing grid and gz = G(z) increasing on it "
                         "(a 1-D flow map is monotone)")
    return z, gz


def pushforward_tail(z, gz, t, center: float = 0.0) -> np.ndarray:
    """P(|G(Z) - center| >= t) for Z ~ N(0, 1) and an increasing map G sampled on the grid z, by
    P(G(Z) >= c + t) = Phi(-G^-1(c + t)) (G^-1 by linear interpolation): the exact tail of the
    pushforward law, far beyond what a sample reaches. Every c +- t must lie inside the range of
    G on the grid."""
    z, gz = _increasing_map(z, gz)
    t = np.asarray(t, dtype=float).reshape(-1)
    if np.any(t < 0) or np.any(center + t > gz[-1]) or np.any(center - t < gz[0]):
        raise ValueError(f"every center +- t must lie in [{gz[0]:.4g}, {gz[-1]:.4g}], the range of "
                         "G on the grid, with t >= 0")
    upper = sps.norm.sf(np.interp(center + t, gz, z))
    lower = sps.norm.cdf(np.interp(center - t, gz, z))
    return upper + lower


def local_tail_index(z, gz) -> np.ndarray:
    """-d log P(X > x) / d log x at x = G(z) for X = G(Z), Z ~ N(0, 1), G increasing and positive:
    (phi(z) / Phi(-z)) G(z) / G'(z), with G' by central differences on the grid (one value per
    interior grid point). It tends to nu for a Student-t law with nu degrees of freedom and grows
    like z^2 for a Gaussian (any G with a bounded slope)."""
    z, gz = _increasing_map(z, gz)
    if np.any(gz[1:-1] <= 0):
        raise ValueError("G(z) must be > 0 on the interior grid (the upper tail)")
    slope = (gz[2:] - gz[:-2]) / (z[2:] - z[:-2])
    zi = z[1:-1]
    hazard = np.exp(sps.norm.logpdf(zi) - sps.norm.logsf(zi))
    return hazard * gz[1:-1] / slope


def student_t_map(z, nu: float) -> np.ndarray:
    """The increasing map G with G(Z) ~ Student-t(nu) for Z ~ N(0, 1), G = F_nu^-1 o Phi, computed
    through the survival functions on the upper side so that it stays finite far in the tail."""
    _check_nu(nu)
    z = np.asarray(z, dtype=float)
    law = sps.norm if math.isinf(nu) else sps.t(nu)
    return np.where(z > 0, law.isf(sps.norm.sf(z)), law.ppf(sps.norm.cdf(z)))
