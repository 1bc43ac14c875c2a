"""Coupling and autoregressive flow layers, and a density model built from them.

Direction: every layer here is written for density estimation. `forward` maps data x towards the
base (x -> u, the "normalizing" direction) and returns log|det du/dx|; `inverse` maps base samples
back to data (sampling). `FlowModel.log_prob(x)` is therefore one pass of `forward` through the
layers. (planar_radial.Flow goes the other way: its `forward` is the sampling direction.)

Layers work on batches (N, D) and return (output, log_det) with log_det of shape (N,), in both
directions, so `inverse(forward(x)[0])[1] == -forward(x)[1]`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.validation import check_int


def _check_batch(x, dim: int):
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"input has shape {tuple(x.shape)}, must be (N, {dim})")


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Two tanh hidden layers; the last layer starts at zero so a new layer is the identity."""
    net = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                        nn.Linear(hidden, d_out))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def _coupling_mask(dim: int, mask) -> torch.Tensor:
    """A float 0/1 mask of shape (D,): 1 marks a conditioning coordinate, passed through unchanged.
    None gives the first D // 2 coordinates."""
    check_int("dim", dim, 2)
    mask = torch.arange(dim) < dim // 2 if mask is None else torch.as_tensor(mask)
    if mask.shape != (dim,) or not ((mask == 0) | (mask == 1)).all() or mask.all() or not mask.any():
        raise ValueError(f"mask == {mask.tolist()!r}, must be {dim} zeros and ones with at least one of each")
    return mask.to(torch.get_default_dtype())


class AffineCoupling(nn.Module):
    """RealNVP's affine coupling layer (after Dinh, Sohl-Dickstein & Bengio 2017, the masked form):
    with a binary mask b, u = b x + (1 - b) (x exp(s(b x)) + t(b x)), log|det| = sum_(1-b) s.

    The conditioning coordinates (b = 1) pass through; the rest are scaled and shifted by an MLP of
    them. The log-scale is bounded, s = scale * tanh(raw) with a learnable per-coordinate scale, so
    that early training cannot blow up exp(s) (our stabilisation; not checked against the paper).
    mask: D zeros and ones, 1 = conditioning; None = the first D // 2. Alternate masks (or put a
    `Permute` between layers) so every coordinate gets transformed.
    """

    def __init__(self, dim: int, mask=None, hidden: int = 64):
        super().__init__()
        self.register_buffer("mask", _coupling_mask(dim, mask))
        self.net = _mlp(dim, check_int("hidden", hidden), 2 * dim)
        self.scale = nn.Parameter(torch.ones(dim))

    def _scale_shift(self, kept):
        raw_s, t = self.net(kept).chunk(2, dim=1)
        free = 1 - self.mask
        return free * self.scale * torch.tanh(raw_s), free * t      # zero on the kept coordinates

    def forward(self, x):
        _check_batch(x, self.mask.numel())
        s, t = self._scale_shift(x * self.mask)
        return x * torch.exp(s) + t, s.sum(1)

    def inverse(self, u):
        _check_batch(u, self.mask.numel())
        s, t = self._scale_shift(u * self.mask)                     # kept part of u equals that of x
        return (u - t) * torch.exp(-s), -s.sum(1)


class AdditiveCoupling(nn.Module):
    """NICE's additive coupling layer (after Dinh, Krueger & Bengio 2015): u = x + (1 - b) m(b x).
    Volume-preserving, log_det == 0; follow a stack of them by `Scaling` to change volume.
    mask as in `AffineCoupling`.
    """

    def __init__(self, dim: int, mask=None, hidden: int = 64):
        super().__init__()
        self.register_buffer("mask", _coupling_mask(dim, mask))
        self.net = _mlp(dim, check_int("hidden", hidden), dim)

    def forward(self, x):
        _check_batch(x, self.mask.numel())
        return x + (1 - self.mask) * self.net(x * self.mask), x.new_zeros(x.shape[0])

    def inverse(self, u):
        _check_batch(u, self.mask.numel())
        return u - (1 - self.mask) * self.net(u * self.mask), u.new_zeros(u.shape[0])


class Scaling(nn.Module):
    """NICE's final diagonal scaling (after Dinh, Krueger & Bengio 2015): u = x exp(log_s),
    log|det| = sum log_s. Parameterised by the log so the scale stays positive."""

    def __init__(self, dim: int):
        super().__init__()
        self.log_s = nn.Parameter(torch.zeros(check_int("dim", dim)))

    def forward(self, x):
        _check_batch(x, self.log_s.numel())
        return x * torch.exp(self.log_s), self.log_s.sum().expand(x.shape[0])

    def inverse(self, u):
        _check_batch(u, self.log_s.numel())
        return u * torch.exp(-self.log_s), -self.log_s.sum().expand(u.shape[0])


