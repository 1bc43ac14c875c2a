"""Tanh layers that replace pre-layer normalization in a transformer.

- `DynamicTanh` (DyT, Zhu et al., 2025): y = gamma * tanh(alpha * x) + beta, with one learnable
  scalar alpha and per-feature gamma, beta. It needs no statistic of x, so nothing bounds the
  argument of the tanh: a large residual stream saturates it.
- `BoundedTanh` (BHyT, Byun et al., 2026): y = gamma * tanh(lam / kappa * x / rms(x)), where
  rms(x) = sqrt(mean_features(x^2) + eps) is computed per token. Dividing by rms(x) fixes the
  root-mean-square of the tanh's argument to lam / kappa whatever the scale of x, so with the
  authors' lam = 2, kappa = 10 the tanh works in its near-linear range (argument RMS 0.2) and the
  output is bounded by |gamma|. `lam` is a learnable scalar (initialized at `lam`), `kappa` a fixed
  constant, gamma a per-feature gain, as in the authors' code (github.com/MLAI-Yonsei/BHyT).

The authors' block also replaces the second normalization's statistic by an approximation
(variance of the input plus a term from the attention weights); here every layer computes its own
rms, which is the same map with exact statistics.

Introduced in: notebooks/normalization/bounded-hyperbolic-tangent.ipynb
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.validation import check_positive


class DynamicTanh(nn.Module):
    """DyT: gamma * tanh(alpha * x) + beta over the last dimension (`features` wide), alpha a
    learnable scalar initialized at `alpha`.
    Introduced in: notebooks/normalization/bounded-hyperbolic-tangent.ipynb"""

    def __init__(self, features: int, alpha: float = 0.5):
        super().__init__()
        check_positive("alpha", alpha)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.tanh(self.alpha * x) + self.bias


class BoundedTanh(nn.Module):
    """BHyT: gamma * tanh(lam / kappa * x / sqrt(mean(x^2) + eps)) over the last dimension
    (`features` wide); lam a learnable scalar initialized at `lam`, kappa fixed.
    Introduced in: notebooks/normalization/bounded-hyperbolic-tangent.ipynb"""

    def __init__(self, features: int, lam: float = 2.0, kappa: float = 10.0, eps: float = 1e-6):
        super().__init__()
        check_positive("lam", lam)
        check_positive("kappa", kappa)
        self.kappa, self.eps = float(kappa), float(eps)
        self.lam = nn.Parameter(torch.tensor(float(lam)))
        self.weight = nn.Parameter(torch.ones(features))

    def argument(self, x: torch.Tensor) -> torch.Tensor:
        """The tanh's argument lam / kappa * x / rms(x), per token."""
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.lam / self.kappa) * rstd * x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.tanh(self.argument(x))


def dynamic_tanh(alpha: float = 0.5):
    """A factory features -> DynamicTanh(features, alpha), for `norm=` of the shared models.
    Introduced in: notebooks/normalization/bounded-hyperbolic-tangent.ipynb"""
    return lambda features: DynamicTanh(features, alpha=alpha)


def bounded_tanh(lam: float = 2.0, kappa: float = 10.0):
    """A factory features -> BoundedTanh(features, lam, kappa), for `norm=` of the shared models.
    Introduced in: notebooks/normalization/bounded-hyperbolic-tangent.ipynb"""
    return lambda features: BoundedTanh(features, lam=lam, kappa=kappa)
