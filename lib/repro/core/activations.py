"""The one table of activation functions: the torch module, the NumPy function and its derivative,
and the points where quadrature should cut the line (kinks, or where the function bends sharply).

Networks take the torch module (`get("relu").module()`); mean-field and kernel computations take
the NumPy pair and the cut points (`repro.core.gaussian.gaussian_expectation`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import ndtr
from torch import nn

from .validation import check_choice

# The constants of SELU's fixed point (0, 1), as Klambauer et al.'s reference code and torch.nn.SELU
# use them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946


def selu(x, alpha: float = SELU_ALPHA, lam: float = SELU_LAMBDA):
    """The scaled exponential linear unit lam * (x if x > 0 else alpha * (exp(x) - 1)), in NumPy.

    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    x = np.asarray(x, dtype=float)
    return lam * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _selu_derivative(x):
    x = np.asarray(x, dtype=float)
    return SELU_LAMBDA * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _relu(x):
    return np.maximum(np.asarray(x, dtype=float), 0.0)


def _elu(x):
    x = np.asarray(x, dtype=float)
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _gelu(x):
    x = np.asarray(x, dtype=float)
    return x * ndtr(x)


def _identity(x):
    return np.asarray(x, dtype=float)


@dataclass(frozen=True)
class Activation:
    """One activation: `module` builds the torch layer; `numpy` and `derivative` act on arrays."""

    name: str
    module: type[nn.Module]
    numpy: Callable
    derivative: Callable
    kinks: tuple = ()


ACTIVATIONS = {a.name: a for a in [
    Activation("relu", nn.ReLU, _relu, lambda x: (np.asarray(x) > 0).astype(float), (0.0,)),
    # tanh is smooth, but at large variance it turns within a fraction of a standard deviation
    Activation("tanh", nn.Tanh, np.tanh, lambda x: 1.0 / np.cosh(x) ** 2, (0.0,)),
    Activation("selu", nn.SELU, selu, _selu_derivative, (0.0,)),
    Activation("elu", nn.ELU, _elu, lambda x: np.where(np.asarray(x) > 0, 1.0, np.exp(np.minimum(x, 0.0))),
               (0.0,)),
    Activation("gelu", nn.GELU, _gelu,
               lambda x: ndtr(x) + np.asarray(x) * np.exp(-np.asarray(x) ** 2 / 2) / np.sqrt(2 * np.pi)),
    Activation("identity", nn.Identity, _identity, lambda x: np.ones_like(np.asarray(x, dtype=float))),
]}


def get(name: str) -> Activation:
    """The activation called `name`; an unknown name raises a ValueError listing the valid ones."""
    check_choice("activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name]