class Permute(nn.Module):
    """A fixed permutation of the coordinates, u = x[:, perm] (log_det 0); perm None reverses them."""

    def __init__(self, dim: int, perm=None):
        super().__init__()
        check_int("dim", dim)
        perm = torch.arange(dim - 1, -1, -1) if perm is None else torch.as_tensor(perm)
        if perm.shape != (dim,) or not torch.equal(perm.sort().values, torch.arange(dim)):
            raise ValueError(f"perm == {perm.tolist()!r}, must be a permutation of 0..{dim - 1}")
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", perm.argsort())

    def forward(self, x):
        _check_batch(x, self.perm.numel())
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, u):
        _check_batch(u, self.perm.numel())
        return u[:, self.inverse_perm], u.new_zeros(u.shape[0])


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in): MADE's building block."""

    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


def made_masks(dim: int, hidden: int):
    """The three masks (out, in) of a MADE with two hidden layers (after Germain et al. 2015).

    Inputs get degrees 1..D in order, hidden units cycle through 1..D-1; a hidden unit sees the
    units of lower or equal degree, output i (degree i) only those of degree < i, so output i depends
    on x_1..x_(i-1) alone. Outputs come twice (shift, then log-scale), hence 2D rows in the last mask.
    """
    d_in = torch.arange(1, dim + 1)
    d_hidden = torch.arange(hidden) % max(dim - 1, 1) + 1
    d_out = d_in.repeat(2)
    return ((d_hidden[:, None] >= d_in[None]), (d_hidden[:, None] >= d_hidden[None]),
            (d_out[:, None] > d_hidden[None]))


class MaskedAutoregressive(nn.Module):
    """A MAF layer (after Papamakarios, Pavlakou & Murray 2017): u_i = (x_i - mu_i) exp(-alpha_i)
    with (mu_i, alpha_i) from a MADE of x_1..x_(i-1); log|det du/dx| = -sum alpha_i.

    forward (density, x -> u) is one MADE pass; inverse (sampling) needs D passes, since x_i needs
    x_1..x_(i-1) first. The Jacobian du/dx is lower triangular in the coordinate order. As in
    `AffineCoupling` the log-scale is bounded, alpha = scale * tanh(raw) (our choice; the paper
    leaves alpha unbounded). Put a `Permute` between layers to vary the order.
    """

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        m1, m2, m3 = made_masks(check_int("dim", dim), check_int("hidden", hidden))
        self.net = nn.Sequential(MaskedLinear(m1), nn.Tanh(), MaskedLinear(m2), nn.Tanh(), MaskedLinear(m3))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(dim))

    def _shift_log_scale(self, x):
        mu, raw = self.net(x).chunk(2, dim=1)
        return mu, self.scale * torch.tanh(raw)

    def forward(self, x):
        _check_batch(x, self.scale.numel())
        mu, alpha = self._shift_log_scale(x)
        return (x - mu) * torch.exp(-alpha), -alpha.sum(1)

    def inverse(self, u):
        """x = u exp(alpha) + mu, repeated D times from x = 0: pass k gets x_1..x_k right, and the
        last pass's alpha is that of the final x (alpha_i sees only x_<i)."""
        _check_batch(u, self.scale.numel())
        x = torch.zeros_like(u)
        for _ in range(u.shape[1]):
            mu, alpha = self._shift_log_scale(x)
            x = u * torch.exp(alpha) + mu
        return x, alpha.sum(1)


class FlowModel(nn.Module):
    """A density p(x) = N(u; 0, I) |det du/dx| with u = layers(x), the layers applied in order by
    their `forward` (data -> base). Sampling runs their `inverse` in reverse order.

    layers: flow layers following this module's convention (e.g. `AffineCoupling`, `Permute`).
    """

    def __init__(self, layers, dim: int):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.layers = nn.ModuleList(layers)
        self.register_buffer("_anchor", torch.zeros(()))            # follows .to(device) and dtype

    def base_log_prob(self, u):
        return -0.5 * (u ** 2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)

    def log_prob(self, x):
        """log p(x) for x of shape (N, D), (N,); differentiable in x and the parameters."""
        _check_batch(x, self.dim)
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return self.base_log_prob(x) + log_det

    def sample_and_log_prob(self, n: int, generator=None):
        """n samples x (n, D) and their log p(x) (n,), from one pass through the inverses."""
        u = torch.randn(check_int("n", n), self.dim, generator=generator,
                        device=self._anchor.device, dtype=self._anchor.dtype)
        log_p = self.base_log_prob(u)
        for layer in reversed(self.layers):
            u, ld_inverse = layer.inverse(u)
            log_p = log_p - ld_inverse                               # + log|det du/dx|
        return u, log_p

    def sample(self, n: int, generator=None):
        """n samples (n, D) of the model."""
        return self.sample_and_log_prob(n, generator)[0]
