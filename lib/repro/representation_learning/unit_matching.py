"""Aligning the units of two networks by their activations (Li et al. 2016, "Convergent Learning").

Units are compared through their activations on one data set: a convolution channel is one unit,
and every image *and* spatial position is one sample (`unit_activations`). From the Pearson
correlations between units (`correlation`), one unit of net A is paired with one of net B either
one-to-one by a maximum-weight bipartite matching (`bipartite_matching`) or each with its most
correlated partner, partners allowed to repeat (`semi_matching`); `match_live_units` does either
on the units that vary (`live_units`: a ReLU that never fires on the data has no correlation to
speak of). `sparse_prediction` relaxes the pairing to a few-to-one linear map with an L1 penalty
(the paper's Sec. 4); `lasso_supports` follows the whole L1 path instead and reads off, for each
unit, the inputs in use when at most k are allowed, and `least_squares_on` refits the map on them.
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


def live_units(x) -> np.ndarray:
    """Which units (columns of `x`, shape (samples, units)) vary over the samples: a unit whose
    activation is the same on every sample (a ReLU that never fires) is dead, and has no
    correlation with anything.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    x = _as_2d(x, "x")
    return x.max(0) > x.min(0)  # exact: a rounding error in a variance cannot make a dead unit live


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


def match_live_units(a, b, method: str = "bipartite") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair the live units of `a` (samples, units_a) with those of `b` by their correlation, dead
    units left out on both sides: returns (unit_a, unit_b, r), the paired units' indices into the
    original columns and their correlations. `method="semi"`: every live unit of `a` with its most
    correlated live unit of `b`. `method="bipartite"`: one-to-one, maximizing the summed
    correlation; when `a` has more live units than `b`, every live unit of `b` gets a partner and
    the surplus units of `a` none, so there are min(live_a, live_b) pairs.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    if method not in ("bipartite", "semi"):
        raise ValueError(f"method == {method!r}, must be 'bipartite' or 'semi'")
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    live_a, live_b = np.flatnonzero(live_units(a)), np.flatnonzero(live_units(b))
    if not len(live_a) or not len(live_b):
        raise ValueError(f"no live units to match ({len(live_a)} in a, {len(live_b)} in b)")
    corr = correlation(a[:, live_a], b[:, live_b])
    if method == "semi":
        rows, (cols, r) = np.arange(len(live_a)), semi_matching(corr)
    elif len(live_a) <= len(live_b):
        rows, (cols, r) = np.arange(len(live_a)), bipartite_matching(corr)
    else:  # match b's units into a's, then read the pairs from a's side
        cols, (rows, r) = np.arange(len(live_b)), bipartite_matching(corr.T)
        order = np.argsort(rows)
        rows, cols, r = rows[order], cols[order], r[order]
    return live_a[rows], live_b[cols], r


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

    # a unit of a that never varies carries nothing to predict from (its weight stays 0); left in,
    # centring turns it into a column of rounding noise that coordinate descent can divide by
    live = live_units(a)
    weights = np.zeros((b.shape[1], a.shape[1]))
    if not live.any():
        return SparseMap(weights, b.mean(0))
    # separable over the units of b; with many more samples than units, coordinate descent on the
    # precomputed Gram matrix a'a costs O(units^2) per sweep instead of O(samples * units)
    model = Lasso(alpha=alpha, max_iter=max_iter, tol=1e-4,
                  precompute=bool(len(a) > live.sum())).fit(a[:, live], b)
    weights[:, live] = np.atleast_2d(model.coef_).reshape(b.shape[1], live.sum())
    fit = SparseMap(weights, np.atleast_1d(model.intercept_).astype(np.float64))
    # Coordinate descent starts at w = 0, where the objective is var(b) / 2, and never increases it:
    # a fit that ends above that has diverged (it did once, with errors of 1e25), and is no result.
    objective = ((b - fit.predict(a)) ** 2).mean(0) / 2 + alpha * np.abs(fit.weights).sum(1)
    diverged = ~(objective <= b.var(0) / 2 * (1 + 1e-6) + 1e-12)
    if diverged.any():
        raise FloatingPointError(f"the sparse fit diverged for {diverged.sum()} of {b.shape[1]} units "
                                 f"(objective up to {np.nanmax(objective):.3g}, at w = 0 "
                                 f"{b.var(0).max() / 2:.3g})")
    return fit


