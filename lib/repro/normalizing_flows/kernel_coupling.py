"""Kernelised coupling layers: RealNVP's affine coupling with its neural network replaced by a
kernel expansion, after English, Kirchler & Lippert (2024), "Kernelised Normalising Flows"
(their "Ferumal flow").

The conditioner of a coupling layer maps the kept coordinates b x to the log-scale and shift of the
others. Here it is a function in the RKHS of a kernel k, written as a finite expansion over M
learned support points z_1..z_M (shared by all outputs):

    f(x) = sum_m alpha_m k(b x, b z_m),      alpha_m in R^(2D),  k(x, z) = exp(-|x - z|^2 / 2 l^2)

with learnable support points, weights alpha and length-scale l. The parameter count is
M (D + 2D) + 1 per layer (plus the coupling's D scales), against two hidden layers of H units for
the MLP conditioner. The weights start at zero, so a new layer is the identity (as in `coupling`).
The paper's choices of kernel and of how support points are initialised are not checked here.

Introduced in: notebooks/normalizing-flows/kernelised-normalising-flows.ipynb
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.validation import check_int
from .coupling import AffineCoupling, FlowModel, _coupling_mask


def rbf_kernel(x, z, lengthscale):
    """The Gaussian kernel exp(-|x - z|^2 / 2 l^2) between rows of x (N, D) and z (M, D): (N, M)."""
    return torch.exp(-0.5 * torch.cdist(x, z).pow(2) / lengthscale ** 2)


class KernelExpansion(nn.Module):
    """f(x) = sum_m alpha_m k(b x, b z_m): a kernel expansion over M learned support points, seen
    through a 0/1 mask b (None: all coordinates). Maps (N, D) -> (N, d_out).

    dim: D; n_support: M; d_out: outputs; lengthscale: the initial l (learned through its log).
    """

    def __init__(self, dim: int, n_support: int, d_out: int, mask=None, lengthscale: float = 1.0):
        super().__init__()
        check_int("dim", dim)
        mask = torch.ones(dim) if mask is None else torch.as_tensor(mask, dtype=torch.float32)
        if mask.shape != (dim,) or not ((mask == 0) | (mask == 1)).all() or not mask.any():
            raise ValueError(f"mask == {mask.tolist()!r}, must be {dim} zeros and ones, not all 0")
        if not lengthscale > 0:
            raise ValueError(f"lengthscale == {lengthscale!r}, must be > 0")
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))
        self.support = nn.Parameter(torch.randn(check_int("n_support", n_support), dim))
        self.alpha = nn.Parameter(torch.zeros(n_support, check_int("d_out", d_out)))
        self.log_lengthscale = nn.Parameter(torch.tensor(math.log(lengthscale)))

    def gram(self, x):
        """k(b x, b z_m) for every row of x and every support point: (N, M)."""
        return rbf_kernel(x * self.mask, self.support * self.mask, self.log_lengthscale.exp())

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.mask.numel():
            raise ValueError(f"input has shape {tuple(x.shape)}, must be (N, {self.mask.numel()})")
        return self.gram(x) @ self.alpha                             # (N, M) @ (M, d_out)


class KernelCoupling(AffineCoupling):
    """An affine coupling layer (`coupling.AffineCoupling`: u = b x + (1 - b)(x exp(s) + t),
    s = scale * tanh(raw)) whose conditioner (raw, t) = f(b x) is a `KernelExpansion` with
    n_support points instead of an MLP. mask as in `AffineCoupling`."""

    def __init__(self, dim: int, mask=None, n_support: int = 16, lengthscale: float = 1.0):
        super().__init__(dim, mask, hidden=1)                        # its MLP is replaced below
        self.net = KernelExpansion(dim, n_support, 2 * dim, mask=self.mask,
                                   lengthscale=lengthscale)


def _alternating_masks(dim: int, depth: int):
    first = _coupling_mask(dim, None)
    return [first if i % 2 == 0 else 1 - first for i in range(check_int("depth", depth))]


def kernel_flow(dim: int, depth: int, n_support: int = 16, lengthscale: float = 1.0) -> FlowModel:
    """A Ferumal-style flow: `depth` kernelised coupling layers with alternating masks."""
    return FlowModel([KernelCoupling(dim, m, n_support, lengthscale)
                      for m in _alternating_masks(dim, depth)], dim)


def realnvp_flow(dim: int, depth: int, hidden: int = 64) -> FlowModel:
    """The RealNVP baseline of the same depth: `depth` `AffineCoupling` layers (MLP conditioners
    with two hidden layers of `hidden` units) with the same alternating masks."""
    return FlowModel([AffineCoupling(dim, m, hidden) for m in _alternating_masks(dim, depth)], dim)


def n_parameters(module: nn.Module) -> int:
    """The number of trainable scalars of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
