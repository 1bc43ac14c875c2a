"""Expectations under Gaussians by quadrature: E f(Z) for Z ~ N(mean, var), and E f(U) g(V) for a
centred Gaussian pair (U, V). Mean-field maps, kernel recursions and the infinite-width NTK all
reduce to these.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from . import activations

# Standard deviations of the Gaussian that the piecewise rule covers: the mass beyond is < 1e-30.
_SPAN = 12.0


def as_function(f, kinks=None):
    """(vectorized callable, cut points) from a callable or a name of `repro.core.activations`."""
    if isinstance(f, str):
        act = activations.get(f)
        return act.numpy, act.kinks if kinks is None else tuple(kinks)
    if not callable(f):
        raise TypeError(f"activation must be a callable or a name, not {type(f).__name__}")
    return f, tuple(kinks or ())


@functools.lru_cache(maxsize=None)
def _nodes(rule: str, n: int):
    """Gauss quadrature nodes and weights, cached: computing them costs more than using them."""
    rules = {"hermite_e": np.polynomial.hermite_e.hermegauss, "legendre": np.polynomial.legendre.leggauss}
    return rules[rule](n)


def gaussian_expectation(f: Callable | str, mean=0.0, var=1.0, n: int = 64, kinks=None):
    """E f(Z) for Z ~ N(mean, var), elementwise over broadcast arrays `mean` and `var` (var = 0 is
    the point mass at the mean: f(mean)).

    Without `kinks`, n-point Gauss-Hermite quadrature (exact for polynomials of degree < 2n).
    Where f has kinks (SELU and ReLU at 0) or saturates within a fraction of a standard deviation
    (tanh at large var), Gauss-Hermite converges slowly (error ~1e-3 at n=100), so the line is cut
    at the points `kinks` and each piece of [mean - 12 sd, mean + 12 sd] gets n-point
    Gauss-Legendre quadrature against the Gaussian density; the error is then ~1e-12.
    `f` is a vectorized callable or a name from `repro.core.activations` (which supplies its cut
    points).

    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    f, kinks = as_function(f, kinks)
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n == {n!r}, must be an int >= 2")
    mean, var = np.broadcast_arrays(np.asarray(mean, dtype=float), np.asarray(var, dtype=float))
    if np.any(~np.isfinite(var)) or np.any(var < 0):
        raise ValueError("var must be finite and >= 0 everywhere")
    point_mass = var == 0
    if point_mass.any():
        spread = gaussian_expectation(f, mean, np.where(point_mass, 1.0, var), n, kinks)
        return np.where(point_mass, f(mean), spread)
    sd = np.sqrt(var)[..., None]
    mean = mean[..., None]
    if not kinks:
        x, w = _nodes("hermite_e", n)  # weight exp(-x^2 / 2)
        return (f(mean + sd * x) * w).sum(-1) / np.sqrt(2 * np.pi)
    # Piecewise Gauss-Legendre in the standardized variable x = (z - mean) / sd.
    t, w = _nodes("legendre", n)
    cuts = [np.clip((k - mean) / sd, -_SPAN, _SPAN) for k in sorted(kinks)]
    edges = [np.full_like(mean, -_SPAN)] + cuts + [np.full_like(mean, _SPAN)]
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        half = (hi - lo) / 2
        x = lo + half * (t + 1)  # (..., n) nodes on [lo, hi]
        density = np.exp(-x ** 2 / 2) / np.sqrt(2 * np.pi)
        total = total + (f(mean + sd * x) * density * w * half).sum(-1)
    return total


def bivariate_expectation(f: Callable | str, g: Callable | str, var_u, var_v, cov, n: int = 64,
                          kinks_f=None, kinks_g=None):
    """E f(U) g(V) for (U, V) ~ N(0, [[var_u, cov], [cov, var_v]]), elementwise over broadcast
    arrays, as an expectation over U of f(U) E[g(V) | U]: both are one-dimensional Gaussian
    expectations (`gaussian_expectation`), so the cut points of f and g are honoured. var_u > 0.

    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    f, kinks_f = as_function(f, kinks_f)
    g, kinks_g = as_function(g, kinks_g)
    var_u, var_v, cov = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (var_u, var_v, cov)))
    if np.any(~(var_u > 0)):
        raise ValueError("var_u must be > 0 everywhere")
    slope = (cov / var_u)[..., None]                                 # E[V | U = u] = slope * u
    residual = np.clip(var_v - cov ** 2 / var_u, 0.0, None)[..., None]  # Var[V | U], >= 0

    def given_u(u):  # f(u) E[g(V) | U = u], u of shape (..., n)
        return f(u) * gaussian_expectation(g, slope * u, np.broadcast_to(residual, u.shape), n, kinks_g)

    return gaussian_expectation(given_u, np.zeros_like(var_u), var_u, n, kinks_f)
