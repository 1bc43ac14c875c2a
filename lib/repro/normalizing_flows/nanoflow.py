"""NanoFlow (after Lee, Kim & Yoon 2020): K affine coupling steps sharing one conditioner network.

A coupling step k maps x = (a, b), a the first D // 2 coordinates, to u = (a, b exp(s_k) + t_k),
with (s_k, t_k) computed from a. The conditioner is split in two parts, as in the paper:

    h_k = g([a, e_k]; theta)           the trunk: a two-layer tanh MLP, shared or one per step
    (raw_s, t_k) = W_k h_k + c_k       the projection: one linear layer, one per step or shared
    s_k = sigma_k * tanh(raw_s)        a bounded log-scale (as in `coupling.AffineCoupling`)

e_k is the step's learned *flow indication embedding* (E numbers), concatenated to the trunk's
input (one of the ways of feeding it the paper names; additive bias and multiplicative gating are
others). Three choices give the paper's variants:

- unshared (a conventional flow): a trunk and a projection per step, E = 0;
- NanoFlow-naive: one trunk and one projection for every step, E = 0;
- NanoFlow: one trunk, a projection per step and an embedding per step, E > 0
  (E = 0 with per-step projections is the paper's NanoFlow-decomp).

`coupling_flow` builds them; the coordinates are reversed after every step, so the next step
transforms the other half. `parameter_count` is the closed form of their sizes: a shared trunk is
counted once, so NanoFlow adds only a projection and an embedding per step.

Copies: every parameter carries a leading dimension of `copies` independent flows (their own
weights), run by batched matrix products, so a grid of learning rates times replicates trains in
one loop (with `repro.core.stacked.MemberAdam`). Points are (C, N, D); log densities (C, N).
Directions as in `coupling`: `forward` maps data to the base, `inverse` samples.

Introduced in: notebooks/normalizing-flows/nanoflow.ipynb
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.validation import check_int


def _uniform(copies, d_in, d_out, gen=None):
    """nn.Linear's default initialisation, U(-1/sqrt(d_in), 1/sqrt(d_in)), for C copies."""
    bound = 1 / math.sqrt(d_in)
    return (2 * torch.rand(copies, d_in, d_out, generator=gen) - 1) * bound


class Trunk(nn.Module):
    """g: the conditioner's deep part, (C, N, d_in) -> (C, N, hidden), two tanh layers."""

    def __init__(self, d_in: int, hidden: int, copies: int = 1):
        super().__init__()
        d_in, hidden, copies = check_int("d_in", d_in), check_int("hidden", hidden), \
            check_int("copies", copies)
        self.w1, self.w2 = nn.Parameter(_uniform(copies, d_in, hidden)), \
            nn.Parameter(_uniform(copies, hidden, hidden))
        self.b1 = nn.Parameter(_uniform(copies, d_in, hidden)[:, :1].clone())
        self.b2 = nn.Parameter(_uniform(copies, hidden, hidden)[:, :1].clone())

    @property
    def d_in(self) -> int:
        return self.w1.shape[1]

    def forward(self, x):
        h = torch.tanh(torch.baddbmm(self.b1, x, self.w1))
        return torch.tanh(torch.baddbmm(self.b2, h, self.w2))


class Projection(nn.Module):
    """The conditioner's last layer, hidden features -> (log-scale s, shift t) of d_out coordinates.
    It starts at zero, so a new coupling step is the identity; the log-scale is bounded,
    s = sigma * tanh(raw), with a learnable sigma per coordinate."""

    def __init__(self, hidden: int, d_out: int, copies: int = 1):
        super().__init__()
        hidden, d_out, copies = check_int("hidden", hidden), check_int("d_out", d_out), \
            check_int("copies", copies)
        self.w = nn.Parameter(torch.zeros(copies, hidden, 2 * d_out))
        self.b = nn.Parameter(torch.zeros(copies, 1, 2 * d_out))
        self.sigma = nn.Parameter(torch.ones(copies, 1, d_out))

    @property
    def d_out(self) -> int:
        return self.sigma.shape[-1]

    def forward(self, h):
        raw_s, t = torch.baddbmm(self.b, h, self.w).chunk(2, dim=-1)
        return self.sigma * torch.tanh(raw_s), t


