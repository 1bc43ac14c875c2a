"""Batch normalization without gradient explosion (Meterez et al., 2024): the batch-normalized MLP
whose gradients stay bounded at any depth, and the activation shaping that extends it to
non-linear activations.

- `BatchScale`: batch normalization without mean reduction, the variant the paper's theory and
  its authors' code use: every unit is divided by its root mean square over the batch.
- `deep_mlp`: `repro.core.models.MLP` with that normalization (or any other factory), no hidden
  biases, and orthogonal or Gaussian weights.
- `ShapedActivation` and `shape_activations`: the activation of layer l applied to l^exponent
  times its input (exponent -0.4 in the authors' code), which brings deep layers closer to linear.
- `isometry_gap`: -log of `signal.isometry`, the paper's measure of how far a batch's Gram matrix
  is from a multiple of the identity.

Introduced in: notebooks/normalization/towards-training-without-depth-limits.ipynb
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..core.models import MLP
from ..core.validation import check_choice
from . import signal

WEIGHT_INITS = ("orthogonal", "gaussian")


class BatchScale(nn.Module):
    """Batch normalization without mean reduction and without an affine map: each unit (column of
    a batch (n, d)) divided by its root mean square over the n examples, so that every column has
    squared norm n. On a batch whose columns have mean zero this is nn.BatchNorm1d(affine=False) in
    training mode. Introduced in: notebooks/normalization/towards-training-without-depth-limits.ipynb"""

    def __init__(self, num_features: int | None = None, eps: float = 0.0):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(0, keepdim=True) + self.eps)


class ShapedActivation(nn.Module):
    """activation(gain * x): the shaped activation of one layer. Introduced in:
    notebooks/normalization/towards-training-without-depth-limits.ipynb"""

    def __init__(self, activation: nn.Module, gain: float):
        super().__init__()
        self.activation, self.gain = activation, float(gain)

    def forward(self, x):
        return self.activation(self.gain * x)

    def extra_repr(self) -> str:
        return f"gain={self.gain:.4g}"


def shape_activations(model: nn.Module, exponent: float, types=(nn.Tanh, nn.Identity, nn.ReLU,
                                                                nn.SELU, nn.ELU, nn.GELU)) -> nn.Module:
    """Replace, in place, the l-th activation module of `model` (a module of `types`, l = 1, 2, ...
    in the order of model.modules()) by ShapedActivation(it, l ** exponent); returns the model.
    Introduced in: notebooks/normalization/towards-training-without-depth-limits.ipynb"""
    targets = [(parent, name, child) for parent in model.modules()
               for name, child in parent.named_children() if isinstance(child, types)]
    for layer, (parent, name, child) in enumerate(targets, start=1):
        setattr(parent, name, ShapedActivation(child, layer ** exponent))
    return model


def init_weights(model: nn.Module, scheme: str) -> nn.Module:
    """Every nn.Linear weight orthogonal (torch's nn.init.orthogonal_: orthonormal rows or
    columns) or Gaussian N(0, 1/fan_in); biases to zero. Returns the model.
    Introduced in: notebooks/normalization/towards-training-without-depth-limits.ipynb"""
    check_choice("scheme", scheme, WEIGHT_INITS)
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            if scheme == "orthogonal":
                nn.init.orthogonal_(layer.weight)
            else:
                nn.init.normal_(layer.weight, 0.0, 1 / math.sqrt(layer.weight.shape[1]))
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return model


def deep_mlp(d_in: int, d_out: int, width: int, depth: int, *, activation: str = "identity",
             weights: str = "orthogonal", norm: Callable | None = BatchScale,
             shaping: float = 0.0) -> MLP:
    """The paper's MLP: `depth` hidden layers linear (no bias) -> norm -> activation, then a linear
    read-out; weights orthogonal or Gaussian; shaping != 0 applies the activation of hidden layer l
    to l**shaping times its input. Introduced in:
    notebooks/normalization/towards-training-without-depth-limits.ipynb"""
    model = MLP(d_in, d_out, width=width, depth=depth, activation=activation, norm=norm,
                hidden_bias=False)
    init_weights(model, weights)
    if shaping:
        shape_activations(model, shaping)
    return model


def isometry_gap(h: torch.Tensor) -> float:
    """The isometry gap -log(det(G)^(1/n) / (tr(G)/n)) of the Gram matrix G = h h^T of a batch h
    (n, ...): 0 exactly for orthogonal rows of equal norm, +inf for linearly dependent rows.
    Introduced in: notebooks/normalization/towards-training-without-depth-limits.ipynb"""
    value = signal.isometry(h)
    return math.inf if value <= 0 else -math.log(value)
