"""Aligning the units of two networks by their activations (Li et al. 2016, "Convergent Learning").

Units are compared through their activations on one data set: a convolution channel is one unit,
and every image *and* spatial position is one sample (`unit_activations`). From the Pearson
correlations between units (`correlation`), one unit of net A is paired with one of net B either
one-to-one by a maximum-weight bipartite matching (`bipartite_matching`) or each with its most
correlated partner, partners allowed to repeat (`semi_matching`). `sparse_prediction` relaxes the
pairing to a few-to-one linear map with an L1 penalty (the paper's Sec. 4).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def _as_2d(x, name: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} has shape {x.shape}, must be (samples, units)")
    if len(x) < 2:
        raise ValueError(f"{name} has {len(x)} samples, need at least 2")
    return x.astype(np.float64)


def unit_activations(acts) -> np.ndarray:
    """(N, C, *spatial) or (N, C) activations -> (samples, C): every position of every input is a
    sample of each channel, as the paper treats convolution layers (Sec. 2).

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    x = acts.detach().cpu().numpy() if hasattr(acts, "detach") else np.asarray(acts)
    if x.ndim < 2:
        raise ValueError(f"activations have shape {x.shape}, must be (N, C) or (N, C, *spatial)")
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]).astype(np.float64)  # (N * spatial, C)


def zscore(x, like=None) -> np.ndarray:
    """Each unit to zero mean and unit variance, with the statistics of `like` (default: `x`);
    a unit that never varies (a dead ReLU) is only centred.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    x = _as_2d(x, "x")
    ref = x if like is None else _as_2d(like, "like")
    if ref.shape[1] != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} units and like {ref.shape[1]}; they must match")
    std = ref.std(0)
    return (x - ref.mean(0)) / np.where(std > 0, std, 1.0)


def correlation(a, b=None) -> np.ndarray:
    """Pearson correlations between the units of `a` (samples, units_a) and of `b` (samples,
    units_b), shape (units_a, units_b); `b=None` gives the within-net matrix of `a`. A unit with
    zero variance has correlation 0 with every unit (itself included).

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    a = _as_2d(a, "a")
    b = a if b is None else _as_2d(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} samples and b {len(b)}; they must be the same inputs")
    za, zb = zscore(a), zscore(b)
    return za.T @ zb / len(a)  # (units_a, units_b); dead units are all-zero columns of z


def _check_corr(corr) -> np.ndarray:
    corr = np.asarray(corr, dtype=np.float64)
    if corr.ndim != 2 or corr.size == 0:
        raise ValueError(f"corr has shape {corr.shape}, must be a non-empty (units_a, units_b) matrix")
    if not np.isfinite(corr).all():
        raise ValueError("corr has non-finite entries")
    return corr


def bipartite_matching(corr) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairing maximizing the summed correlation (Sec. 3.1): returns `partner[i]`, the
    unit of net B given to unit i of net A, and the paired correlations. Needs units_a <= units_b.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    corr = _check_corr(corr)
    if corr.shape[0] > corr.shape[1]:
        raise ValueError(f"corr has shape {corr.shape}: one-to-one matching needs "
                         "units_a <= units_b (transpose it)")
    rows, cols = linear_sum_assignment(corr, maximize=True)
    partner = np.empty(corr.shape[0], dtype=int)
    partner[rows] = cols
    return partner, corr[np.arange(len(partner)), partner]


def semi_matching(corr) -> tuple[np.ndarray, np.ndarray]:
    """Each unit of net A with its most correlated unit of net B, partners allowed to repeat
    (Sec. 3.1): returns `partner` and the paired correlations, each >= the bipartite one's sum.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    corr = _check_corr(corr)
    partner = corr.argmax(1)
    return partner, corr[np.arange(len(partner)), partner]


@dataclass
class SparseMap:
    """A linear map predicting net B's units from net A's: b_hat = a @ weights.T + intercept.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """

    weights: np.ndarray    # (units_b, units_a)
    intercept: np.ndarray  # (units_b,)

    def predict(self, a) -> np.ndarray:
        return _as_2d(a, "a") @ self.weights.T + self.intercept

    def n_inputs(self) -> np.ndarray:
        """How many units of net A each unit of net B is predicted from (nonzero weights)."""
        return (self.weights != 0).sum(1)


def sparse_prediction(a, b, alpha: float, max_iter: int = 5000) -> SparseMap:
    """Fit, for every unit of `b`, a linear prediction from all units of `a` with an L1 penalty
    `alpha` (scikit-learn's Lasso: mean squared error / 2 + alpha * |w|_1), the paper's sparse
    few-to-one mapping (Sec. 4). `alpha=0` is ordinary least squares. Give z-scored activations
    so that `alpha` means the same for every layer.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} samples and b {len(b)}; they must be the same inputs")
    if not (isinstance(alpha, (int, float)) and alpha >= 0):
        raise ValueError(f"alpha == {alpha!r}, must be a number >= 0")
    if alpha == 0:
        ones = np.ones((len(a), 1))
        coef, *_ = np.linalg.lstsq(np.hstack([a, ones]), b, rcond=None)  # (units_a + 1, units_b)
        return SparseMap(coef[:-1].T, coef[-1])
    from sklearn.linear_model import Lasso

    # separable over the units of b; with many more samples than units, coordinate descent on the
    # precomputed Gram matrix a'a costs O(units^2) per sweep instead of O(samples * units)
    model = Lasso(alpha=alpha, max_iter=max_iter, tol=1e-4, precompute=len(a) > a.shape[1]).fit(a, b)
    fit = SparseMap(np.atleast_2d(model.coef_).reshape(b.shape[1], a.shape[1]),
                    np.atleast_1d(model.intercept_).astype(np.float64))
    # Coordinate descent starts at w = 0, where the objective is var(b) / 2, and never increases it:
    # a fit that ends above that has diverged (it did once, with errors of 1e25), and is no result.
    objective = ((b - fit.predict(a)) ** 2).mean(0) / 2 + alpha * np.abs(fit.weights).sum(1)
    diverged = ~(objective <= b.var(0) / 2 * (1 + 1e-6) + 1e-12)
    if diverged.any():
        raise FloatingPointError(f"the sparse fit diverged for {diverged.sum()} of {b.shape[1]} units "
                                 f"(objective up to {np.nanmax(objective):.3g}, at w = 0 "
                                 f"{b.var(0).max() / 2:.3g})")
    return fit


def unexplained_variance(b, b_hat) -> np.ndarray:
    """Per unit of `b`: mean squared prediction error / variance of the unit (1 - R^2), so that
    0 is a perfect prediction and 1 is no better than the unit's mean. Dead units give nan.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    b, b_hat = _as_2d(b, "b"), _as_2d(b_hat, "b_hat")
    if b.shape != b_hat.shape:
        raise ValueError(f"b has shape {b.shape} and b_hat {b_hat.shape}; they must match")
    var = b.var(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, ((b - b_hat) ** 2).mean(0) / np.where(var > 0, var, 1), np.nan)
