"""Derf (Chen et al., 2025): a point-wise error function that replaces a transformer's
normalization layers.

- `Derf`: y = gamma * erf(alpha * x + s) + beta over the last dimension, with one learnable
  scalar alpha (the input scale, as in DyT), one learnable scalar shift s, and per-feature gain
  gamma and bias beta (at initialization alpha = 0.5, s = 0, gamma = 1, beta = 0). Like DyT
  (`repro.normalization.bounded_tanh.DynamicTanh`) it uses no statistic of x; erf is the Gaussian
  cumulative distribution function rescaled to (-1, 1).
- `Pointwise`: the same structure gamma * f(alpha * x + s) + beta around any point-wise f with
  the shift s fixed (not learned), for the paper's study of which properties of f matter:
  zero-centredness (a fixed horizontal shift s, or a vertical offset of f), boundedness (an
  unbounded f such as arcsinh or the identity).

Introduced in: notebooks/normalization/stronger-normalization-free-transformers.ipynb
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.validation import check_positive


class Derf(nn.Module):
    """Derf: gamma * erf(alpha * x + s) + beta over the last dimension (`features` wide); alpha
    and s learnable scalars initialized at `alpha` and `shift`, gamma and beta per-feature.
    Introduced in: notebooks/normalization/stronger-normalization-free-transformers.ipynb"""

    def __init__(self, features: int, alpha: float = 0.5, shift: float = 0.0):
        super().__init__()
        check_positive("alpha", alpha)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.shift = nn.Parameter(torch.tensor(float(shift)))
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.erf(self.alpha * x + self.shift) + self.bias


class Pointwise(nn.Module):
    """gamma * (f(alpha * x + shift) + offset) + beta over the last dimension: alpha a learnable
    scalar, `shift` and `offset` fixed constants, gamma and beta per-feature (initialized at 1 and
    0). With f = erf, shift = offset = 0 it is Derf with its shift frozen at 0.
    Introduced in: notebooks/normalization/stronger-normalization-free-transformers.ipynb"""

    def __init__(self, features: int, fn: Callable[[torch.Tensor], torch.Tensor],
                 alpha: float = 0.5, shift: float = 0.0, offset: float = 0.0):
        super().__init__()
        check_positive("alpha", alpha)
        if not callable(fn):
            raise TypeError(f"fn == {fn!r}, must be a callable tensor -> tensor")
        self.fn, self.shift, self.offset = fn, float(shift), float(offset)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (self.fn(self.alpha * x + self.shift) + self.offset) + self.bias


def derf(alpha: float = 0.5, shift: float = 0.0):
    """A factory features -> Derf(features, alpha, shift), for `norm=` of the shared models.
    Introduced in: notebooks/normalization/stronger-normalization-free-transformers.ipynb"""
    check_positive("alpha", alpha)
    return lambda features: Derf(features, alpha=alpha, shift=shift)


def pointwise(fn: Callable[[torch.Tensor], torch.Tensor], alpha: float = 0.5, shift: float = 0.0,
              offset: float = 0.0):
    """A factory features -> Pointwise(features, fn, alpha, shift, offset), for `norm=`.
    Introduced in: notebooks/normalization/stronger-normalization-free-transformers.ipynb"""
    check_positive("alpha", alpha)
    return lambda features: Pointwise(features, fn, alpha=alpha, shift=shift, offset=offset)
