"""Small noise-prediction networks eps_theta(x_t, t): an MLP for points and a conv net for 8x8
images. Both take the diffusion time (one per row, or one for the batch) through random Fourier
features of t, so one network serves every noise level."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.models import MLP
from ..core.validation import check_int


class TimeFeatures(nn.Module):
    """[sin(2 pi w t), cos(2 pi w t)] with fixed random frequencies w ~ N(0, scale^2)."""

    def __init__(self, features: int = 16, scale: float = 4.0, seed: int = 0):
        super().__init__()
        check_int("features", features)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freq", scale * torch.randn(features // 2, generator=g))

    def forward(self, t, n: int):
        t = torch.as_tensor(t, dtype=self.freq.dtype, device=self.freq.device).reshape(-1, 1)
        angle = 2 * math.pi * t * self.freq
        return torch.cat([angle.sin(), angle.cos()], 1).expand(n, -1)


class MLPDenoiser(nn.Module):
    """eps_theta(x, t) for points in R^dim: an MLP on [x, time features]."""

    def __init__(self, dim: int, width: int = 128, depth: int = 3, time_features: int = 16,
                 activation: str = "gelu"):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.time = TimeFeatures(time_features)
        self.net = MLP(dim + 2 * (time_features // 2), dim, width=width, depth=depth,
                       activation=activation)

    def forward(self, x, t):
        return self.net(torch.cat([x, self.time(t, len(x)).to(x)], 1))


class ConvDenoiser(nn.Module):
    """eps_theta(x, t) for (N, channels, side, side) images: `depth` 3x3 convolutions at full
    resolution, each followed by GELU, with the time features added to every hidden layer."""

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 4, time_features: int = 16):
        super().__init__()
        check_int("depth", depth)
        self.time = TimeFeatures(time_features)
        n_time = 2 * (time_features // 2)
        widths = [channels] + [width] * depth
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:]))
        self.time_proj = nn.ModuleList(nn.Linear(n_time, width) for _ in range(depth))
        self.readout = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x, t):
        if x.ndim != 4:
            raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, channels, side, side)")
        emb = self.time(t, len(x)).to(x)
        h = x
        for conv, proj in zip(self.convs, self.time_proj):
            h = nn.functional.gelu(conv(h) + proj(emb)[:, :, None, None])
        return self.readout(h)
