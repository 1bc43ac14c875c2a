"""Small statistics shared by the notebooks: power-law fits on log-log axes.

Introduced in: notebooks/infinite-width-kernels/feature-learning-in-infinite-width-neural-networks.ipynb
"""
from __future__ import annotations

import numpy as np
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
