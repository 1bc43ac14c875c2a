"""Small models shared by the notebooks: an MLP with a choice of activation, normalization and
initialization, a weight-normalized linear layer, and a small CNN."""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "selu": nn.SELU, "elu": nn.ELU,
               "gelu": nn.GELU, "identity": nn.Identity}
NORMS = (None, "batch", "layer", "weight")
INITS = ("default", "lecun", "he", "xavier")


def _choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"{name} == {value!r}, must be one of {', '.join(map(repr, valid))}")


class WeightNormLinear(nn.Module):
    """A linear layer w = g * v / ||v|| (Salimans & Kingma, 2016, Eq. 2), one g per output unit.

    Introduced in: notebooks/normalization/weight-normalization.ipynb
    """

    def __init__(self, d_in: int, d_out: int, bias: bool = True, v_std: float = 0.05):
        super().__init__()
        self.v = nn.Parameter(torch.randn(d_out, d_in) * v_std)
        self.g = nn.Parameter(torch.ones(d_out))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        return self.g[:, None] * self.v / self.v.norm(dim=1, keepdim=True)

    def forward(self, x):
        return nn.functional.linear(x, self.weight, self.bias)

    @torch.no_grad()
    def data_dependent_init(self, x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """Set g = 1/sigma and b = -mu/sigma of t = v.x/||v|| on batch `x` (the paper's Sec. 2.2),
        so the layer's outputs on `x` have zero mean and unit variance per unit. Returns them."""
        t = nn.functional.linear(x, self.v / self.v.norm(dim=1, keepdim=True))
        mu, sigma = t.mean(0), t.std(0, unbiased=False)
        self.g.copy_(1 / (sigma + eps))
        if self.bias is not None:
            self.bias.copy_(-mu / (sigma + eps))
        return self(x)


def init_linear(layer: nn.Linear, scheme: str) -> None:
    """Initialize a linear layer's weights: LeCun normal N(0, 1/fan_in), He N(0, 2/fan_in),
    Xavier, or torch's default; biases to zero (except for the default)."""
    _choice("init", scheme, INITS)
    if scheme == "default":
        return
    fan_in = layer.weight.shape[1]
    std = {"lecun": 1 / math.sqrt(fan_in), "he": math.sqrt(2 / fan_in),
           "xavier": math.sqrt(2 / (fan_in + layer.weight.shape[0]))}[scheme]
    nn.init.normal_(layer.weight, 0.0, std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    """`depth` hidden layers of `width` units, each linear -> [norm] -> activation, then a linear
    read-out. `norm` is None, 'batch', 'layer' or 'weight' (weight normalization)."""

    def __init__(self, d_in: int, d_out: int, width: int = 64, depth: int = 2,
                 activation: str = "relu", norm: str | None = None, init: str = "default",
                 dropout: float = 0.0):
        super().__init__()
        _choice("activation", activation, tuple(ACTIVATIONS))
        _choice("norm", norm, NORMS)
        if depth < 1 or width < 1:
            raise ValueError(f"depth == {depth} and width == {width}, both must be >= 1")
        layers, d = [], d_in
        for _ in range(depth):
            linear = WeightNormLinear(d, width) if norm == "weight" else nn.Linear(d, width)
            if norm != "weight":
                init_linear(linear, init)
            layers.append(linear)
            if norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            elif norm == "layer":
                layers.append(nn.LayerNorm(width))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.AlphaDropout(dropout) if activation == "selu" else nn.Dropout(dropout))
            d = width
        readout = WeightNormLinear(d, d_out) if norm == "weight" else nn.Linear(d, d_out)
        if norm != "weight":
            init_linear(readout, init)
        layers.append(readout)
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)

    @torch.no_grad()
    def data_dependent_init(self, x: torch.Tensor) -> None:
        """Weight normalization's initialization, layer by layer on one batch (Sec. 2.2)."""
        for layer in self.net:
            x = layer.data_dependent_init(x) if isinstance(layer, WeightNormLinear) else layer(x)


class SmallCNN(nn.Module):
    """Two convolution blocks (conv -> [batch norm] -> ReLU -> max-pool) and a linear read-out,
    for 1-D signals (`dims=1`, e.g. mnist1d) or small images (`dims=2`, e.g. 8x8 digits)."""

    def __init__(self, in_channels: int, n_classes: int, length: int, dims: int = 1,
                 channels: int = 32, batch_norm: bool = False):
        super().__init__()
        _choice("dims", dims, (1, 2))
        conv, pool, bn = ((nn.Conv1d, nn.MaxPool1d, nn.BatchNorm1d) if dims == 1
                          else (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d))
        blocks, c = [], in_channels
        for _ in range(2):
            blocks += [conv(c, channels, 3, padding=1)]
            blocks += [bn(channels)] if batch_norm else []
            blocks += [nn.ReLU(), pool(2)]
            c = channels
        self.features = nn.Sequential(*blocks)
        self.readout = nn.Linear(channels * (length // 4) ** dims, n_classes)

    def forward(self, x):
        return self.readout(self.features(x).flatten(1))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
