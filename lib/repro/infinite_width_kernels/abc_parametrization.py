"""abc-parametrizations of an MLP: the standard (SP), neural-tangent (NTK) and maximal-update (muP)
scalings of Yang & Hu (2021; defined in Sec. 1, "abc-parametrizations", of arXiv 2011.14522).

Every weight matrix is used as W = n^(-a) w with w drawn from N(0, n^(-2b)) and trained by SGD
with a learning rate eta n^(-c) (c = 0 for all three here), n the hidden width. The three
parametrizations differ only in the exponents (a, b) of the input, hidden and output layers.
The input layer also divides by sqrt(d_in), a width-independent constant, so that inputs with
O(1) coordinates give O(1) preactivations for any input dimension.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core import activations
from ..core.validation import check_choice

# (a, b) of the input, hidden and output layers.
PARAMETRIZATIONS = {
    "sp": ((0.0, 0.0), (0.0, 0.5), (0.0, 0.5)),
    "ntk": ((0.0, 0.0), (0.5, 0.0), (0.5, 0.0)),
    "mup": ((-0.5, 0.5), (0.0, 0.5), (0.5, 0.5)),
}


class AbcLinear(nn.Module):
    """y = multiplier * w x + bias_multiplier * b, with w ~ N(0, std^2) and b ~ N(0, bias_std^2).
    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb"""

    def __init__(self, d_in: int, d_out: int, multiplier: float, std: float,
                 bias_multiplier: float = 0.0, bias_std: float = 1.0):
        super().__init__()
        self.multiplier, self.bias_multiplier = multiplier, bias_multiplier
        self.weight = nn.Parameter(torch.randn(d_out, d_in) * std)
        self.bias = nn.Parameter(torch.randn(d_out) * bias_std) if bias_multiplier else None

    def effective_weight(self) -> torch.Tensor:
        """The matrix the layer applies, multiplier * w."""
        return self.multiplier * self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.effective_weight().T
        return y if self.bias is None else y + self.bias_multiplier * self.bias


class ParametrizedMLP(nn.Module):
    """An MLP with `depth` hidden layers of `width` units in the SP, NTK or muP parametrization.

    `weight_std` scales every layer's initial weights (sqrt(2) for ReLU keeps the forward
    variance), `bias` is the bias scale beta (0: no biases). Hidden biases scale like the input
    layer, the output bias like an O(1) parameter, as in Yang & Hu's treatment of biases.
    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """

    def __init__(self, d_in: int, width: int, d_out: int = 1, depth: int = 1,
                 parametrization: str = "ntk", activation: str = "relu",
                 weight_std: float = 1.0, bias: float = 0.0):
        super().__init__()
        check_choice("parametrization", parametrization, tuple(PARAMETRIZATIONS))
        act = activations.get(activation)
        if min(d_in, width, d_out, depth) < 1:
            raise ValueError(f"d_in, width, d_out and depth must be >= 1, got "
                             f"{d_in}, {width}, {d_out}, {depth}")
        self.parametrization, self.width = parametrization, width
        (a_in, b_in), (a_hid, b_hid), (a_out, b_out) = PARAMETRIZATIONS[parametrization]
        n = float(width)
        hidden_bias = dict(bias_multiplier=bias * n ** -a_in, bias_std=n ** -b_in)
        layers = [AbcLinear(d_in, width, n ** -a_in / math.sqrt(d_in), weight_std * n ** -b_in,
                            **hidden_bias)]
        layers += [AbcLinear(width, width, n ** -a_hid, weight_std * n ** -b_hid, **hidden_bias)
                   for _ in range(depth - 1)]
        self.hidden_layers = nn.ModuleList(layers)
        self.readout = AbcLinear(width, d_out, n ** -a_out, weight_std * n ** -b_out,
                                 bias_multiplier=bias, bias_std=1.0)
        self.activation = act.module()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The post-activations of every hidden layer, first to last."""
        out = []
        for layer in self.hidden_layers:
            x = self.activation(layer(x))
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x)[-1])


# --- measuring feature learning across widths -----------------------------------------------------

def feature_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """Root-mean-square change of one feature coordinate, sqrt(mean((after - before)^2)), over a
    matrix of features (examples x width): Theta(1) in a feature-learning limit, Theta(n^-1/2) in a
    kernel limit (Yang & Hu 2021, Dynamical Dichotomy).
    Introduced in: notebooks/infinite-width-kernels/feature-learning-in-infinite-width-neural-networks.ipynb
    """
    if before.shape != after.shape:
        raise ValueError(f"before and after must have the same shape, got {tuple(before.shape)} "
                         f"and {tuple(after.shape)}")
    return (after - before).double().pow(2).mean().sqrt().item()


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor,
                 test_features: torch.Tensor, ridge: float = 0.1) -> torch.Tensor:
    """Predicted test labels of a ridge-regression probe on frozen features.

    The features are standardized on the training set and divided by sqrt(width), a constant
    column is appended, and one-hot targets are fitted with penalty `ridge` (solved in the
    examples x examples kernel form, so a width larger than the training set costs nothing extra).
    Dividing by sqrt(width) makes the kernel, and so the meaning of `ridge`, width-independent.
    Introduced in: notebooks/infinite-width-kernels/feature-learning-in-infinite-width-neural-networks.ipynb
    """
    if train_features.ndim != 2 or test_features.ndim != 2 or \
            train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"features must be (examples, width) matrices of the same width, got "
                         f"{tuple(train_features.shape)} and {tuple(test_features.shape)}")
    if len(train_labels) != len(train_features):
        raise ValueError(f"{len(train_labels)} labels for {len(train_features)} training examples")
    if not ridge > 0:
        raise ValueError(f"ridge == {ridge}, must be > 0")
    mean, std = train_features.mean(0), train_features.std(0) + 1e-8
    width = train_features.shape[1]
    a = ((train_features - mean) / std).double() / math.sqrt(width)
    b = ((test_features - mean) / std).double() / math.sqrt(width)
    targets = torch.nn.functional.one_hot(train_labels.long()).double()
    kernel = a @ a.T + 1.0
    alpha = torch.linalg.solve(kernel + ridge * torch.eye(len(a), dtype=a.dtype, device=a.device),
                               targets)
    return ((b @ a.T + 1.0) @ alpha).argmax(1)


def accuracy_gain(predicted: torch.Tensor, baseline: torch.Tensor,
                  labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy of `predicted` minus accuracy of `baseline` on the same test labels, and the
    standard error of that paired difference (from the examples on which exactly one is right).
    Introduced in: notebooks/infinite-width-kernels/feature-learning-in-infinite-width-neural-networks.ipynb
    """
    if not predicted.shape == baseline.shape == labels.shape or labels.ndim != 1 or not len(labels):
        raise ValueError(f"predicted, baseline and labels must be equally long vectors, got "
                         f"{tuple(predicted.shape)}, {tuple(baseline.shape)}, {tuple(labels.shape)}")
    diff = (predicted == labels).double() - (baseline == labels).double()  # in {-1, 0, 1}
    n = len(labels)
    return diff.mean().item(), (diff.var(unbiased=False) / n).sqrt().item()
