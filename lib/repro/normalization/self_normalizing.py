"""Self-normalizing networks (Klambauer et al., 2017): how the mean and variance of activations
travel through the layers of a net, and the SELU that drives them to a fixed point.

The mean-field picture (Klambauer et al., 2017; Poole et al., 2016): a unit's net input
z = w.x is Gaussian with mean mu*omega and variance nu*tau, where mu, nu are the mean and variance
of the previous layer's activations, omega = sum(w) and tau = sum(w^2). The map
g: (mu, nu) -> (E f(z), Var f(z)) then says where the next layer's statistics go; iterating it
says where they go in a deep net. Everything here is NumPy; `signal.activation_statistics`
measures the same quantities in a real torch network.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import optimize
from scipy.special import erf, erfc, erfcx

from ..core.activations import SELU_ALPHA, SELU_LAMBDA, selu
from ..core.gaussian import as_function, gaussian_expectation


def mean_var_map(activation: Callable | str, mu, nu, omega=0.0, tau=1.0, n: int = 64, kinks=None):
    """The map g: (mu, nu) -> (mu~, nu~) of one layer: the mean and variance of f(z) for a net input
    z ~ N(mu * omega, nu * tau) (the paper's Eq. 3), by `gaussian_expectation`. Broadcasts.

    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    f, kinks = as_function(activation, kinks)
    m, v = np.asarray(mu) * np.asarray(omega), np.asarray(nu) * np.asarray(tau)
    first = gaussian_expectation(f, m, v, n=n, kinks=kinks)
    second = gaussian_expectation(lambda z: f(z) ** 2, m, v, n=n, kinks=kinks)
    return first, second - first ** 2


def selu_mean_var_closed_form(mu, nu, omega=0.0, tau=1.0, alpha=SELU_ALPHA, lam=SELU_LAMBDA):
    """The paper's closed form of g for SELU (Eqs. 11-13 of its appendix; Eqs. 4-5 of the text),
    written with erfcx so that exp(a) * erfc(b) does not overflow. Broadcasts.

    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    m = np.asarray(mu, dtype=float) * omega
    v = np.asarray(nu, dtype=float) * tau
    s = np.sqrt(2 * v)

    def exp_erfc(a, b):  # exp(a) * erfc(b)
        return erfcx(b) * np.exp(a - b ** 2)

    gauss = np.sqrt(2 / np.pi) * np.sqrt(v) * np.exp(-m ** 2 / (2 * v))
    mean = 0.5 * lam * (-(alpha + m) * erfc(m / s) + alpha * exp_erfc(m + v / 2, (m + v) / s)
                        + gauss + 2 * m)
    second = 0.5 * lam ** 2 * ((m ** 2 + v) * (erf(m / s) + 1)
                               + alpha ** 2 * (-2 * exp_erfc(m + v / 2, (m + v) / s)
                                               + exp_erfc(2 * (m + v), (m + 2 * v) / s)
                                               + erfc(m / s))
                               + m * gauss)
    return mean, second - mean ** 2


def selu_parameters(mu: float = 0.0, nu: float = 1.0, start=(1.5, 1.0), n: int = 64):
    """(alpha, lam) of the SELU whose map g has the fixed point (mu, nu) for normalized weights
    (omega = 0, tau = 1), solved with scipy.optimize.root on g(mu, nu) = (mu, nu).

    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    if nu <= 0:
        raise ValueError(f"nu == {nu!r}, must be > 0")

    def residual(p):
        alpha, lam = p
        m, v = mean_var_map(lambda z: selu(z, alpha, lam), mu, nu, n=n, kinks=(0.0,))
        return [float(m) - mu, float(v) - nu]

    sol = optimize.root(residual, start, tol=1e-14)
    # At tol=1e-14 the solver can stop a step short of its own tolerance on some CPUs' rounding
    # ("no further improvement"); the residual then says whether it found the point.
    if not sol.success and np.abs(sol.fun).max() > 1e-12:
        raise RuntimeError(f"no SELU parameters found for the fixed point ({mu}, {nu}): {sol.message}")
    return float(sol.x[0]), float(sol.x[1])


def jacobian(g: Callable, mu, nu, h: float = 1e-5) -> np.ndarray:
    """The Jacobian [[dmu~/dmu, dmu~/dnu], [dnu~/dmu, dnu~/dnu]] of a map g(mu, nu) -> (mu~, nu~),
    by central differences with step h. Broadcasts over arrays mu, nu: shape (..., 2, 2).

    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    if not h > 0:
        raise ValueError(f"h == {h!r}, must be > 0")
    mu, nu = np.asarray(mu, dtype=float), np.asarray(nu, dtype=float)
    columns = []
    for dmu, dnu in ((h, 0.0), (0.0, h)):
        plus, minus = np.asarray(g(mu + dmu, nu + dnu)), np.asarray(g(mu - dmu, nu - dnu))
        columns.append((plus - minus) / (2 * h))  # (2, ...): d(mu~, nu~) along one input
    return np.moveaxis(np.stack(columns, axis=-1), 0, -2)


def iterate_map(g: Callable, mu0, nu0, steps: int) -> np.ndarray:
    """Apply g(mu, nu) -> (mu~, nu~) `steps` times from broadcast starts (mu0, nu0).

    Returns an array of shape (steps + 1, 2, *starts): the path of (mu, nu), start included.
    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps == {steps!r}, must be an int >= 0")
    mu, nu = np.broadcast_arrays(np.asarray(mu0, dtype=float), np.asarray(nu0, dtype=float))
    path = [np.stack([mu, nu])]
    for _ in range(steps):
        mu, nu = (np.asarray(a, dtype=float) for a in g(mu, nu))
        path.append(np.stack([mu, nu]))
    return np.stack(path)