class SharedCoupling(nn.Module):
    """One affine coupling step u = (a, b exp(s) + t), (s, t) = projection(trunk([a, e])).

    trunk and projection may be module objects that other steps also hold (that is the sharing);
    embedding is this step's flow indication embedding, (C, E) (E = 0: none).
    log|det du/dx| = sum s, shape (C, N).
    """

    def __init__(self, dim: int, trunk: Trunk, projection: Projection, embedding: torch.Tensor):
        super().__init__()
        self.dim = check_int("dim", dim, 2)
        self.trunk, self.projection = trunk, projection
        self.embedding = nn.Parameter(torch.as_tensor(embedding, dtype=torch.float32))
        if trunk.d_in != dim // 2 + self.embedding.shape[-1]:
            raise ValueError(f"the trunk takes {trunk.d_in} inputs, must take dim // 2 + E = "
                             f"{dim // 2} + {self.embedding.shape[-1]}")
        if projection.d_out != dim - dim // 2:
            raise ValueError(f"the projection gives {projection.d_out} coordinates, "
                             f"must give dim - dim // 2 = {dim - dim // 2}")

    def _check(self, x):
        copies = self.embedding.shape[0]
        if x.ndim != 3 or x.shape[0] != copies or x.shape[2] != self.dim:
            raise ValueError(f"input has shape {tuple(x.shape)}, must be ({copies}, N, {self.dim})")

    def _scale_shift(self, a):
        e = self.embedding[:, None, :].expand(-1, a.shape[1], -1)           # (C, N, E)
        return self.projection(self.trunk(torch.cat([a, e], dim=-1)))

    def forward(self, x):
        self._check(x)
        a, b = x[..., :self.dim // 2], x[..., self.dim // 2:]
        s, t = self._scale_shift(a)
        return torch.cat([a, b * torch.exp(s) + t], dim=-1), s.sum(-1)

    def inverse(self, u):
        self._check(u)
        a, v = u[..., :self.dim // 2], u[..., self.dim // 2:]
        s, t = self._scale_shift(a)                                         # a passes unchanged
        return torch.cat([a, (v - t) * torch.exp(-s)], dim=-1), -s.sum(-1)


class CouplingFlow(nn.Module):
    """C copies of a density p(x) = N(u; 0, I) |det du/dx|, u = the steps applied in order, each
    followed by a reversal of the coordinates. `log_prob(x)`: x (N, D) is given to every copy,
    (C, N, D) one set of points per copy; returns (C, N)."""

    def __init__(self, steps, dim: int):
        super().__init__()
        self.steps, self.dim = nn.ModuleList(steps), check_int("dim", dim, 2)
        self.copies = self.steps[0].embedding.shape[0]

    def __len__(self) -> int:
        """The number of copies (as `repro.core.stacked` expects of a stack)."""
        return self.copies

    def forward(self, x):
        """x (C, N, D) -> (u, log|det du/dx|) with shapes (C, N, D), (C, N)."""
        log_det = x.new_zeros(x.shape[:2])
        for step in self.steps:
            x, ld = step(x)
            x, log_det = x.flip(-1), log_det + ld
        return x, log_det

    def inverse(self, u):
        log_det = u.new_zeros(u.shape[:2])
        for step in reversed(self.steps):
            u, ld = step.inverse(u.flip(-1))
            log_det = log_det + ld
        return u, log_det

    def log_prob(self, x):
        if x.ndim == 2:
            x = x.expand(self.copies, -1, -1)
        u, log_det = self(x)
        return -0.5 * (u ** 2).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi) + log_det

    def sample_and_log_prob(self, n: int, generator=None):
        """n samples of every copy (C, n, D) and their log p (C, n)."""
        w = self.steps[0].projection.w
        u = torch.randn(self.copies, check_int("n", n), self.dim, generator=generator,
                        dtype=w.dtype).to(w.device)
        log_p = -0.5 * (u ** 2).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        x, ld_inverse = self.inverse(u)
        return x, log_p - ld_inverse


def _check_sharing(share_trunk: bool, share_projection: bool, embed_dim: int) -> int:
    embed_dim = check_int("embed_dim", embed_dim, 0)
    if share_projection and not share_trunk:
        raise ValueError("share_projection=True needs share_trunk=True: a shared projection on "
                         "per-step trunks is none of the paper's variants")
    if embed_dim and not share_trunk:
        raise ValueError(f"embed_dim == {embed_dim} with share_trunk=False: the flow indication "
                         "embedding only has a use with a shared trunk; pass embed_dim=0")
    return embed_dim


def coupling_flow(dim: int, n_steps: int, hidden: int = 64, *, share_trunk: bool = False,
                  share_projection: bool = False, embed_dim: int = 0,
                  copies: int = 1) -> CouplingFlow:
    """`copies` flows of `n_steps` `SharedCoupling` steps. share_trunk / share_projection: one
    trunk / projection for every step; embed_dim: the size E of each step's flow indication
    embedding, drawn from N(0, 1) (needs share_trunk). The defaults give a conventional flow;
    share_trunk and share_projection NanoFlow-naive; share_trunk and embed_dim > 0 NanoFlow.
    Introduced in: notebooks/normalizing-flows/nanoflow.ipynb"""
    dim, n_steps = check_int("dim", dim, 2), check_int("n_steps", n_steps)
    embed_dim = _check_sharing(share_trunk, share_projection, embed_dim)
    d_in, d_out = dim // 2 + embed_dim, dim - dim // 2
    trunk, projection = Trunk(d_in, hidden, copies), Projection(hidden, d_out, copies)
    steps = [SharedCoupling(dim, trunk if share_trunk else Trunk(d_in, hidden, copies),
                            projection if share_projection else Projection(hidden, d_out, copies),
                            torch.randn(copies, embed_dim))
             for _ in range(n_steps)]
    return CouplingFlow(steps, dim)


def count_parameters(model: nn.Module) -> int:
    """The number of distinct parameters of one copy: a shared module is counted once."""
    total = sum(p.numel() for p in model.parameters())
    return total // getattr(model, "copies", 1)


def parameter_count(dim: int, n_steps: int, hidden: int = 64, *, share_trunk: bool = False,
                    share_projection: bool = False, embed_dim: int = 0) -> int:
    """The closed form of `count_parameters(coupling_flow(...))` for the same arguments:
    trunk = (D // 2 + E) H + H + H^2 + H, projection = 2 (D - D // 2)(H + 1) + (D - D // 2), and
    K trunks or one, K projections or one, plus K E embedding numbers.
    Introduced in: notebooks/normalizing-flows/nanoflow.ipynb"""
    dim, n_steps = check_int("dim", dim, 2), check_int("n_steps", n_steps)
    hidden = check_int("hidden", hidden)
    embed_dim = _check_sharing(share_trunk, share_projection, embed_dim)
    d_in, d_out = dim // 2 + embed_dim, dim - dim // 2
    trunk = d_in * hidden + hidden + hidden * hidden + hidden
    projection = 2 * d_out * (hidden + 1) + d_out
    return ((1 if share_trunk else n_steps) * trunk
            + (1 if share_projection else n_steps) * projection + n_steps * embed_dim)
