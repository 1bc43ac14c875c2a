"""Distances between sample sets, and between Gaussians in closed form.

- `mmd2`: the unbiased squared maximum mean discrepancy with a Gaussian kernel.
- `wasserstein_1d`: exact W_p between two 1-D samples (through their quantile functions).
- `sliced_wasserstein`: W_p averaged over random 1-D projections.
- `wasserstein_assignment`: exact W_p between two equal-size samples in any dimension, by optimal
  assignment (scipy's Hungarian solver; a few thousand points at most).
- `gaussian_w2`, `gaussian_kl`: W_2 (Bures) and KL between two Gaussians.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import linalg, optimize

from ..core.validation import check_int, check_positive


def _points(name, x):
    x = torch.as_tensor(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, must be (N, D) with N >= 2")
    return x


def median_bandwidth(x, y) -> float:
    """The median distance between the pooled points: the usual Gaussian-kernel bandwidth."""
    z = torch.cat([_points("x", x), _points("y", y)]).double()
    d = torch.cdist(z, z)
    return float(d[torch.triu_indices(len(z), len(z), 1).unbind()].median())


def mmd2(x, y, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 with k(a, b) = exp(-|a - b|^2 / (2 h^2)), h the median distance when None.
    Its expectation is 0 exactly when the two laws agree; estimates can be slightly negative."""
    x, y = _points("x", x).double(), _points("y", y).double()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y have dimensions {x.shape[1]} and {y.shape[1]}")
    h = median_bandwidth(x, y) if bandwidth is None else bandwidth
    check_positive("bandwidth", h)

    def mean_kernel(a, b, same):
        k = torch.exp(-torch.cdist(a, b) ** 2 / (2 * h * h))
        if same:
            return (k.sum() - k.diagonal().sum()) / (len(a) * (len(a) - 1))
        return k.mean()

    return float(mean_kernel(x, x, True) + mean_kernel(y, y, True) - 2 * mean_kernel(x, y, False))


def wasserstein_1d(x, y, p: float = 1.0, grid: int = 2000) -> float:
    """W_p between the empirical laws of two 1-D samples: the L_p distance of their quantile
    functions, evaluated exactly when the sizes agree and on `grid` midpoints otherwise."""
    x = np.sort(np.asarray(x, dtype=float).ravel())
    y = np.sort(np.asarray(y, dtype=float).ravel())
    if len(x) != len(y):
        u = (np.arange(grid) + 0.5) / grid
        x, y = np.quantile(x, u, method="inverted_cdf"), np.quantile(y, u, method="inverted_cdf")
    return float(np.mean(np.abs(x - y) ** p) ** (1 / p))


def sliced_wasserstein(x, y, projections: int = 128, p: float = 2.0, seed: int = 0) -> float:
    """(mean over random unit directions theta of W_p(theta . x, theta . y)^p)^(1/p)."""
    x, y = _points("x", x).double().numpy(), _points("y", y).double().numpy()
    check_int("projections", projections)
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((projections, x.shape[1]))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    w = [wasserstein_1d(x @ d, y @ d, p) ** p for d in theta]
    return float(np.mean(w) ** (1 / p))


def wasserstein_assignment(x, y, p: float = 2.0) -> float:
    """Exact W_p between two empirical laws of equal size, by optimal assignment."""
    x, y = _points("x", x).double(), _points("y", y).double()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    cost = (torch.cdist(x, y) ** p).numpy()
    rows, cols = optimize.linear_sum_assignment(cost)
    return float(cost[rows, cols].mean() ** (1 / p))


def _gaussian(mean, cov):
    mean = np.atleast_1d(np.asarray(mean, dtype=float))
    cov = np.atleast_2d(np.asarray(cov, dtype=float))
    if cov.shape != (len(mean), len(mean)):
        raise ValueError(f"cov has shape {cov.shape}, must be ({len(mean)}, {len(mean)})")
    return mean, cov


def gaussian_w2(mean1, cov1, mean2, cov2) -> float:
    """W_2(N(m1, S1), N(m2, S2))^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2)."""
    m1, s1 = _gaussian(mean1, cov1)
    m2, s2 = _gaussian(mean2, cov2)
    root2 = linalg.sqrtm(s2).real
    cross = linalg.sqrtm(root2 @ s1 @ root2).real
    w2 = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * cross)
    return float(np.sqrt(max(w2, 0.0)))


def gaussian_kl(mean1, cov1, mean2, cov2) -> float:
    """KL(N(m1, S1) || N(m2, S2)) in nats."""
    m1, s1 = _gaussian(mean1, cov1)
    m2, s2 = _gaussian(mean2, cov2)
    d = len(m1)
    solve = np.linalg.solve(s2, s1)
    diff = m2 - m1
    _, logdet1 = np.linalg.slogdet(s1)
    _, logdet2 = np.linalg.slogdet(s2)
    return float(0.5 * (np.trace(solve) + diff @ np.linalg.solve(s2, diff) - d + logdet2 - logdet1))
