"""Convolutional normalization (ConvNorm, Liu et al. 2021): a convolution followed by a per-channel
preconditioning computed in the Fourier domain from the convolution's own kernel, then a learned
per-channel (depthwise) convolution as the affine transform.

For output channel i of a multi-channel convolution with kernels a_ij (input channels j), the
channel's operator is the row of circulant blocks A_i = [C_a_i1, ..., C_a_iC]. ConvNorm applies
P_i = (sum_j C_a_ij C_a_ij^T)^(-1/2) to that channel, which is itself a convolution whose kernel v_i
has the Fourier transform

    v_hat_i = (sum_j |FFT(a_ij)|^2)^(-1/2)        (elementwise, at the FFT size of the output)

so that P_i A_i has orthonormal rows: every channel's operator is an isometry (all its singular
values are 1) when the convolution is circular.

Details from the authors' code (github.com/shengliu66/ConvNorm, models/prec_conv.py): the
convolution is computed with zero padding k - 1 (its full linear output), v is applied by an FFT at
that size and the result is cropped back to the size of a convolution with padding p; v is computed
from the detached weights (no gradient flows through v); no eps; the affine is a depthwise k x k
convolution with bias, PyTorch's default initialization. The authors keep a running average of v
for evaluation whose averaging factor is about 1 for the first thousands of steps; at our budgets
that equals v of the current weights, which we use in both modes.

Introduced in: notebooks/normalization/convolutional-normalization.ipynb
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..core.validation import check_choice

__all__ = ["fourier_preconditioner", "precondition", "ConvNormConv", "conv_norm", "circular_conv"]


def fourier_preconditioner(weight: torch.Tensor, size, eps: float = 0.0) -> torch.Tensor:
    """v_hat = (sum over input channels of |FFT(kernel)|^2 + eps)^(-1/2), per output channel, at
    the FFT size `size` (one int per spatial dimension): shape (out_channels, *size), real."""
    dims = weight.dim() - 2
    size = tuple(size)
    if len(size) != dims:
        raise ValueError(f"size {size} has {len(size)} dimensions, the kernel {dims}")
    spectrum = torch.fft.fftn(weight, s=size, dim=tuple(range(2, 2 + dims)))
    return (spectrum.abs().pow(2).sum(1) + eps).rsqrt()


def precondition(y: torch.Tensor, v_hat: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of y (N, C, *size) circularly with the kernel whose spectrum is
    v_hat (C, *size): y -> IFFT(FFT(y) * v_hat)."""
    dims = tuple(range(2, y.dim()))
    # v_hat is real and even (|FFT| of a real kernel), so the half spectrum of a real FFT suffices
    spectrum = torch.fft.rfftn(y, dim=dims)
    return torch.fft.irfftn(spectrum * v_hat[..., :spectrum.shape[-1]], s=y.shape[2:], dim=dims)


def circular_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """torch's convolution (a cross-correlation) of x (N, C_in, *n) with `weight` (odd kernel
    size k <= n) under circular padding: the operator whose blocks are the circulant matrices
    C_a_ij; same spatial size as x."""
    k = weight.shape[-1]
    pad = [(k - 1) // 2] * (2 * (x.dim() - 2))
    conv = F.conv1d if x.dim() == 3 else F.conv2d
    return conv(F.pad(x, pad, mode="circular"), weight)


class ConvNormConv(nn.Module):
    """A convolution followed by ConvNorm (the Fourier preconditioning, then a depthwise k x k
    convolution with bias as the learned affine). Stride 1, odd kernel sizes; 1-D or 2-D (`dims`).
    The convolution itself has no bias (the affine's bias takes its place), as in the authors'
    module. `affine=False` leaves the normalized output. Signature of a `SmallCNN(conv=...)`
    factory: ConvNormConv(in_channels, out_channels, kernel_size, padding=..., bias=...)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 bias: bool = False, dims: int = 2, affine: bool = True, eps: float = 0.0):
        super().__init__()
        check_choice("dims", dims, (1, 2))
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size == {kernel_size}, must be odd")
        if not 0 <= padding <= kernel_size - 1:
            raise ValueError(f"padding == {padding}, must be in [0, kernel_size - 1]")
        conv, self.dims = (nn.Conv1d, nn.Conv2d)[dims - 1], dims
        self.conv = conv(in_channels, out_channels, kernel_size, padding=kernel_size - 1,
                         bias=False)
        self.kernel_size, self.padding, self.eps = kernel_size, padding, eps
        self.affine = (conv(out_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2,
                            groups=out_channels, bias=True) if affine else nn.Identity())

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution and the preconditioning, before the affine."""
        full = self.conv(x)                              # zero padding k - 1: the full output
        v_hat = fourier_preconditioner(self.conv.weight.detach(), full.shape[2:], self.eps)
        out = precondition(full, v_hat)
        crop = self.kernel_size - 1 - self.padding       # back to the size for padding p
        if crop:
            out = out[(..., *[slice(crop, -crop)] * self.dims)]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine(self.normalized(x))


def conv_norm(dims: int = 2, affine: bool = True, eps: float = 0.0):
    """A `SmallCNN(conv=...)` factory (in, out, kernel_size, padding, bias) -> ConvNormConv."""
    def make(in_channels, out_channels, kernel_size, padding=0, bias=False):
        return ConvNormConv(in_channels, out_channels, kernel_size, padding=padding, bias=bias,
                            dims=dims, affine=affine, eps=eps)
    return make
