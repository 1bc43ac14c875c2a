"""EvoNorm (Liu, Brock, Simonyan & Le, 2020): normalization-activation layers found by evolution,
each replacing a normalization layer AND the activation after it.

For a feature map x of shape (N, C, H, W), with per-channel parameters gamma, beta and v
(gamma = v = 1, beta = 0 at initialization):

- EvoNorm-B0 (batch-dependent): y = x / max(s_b(x), v * x + s_i(x)) * gamma + beta, where
  s_b is the batch standard deviation of each channel over (N, H, W) (its moving average in
  evaluation mode, as batch norm does) and s_i the instance standard deviation over (H, W).
- EvoNorm-S0 (sample-based): y = x * sigmoid(v * x) / s_g(x) * gamma + beta, where s_g is the
  standard deviation over (H, W) and the channels of x's group (channels split into `groups`
  groups, as GroupNorm does). No statistic crosses the batch, so one example's output does not
  depend on the others.

Every standard deviation is sqrt(variance + eps), the variance the biased one, as in the
authors' TensorFlow code (tensorflow/tpu, models/official/resnet/resnet_model.py); their decay
0.9 of the moving variance is `momentum=0.1` here. With `nonlinearity=False` both layers reduce
to the affine map x * gamma + beta, as the authors' code does.

`cnn` is the chapter's SmallCNN with a norm-activation factory in place of norm -> ReLU.

Introduced in: notebooks/normalization/evolving-normalization-activation-layers.ipynb
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.validation import check_int, check_positive


def _param(channels: int, value: float) -> nn.Parameter:
    return nn.Parameter(torch.full((1, channels, 1, 1), float(value)))


def instance_std(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """sqrt(Var + eps) of each (example, channel) over the spatial positions, shape (N, C, 1, 1).
    Introduced in: notebooks/normalization/evolving-normalization-activation-layers.ipynb"""
    return (x.var(dim=(2, 3), unbiased=False, keepdim=True) + eps).sqrt()


def group_std(x: torch.Tensor, groups: int, eps: float = 1e-5) -> torch.Tensor:
    """sqrt(Var + eps) of each (example, group of channels) over the group's channels and the
    spatial positions, broadcast back to x's shape (N, C, H, W): GroupNorm's denominator.
    Introduced in: notebooks/normalization/evolving-normalization-activation-layers.ipynb"""
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"groups == {groups} does not divide the {c} channels")
    grouped = x.reshape(n, groups, c // groups, h, w)
    std = (grouped.var(dim=(2, 3, 4), unbiased=False, keepdim=True) + eps).sqrt()
    return std.expand_as(grouped).reshape(n, c, h, w)


class EvoNormB0(nn.Module):
    """EvoNorm-B0: x / max(batch std, v x + instance std) * gamma + beta; the batch variance is
    tracked as a moving average (weight `momentum` on the new batch) and used in eval mode.
    Introduced in: notebooks/normalization/evolving-normalization-activation-layers.ipynb"""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1,
                 nonlinearity: bool = True):
        super().__init__()
        check_int("channels", channels)
        check_positive("eps", eps)
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum == {momentum}, must be in (0, 1]")
        self.eps, self.momentum, self.nonlinearity = eps, momentum, nonlinearity
        self.gamma, self.beta, self.v = _param(channels, 1), _param(channels, 0), _param(channels, 1)
        self.register_buffer("running_var", torch.ones(1, channels, 1, 1))

    def batch_std(self, x: torch.Tensor) -> torch.Tensor:
        """The batch standard deviation per channel (N, H, W pooled), shape (1, C, 1, 1)."""
        if self.training:
            var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
            with torch.no_grad():
                self.running_var.lerp_(var, self.momentum)
        else:
            var = self.running_var
        return (var + self.eps).sqrt()

    def forward(self, x):
        if self.nonlinearity:
            x = x / torch.maximum(self.batch_std(x), self.v * x + instance_std(x, self.eps))
        return x * self.gamma + self.beta


class EvoNormS0(nn.Module):
    """EvoNorm-S0: x sigmoid(v x) / group std * gamma + beta, batch-independent.
    Introduced in: notebooks/normalization/evolving-normalization-activation-layers.ipynb"""

    def __init__(self, channels: int, groups: int = 4, eps: float = 1e-5,
                 nonlinearity: bool = True):
        super().__init__()
        check_int("channels", channels)
        check_int("groups", groups)
        if channels % groups:
            raise ValueError(f"groups == {groups} does not divide channels == {channels}")
        check_positive("eps", eps)
        self.groups, self.eps, self.nonlinearity = groups, eps, nonlinearity
        self.gamma, self.beta, self.v = _param(channels, 1), _param(channels, 0), _param(channels, 1)

    def forward(self, x):
        if self.nonlinearity:
            x = x * torch.sigmoid(self.v * x) / group_std(x, self.groups, self.eps)
        return x * self.gamma + self.beta


def bn_relu(channels: int) -> nn.Module:
    """BatchNorm2d then ReLU, the baseline norm-activation pair.
    Introduced in: notebooks/normalization/evolving-normalization-activation-layers.ipynb"""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())


def gn_relu(channels: int, groups: int = 4) -> nn.Module:
    """GroupNorm (`groups` groups) then ReLU, the batch-independent baseline pair.
    Introduced in: notebooks/normalization/evolving-normalization-activation-layers.ipynb"""
    return nn.Sequential(nn.GroupNorm(groups, channels), nn.ReLU())


class NormActCNN(nn.Module):
    """SmallCNN's shape for 2-D images with a norm-activation layer in place of norm -> ReLU: two
    blocks conv3x3 -> norm_act(channels) -> max-pool(2), then a linear read-out.
    Introduced in: notebooks/normalization/evolving-normalization-activation-layers.ipynb"""

    def __init__(self, in_channels: int, n_classes: int, length: int, norm_act: Callable,
                 channels: int = 16):
        super().__init__()
        if not callable(norm_act):
            raise TypeError(f"norm_act must be a factory channels -> module, got {norm_act!r}")
        if length < 4:
            raise ValueError(f"length == {length}, must be >= 4 (two 2x poolings)")
        blocks, c = [], in_channels
        for _ in range(2):
            blocks += [nn.Conv2d(c, channels, 3, padding=1), norm_act(channels), nn.MaxPool2d(2)]
            c = channels
        self.features = nn.Sequential(*blocks)
        self.readout = nn.Linear(channels * (length // 4) ** 2, n_classes)

    def forward(self, x):
        return self.readout(self.features(x).flatten(1))


NORM_ACTS = {"BN-ReLU": bn_relu, "GN-ReLU": gn_relu, "EvoNorm-B0": EvoNormB0,
             "EvoNorm-S0": EvoNormS0}
