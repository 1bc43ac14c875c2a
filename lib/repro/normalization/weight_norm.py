"""Weight normalization (Salimans & Kingma, 2016): linear and convolution layers w = g v / ||v||
(Sec. 2, Eq. 2), the data-dependent initialization (Sec. 3, Eq. 5-6), mean-only batch
normalization (Sec. 4, Eq. 7), and the MLP and CNN of `repro.core.models` built from these layers.
Section and equation numbers are those of the NeurIPS 2016 version.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from ..core import models
from ..core.validation import check_choice

# None: the plain parameterization; "mean-only": mean-only batch norm after a plain layer;
# "weight+mean-only": weight normalization followed by mean-only batch norm (the paper's Sec. 4).
NORMS = (None, "batch", "layer", "weight", "mean-only", "weight+mean-only")
CNN_NORMS = (None, "batch", "weight", "mean-only", "weight+mean-only")


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
        # g v / ||v|| in one fused op (the one torch's own weight_norm calls); about 1.5x faster per
        # training step of a small MLP on a CPU than composing it from norm, division and product
        return torch._weight_norm(self.v, self.g.view(-1, *([1] * (self.v.dim() - 1))), 0)

    def _apply_weight(self, x, weight, bias):
        raise NotImplementedError  # the linear map or the convolution, in the subclasses

    def forward(self, x):
        return self._apply_weight(x, self.weight, self.bias)

    @torch.no_grad()
    def data_dependent_init(self, x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """Set g = 1/sigma[t] and b = -mu[t]/sigma[t] for t = v.x/||v|| on the batch `x` (Sec. 3,
        Eq. 5-6), so that the outputs on `x` have zero mean and unit variance per unit (without a
        bias, only the unit variance). Returns the new outputs on `x`."""
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
    """Mean-only batch normalization (Sec. 4, Eq. 7): t - mu[t] + b, with mu[t] the minibatch mean
    per unit (channel) in training and its running average in eval mode; no division by sigma.

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
        return x + _channel_view(self.bias - mu, x.dim())  # one pass over x, not two


AFFINE = models.AFFINE + (_WeightNorm,)  # the layers data_dependent_init and copy_weights treat


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
    """The paper's initialization (Sec. 3, Eq. 5-6), layer after layer on one batch `x`: every
    affine layer (linear, convolution, weight-normalized or not) is rescaled so its outputs on `x`
    have zero mean and unit variance per unit; a layer without bias gets only the unit variance.
    Works for plain networks too (the weights themselves are rescaled), as the paper notes in
    Sec. 3. Batch-norm layers run on `x` in train mode.

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


def _layers(norm: str | None) -> tuple:
    """(the norm to pass on, weight-normalized layers?, biases before the norm?) for `norm`."""
    if norm in (None, "batch", "layer"):
        return norm, False, True
    mean_only = norm.endswith("mean-only")
    # mean-only BN has its own bias, so the layer before it goes without (as in the paper)
    return (MeanOnlyBatchNorm if mean_only else None), norm.startswith("weight"), not mean_only


def mlp(d_in: int, d_out: int, *, norm: str | None = None, init: str = "default", **kw) -> models.MLP:
    """A `repro.core.models.MLP` whose `norm` may also be 'weight', 'mean-only' or
    'weight+mean-only'. With weight normalization every layer, the read-out included, is a
    `WeightNormLinear`, and `init` must stay 'default' (v starts as N(0, 0.05^2)).

    Introduced in: notebooks/normalization/weight-normalization.ipynb
    """
    check_choice("norm", norm, NORMS)
    norm_layer, weight_normalized, bias = _layers(norm)
    if weight_normalized:
        if init != "default":
            raise ValueError(f"init == {init!r} with norm == {norm!r}: weight-normalized layers "
                             "draw v from N(0, 0.05^2); use data_dependent_init to set the scale")
        kw["linear"] = WeightNormLinear
    return models.MLP(d_in, d_out, norm=norm_layer, init=init, hidden_bias=bias, **kw)


def small_cnn(in_channels: int, n_classes: int, length: int, *, dims: int = 1,
              norm: str | None = None, **kw) -> models.SmallCNN:
    """A `repro.core.models.SmallCNN` whose `norm` may also be 'weight', 'mean-only' or
    'weight+mean-only' (weight normalization in both convolutions and the read-out).

    Introduced in: notebooks/normalization/weight-normalization.ipynb
    """
    check_choice("norm", norm, CNN_NORMS)
    norm_layer, weight_normalized, bias = _layers(norm)
    if weight_normalized:
        kw.update(conv=functools.partial(WeightNormConv, dims=dims), linear=WeightNormLinear)
    return models.SmallCNN(in_channels, n_classes, length, dims=dims, norm=norm_layer, bias=bias, **kw)
