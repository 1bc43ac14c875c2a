"""Small models shared by the notebooks: an MLP with a choice of activation, normalization and
initialization, a small CNN and the outputs of chosen layers (copies of one model trained at once: `stacked`).

MLP and SmallCNN build their layers through factories (`linear`, `conv`, `norm`), so a theme can
swap in its own layers (weight normalization does) without a second copy of the network.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from . import activations
from .validation import check_choice, check_int

NORMS = (None, "batch", "layer")
INITS = ("default", "lecun", "he", "xavier")
# the layers whose outputs are pre-activations (`layer_outputs`' default)
AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def init_linear(layer: nn.Linear, scheme: str) -> None:
    """Initialize a linear layer's weights: LeCun normal N(0, 1/fan_in), He N(0, 2/fan_in),
    Xavier, or torch's default; biases to zero (except for the default)."""
    check_choice("init", scheme, INITS)
    if scheme == "default":
        return
    fan_in = layer.weight.shape[1]
    std = {"lecun": 1 / math.sqrt(fan_in), "he": math.sqrt(2 / fan_in),
           "xavier": math.sqrt(2 / (fan_in + layer.weight.shape[0]))}[scheme]
    nn.init.normal_(layer.weight, 0.0, std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _norm_factory(norm, names: dict) -> Callable | None:
    """None, a layer factory width -> module, or one of the named norms in `names`."""
    if norm is None or callable(norm):
        return norm
    check_choice("norm", norm, (None, *names))
    return names[norm]


class MLP(nn.Module):
    """`depth` hidden layers of `width` units, each linear -> [norm] -> activation [-> dropout],
    then a linear read-out.

    `norm` is None, 'batch', 'layer', or a factory width -> normalization layer. `linear`, a
    factory (d_in, d_out, bias) -> layer, replaces nn.Linear (initialized by `init`) in every
    layer, the read-out included; `hidden_bias=False` drops the hidden layers' biases (for a norm
    that brings its own)."""

    def __init__(self, d_in: int, d_out: int, width: int = 64, depth: int = 2,
                 activation: str = "relu", norm: str | Callable | None = None, init: str = "default",
                 dropout: float = 0.0, linear: Callable | None = None, hidden_bias: bool = True):
        super().__init__()
        act = activations.get(activation)
        norm_layer = _norm_factory(norm, {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm})
        check_choice("init", init, INITS)
        check_int("depth", depth)
        check_int("width", width)
        if linear is not None and init != "default":
            raise ValueError(f"init == {init!r} with a `linear` factory: init applies to nn.Linear "
                             "layers only; the factory initializes its own layers")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout == {dropout}, must be in [0, 1)")

        def affine(d_from, d_to, bias):
            if linear is not None:
                return linear(d_from, d_to, bias=bias)
            layer = nn.Linear(d_from, d_to, bias=bias)
            init_linear(layer, init)
            return layer

        layers, d = [], d_in
        for _ in range(depth):
            layers.append(affine(d, width, hidden_bias))
            if norm_layer is not None:
                layers.append(norm_layer(width))
            layers.append(act.module())
            if dropout:
                layers.append(nn.AlphaDropout(dropout) if activation == "selu" else nn.Dropout(dropout))
            d = width
        layers.append(affine(d, d_out, True))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class SmallCNN(nn.Module):
    """Two convolution blocks (conv -> [norm] -> ReLU -> max-pool) and a linear read-out, for 1-D
    signals (`dims=1`, e.g. mnist1d) or small images (`dims=2`, e.g. 8x8 digits).

    `norm` is None, 'batch' or a factory channels -> normalization layer. `conv`, a factory
    (in_channels, out_channels, kernel_size, padding, bias) -> layer, replaces nn.Conv1d/2d, and
    `linear`, (d_in, d_out) -> layer, the read-out; `bias=False` drops the convolutions' biases."""

    def __init__(self, in_channels: int, n_classes: int, length: int, dims: int = 1,
                 channels: int = 32, norm: str | Callable | None = None, conv: Callable | None = None,
                 linear: Callable | None = None, bias: bool = True):
        super().__init__()
        check_choice("dims", dims, (1, 2))
        if length < 4:
            raise ValueError(f"length == {length}, must be >= 4 (two 2x poolings)")
        plain_conv, pool, batch_norm = ((nn.Conv1d, nn.MaxPool1d, nn.BatchNorm1d) if dims == 1
                                        else (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d))
        norm_layer = _norm_factory(norm, {"batch": batch_norm})
        conv = conv or plain_conv
        blocks, c = [], in_channels
        for _ in range(2):
            blocks.append(conv(c, channels, 3, padding=1, bias=bias))
            if norm_layer is not None:
                blocks.append(norm_layer(channels))
            blocks += [nn.ReLU(), pool(2)]
            c = channels
        self.features = nn.Sequential(*blocks)
        self.readout = (linear or nn.Linear)(channels * (length // 4) ** dims, n_classes)

    def forward(self, x):
        return self.readout(self.features(x).flatten(1))


def layer_outputs(model: nn.Module, x: torch.Tensor, layer_types=AFFINE) -> list[torch.Tensor]:
    """The outputs of every module of `layer_types` in `model` on `x`, in the order they run,
    detached (by default the affine layers' outputs: the pre-activations). The model's mode is
    left as it is. Introduced in: notebooks/normalization/weight-normalization.ipynb"""
    outs = []
    hooks = [m.register_forward_hook(lambda module, inputs, out: outs.append(out.detach()))
             for m in model.modules() if isinstance(m, layer_types)]
    if not hooks:
        raise ValueError(f"{type(model).__name__} has no module of types "
                         f"{', '.join(t.__name__ for t in layer_types)}")
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return outs


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
