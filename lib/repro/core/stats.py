"""Small statistics shared by the notebooks: power-law fits on log-log axes, and paired
differences over seeds with their standard errors.

Introduced in: notebooks/infinite-width-kernels/feature-learning-in-infinite-width-neural-networks.ipynb
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def loglog_slope(x, y) -> tuple[float, float]:
    """The least-squares slope of log(y) against log(x), and its standard error: the exponent a of
    y ~ x^a (a width, a data-set size, a number of sensors). Accepts lists, arrays or Series."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"need at least 3 x values and as many y values, got {x.size} and {y.size}")
    if not (np.all(x > 0) and np.all(y > 0) and np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"x and y must be positive and finite for a log-log fit, got x = {x.tolist()}, "
                         f"y = {y.tolist()}")
    fit = stats.linregress(np.log(x), np.log(y))
    return float(fit.slope), float(fit.stderr)


def two_standard_errors(values) -> float:
    """Two standard errors of the mean of `values` (one per seed): the noise band a comparison over
    seeds is judged against. Needs at least two values."""
    values = np.asarray(values, dtype=float).ravel()
    if len(values) < 2:
        raise ValueError(f"need at least 2 values for a standard error, got {len(values)}")
    return float(2 * values.std(ddof=1) / np.sqrt(len(values)))


def paired_difference(a, b) -> tuple[float, float]:
    """The mean over seeds of a - b, paired seed by seed, and two standard errors of that mean: the
    `uncertainty` of a `claims.less` between two methods run on the same seeds. Series are paired
    by index; arrays by position."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if not a.index.equals(b.index):
            raise ValueError(f"a and b must hold the same seeds, got {list(a.index)} and {list(b.index)}")
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold one value per seed each, got {a.size} and {b.size}")
    d = a - b
    return float(d.mean()), two_standard_errors(d)
