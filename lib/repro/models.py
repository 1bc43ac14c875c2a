"""Small models shared by the notebooks: an MLP with a choice of activation, normalization and
initialization, weight-normalized linear and convolution layers, mean-only batch normalization,
the data-dependent initialization of weight normalization, a small CNN, and ensembles of copies
of one model trained in one vectorized call."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "selu": nn.SELU, "elu": nn.ELU,
               "gelu": nn.GELU, "identity": nn.Identity}
# None: the plain parameterization; "mean-only": mean-only batch norm after a plain layer;
# "weight+mean-only": weight normalization followed by mean-only batch norm (the paper's Sec. 2.3).
NORMS = (None, "batch", "layer", "weight", "mean-only", "weight+mean-only")
CNN_NORMS = (None, "batch", "weight", "mean-only", "weight+mean-only")
INITS = ("default", "lecun", "he", "xavier")


def check_choice(name, value, valid):
    """Raise a ValueError naming the valid values when `value` is not one of them."""
    if value not in valid:
        raise ValueError(f"{name} == {value!r}, must be one of {', '.join(map(repr, valid))}")


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-channel vector shaped to broadcast over (N, C, *spatial) tensors of `ndim` dims."""
    return t.view(1, -1, *([1] * (ndim - 2)))


class _WeightNorm(nn.Module):
    """w = g * v / ||v||, one g per output unit, ||v|| over all but the output dimension."""

    def __init__(self, shape: tuple, bias: bool, v_std: float):
        super().__init__()
        if not v_std > 0:
            raise ValueError(f"v_std == {v_std}, must be > 0")
        self.v = nn.Parameter(torch.randn(*shape) * v_std)
        self.g = nn.Parameter(torch.ones(shape[0]))
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None

    def v_norm(self) -> torch.Tensor:
        """||v|| per output unit, shape (d_out,)."""
        return self.v.flatten(1).norm(dim=1)

    def direction(self) -> torch.Tensor:
        """v / ||v||, the unit-norm direction of each output unit's weights."""
        return self.v / self.v_norm().view(-1, *([1] * (self.v.dim() - 1)))

    @property
    def weight(self) -> torch.Tensor:
        return self.g.view(-1, *([1] * (self.v.dim() - 1))) * self.direction()

    def _apply_weight(self, x, weight, bias):
        raise NotImplementedError  # the linear map or the convolution, in the subclasses

    def forward(self, x):
        return self._apply_weight(x, self.weight, self.bias)

    @torch.no_grad()
    def data_dependent_init(self, x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """Set g = 1/sigma[t] and b = -mu[t]/sigma[t] for t = v.x/||v|| on the batch `x` (Sec. 2.2),
        so that the outputs on `x` have zero mean and unit variance per unit (without a bias,
        only the unit variance). Returns the new outputs on `x`."""
        t = self._apply_weight(x, self.direction(), None)
        dims = [d for d in range(t.dim()) if d != 1]
        mu, sigma = t.mean(dims), t.std(dims, correction=0) + eps
        self.g.copy_(1 / sigma)
        if self.bias is not None:
            self.bias.copy_(-mu / sigma)
        return self(x)


class WeightNormLinear(_WeightNorm):
    """A linear layer w = g * v / ||v|| (Salimans & Kingma, 2016, Eq. 2), one g per output unit;
    v starts as N(0, v_std^2) as in the paper.

    Introduced in: notebooks/normalization/weight-normalization.ipynb
    """

    def __init__(self, d_in: int, d_out: int, bias: bool = True, v_std: float = 0.05):
        super().__init__((d_out, d_in), bias, v_std)

    def _apply_weight(self, x, weight, bias):
        return nn.functional.linear(x, weight, bias)


class WeightNormConv(_WeightNorm):
    """A 1-D (`dims=1`) or 2-D convolution with weight normalization, one g per output channel.

    Introduced in: notebooks/normalization/weight-normalization.ipynb
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dims: int = 1,
                 padding: int = 0, bias: bool = True, v_std: float = 0.05):
        check_choice("dims", dims, (1, 2))
        super().__init__((out_channels, in_channels) + (kernel_size,) * dims, bias, v_std)
        self.dims, self.padding = dims, padding

    def _apply_weight(self, x, weight, bias):
        conv = nn.functional.conv1d if self.dims == 1 else nn.functional.conv2d
        return conv(x, weight, bias, padding=self.padding)


WEIGHT_NORMS = (WeightNormLinear, WeightNormConv)


class MeanOnlyBatchNorm(nn.Module):
    """Mean-only batch normalization (Sec. 2.3): t - mu[t] + b, with mu[t] the minibatch mean per
    unit (channel) in training and its running average in eval mode; no division by sigma.

    Introduced in: notebooks/normalization/weight-normalization.ipynb
    """

    def __init__(self, num_features: int, momentum: float = 0.1):
        super().__init__()
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum == {momentum}, must be in (0, 1]")
        self.momentum = momentum
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x):
        if x.dim() < 2 or x.shape[1] != self.bias.numel():
            raise ValueError(f"input of shape {tuple(x.shape)}: dimension 1 must have "
                             f"{self.bias.numel()} units")
        if self.training:
            mu = x.mean([d for d in range(x.dim()) if d != 1])
            with torch.no_grad():
                self.running_mean.lerp_(mu.detach(), self.momentum)
        else:
            mu = self.running_mean
        return x - _channel_view(mu, x.dim()) + _channel_view(self.bias, x.dim())


AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, _WeightNorm)


@torch.no_grad()
def _rescale(layer: nn.Module, mu: torch.Tensor, sigma: torch.Tensor) -> None:
    """Make an affine layer's new output (old output - mu) / sigma (or old / sigma without bias)."""
    if isinstance(layer, _WeightNorm):
        layer.g.div_(sigma)
    else:
        layer.weight.div_(sigma.view(-1, *([1] * (layer.weight.dim() - 1))))
    if layer.bias is not None:
        layer.bias.sub_(mu).div_(sigma)


@torch.no_grad()
def data_dependent_init(model: nn.Module, x: torch.Tensor, eps: float = 1e-8) -> nn.Module:
    """The paper's initialization (Sec. 2.2), layer after layer on one batch `x`: every affine layer
    (linear, convolution, weight-normalized or not) is rescaled so its outputs on `x` have zero mean
    and unit variance per unit; a layer without bias gets only the unit variance. Works for plain
    networks too (the weights themselves are rescaled). Batch-norm layers run on `x` in train mode.

    Introduced in: notebooks/normalization/weight-normalization.ipynb
    """
    def standardize(layer, inputs, out):
        dims = [d for d in range(out.dim()) if d != 1]
        mu, sigma = out.mean(dims), out.std(dims, correction=0) + eps
        _rescale(layer, mu, sigma)
        centred = out - _channel_view(mu, out.dim()) if layer.bias is not None else out
        return centred / _channel_view(sigma, out.dim())

    handles = [m.register_forward_hook(standardize) for m in model.modules() if isinstance(m, AFFINE)]
    if not handles:
        raise ValueError(f"{type(model).__name__} has no linear or convolution layer to initialize")
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return model


@torch.no_grad()
def copy_weights(src: nn.Module, dst: nn.Module) -> nn.Module:
    """Give `dst` the effective weights w (and biases) of `src`, affine layer by affine layer, across
    parameterizations: a plain layer gets w itself, a weight-normalized one g = ||w|| and v along w
    (keeping its own ||v||). So two nets can start from the same function, as in the paper's
    Sec. 5.1. A bias that `dst` lacks is dropped (a mean-only BN after it has its own).

    Introduced in: notebooks/normalization/weight-normalization.ipynb
    """
    src_layers = [m for m in src.modules() if isinstance(m, AFFINE)]
    dst_layers = [m for m in dst.modules() if isinstance(m, AFFINE)]
    if len(src_layers) != len(dst_layers):
        raise ValueError(f"src has {len(src_layers)} linear/convolution layers and dst "
                         f"{len(dst_layers)}; they must match")
    for i, (a, b) in enumerate(zip(src_layers, dst_layers)):
        w = a.weight.detach()
        if w.shape != (b.v if isinstance(b, _WeightNorm) else b.weight).shape:
            raise ValueError(f"layer {i}: weight shapes {tuple(w.shape)} and "
                             f"{tuple(b.weight.shape)} differ")
        if isinstance(b, _WeightNorm):
            w_norm = w.flatten(1).norm(dim=1)
            b.v.copy_(w * (b.v_norm() / w_norm).view(-1, *([1] * (w.dim() - 1))))
            b.g.copy_(w_norm)
        else:
            b.weight.copy_(w)
        if b.bias is not None:
            b.bias.copy_(a.bias if a.bias is not None else torch.zeros_like(b.bias))
    return dst


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


def _linear(d_in: int, d_out: int, norm, init: str, bias: bool = True) -> nn.Module:
    if norm in ("weight", "weight+mean-only"):
        return WeightNormLinear(d_in, d_out, bias=bias)
    layer = nn.Linear(d_in, d_out, bias=bias)
    init_linear(layer, init)
    return layer


class MLP(nn.Module):
    """`depth` hidden layers of `width` units, each linear -> [norm] -> activation, then a linear
    read-out. `norm` is None (plain), 'batch', 'layer', 'weight' (weight normalization),
    'mean-only' (mean-only batch norm) or 'weight+mean-only'; with the weight-normalized ones the
    read-out is weight-normalized too, and `init` must stay 'default' (v starts as N(0, 0.05^2))."""

    def __init__(self, d_in: int, d_out: int, width: int = 64, depth: int = 2,
                 activation: str = "relu", norm: str | None = None, init: str = "default",
                 dropout: float = 0.0):
        super().__init__()
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_choice("norm", norm, NORMS)
        check_choice("init", init, INITS)
        if depth < 1 or width < 1:
            raise ValueError(f"depth == {depth} and width == {width}, both must be >= 1")
        if norm in ("weight", "weight+mean-only") and init != "default":
            raise ValueError(f"init == {init!r} with norm == {norm!r}: weight-normalized layers "
                             "draw v from N(0, 0.05^2); use data_dependent_init to set the scale")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout == {dropout}, must be in [0, 1)")
        layers, d = [], d_in
        for _ in range(depth):
            # mean-only BN has its own bias, so the layer before it goes without (as in the paper)
            layers.append(_linear(d, width, norm, init, bias=norm not in ("mean-only", "weight+mean-only")))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            elif norm == "layer":
                layers.append(nn.LayerNorm(width))
            elif norm in ("mean-only", "weight+mean-only"):
                layers.append(MeanOnlyBatchNorm(width))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.AlphaDropout(dropout) if activation == "selu" else nn.Dropout(dropout))
            d = width
        layers.append(_linear(d, d_out, norm if norm != "mean-only" else None, init))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)

    def data_dependent_init(self, x: torch.Tensor) -> "MLP":
        """Weight normalization's initialization, layer by layer on one batch (Sec. 2.2)."""
        return data_dependent_init(self, x)