def lasso_supports(a, b, max_inputs: int) -> np.ndarray:
    """For every unit of `b`, the units of `a` in use along the exact L1 path (LARS, the Lasso
    solutions for every penalty at once) when at most k = 1, ..., `max_inputs` may be nonzero:
    a boolean array (max_inputs, units_b, units_a). Row k - 1 is the least penalized Lasso fit with
    k inputs or fewer; its first input is the unit most correlated with the target. Give z-scored
    activations; dead units of `a` are never chosen, and a dead unit of `b` gets none. No penalty
    has to be picked, and LARS takes finitely many exact steps, with no solver to converge: a path
    that still ends in non-finite coefficients raises FloatingPointError.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    from sklearn.linear_model import lars_path_gram

    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} samples and b {len(b)}; they must be the same inputs")
    if not (isinstance(max_inputs, (int, np.integer)) and max_inputs >= 1):
        raise ValueError(f"max_inputs == {max_inputs!r}, must be an integer >= 1")
    live = np.flatnonzero(live_units(a))
    a_c, b_c = a[:, live] - a[:, live].mean(0), b - b.mean(0)  # the Lasso with an intercept
    gram, ab = a_c.T @ a_c, a_c.T @ b_c                          # (live, live), (live, units_b)
    supports = np.zeros((max_inputs, b.shape[1], a.shape[1]), dtype=bool)
    for j in np.flatnonzero(live_units(b)) if len(live) else []:
        steps = max_inputs + 2
        while True:  # follow the path only until it uses more than max_inputs units, or ends
            _, _, coefs = lars_path_gram(ab[:, j], gram, n_samples=len(a), method="lasso",
                                         max_iter=steps)  # coefs: (live, knots <= steps + 1)
            ended = coefs.shape[1] <= steps or steps > 50 * len(live)
            if ended or (coefs[:, -1] != 0).sum() > max_inputs:
                break
            steps *= 2
        if not np.isfinite(coefs).all():
            raise FloatingPointError(f"the L1 path of unit {j} of b has non-finite coefficients")
        used = coefs != 0                       # (live, knots)
        n_used = used.sum(0)
        for k in range(1, max_inputs + 1):
            knot = np.flatnonzero(n_used <= k)[-1]  # the last knot with at most k inputs
            supports[k - 1, j, live[used[:, knot]]] = True
    return supports


def least_squares_on(a, b, support):
    """Refit every unit of `b` by least squares (with an intercept) on its own inputs,
    `support[j]`, a boolean mask over the units of `a`: the L1 path chooses the inputs, this fits
    them without the penalty's shrinkage. A unit with no inputs is predicted by its mean. A stack
    of supports, shape (n, units_b, units_a) as `lasso_supports` gives, returns a list of n maps.

    Introduced in: notebooks/representation-learning/convergent-learning.ipynb
    """
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} samples and b {len(b)}; they must be the same inputs")
    support = np.asarray(support, dtype=bool)
    if support.shape[-2:] != (b.shape[1], a.shape[1]) or support.ndim not in (2, 3):
        raise ValueError(f"support has shape {support.shape}, must be (units_b, units_a) == "
                         f"{(b.shape[1], a.shape[1])}, or a stack of them")
    a_mean, b_mean = a.mean(0), b.mean(0)
    a_c = a - a_mean
    gram, ab = a_c.T @ a_c, a_c.T @ (b - b_mean)  # the normal equations of the centred data, once
    maps = []
    for masks in support.reshape(-1, *support.shape[-2:]):
        weights = np.zeros(masks.shape)
        for j, inputs in enumerate(masks):
            if inputs.any():
                weights[j, inputs] = np.linalg.lstsq(gram[np.ix_(inputs, inputs)], ab[inputs, j],
                                                     rcond=None)[0]
        maps.append(SparseMap(weights, b_mean - weights @ a_mean))
    return maps if support.ndim == 3 else maps[0]


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