class SmallCNN(nn.Module):
    """Two convolution blocks (conv -> [norm] -> ReLU -> max-pool) and a linear read-out, for 1-D
    signals (`dims=1`, e.g. mnist1d) or small images (`dims=2`, e.g. 8x8 digits). `norm` is None,
    'batch', 'weight', 'mean-only' or 'weight+mean-only' (`batch_norm=True` is norm='batch')."""

    def __init__(self, in_channels: int, n_classes: int, length: int, dims: int = 1,
                 channels: int = 32, batch_norm: bool = False, norm: str | None = None):
        super().__init__()
        check_choice("dims", dims, (1, 2))
        check_choice("norm", norm, CNN_NORMS)
        if batch_norm:
            if norm not in (None, "batch"):
                raise ValueError(f"batch_norm=True contradicts norm == {norm!r}")
            norm = "batch"
        if length < 4:
            raise ValueError(f"length == {length}, must be >= 4 (two 2x poolings)")
        conv, pool, bn = ((nn.Conv1d, nn.MaxPool1d, nn.BatchNorm1d) if dims == 1
                          else (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d))
        weight_norm = norm in ("weight", "weight+mean-only")
        bias = norm not in ("mean-only", "weight+mean-only")
        blocks, c = [], in_channels
        for _ in range(2):
            blocks += [WeightNormConv(c, channels, 3, dims=dims, padding=1, bias=bias) if weight_norm
                       else conv(c, channels, 3, padding=1, bias=bias)]
            blocks += [bn(channels)] if norm == "batch" else []
            blocks += [MeanOnlyBatchNorm(channels)] if norm in ("mean-only", "weight+mean-only") else []
            blocks += [nn.ReLU(), pool(2)]
            c = channels
        self.features = nn.Sequential(*blocks)
        d = channels * (length // 4) ** dims
        self.readout = WeightNormLinear(d, n_classes) if weight_norm else nn.Linear(d, n_classes)

    def forward(self, x):
        return self.readout(self.features(x).flatten(1))

    def data_dependent_init(self, x: torch.Tensor) -> "SmallCNN":
        """Weight normalization's initialization, layer by layer on one batch (Sec. 2.2)."""
        return data_dependent_init(self, x)


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


class Ensemble(nn.Module):
    """Copies of one architecture with their own weights, run in one vectorized call
    (torch.func.vmap over their stacked parameters): `ensemble(*inputs)` takes inputs with a
    leading member dimension and returns outputs with one, so several models train in one loop
    for little more than the cost of one. `members()` gives them back as ordinary modules.
    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb"""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        params, buffers = stack_module_state(models)
        # parameter names may not contain dots: "branch.0.weight" is kept as "branch:0:weight"
        self.stacked = nn.ParameterDict({name.replace(".", ":"): nn.Parameter(p)
                                         for name, p in params.items()})
        self.stacked_buffers = buffers
        # plain attributes, not submodules: only the stacked weights are the ensemble's parameters
        object.__setattr__(self, "_models", list(models))
        object.__setattr__(self, "_base", copy.deepcopy(models[0]).to("meta"))

    def __len__(self) -> int:
        return len(self._models)

    def forward(self, *inputs):
        params = {name.replace(":", "."): p for name, p in self.stacked.items()}
        call = lambda p, b, *x: functional_call(self._base, (p, b), x)  # noqa: E731
        return vmap(call)(params, self.stacked_buffers, *inputs)

    @torch.no_grad()
    def members(self) -> list[nn.Module]:
        """The member models with the ensemble's current weights, in eval mode."""
        for e, model in enumerate(self._models):
            for name, p in model.named_parameters():
                p.copy_(self.stacked[name.replace(".", ":")][e])
            model.eval()
        return self._models


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
